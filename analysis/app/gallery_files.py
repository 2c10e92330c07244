"""The files of a gallery folder: the audio excerpts and spectrogram + activation images of every shown
(neuron, clip) pair, and the pages (``index.html``, ``lookup.js``, one page per neuron) with what they
show of each neuron."""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from analysis.aape import entropy, normalise
from analysis.app.gallery_choice import Choice
from analysis.app.gallery_pass import Shown
from analysis.app.gallery_pages import GalleryClip, GalleryNeuron, gallery_index_page, lookup_js, neuron_page
from analysis.figures import activation_overlay_figure
from analysis.gallery import grid_time_extent, label_purity
from analysis.runs.atomic import save_figure, save_text, save_wav
from analysis.runs.layout import GALLERY_LOOKUP_JS, INDEX_HTML, gallery_image, gallery_neuron_page
from analysis.runs.read import Run, selection_warnings
from lightning_modules.encoders.features import unit_kind

#: Relative tolerance between a top clip's stored score and the one the gallery pass recomputes.
SCORE_TOLERANCE = 1e-3


def write_media(
    folder: Path, shown: dict[int, tuple[dict[str, Any], list[Shown]]], tensorboard: Optional[str | Path], task: str
) -> dict[tuple[int, int], list[tuple[Shown, str]]]:
    """Write every audio excerpt (once per clip and window) and every image; returns neuron → [(pair, image)]
    in rank order."""
    by_neuron: dict[tuple[int, int], list[tuple[Shown, dict[str, Any]]]] = {}
    for idx, (clip, pairs) in shown.items():
        for p in pairs:
            by_neuron.setdefault(p.neuron, []).append((p, clip))
    writer = SummaryWriter(str(tensorboard)) if tensorboard is not None else None
    written: set[str] = set()
    out: dict[tuple[int, int], list[tuple[Shown, str]]] = {}
    try:
        for key in sorted(by_neuron):
            pairs = sorted(by_neuron[key], key=lambda x: x[0].clip.rank)
            vmax = max(
                (
                    float(np.nanmax(p.grid.grid.numpy()))
                    for p, _ in pairs
                    if p.grid.grid.numel() and torch.isfinite(p.grid.grid).any()
                ),
                default=0.0,
            )
            vmax = vmax if vmax > 0 else 1.0
            out[key] = []
            for p, clip in pairs:
                sr = clip["sample_rate"]
                excerpt = clip["audio"][int(round(p.start * sr)) : int(round(p.stop * sr))]
                if p.audio not in written:
                    save_wav(excerpt.numpy(), sr, folder / p.audio)
                    written.add(p.audio)
                image = gallery_image(key[0], key[1], p.clip.rank)
                fig = _overlay(clip, p, vmax)
                try:
                    save_figure(fig, folder / image)
                    if writer is not None:
                        tag = f"gallery/{task}/l{key[0]}_n{key[1]}/rank{p.clip.rank}"
                        writer.add_image(tag, np.asarray(fig.canvas.buffer_rgba())[..., :3], dataformats="HWC")
                        writer.add_audio(tag, excerpt[None, :], sample_rate=sr)
                finally:
                    plt.close(fig)
                out[key].append((p, image))
    finally:
        if writer is not None:
            writer.close()
    return out


def _overlay(clip: dict[str, Any], p: Shown, vmax: float):
    """The image of one (neuron, clip) pair: the clip's spectrogram, the neuron's map placed in seconds (spread
    over the clip when the encoder gives no frame times), the excerpt's window."""
    spec = clip["spec"].float().numpy()
    hop = clip["spec_hop"]
    duration = clip["audio"].shape[0] / clip["sample_rate"]
    cols = p.grid.grid.shape[1]
    fs = clip["frame_seconds"]
    extent = grid_time_extent(cols, fs, clip["frames_per_position"]) if fs else (0.0, duration)
    return activation_overlay_figure(
        spec, (-0.5 * hop, (spec.shape[1] - 0.5) * hop), p.grid.grid.numpy(), extent, vmax, (p.start, p.stop)
    )


def gallery_neurons(
    run: Run, choice: Choice, media: dict[tuple[int, int], list[tuple[Shown, str]]], index: Any
) -> list[GalleryNeuron]:
    """What the pages show of each chosen neuron (its clips' file names and labels from ``index.csv``; a
    note where the recomputed clip score differs from ``top_clips.pt``)."""
    ent = entropy(normalise(run.over_zero))
    out = []
    for key in choice.neurons:
        l, n = key
        classes = choice.assigned.get(key, [])
        rows, notes = [], []
        for p, image in media.get(key, []):
            c = p.clip
            info = index.loc[c.index]
            rows.append(
                GalleryClip(
                    rank=c.rank,
                    score=c.score,
                    index=c.index,
                    file_name=str(info["file_name"]),
                    label=str(info["label"]),
                    split=str(info["split"]),
                    peak=p.peak,
                    start=p.start,
                    stop=p.stop,
                    image=image,
                    audio=p.audio,
                )
            )
            if not math.isclose(p.grid.score, c.score, rel_tol=SCORE_TOLERANCE, abs_tol=SCORE_TOLERANCE):
                notes.append(
                    f"clip {c.index} ({info['file_name']}): top_clips.pt scores it {c.score:.4g}, the "
                    f"gallery's pass {p.grid.score:.4g} (different model weights or audio?)"
                )
        if not rows:
            notes.append("no top clip recorded for this neuron (it never had a counted position)")
        out.append(
            GalleryNeuron(
                layer=l,
                neuron=n,
                site=run.sites[l],
                entropy=float(ent[l, n]),
                classes=classes,
                p=[float(x) for x in run.over_zero[l, n].tolist()],
                clips=rows,
                purity=label_purity([r.label for r in rows], classes),
                page=gallery_neuron_page(l, n),
                notes=notes,
            )
        )
    return out


def _lookup_data(run: Run, top: dict[str, Any], index: Any, command: str) -> dict[str, Any]:
    """Every neuron's top clips (dataset index, score) and the clips' file names and labels."""
    idx, score = top["index"], top["score"]
    table: list[list[list[list[Any]]]] = []
    used: set[int] = set()
    for l in range(idx.shape[0]):
        layer = []
        for n in range(run.site_neurons[l]):
            keep = idx[l, n] >= 0
            pairs = [
                [int(i), float(f"{float(s):.4g}")] for i, s in zip(idx[l, n][keep].tolist(), score[l, n][keep].tolist())
            ]
            used.update(p[0] for p in pairs)
            layer.append(pairs)
        table.append(layer)
    clips = {
        str(i): [str(index.loc[i, "file_name"]), str(index.loc[i, "label"])] for i in sorted(used) if i in index.index
    }
    return {"sites": run.sites, "site_neurons": run.site_neurons, "top": table, "clips": clips, "command": command}


def write_pages(
    folder: Path,
    run: Run,
    choice: Choice,
    gal: list[GalleryNeuron],
    top: dict[str, Any],
    index: Any,
    neurons: Sequence[str],
    per_class: Optional[int],
    dest: Path,
) -> list[str]:
    model = run.manifest.get("encoder_name") or run.manifest.get("encoder") or run.path.name
    task = run.task or run.path.name
    title = f"What does {model} listen to? {task}"
    by_key = {g.key: g for g in gal}
    groups = [(t, [by_key[f"{l}:{n}"] for l, n in members]) for t, members in choice.groups]
    notes = [f"{g.key}: {w}" for g in gal for w in g.notes]
    k = int(top["score"].shape[-1])
    unit = unit_kind(list(run.sites))
    info = [
        ("run folder", str(run.path)),
        ("task", task),
        ("model", str(model)),
        (
            "units",
            "SAE features (latents of the SAE spliced at each site; docs/features.md)"
            if unit == "feature"
            else "neurons",
        ),
        ("classes", str(len(run.classes))),
        ("neurons shown", str(len(gal))),
        (
            "top clips per neuron",
            f"{k} kept by the statistics pass (clip mean activation over its counted positions; identification splits)",
        ),
        ("built", time.strftime("%Y-%m-%d %H:%M")),
    ]
    command = (
        f"python -m analysis gallery --run {shlex.quote(str(run.path))} --dest {shlex.quote(str(dest))} "
        f"--overwrite --neurons {' '.join(shlex.quote(s) for s in neurons)}"
    )
    if per_class is not None:
        command = command.replace(" --overwrite", f" --per-class {per_class} --overwrite")
    shown_notes = notes[:20]
    if not gal:
        shown_notes = ["no neuron to show: the selection assigned none to any class"] + [
            f"selection note: {w}" for w in selection_warnings(run.path)
        ]
    save_text(
        gallery_index_page(title, info, run.classes, groups, gal, GALLERY_LOOKUP_JS, shown_notes), folder / INDEX_HTML
    )
    save_text(lookup_js(_lookup_data(run, top, index, command)), folder / GALLERY_LOOKUP_JS)
    for g in gal:
        save_text(neuron_page(g, run.classes, title, f"../{INDEX_HTML}", "../", unit), folder / g.page)
    return notes
