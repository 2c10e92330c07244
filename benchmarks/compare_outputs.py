"""Compare two pipeline output trees (before / after a change) file by file, ignoring what always differs.

A refactor must leave the demo's outputs unchanged. Run the same config at both commits into two folders,
then::

    python benchmarks/compare_outputs.py BEFORE AFTER [--tolerance 0]

Per file present in both trees (stage markers ``.stages/`` and TensorBoard event files are skipped):

* tensor files (``.pt``, ``.pth``, ``.ckpt``) are loaded with ``weights_only=True`` and compared tensor by tensor
  (float tensors within ``--tolerance``), strings with each tree's own root replaced by ``ROOT``; the
  temporary checkpoint paths Lightning records (``best_model_path``) and ``checkpoint_sha256`` are ignored (the
  checkpoints themselves are compared);
* text files are compared line by line with the root replaced and ISO timestamps, ``"seconds"`` durations, the
  report's date line and ``checkpoint_sha256`` values removed, and CSV columns of durations (``seconds``) dropped;
* PDFs are compared by their extracted text (``pypdf``; their creation dates always differ); other files byte
  for byte.

It prints the files found in only one tree and each differing file with its first differing lines; exit status
1 when anything differs, else 0.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import re
import sys
from pathlib import Path
from typing import Any, Optional

import torch

SKIP_PARTS = (".stages",)
TENSOR_SUFFIXES = {".pt", ".pth", ".ckpt"}
#: Lines of text outputs that differ between any two runs (clock times, durations, a hash of a file that
#: records its own path); removed before comparing.
VOLATILE = [
    re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?"),
    re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d"),
    re.compile(r'"seconds": [0-9.]+'),
    re.compile(r"checkpoint_sha256(&quot;|\")?: ?(&quot;|\")?[0-9a-f]{64}"),
]
#: Columns of CSV tables that hold wall-clock durations.
VOLATILE_COLUMNS = {"seconds"}
#: Keys of tensor files that differ between any two runs: temporary paths of Lightning's checkpoint callback, the
#: hash of a checkpoint that records its own folder (the checkpoint itself is compared).
VOLATILE_KEYS = {
    "best_model_path",
    "last_model_path",
    "kth_best_model_path",
    "best_k_models",
    "dirpath",
    "checkpoint_sha256",
}


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not any(s in p.parts for s in SKIP_PARTS) and "tfevents" not in p.name
    }


def _drop_columns(text: str) -> str:
    """A CSV table without its :data:`VOLATILE_COLUMNS`."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return text
    keep = [i for i, name in enumerate(rows[0]) if name not in VOLATILE_COLUMNS]
    return "\n".join(",".join(r[i] for i in keep if i < len(r)) for r in rows)


def _normalise(text: str, root: Path) -> str:
    text = text.replace(str(root.resolve()), "ROOT").replace(str(root), "ROOT")
    for pattern in VOLATILE:
        text = pattern.sub("<volatile>", text)
    return text


def _compare_objects(a: Any, b: Any, roots: tuple[Path, Path], tol: float, path: str = "") -> Optional[str]:
    """The first difference between two loaded tensor files (None: equal)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"{path}: tensor vs {type(b if isinstance(a, torch.Tensor) else a).__name__}"
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{path}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        if a.is_floating_point():
            if tol:
                same = torch.allclose(a, b, rtol=0.0, atol=tol, equal_nan=True)
            else:  # NaN where the other has NaN counts as equal
                same = torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(), b.nan_to_num())
            return None if same else f"{path}: max |difference| {(a - b).abs().nan_to_num().max().item():.3g}"
        return None if torch.equal(a, b) else f"{path}: values differ"
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(map(str, set(a) ^ set(b)))}"
        for k in a:
            if k in VOLATILE_KEYS:
                continue
            found = _compare_objects(a[k], b[k], roots, tol, f"{path}.{k}")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _compare_objects(x, y, roots, tol, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, str) and isinstance(b, str):
        same = _normalise(a, roots[0]) == _normalise(b, roots[1])
        return None if same else f"{path}: {a[:80]!r} vs {b[:80]!r}"
    return None if a == b else f"{path}: {a!r} vs {b!r}"


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


def compare_file(rel: str, before: Path, after: Path, tol: float = 0.0) -> list[str]:
    """The differences of file ``rel`` between the two trees (empty: the same)."""
    a, b = before / rel, after / rel
    if a.read_bytes() == b.read_bytes():
        return []
    if a.suffix in TENSOR_SUFFIXES:
        found = _compare_objects(
            torch.load(a, weights_only=True, map_location="cpu"),
            torch.load(b, weights_only=True, map_location="cpu"),
            (before, after),
            tol,
        )
        return [found] if found else []
    if a.suffix == ".pdf":
        ta, tb = _pdf_text(a), _pdf_text(b)
    else:
        try:
            ta, tb = a.read_text(encoding="utf-8"), b.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return ["binary content differs"]
    if a.suffix == ".csv":
        ta, tb = _drop_columns(ta), _drop_columns(tb)
    ta, tb = _normalise(ta, before), _normalise(tb, after)
    if ta == tb:
        return []
    lines = difflib.unified_diff(ta.splitlines(), tb.splitlines(), lineterm="", n=0)
    return [line[:200] for line in lines if not line.startswith(("---", "+++", "@@"))]


def compare_trees(before: Path, after: Path, tol: float = 0.0) -> dict[str, list[str]]:
    """Every difference: ``{"only in BEFORE": [...], "only in AFTER": [...], rel: [lines], ...}``."""
    fa, fb = _files(before), _files(after)
    out: dict[str, list[str]] = {}
    if fa - fb:
        out[f"only in {before}"] = sorted(fa - fb)
    if fb - fa:
        out[f"only in {after}"] = sorted(fb - fa)
    for rel in sorted(fa & fb):
        found = compare_file(rel, before, after, tol)
        if found:
            out[rel] = found
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tolerance", type=float, default=0.0, help="largest |difference| of float tensors")
    ap.add_argument("--lines", type=int, default=8, help="differing lines shown per file")
    args = ap.parse_args(argv)
    for root in (args.before, args.after):
        if not root.is_dir():
            ap.error(f"{root}: not a folder")
    found = compare_trees(args.before, args.after, args.tolerance)
    for rel, lines in found.items():
        print(f"{rel}: {len(lines)} difference{'s' if len(lines) != 1 else ''}")
        for line in lines[: args.lines]:
            print(f"    {line}")
    n = len(_files(args.before) & _files(args.after))
    print(f"{n} files in both trees; {sum(1 for k in found if not k.startswith('only in'))} differ")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
