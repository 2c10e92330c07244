"""The documentation a newcomer reads: README.md at most 150 lines and linking every page of docs/, no broken
relative link or anchor in README.md, docs/ and examples/, and the outputs reference naming every file name of
the run-folder layout (analysis/runs/layout.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.runs import layout

from conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGES = sorted([REPO_ROOT / "README.md", *DOCS.glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FILE_NAME = re.compile(r"\.(pt|csv|txt|json|html|js|pdf|md|ckpt|png)$")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces to '-')."""
    out = set()
    code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        code = code != line.startswith("```")
        if not code and re.match(r"#{1,6} ", line):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_readme_is_short_and_links_every_docs_page():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    linked = {Path(t).name for t in LINK.findall(readme) if t.startswith("docs/")}
    assert {p.name for p in DOCS.glob("*.md")} <= linked, "a docs page the README does not link"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO_ROOT)) for p in PAGES])
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page}: broken links {broken}"


def test_outputs_reference_names_every_file_of_the_layout():
    page = (DOCS / "outputs.md").read_text(encoding="utf-8")
    names = [v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and FILE_NAME.search(v)]
    patterns = [
        layout.probe_checkpoint_name("<seed>"),
        layout.task_table_name("<suffix>"),
        layout.cross_task_name("<a>", "<b>"),
        layout.within_task_name("<t>"),
        layout.compare_table_name(["<m1>", "<m2>"]),
        layout.compare_cross_task_name("<a>", "<b>"),
        layout.compare_within_task_name("<t>"),
        "ablation_confusion-<conditions>.pdf",
        layout.GALLERY_NEURONS_DIR,
        layout.GALLERY_IMAGES_DIR,
        layout.GALLERY_AUDIO_DIR,
    ]
    assert len(names) > 20
    missing = [n for n in names + patterns if n not in page]
    assert not missing, f"docs/outputs.md does not name {missing}"
