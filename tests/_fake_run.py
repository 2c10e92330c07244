"""Test helper: write fake run folders: a neuron-statistics one with the files analysis reads
(``over_zero.pt``, ``classes.txt``, ``stats.pt``, ``manifest.json``; :func:`write_fake_run`) and an embeddings
one with the files the probe reads (``features.pt``, ``gts.pt``, ``index.csv``, ``classes.txt``; :func:`write_run`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch


def write_fake_run(
    root: Path,
    task: str,
    suffix: str,
    count: torch.Tensor,
    n_tokens: torch.Tensor,
    *,
    n_clips: torch.Tensor | None = None,
    classes: list[str] | None = None,
    sites: list[str] | None = None,
    site_neurons: list[int] | None = None,
    manifest: dict | None = None,
) -> Path:
    """``count`` int64 [L, N, C]; ``n_tokens`` int64 [C]. Absent neurons (n >= site_neurons[l]) get
    count 0 in stats.pt and NaN in over_zero.pt."""
    L, N, C = count.shape
    d = Path(root) / f"{task}_{suffix}"
    d.mkdir(parents=True, exist_ok=True)
    classes = classes or [f"c{i}" for i in range(C)]
    sites = sites or [f"blocks.{l}.mlp.act" for l in range(L)]
    count = count.clone().long()
    p = count.double() / n_tokens.double()
    if site_neurons is not None:
        for l, n in enumerate(site_neurons):
            count[l, n:] = 0
            p[l, n:] = float("nan")
    stats = {
        "count": count,
        "n_tokens": n_tokens.long(),
        "n_clips": (n_clips if n_clips is not None else torch.full((C,), 10)).long(),
        "act_sum": torch.zeros(L, N, dtype=torch.float64),
        "sites": sites,
        "classes": classes,
    }
    if site_neurons is not None:
        stats["site_neurons"] = list(site_neurons)
    torch.save(p.float(), d / "over_zero.pt")
    torch.save(stats, d / "stats.pt")
    (d / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    (d / "manifest.json").write_text(json.dumps({"task": task, **(manifest or {})}), encoding="utf-8")
    return d


def planted_counts(
    L: int, N: int, C: int, n_tokens: int, per_class: int, seed: int = 0, background: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, dict[int, list[tuple[int, int]]]]:
    """Counts with ``per_class`` planted neurons per class that fire (p≈0.95) only for their class on a
    noisy background (p≈background). Returns (count [L,N,C], n_tokens [C], class -> planted (layer, neuron))."""
    g = torch.Generator().manual_seed(seed)
    n = torch.full((C,), n_tokens, dtype=torch.long)
    p = (background * torch.rand(L, N, C, generator=g)).double()
    perm = torch.randperm(L * N, generator=g)[: per_class * C]
    planted: dict[int, list[tuple[int, int]]] = {}
    for c in range(C):
        for idx in perm[c * per_class : (c + 1) * per_class].tolist():
            l, i = divmod(idx, N)
            p[l, i] = 0.01
            p[l, i, c] = 0.95
            planted.setdefault(c, []).append((l, i))
    count = torch.binomial(n.double().expand(L, N, C).contiguous(), p, generator=g).long()
    return count, n, planted


def write_run(
    d: Path, n_per_class: dict[str, int], classes=("a", "b", "c"), E: int = 5, seed: int = 0, multilabel: bool = False
) -> Path:
    """Run folder with features, gts, index.csv; ``n_per_class`` maps split → clips per class."""
    g = torch.Generator().manual_seed(seed)
    d.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for split, k in n_per_class.items():
        for c in range(len(classes)):
            for _ in range(k):
                rows.append(
                    dict(row=len(rows), index=len(rows), file_name=f"{len(rows)}.wav", label=classes[c], split=split)
                )
                labels.append(c)
    N = len(rows)
    y = torch.tensor(labels)
    feats = torch.randn(N, E, generator=g) * 3 + 1
    feats[:, 0] += y * 20  # separable along dim 0
    if multilabel:
        gts = torch.nn.functional.one_hot(y, len(classes)).float()
        gts[::4, 0] = 1.0
    else:
        gts = y
    torch.save(feats, d / "features.pt")
    torch.save(gts, d / "gts.pt")
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)  # row order in index.csv is irrelevant
    df.to_csv(d / "index.csv", index=False)
    (d / "classes.txt").write_text("\n".join(classes) + "\n")
    return d
