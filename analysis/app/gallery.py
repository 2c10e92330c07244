"""``gallery``: the static listening gallery of a statistics run folder
(``python -m analysis gallery --run <run folder> [--neurons class|selected|L:N ...]``).

For the chosen neurons, their top clips (``top_clips.pt``, written by the statistics pass) are re-run through
the run's own encoder with hooks on the neuron sites (:func:`callbacks.activation_maps.record_neurons`): the
activations over (frequency band, time) are drawn over each clip's log-mel spectrogram
(:func:`analysis.figures.activation_overlay_figure`) and a short excerpt around the peak is written as a
16-bit WAV. Pages: :mod:`analysis.app.gallery_pages`; file names: :mod:`analysis.runs.layout`.

Neurons (``neurons``, any mix): ``class`` — the neurons assigned to each class (``neurons.pt``, lowest
entropy first, at most ``per_class`` per class); ``selected`` — every neuron selected by entropy
(``neurons.csv``); ``L:N`` — neuron N of site L (any neuron: every neuron's top clips are in the run
folder). The encoder and the data are the ones recorded in the run's ``manifest.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Sequence

from analysis.app.gallery_choice import NEURON_SETS, choose_neurons  # noqa: F401 (NEURON_SETS: the CLI's)
from analysis.app.gallery_files import gallery_neurons, write_media, write_pages
from analysis.app.gallery_pass import activation_pass, run_datamodule, tokens_of
from analysis.app.specs import instantiate, run_sources
from analysis.runs.atomic import check_writable, save_json
from analysis.runs.layout import GALLERY_DIR, GALLERY_JSON, INDEX_HTML
from analysis.runs.read import read_index, read_run, read_top_clips
from analysis.runs.write import staged_folder


log = logging.getLogger(__name__)


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
    dm = run_datamodule(data, evar_root)
    shown = activation_pass(encoder, dm, top, choice.neurons, clips, excerpt_seconds, batch_size, tokens_of(run))
    with staged_folder(dest, overwrite) as tmp:
        media = write_media(tmp, shown, tensorboard, run.task or run.path.name)
        gal = gallery_neurons(run, choice, media, index)
        notes = write_pages(tmp, run, choice, gal, top, index, neurons, per_class, dest)
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
