"""Text from run folders (run names, variant names, labels, paths) is untrusted: a shared runs
directory can hold anything. Everything that reaches markdown or HTML passes through here."""

from __future__ import annotations

import html
import re

# what can open markup: emphasis, code, links and images, table cells, headings, strikethrough
_MARKDOWN = re.compile(r"([\\`*\[\]|#~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def md_text(value) -> str:
    """Plain text inside markdown, on one line: HTML-escaped, markdown punctuation
    backslash-escaped, line breaks and other control characters as spaces."""
    return _MARKDOWN.sub(r"\\\1", html.escape(_CONTROL.sub(" ", str(value)), quote=True))


def md_code(value) -> str:
    """An inline code span; markdown renders its content literally, so only backticks matter."""
    return "`" + _CONTROL.sub(" ", str(value)).replace("`", "'") + "`"
