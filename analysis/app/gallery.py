"""``gallery``: the static listening gallery of a statistics run folder
(``python -m analysis gallery --run <run folder> [--neurons class|selected|L:N ...]``).

For the chosen neurons, their top clips (``top_clips.pt``, written by the statistics pass) are re-run through
the run's own encoder with hooks on the neuron sites (:func:`callbacks.activation_maps.record_neurons`): the
activations over (frequency band, time) are drawn over each clip's log-mel spectrogram
(:func:`analysis.figures.activation_overlay_figure`) and a short excerpt around the peak is written as a
16-bit WAV. Pages: :mod:`analysis.app.html`; file names: :mod:`analysis.runs.layout`.

Neurons (``neurons``, any mix): ``class`` — the neurons assigned to each class (``neurons.pt``, lowest
entropy first, at most ``per_class`` per class); ``selected`` — every neuron selected by entropy
(``neurons.csv``); ``L:N`` — neuron N of site L (any neuron: every neuron's top clips are in the run
folder). The encoder and the data are the ones recorded in the run's ``manifest.json``.
"""

from __future__ import annotations

import logging
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from analysis.aape import entropy, neurons_to_masks, normalise
from analysis.app.html import GalleryClip, GalleryNeuron, gallery_index_page, lookup_js, neuron_page
from analysis.app.specs import instantiate, run_sources
from analysis.figures import activation_overlay_figure
from analysis.gallery import (
    ActivationGrid,
    TopClip,
    activation_grid,
    excerpt_bounds,
    grid_time_extent,
    label_purity,
    parse_neuron,
    peak_seconds,
    top_clips_of,
)
from analysis.runs.atomic import check_writable, save_figure, save_json, save_text, save_wav
from analysis.runs.layout import (
    GALLERY_DIR,
    GALLERY_JSON,
    GALLERY_LOOKUP_JS,
    INDEX_HTML,
    NEURONS_CSV,
    NEURONS_PT,
    gallery_audio,
    gallery_image,
    gallery_neuron_page,
)
from analysis.runs.read import Run, read_index, read_neurons, read_ranking, read_run, read_top_clips, selection_warnings
from analysis.runs.write import staged_folder
from callbacks.activation_maps import display_spectrogram, record_neurons
from datamodules import EVARDataModule
from lightning_modules.encoders.features import unit_kind

log = logging.getLogger(__name__)

#: Neuron sets understood by ``neurons`` besides explicit ``layer:index`` entries.
NEURON_SETS = ("class", "selected")
#: Relative tolerance between a top clip's stored score and the one the gallery pass recomputes.
SCORE_TOLERANCE = 1e-3


@dataclass
class Choice:
    """The neurons of a gallery: ``neurons`` (layer, index) in display order and ``groups`` (title, members)."""

    neurons: list[tuple[int, int]]
    groups: list[tuple[str, list[tuple[int, int]]]]
    assigned: dict[tuple[int, int], list[str]] = field(default_factory=dict)


def choose_neurons(run: Run, neurons: Sequence[str], per_class: Optional[int] = None) -> Choice:
    """Resolve ``neurons`` (see module docstring) against the run folder."""
    L, N, C = run.over_zero.shape
    ent = entropy(normalise(run.over_zero))  # [L, N]
    order = lambda ids: sorted(ids, key=lambda x: (float(ent[x]), x))  # noqa: E731 - lowest entropy first
    assigned: dict[tuple[int, int], list[str]] = {}
    if (run.path / NEURONS_PT).is_file():
        masks = neurons_to_masks(read_neurons(run.path, C, L), C, (L, N))  # [C, L, N]
        for c, l, n in masks.nonzero().tolist():
            assigned.setdefault((l, n), []).append(run.classes[c])
    groups: list[tuple[str, list[tuple[int, int]]]] = []
    explicit: list[tuple[int, int]] = []
    for spec in neurons:
        if spec == "class":
            if not (run.path / NEURONS_PT).is_file():
                raise FileNotFoundError(
                    f"{run.path / NEURONS_PT}: not found; run `python -m analysis identify "
                    f"--run {run.path}` first (or name neurons as layer:index)"
                )
            for cls in run.classes:
                members = order([k for k, v in assigned.items() if cls in v])
                shown = members[:per_class] if per_class is not None else members
                more = f", the {len(shown)} of lowest entropy shown" if len(shown) < len(members) else ""
                groups.append((f"class {cls}: {len(members)} neuron{'s' if len(members) != 1 else ''}{more}", shown))
        elif spec == "selected":
            ranks = read_ranking(run.path)
            groups.append((f"selected by entropy ({NEURONS_CSV}): {len(ranks)}", sorted(ranks, key=ranks.get)))
        else:
            try:
                l, n = parse_neuron(spec)
            except ValueError:
                raise ValueError(
                    f"neurons: {spec!r} is neither {' nor '.join(NEURON_SETS)} nor layer:index (e.g. 3:17)"
                ) from None
            if not (0 <= l < L and 0 <= n < run.site_neurons[l]):
                raise ValueError(f"neuron {spec}: {run.path} has sites 0..{L - 1} with {run.site_neurons} neurons")
            explicit.append((l, n))
    if explicit:
        groups.append(("requested neurons", list(dict.fromkeys(explicit))))
    seen = list(dict.fromkeys(k for _, members in groups for k in members))
    return Choice(neurons=seen, groups=groups, assigned=assigned)


@dataclass
class _Shown:
    """A (neuron, top clip) pair on its way to the page."""

    neuron: tuple[int, int]
    clip: TopClip
    grid: ActivationGrid
    start: float
    stop: float
    peak: Optional[float]
    audio: str


class _Clips:
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


def _tokens(run: Run) -> str:
    if run.stats is not None and isinstance(run.stats.get("tokens"), str):
        return run.stats["tokens"]
    return str(run.manifest.get("tokens", "all"))


def _datamodule(data: dict[str, Any], evar_root: Optional[str]) -> EVARDataModule:
    args = {**data, "num_workers": 0}
    if evar_root is not None:
        args["evar_root"] = evar_root
    dm = EVARDataModule(**args)
    dm.setup()
    return dm


def build_gallery(
    run_dir: str | Path,
    dest: Optional[str | Path] = None,
    neurons: Sequence[str] = ("class",),
    per_class: Optional[int] = None,
    clips: Optional[int] = None,
    excerpt_seconds: float = 4.0,
    batch_size: int = 8,
    evar_root: Optional[str] = None,
    tensorboard: Optional[str | Path] = None,
    overwrite: bool = False,
) -> Path:
    """Write the listening gallery of ``run_dir`` into ``dest`` (default ``<run_dir>/gallery``) and return
    the path of its ``index.html``.

    Args:
        run_dir: statistics run folder with ``top_clips.pt`` (and ``neurons.pt`` / ``neurons.csv`` for the
            ``class`` / ``selected`` sets).
        dest: gallery folder (written as a whole; an existing one is replaced only with ``overwrite``).
        neurons: ``class``, ``selected`` and/or ``layer:index`` entries (module docstring).
        per_class: at most this many neurons per class (lowest entropy first); None = all.
        clips: top clips shown per neuron (None = every clip in ``top_clips.pt``).
        excerpt_seconds: length of the audio excerpt around each clip's peak (whole clip when shorter).
        batch_size: clips per forward of the activation-map pass.
        evar_root: read the audio from this EVAR root instead of the one recorded in the manifest.
        tensorboard: log folder for audio and image summaries of the top clips (None: none).
        overwrite: replace an existing gallery.
    """
    t0 = time.perf_counter()
    for name, value in (("per_class", per_class), ("clips", clips), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not excerpt_seconds > 0:
        raise ValueError(f"excerpt_seconds must be > 0, got {excerpt_seconds}")
    run = read_run(run_dir, stats=True)
    dest = Path(dest) if dest is not None else run.path / GALLERY_DIR
    check_writable(dest, overwrite)  # before the pass, not after
    top = read_top_clips(run.path)
    if [str(s) for s in top["sites"]] != run.sites:
        raise ValueError(f"{run.path}: top_clips.pt sites {list(top['sites'])} differ from the run's {run.sites}")
    choice = choose_neurons(run, list(neurons), per_class)
    index = read_index(run.path).set_index("index")
    enc_spec, data = run_sources(run.manifest, run.path)
    encoder = instantiate(enc_spec, f"{run.path}/manifest.json: encoder").eval()
    dm = _datamodule(data, evar_root)
    shown = _activation_pass(encoder, dm, top, choice.neurons, clips, excerpt_seconds, batch_size, _tokens(run))
    with staged_folder(dest, overwrite) as tmp:
        media = _write_media(tmp, shown, tensorboard, run.task or run.path.name)
        gal = _gallery_neurons(run, choice, media, index)
        notes = _write_pages(tmp, run, choice, gal, top, index, neurons, per_class, dest)
        save_json(
            {
                "run": str(run.path),
                "task": run.task,
                "encoder": enc_spec,
                "neurons": list(neurons),
                "per_class": per_class,
                "clips": clips,
                "excerpt_seconds": excerpt_seconds,
                "shown": [n.key for n in gal],
                "notes": notes,
                "seconds": round(time.perf_counter() - t0, 2),
            },
            tmp / GALLERY_JSON,
        )
    log.info(
        "gallery of %s: %d neurons, %d clips in %.1f s -> %s",
        run.path,
        len(gal),
        len(shown),
        time.perf_counter() - t0,
        dest,
    )
    return dest / INDEX_HTML


# -- the activation-map pass --------------------------------------------------------------------------
def _activation_pass(
    encoder: torch.nn.Module,
    dm: EVARDataModule,
    top: dict[str, Any],
    chosen: Sequence[tuple[int, int]],
    clips: Optional[int],
    excerpt_seconds: float,
    batch_size: int,
    tokens: str,
) -> dict[int, tuple[dict[str, Any], list[_Shown]]]:
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
    source = _Clips(dm)
    fs = getattr(encoder, "frame_seconds", None)
    fpp = int(getattr(encoder, "frames_per_position", 1))
    n_bands = int(getattr(encoder, "n_bands", 0))
    sr = int(encoder.sample_rate)
    out: dict[int, tuple[dict[str, Any], list[_Shown]]] = {}
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
                pairs.append(_Shown(key, c, g, s, e, peak, gallery_audio(idx, round(s * 1000), round(e * 1000))))
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


# -- files ----------------------------------------------------------------------------------------------
def _write_media(
    folder: Path, shown: dict[int, tuple[dict[str, Any], list[_Shown]]], tensorboard: Optional[str | Path], task: str
) -> dict[tuple[int, int], list[tuple[_Shown, str]]]:
    """Write every audio excerpt (once per clip and window) and every image; returns neuron → [(pair, image)]
    in rank order."""
    by_neuron: dict[tuple[int, int], list[tuple[_Shown, dict[str, Any]]]] = {}
    for idx, (clip, pairs) in shown.items():
        for p in pairs:
            by_neuron.setdefault(p.neuron, []).append((p, clip))
    writer = SummaryWriter(str(tensorboard)) if tensorboard is not None else None
    written: set[str] = set()
    out: dict[tuple[int, int], list[tuple[_Shown, str]]] = {}
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


def _overlay(clip: dict[str, Any], p: _Shown, vmax: float):
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


def _gallery_neurons(
    run: Run, choice: Choice, media: dict[tuple[int, int], list[tuple[_Shown, str]]], index: Any
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


def _write_pages(
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
