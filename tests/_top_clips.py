"""Test helper: the true top-K clips of every neuron, by brute force (each counted clip run alone through the
encoder with hooks on every site), in the ``top_clips.pt`` format of :mod:`analysis.runs.layout`.

An oracle for the statistics pass's streaming top-K, and the source of ``top_clips.pt`` for gallery tests;
:func:`brute_top` is the same oracle over recorded site activations (``_counting.record_sites``).
Score = the clip's mean activation over its counted positions; peak = the counted position with a place in
time (frame >= 0) holding the largest activation (first in site-output order on ties); equal scores ordered
by dataset index.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from analysis import top_clips as T
from analysis.runs.layout import TOP_CLIPS
from callbacks.hooks import SiteHooks
from lightning_modules.encoders.base import site_view


def clip_scores(encoder: torch.nn.Module, audio: torch.Tensor, length: int, tokens: str = "all"):
    """One clip ``[S]`` → (score ``[L, N]``, frame ``[L, N]``, band ``[L, N]``); N = max site neurons, absent
    neurons -inf / -1."""
    sites, sizes = list(encoder.neuron_sites), [int(n) for n in encoder.site_neurons]
    L, N = len(sites), max(sizes)
    calls: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in sites]

    def hook_for(l: int, site: str):
        def hook(module, inputs, output):
            act = site_view(output, encoder.channel_axis).float()  # [R, P, n]
            pos = encoder.positions(site, output)
            counted = pos.counted(tokens)
            frame = pos.frame if pos.frame is not None else torch.full(counted.shape, -1, dtype=torch.long)
            band = (
                pos.band[None, :].expand_as(counted)
                if pos.band is not None
                else torch.full(counted.shape, -1, dtype=torch.long)
            )
            calls[l].append(
                (act.reshape(-1, act.shape[-1]), counted.reshape(-1), frame.reshape(-1).long(), band.reshape(-1).long())
            )

        return hook

    with SiteHooks(encoder, [(s, hook_for(l, s)) for l, s in enumerate(sites)]), torch.inference_mode():
        encoder(audio[None, :], torch.tensor([length]))
    score = torch.full((L, N), -math.inf)
    frame = torch.full((L, N), -1, dtype=torch.long)
    band = torch.full((L, N), -1, dtype=torch.long)
    for l in range(L):
        act = torch.cat([c[0] for c in calls[l]])
        counted = torch.cat([c[1] for c in calls[l]])
        fr = torch.cat([c[2] for c in calls[l]])
        bd = torch.cat([c[3] for c in calls[l]])
        if not bool(counted.any()):
            continue
        n = act.shape[1]
        score[l, :n] = act[counted].double().mean(0).float()
        placed = counted & (fr >= 0)
        if bool(placed.any()):
            best = act[placed].argmax(0)  # first maximum in site-output order
            frame[l, :n] = fr[placed][best]
            band[l, :n] = bd[placed][best]
    return score, frame, band


def brute_force_top_clips(
    encoder: torch.nn.Module, dm: Any, k: int = 8, tokens: str = "all", splits: Sequence[str] = ("train", "valid")
) -> dict[str, Any]:
    """The ``top_clips.pt`` dict of ``encoder`` on the clips of ``dm`` (an EVARDataModule after ``setup``) in
    ``splits`` (the counted splits), exactly as the statistics pass sees them (head crop)."""
    encoder = encoder.eval()
    scores, frames, bands, indices = [], [], [], []
    for ds in dm.predict_datasets():
        for i in range(len(ds)):
            item = ds[i]
            if item["split"] not in splits:
                continue
            s, f, b = clip_scores(encoder, item["audio"], int(item["length"]), tokens)
            scores.append(s)
            frames.append(f)
            bands.append(b)
            indices.append(int(item["index"]))
    score = torch.stack(scores, -1)  # [L, N, clips]
    frame, band = torch.stack(frames, -1), torch.stack(bands, -1)
    index = torch.tensor(indices)
    L, N, n_clips = score.shape
    kk = min(k, n_clips)
    out = {
        "score": torch.full((L, N, k), -math.inf),
        "index": torch.full((L, N, k), -1, dtype=torch.long),
        "frame": torch.full((L, N, k), -1, dtype=torch.long),
        "band": torch.full((L, N, k), -1, dtype=torch.long),
    }
    by_index = torch.argsort(index, stable=True)  # ties: lower dataset index first
    for l in range(L):
        for n in range(int(encoder.site_neurons[l])):
            s = score[l, n, by_index]
            order = by_index[torch.argsort(-s, stable=True)[:kk]]
            out["score"][l, n, :kk] = score[l, n, order]
            out["index"][l, n, :kk] = index[order]
            out["frame"][l, n, :kk] = frame[l, n, order]
            out["band"][l, n, :kk] = band[l, n, order]
    out.update(
        k=k,
        sites=list(encoder.neuron_sites),
        site_neurons=[int(x) for x in encoder.site_neurons],
        frame_seconds=getattr(encoder, "frame_seconds", None),
        frames_per_position=int(getattr(encoder, "frames_per_position", 1)),
        n_bands=int(getattr(encoder, "n_bands", 0)),
    )
    return out


def write_top_clips(run_dir: str | Path, top: dict[str, Any]) -> Path:
    """Save ``top`` as ``<run_dir>/top_clips.pt``."""
    path = Path(run_dir) / TOP_CLIPS
    torch.save(top, path)
    return path


def brute_top(
    record: list, n_clips: int, tokens: str, site_neurons: list[int], k: int, index: Tensor, candidate: Tensor
) -> dict[str, Tensor]:
    """Top-K by explicit loops over every kept activation: per clip the mean over its counted positions and
    the (frame, band) of its largest activation among the counted positions with a frame (>= 0)."""
    L, N = len(site_neurons), max(site_neurons)
    total = torch.zeros(L, n_clips, N, dtype=torch.float64)
    count = torch.zeros(L, n_clips, dtype=torch.float64)
    best = torch.full((L, n_clips, N), -math.inf, dtype=torch.float64)
    where = torch.full((L, n_clips, N, 2), -1, dtype=torch.long)
    for l, act, pos in record:
        frames = pos.frames()
        for r in range(act.shape[0]):
            b = int(pos.clip[r])
            for p in range(act.shape[1]):
                if not bool(pos.counted(tokens)[r, p]):
                    continue
                a = act[r, p].double()
                n = a.shape[0]
                total[l, b, :n] += a
                count[l, b] += 1
                if int(frames[r, p]) < 0:  # no place in time (CLS): never the peak
                    continue
                better = a > best[l, b, :n]
                best[l, b, :n] = torch.where(better, a, best[l, b, :n])
                band = int(pos.band[p]) if pos.band is not None else -1
                where[l, b, :n][better] = torch.tensor([int(frames[r, p]), band])
    out = T.new_top(L, N, k)
    for l in range(L):
        for n in range(site_neurons[l]):
            rows = [
                (float((total[l, b, n] / count[l, b]).float()), int(index[b]), b)
                for b in range(n_clips)
                if bool(candidate[b]) and count[l, b] > 0
            ]
            rows.sort(key=lambda r: (-r[0], r[1]))
            for j, (s, i, b) in enumerate(rows[:k]):
                out["score"][l, n, j], out["index"][l, n, j] = s, i
                out["frame"][l, n, j], out["band"][l, n, j] = where[l, b, n]
    return out
