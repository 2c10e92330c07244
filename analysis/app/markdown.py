"""Markdown text from data (class labels, file names, manifests) that renders as that text and nothing else:
no HTML tag, link, image, emphasis or table cell break can come from a label in ``report/summary.md``."""

from __future__ import annotations

import re

#: Characters Markdown (CommonMark + GitHub tables) may read as markup inside a line, escaped with a backslash;
#: ``_`` only where it could open or close emphasis (not between two letters or digits: ``crepe_tiny`` stays).
_MARKUP = re.compile(r"([\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_escape(text: object) -> str:
    """``text`` as literal Markdown inline text: ``& < >`` as HTML entities (no tag, autolink or entity),
    the markup characters ``\\ ` * _ [ ] | ~`` backslash-escaped (``_`` not inside a word), line breaks
    as spaces.

    >>> md_escape('"><img src=x onerror=alert(1)>')
    '"&gt;&lt;img src=x onerror=alert(1)&gt;'
    >>> md_escape("[a](javascript:x) *b* c|d _e_ crepe_tiny")
    '\\\\[a\\\\](javascript:x) \\\\*b\\\\* c\\\\|d \\\\_e\\\\_ crepe_tiny'
    """
    s = " ".join(str(text).splitlines())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKUP.sub(r"\\\1", s)


def md_fence(text: str, lang: str = "") -> str:
    """``text`` as a fenced code block whose fence is longer than any backtick run inside it (so the text
    cannot close it).

    >>> md_fence("a ``` b", "json").splitlines()
    ['````json', 'a ``` b', '````']
    """
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{fence}{lang}\n{text}\n{fence}"
