"""Text from run folders (run names, variant names, labels, paths) is untrusted: a shared runs
directory can hold anything. Everything that reaches markdown or HTML passes through here."""

from __future__ import annotations

import html
import re

# what can open markup: emphasis, code, links and images, table cells, headings, strikethrough
_MARKDOWN = re.compile(r"([\\`*\[\]|#~])")


def md_text(value) -> str:
    """Plain text inside markdown: HTML-escaped, markdown punctuation backslash-escaped."""
    return _MARKDOWN.sub(r"\\\1", html.escape(str(value), quote=True))


def md_code(value) -> str:
    """An inline code span; markdown renders its content literally, so only backticks matter."""
    return "`" + str(value).replace("`", "'").replace("\n", " ") + "`"
