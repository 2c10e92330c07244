"""The layers of docs/architecture.md, checked from the code's own imports: no module imports a layer
above its own, no import cycles between modules, only the run-folder contract loads tensor files."""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.runs import layout

from conftest import REPO_ROOT

PACKAGES = ("analysis", "callbacks", "datamodules", "lightning_modules")

#: Layer of a module (by name prefix, longest first) and what each layer may import.
LAYERS = [
    ("analysis.app", "app"),
    # the package's __init__ hands on the notebook API (``from analysis import open_run``), lazily
    ("=analysis", "entry"),
    ("analysis.__main__", "entry"),
    ("analysis.runs", "runs"),
    ("callbacks", "callbacks"),
    ("datamodules", "lightning"),
    ("lightning_modules", "lightning"),
    ("analysis", "core"),
]
MAY_IMPORT = {
    "core": {"core"},
    "runs": {"core", "runs"},
    "lightning": {"core", "runs", "lightning"},
    "callbacks": {"core", "runs", "lightning", "callbacks"},
    "app": {"core", "runs", "lightning", "callbacks", "app"},
    "entry": {"app"},
}
#: Third-party packages a layer must not import.
FORBIDDEN_THIRD_PARTY = {"core": {"lightning", "pytorch_lightning"}, "runs": {"lightning", "pytorch_lightning"}}


@functools.cache
def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((REPO_ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _layer(module: str) -> str:
    for prefix, layer in LAYERS:
        if prefix.startswith("="):
            if module == prefix[1:]:
                return layer
        elif module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module}: no layer")


def _imports(module: str, path: Path) -> set[str]:
    """Absolute names imported anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            # ``from pkg import submodule`` imports the submodule (and runs pkg/__init__, which only re-exports)
            subs = {f"{name}.{a.name}" for a in node.names}
            known = subs & set(_modules())
            out |= known if known == subs else subs | {name}
    return out


def _project_edges() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = {}
    for m, path in mods.items():
        targets = set()
        for name in _imports(m, path):
            # the longest project module the imported name starts with
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in mods:
                    if cand != m:
                        targets.add(cand)
                    break
        edges[m] = targets
    return edges


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for m, targets in _project_edges().items():
        for t in targets:
            if _layer(t) not in MAY_IMPORT[_layer(m)]:
                bad.append(f"{m} ({_layer(m)}) imports {t} ({_layer(t)})")
    assert not bad, "\n".join(bad)


def test_core_and_run_folder_layers_import_no_lightning():
    bad = []
    for m, path in _modules().items():
        banned = FORBIDDEN_THIRD_PARTY.get(_layer(m), set())
        hits = {n for n in _imports(m, path) if n.split(".")[0] in banned}
        if hits:
            bad.append(f"{m} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    edges = _project_edges()
    # package __init__ re-exports are not cycles of their own: a package imports its submodules
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_only_the_readers_load_tensor_files():
    """``torch.load`` appears in one module, the readers' loaders (``analysis.runs.read.load_tensor_file``,
    defined in ``analysis.runs.read.loaders``), and no project module asks Lightning to load a checkpoint
    for it (``load_from_checkpoint``, ``ckpt_path=``)."""
    loads = [m for m, p in _modules().items() if "torch.load(" in p.read_text(encoding="utf-8")]
    assert loads == ["analysis.runs.read.loaders"], loads
    lightning_loads = [
        m
        for m, p in _modules().items()
        if re.search(r"load_from_checkpoint\(|ckpt_path=", p.read_text(encoding="utf-8"))
    ]
    assert not lightning_loads, lightning_loads


def test_the_package_hands_on_the_application_only_lazily():
    """``analysis/__init__.py`` imports nothing of the application at import time (only inside its module
    ``__getattr__``), so importing the core never loads ``analysis.app``; ``from analysis import open_run``
    still works."""
    tree = ast.parse((REPO_ROOT / "analysis" / "__init__.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n.startswith("analysis")}, names
    code = (
        "import sys, analysis.aape, analysis.runs.read, analysis.figures\n"
        "assert not [m for m in sys.modules if m.startswith('analysis.app')], sorted(sys.modules)\n"
        "from analysis import open_run\n"
        "assert open_run.__module__ == 'analysis.app.notebook.run'\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert r.returncode == 0, r.stderr[-2000:]


#: A file name (``over_zero.pt``, ``meta.offsets.i64``); temporary-name parts such as ``.tmp`` are not names.
_FILE_NAME = re.compile(r"^[\w-][\w.-]*\.[A-Za-z0-9]+$")


def _layout_file_names() -> set[str]:
    """Every file name the layout defines (its upper-case constants and the tuples of them)."""
    values = [v for k, v in vars(layout).items() if k.isupper()]
    flat = [x for v in values for x in (v if isinstance(v, tuple) else (v,))]
    return {x for x in flat if isinstance(x, str) and _FILE_NAME.match(x)}


def _spelled_file_names(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, literal) of every string literal of ``source`` (docstrings aside) that is one of ``names`` or a
    path ending in one (``"classes.txt"``, ``f"{run}/classes.txt"``); messages that mention a file
    (``"no stability.csv"``) are text, not a spelling of the name."""
    tree = ast.parse(source)
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    hits = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            if n.value in names or ("/" in n.value and n.value.rsplit("/", 1)[-1] in names):
                hits.append((n.lineno, n.value))
    return hits


def test_the_file_name_finder_finds_literals_and_paths_not_messages():
    names = {"classes.txt", "over_zero.pt"}
    code = (
        '"""Reads classes.txt."""\n'
        'a = d / "classes.txt"\n'
        'b = f"{d}/over_zero.pt"\n'
        'c = "no classes.txt here"\n'
        'e = f"{d}: over_zero.pt has no classes"\n'
    )
    assert _spelled_file_names(code, names) == [(2, "classes.txt"), (3, "/over_zero.pt")]


def test_file_names_are_spelled_only_in_the_layout():
    """One home per file name: no module outside ``analysis/runs/layout/`` writes a run-folder file name of the
    layout as a literal (it imports the constant from ``analysis.runs.layout``)."""
    names = _layout_file_names()
    assert {"classes.txt", "over_zero.pt", "manifest.json", "ablation.csv", "sae.pt"} <= names
    bad = []
    for m, path in _modules().items():
        if m == "analysis.runs.layout" or m.startswith("analysis.runs.layout."):
            continue
        bad += [f"{m}:{line}: {text!r}" for line, text in _spelled_file_names(path.read_text(encoding="utf-8"), names)]
    assert not bad, "file names spelled outside analysis/runs/layout/ (import them from the layout):\n" + "\n".join(bad)
