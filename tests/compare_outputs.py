"""Compare two pipeline output folders file by file: the proof that a refactor changed no result.

    python tests/compare_outputs.py OLD_OUT NEW_OUT [--rename reports=models ...]

Compared exactly: every CSV (as text), every ``.pt`` file (tensors bit for bit, other values by
equality; read with ``weights_only=True``) and every JSON file after removing what differs by run and not
by result: wall-clock fields (``time``, ``finished``, ``seconds``) and the output folders' own paths.
Left out: PDFs (they embed a creation date), TensorBoard logs, probe checkpoints (they embed file paths),
the HTML/Markdown report (it embeds the manifests' times), stage markers and the synthetic audio, which
the compared CSVs describe. ``--rename OLD=NEW`` maps a top-level folder renamed between the versions.
Exit status 0 when everything compared is identical, 1 otherwise (each difference printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

SKIP_SUFFIXES = {".pdf", ".ckpt", ".html", ".md", ".wav", ".yaml"}
SKIP_PARTS = {"tensorboard", ".stages", ".staging"}
VOLATILE_KEYS = {"time", "finished", "seconds"}


def _files(root: Path, rename: dict[str, str]) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or p.suffix in SKIP_SUFFIXES or SKIP_PARTS & set(rel.parts):
            continue
        parts = list(rel.parts)
        parts[0] = rename.get(parts[0], parts[0])
        out["/".join(parts)] = p
    return out


def _normalise_json(x: Any, roots: list[str]) -> Any:
    if isinstance(x, dict):
        return {k: _normalise_json(v, roots) for k, v in x.items() if k not in VOLATILE_KEYS}
    if isinstance(x, list):
        return [_normalise_json(v, roots) for v in x]
    if isinstance(x, str):
        for r in roots:
            x = x.replace(r, "<out>")
        return x
    return x


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
            and torch.equal(
                torch.isnan(a) if a.is_floating_point() else a, torch.isnan(b) if b.is_floating_point() else b
            )
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def compare(old: Path, new: Path, rename: dict[str, str]) -> list[str]:
    """Differences between the two folders (empty = identical in everything compared)."""
    fa, fb = _files(old, rename), _files(new, {})
    diffs = [f"only in {old}: {k}" for k in sorted(set(fa) - set(fb))]
    diffs += [f"only in {new}: {k}" for k in sorted(set(fb) - set(fa))]
    roots = [str(old.resolve()), str(new.resolve()), str(old), str(new)]
    for key in sorted(set(fa) & set(fb)):
        a, b = fa[key], fb[key]
        if a.suffix == ".pt":
            same = _equal(torch.load(a, weights_only=True), torch.load(b, weights_only=True))
        elif a.suffix == ".json":
            same = _normalise_json(json.loads(a.read_text()), roots) == _normalise_json(
                json.loads(b.read_text()), roots
            )
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            diffs.append(f"differs: {key}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rename", action="append", default=[], metavar="OLD=NEW")
    a = ap.parse_args(argv)
    rename = dict(r.split("=", 1) for r in a.rename)
    diffs = compare(a.old, a.new, rename)
    n = len(_files(a.new, {}))
    for d in diffs:
        print(d)
    print(f"{n} files compared: {'identical' if not diffs else f'{len(diffs)} differences'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
