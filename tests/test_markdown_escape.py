"""``report/summary.md`` carries class labels, file names and manifests as text: rendered by an independent
CommonMark renderer (markdown-it-py, with raw HTML and GitHub tables enabled, as a Markdown viewer that renders
HTML would), a hostile label produces no tag, link or image and reads back as itself."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from analysis.app.markdown import md_escape, md_fence
from analysis.app.summary import markdown_table

HOSTILE = [
    '"><img src=x onerror=alert(1)>',
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "![x](http://evil/x.png)",
    "a | b",
    "*bold* _it_ `code` ~~s~~",
    "&lt;img&gt; &amp;",
    "back\\slash",
    "<http://evil>",
    "line\nbreak",
    "crepe_tiny",
]
RENDER = MarkdownIt("commonmark", {"html": True}).enable("table")
TAGS = re.compile(r"<(?!/?(p|table|thead|tbody|tr|th|td|ul|li|pre|code)[ >])[^>]*>")


def _text(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize("label", HOSTILE)
def test_a_label_renders_as_its_text(label):
    out = RENDER.render(f"- class {md_escape(label)} is specific")
    assert TAGS.findall(out) == [], out
    assert _text(out) == f"class {' '.join(label.splitlines())} is specific"


def test_table_cells_hold_their_labels():
    df = pd.DataFrame({"class": HOSTILE, "neurons": range(len(HOSTILE))})
    out = RENDER.render(markdown_table(df))
    assert TAGS.findall(out) == [], out
    cells = [_text(c) for c in re.findall(r"<td>(.*?)</td>", out, flags=re.S)]
    assert cells[0::2] == [" ".join(h.splitlines()) for h in HOSTILE] and cells[1::2] == [
        str(i) for i in range(len(HOSTILE))
    ]


def test_a_fence_cannot_be_closed_from_inside():
    text = '{"label": "```\\n<img src=x onerror=alert(1)>"}'.replace("\\n", "\n")
    out = RENDER.render(md_fence(text, "json") + "\n\nafter")
    assert out.count("<pre>") == 1 and "<img" not in out and _text(out.split("</pre>")[0]) == text
