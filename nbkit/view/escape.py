"""Text from run folders (run names, variant names, labels, devices, reasons, paths) is
untrusted: a shared runs directory can hold anything. It is data wherever it is shown: escaped
for markdown and HTML here, for Vega field names in nbkit.view.charts, for JSON inside a <script> in
nbkit.view.report. For a terminal: nbkit.errors.terminal."""

from __future__ import annotations

import functools
import html
import re
from urllib.parse import urlsplit

# what can open markup: emphasis, code, table cells, headings, strikethrough (backslash-escaped);
# links, images and maths as entities: marimo's markdown reads \[ ... \] and $$ ... $$ as LaTeX
_MARKDOWN = re.compile(r"([\\`*|#~])")
_ENTITIES = str.maketrans({"[": "&#91;", "]": "&#93;", "$": "&#36;"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SAFE_SCHEMES = ("", "http", "https", "mailto")


def md_text(value) -> str:
    """Plain text inside markdown, on one line: <, > and & HTML-escaped (quotes stay: no markup can
    open to put them in an attribute), markdown punctuation backslash-escaped, line breaks and
    other control characters as spaces."""
    return _MARKDOWN.sub(r"\\\1", html.escape(_CONTROL.sub(" ", str(value)), quote=False)).translate(_ENTITIES)


def md_code(value) -> str:
    """An inline code span; markdown renders its content literally, so only backticks matter."""
    return "`" + _CONTROL.sub(" ", str(value)).replace("`", "'") + "`"


def markdown_html(text: str) -> str:
    """Markdown as HTML with nothing active in it: raw HTML in the text is shown as text, and a
    link or image whose address is not http(s), mailto or relative (javascript:, data:) loses it."""
    import markdown

    return markdown.markdown(text, extensions=["tables", _no_active_content()()])


def safe_address(url: str) -> bool:
    try:
        return urlsplit(url.strip()).scheme.lower() in SAFE_SCHEMES
    except ValueError:
        return False


@functools.cache
def _no_active_content():
    """Python-Markdown passes raw HTML through and links to any address: not here. (Built on
    first use: the command line runs where Python-Markdown is not installed.)"""
    import markdown
    import markdown.treeprocessors

    class SafeAddresses(markdown.treeprocessors.Treeprocessor):
        def run(self, root):
            for element in root.iter():
                for attribute in ("href", "src"):
                    if element.get(attribute) is not None and not safe_address(element.get(attribute)):
                        del element.attrib[attribute]

    class NoActiveContent(markdown.Extension):
        def extendMarkdown(self, md):
            md.preprocessors.deregister("html_block")
            md.inlinePatterns.deregister("html")
            md.treeprocessors.register(SafeAddresses(md), "safe_addresses", 0)

    return NoActiveContent
