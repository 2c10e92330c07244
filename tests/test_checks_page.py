"""``docs/checks.md`` is the page ``docs/checks_page.py`` generates from the tests (regenerate it with
``python docs/checks_page.py`` after adding or renaming a check)."""

from __future__ import annotations

import importlib.util

from conftest import REPO_ROOT


def test_checks_page_is_up_to_date():
    spec = importlib.util.spec_from_file_location("checks_page", REPO_ROOT / "docs" / "checks_page.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (REPO_ROOT / "docs" / "checks.md").read_text(encoding="utf-8") == mod.page(), (
        "docs/checks.md is out of date: run python docs/checks_page.py"
    )
    assert mod.page().count("\n- **") >= 70  # every check file contributes its tests
