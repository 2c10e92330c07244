"""The gallery's activation-map pass: the chosen neurons' top clips, read exactly as the statistics pass saw
them, re-run through the run's encoder with hooks on the neuron sites; each (neuron, clip) pair gets its
activation map over (frequency band, time), its peak and the excerpt played around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from analysis.gallery import ActivationGrid, TopClip, activation_grid, excerpt_bounds, peak_seconds, top_clips_of
from analysis.runs.layout import gallery_audio
from analysis.runs.read import Run
from callbacks.activation_maps import display_spectrogram, record_neurons
from datamodules import EVARDataModule


@dataclass
class Shown:
    """A (neuron, top clip) pair on its way to the page."""

    neuron: tuple[int, int]
    clip: TopClip
    grid: ActivationGrid
    start: float
    stop: float
    peak: Optional[float]
    audio: str


class Clips:
    """Dataset index → the clip exactly as the statistics pass saw it (head crop of the predict datasets)."""

    def __init__(self, dm: EVARDataModule) -> None:
        self.where: dict[int, tuple[Any, int]] = {}
        for ds in dm.predict_datasets():
            for pos, idx in enumerate(ds.rows["index"].tolist()):
                self.where[int(idx)] = (ds, pos)

    def get(self, index: int) -> dict[str, Any]:
        if index not in self.where:
            raise ValueError(
                f"dataset index {index} (from top_clips.pt) is not in the run's data ({len(self.where)} clips)"
            )
        ds, pos = self.where[index]
        return ds[pos]


def tokens_of(run: Run) -> str:
    if run.stats is not None and isinstance(run.stats.get("tokens"), str):
        return run.stats["tokens"]
    return str(run.manifest.get("tokens", "all"))


def run_datamodule(data: dict[str, Any], evar_root: Optional[str]) -> EVARDataModule:
    args = {**data, "num_workers": 0}
    if evar_root is not None:
        args["evar_root"] = evar_root
    dm = EVARDataModule(**args)
    dm.setup()
    return dm


def activation_pass(
    encoder: torch.nn.Module,
    dm: EVARDataModule,
    top: dict[str, Any],
    chosen: Sequence[tuple[int, int]],
    clips: Optional[int],
    excerpt_seconds: float,
    batch_size: int,
    tokens: str,
) -> dict[int, tuple[dict[str, Any], list[Shown]]]:
    """Run the encoder on the union of the chosen neurons' top clips; returns dataset index → (display
    data of the clip: ``spec``, ``spec_hop``, ``audio``, ``sample_rate``; the (neuron, clip) pairs it shows)."""
    wanted: dict[int, list[tuple[tuple[int, int], TopClip]]] = {}
    for key in chosen:
        for c in top_clips_of(top, *key, limit=clips):
            wanted.setdefault(c.index, []).append((key, c))
    per_layer: dict[int, list[int]] = {}
    for l, n in chosen:
        per_layer.setdefault(l, []).append(n)
    per_layer = {l: sorted(set(ids)) for l, ids in per_layer.items()}
    column = {(l, n): j for l, ids in per_layer.items() for j, n in enumerate(ids)}
    source = Clips(dm)
    fs = getattr(encoder, "frame_seconds", None)
    fpp = int(getattr(encoder, "frames_per_position", 1))
    n_bands = int(getattr(encoder, "n_bands", 0))
    sr = int(encoder.sample_rate)
    out: dict[int, tuple[dict[str, Any], list[Shown]]] = {}
    order = sorted(wanted)
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        items = [source.get(i) for i in ids]
        audio = torch.stack([it["audio"] for it in items])
        lengths = torch.as_tensor([int(it["length"]) for it in items])
        recs = record_neurons(encoder, audio, lengths, per_layer, tokens)
        spec, hop, _ = display_spectrogram(encoder, audio)
        for b, idx in enumerate(ids):
            duration = int(lengths[b]) / sr
            frames = 1 + int(lengths[b]) // max(1, int(round(hop * sr)))
            pairs = []
            for key, c in wanted[idx]:
                r = recs[b][key[0]]
                g = activation_grid(r.values[:, column[key]], r.frame, r.counted, r.band, n_bands, fpp)
                frame = c.frame if c.frame >= 0 else g.peak_frame
                peak = peak_seconds(frame, fs, fpp) if fs and frame >= 0 else None
                s, e = excerpt_bounds(peak, duration, excerpt_seconds)
                pairs.append(Shown(key, c, g, s, e, peak, gallery_audio(idx, round(s * 1000), round(e * 1000))))
            out[idx] = (
                {
                    "spec": spec[b, :, :frames].to(torch.float16),
                    "spec_hop": hop,
                    "audio": audio[b, : int(lengths[b])].clone(),
                    "sample_rate": sr,
                    "frame_seconds": fs,
                    "frames_per_position": fpp,
                },
                pairs,
            )
    return out
