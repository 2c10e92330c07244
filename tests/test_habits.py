"""Habits of the tree: no file in ``tests/`` or ``benchmarks/`` edits ``sys.path``, and ``benchmarks/`` does not
import from ``tests/`` (the package is installed editable by ``make install``; benchmarks run on their own); no
test file imports another test file (shared helpers live in ``tests/_*.py`` or ``conftest.py``).

Read from the files' own syntax trees (``ast``), so a string or comment mentioning ``sys.path`` is not a hit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The tests' own importable modules (``conftest``, ``_top_clips``, ...) and the package name ``tests``.
TEST_MODULES = {"tests"} | {p.stem for p in (ROOT / "tests").glob("*.py")}
#: sys.path methods that change it.
MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear", "reverse", "sort", "__setitem__", "__iadd__"}


def _is_sys_path(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def sys_path_edits(source: str) -> list[int]:
    """Line numbers where ``source`` changes ``sys.path`` (a mutating method call, an assignment to it, to an
    item or slice of it, or an augmented assignment).

    >>> sys_path_edits("import sys\\nsys.path.insert(0, 'x')\\nprint(sys.path)\\n")
    [2]
    >>> sys_path_edits("import sys\\nsys.path[:0] = ['a']\\nsys.path += ['b']\\nsys.path = []\\n")
    [2, 3, 4]
    >>> sys_path_edits("s = 'sys.path.insert(0, x)'  # sys.path.append\\n")
    []
    """
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS and _is_sys_path(node.func.value):
                lines.append(node.lineno)
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            if _is_sys_path(t) or (isinstance(t, ast.Subscript) and _is_sys_path(t.value)):
                lines.append(node.lineno)
    return sorted(lines)


def test_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of ``source`` that reaches into ``tests/``.

    >>> test_imports("import torch\\nfrom tests.oracle import f\\nimport _top_clips\\nfrom . import x\\n")
    [(2, 'tests.oracle'), (3, '_top_clips')]
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in TEST_MODULES]
    return found


test_imports.__test__ = False  # a helper, not a test (its name starts with "test")


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_no_sys_path_edits(folder: str) -> None:
    files = _files(folder)
    assert files, f"no Python files under {folder}/"
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in files for n in sys_path_edits(p.read_text())]
    assert not bad, f"sys.path edited (the package is installed editable; use PYTHONPATH if needed): {bad}"


def test_benchmarks_do_not_import_tests() -> None:
    files = _files("benchmarks")
    assert files
    bad = [f"{p.relative_to(ROOT)}:{n} imports {m}" for p in files for n, m in test_imports(p.read_text())]
    assert not bad, f"benchmarks/ must not import from tests/ (move shared code into the library): {bad}"


def test_test_files_do_not_import_each_other() -> None:
    """A helper two test files share lives in a helper module (``tests/_*.py``) or ``conftest.py``, not in one of
    the test files (``test_*.py``), so that no test file is imported by another one."""
    files = sorted((ROOT / "tests").glob("*.py"))
    assert files
    bad = [
        f"{p.relative_to(ROOT)}:{n} imports {m}"
        for p in files
        for n, m in test_imports(p.read_text())
        if m.split(".")[0].startswith("test_")
    ]
    assert not bad, f"move what they share into a tests/_*.py helper module or conftest.py: {bad}"
