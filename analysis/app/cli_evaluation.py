"""The verbs that evaluate units: ``probe`` (linear probe on the embeddings), ``confusion`` (change in
confusion of ablation conditions), ``gallery`` (listening gallery), ``tuning`` (tuning curves of a
stimulus run) and ``sae`` (a sparse autoencoder on one site). Registered in
:data:`analysis.app.cli_registry.VERBS`; the CLI: :mod:`analysis.app.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


from analysis.app.confusion import confusion_figure
from analysis.app.gallery import NEURON_SETS, build_gallery
from analysis.app.probe import fit_seeds
from analysis.app.sae_config import sae_from_config
from analysis.app.tuning import tuning_from_run
from analysis.app.tuning_report import build_tuning_report
from analysis.runs.layout import tuning_csv
from datamodules.stimuli import DIMENSIONS
from analysis.app.cli_registry import default, print_paths, verb


# -- probe ------------------------------------------------------------------------------------------------
def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="statistics run folder (features.pt, gts.pt, index.csv)")
    p.add_argument("--out", required=True, help="output folder (probe_results.csv, probe_seed<seed>.ckpt)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(default(fit_seeds, "seeds")),
        help="one probe per seed (default %(default)s)",
    )
    p.add_argument(
        "--lr", type=float, default=default(fit_seeds, "lr"), help="Adam learning rate (default %(default)s)"
    )
    p.add_argument("--weight-decay", type=float, default=default(fit_seeds, "weight_decay"), help="default %(default)s")
    p.add_argument("--max-epochs", type=int, default=default(fit_seeds, "max_epochs"), help="default %(default)s")
    p.add_argument(
        "--patience",
        type=int,
        default=default(fit_seeds, "patience"),
        help="early-stopping patience in epochs (default %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default min(200, train clips)")
    p.add_argument("--tensorboard", default=None, help="folder for TensorBoard logs (default: none)")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--overwrite", action="store_true")


@verb("probe", "fit the linear probe on a run folder's embeddings, one fit per seed", _probe_args)
def _probe(a: argparse.Namespace) -> int:
    df = fit_seeds(
        a.run,
        a.out,
        seeds=a.seeds,
        lr=a.lr,
        weight_decay=a.weight_decay,
        max_epochs=a.max_epochs,
        patience=a.patience,
        batch_size=a.batch_size,
        overwrite=a.overwrite,
        accelerator=a.accelerator,
        tensorboard=a.tensorboard,
    )
    print(df.to_string(index=False))
    return 0


# -- confusion --------------------------------------------------------------------------------------------
def _confusion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ablation", required=True, help="ablation folder (ablation_confusion.csv, ablation_conditions.json)"
    )
    p.add_argument(
        "--condition",
        action="append",
        required=True,
        metavar="NAME",
        help="condition of ablation.csv (e.g. 'shared:ANG&HAP', 'class:jazz'); repeatable",
    )
    p.add_argument("--out", default=None, help="PDF to write (default <ablation>/ablation_confusion-<conditions>.pdf)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PDF")


@verb("confusion", "draw the change in confusion vs baseline of chosen ablation conditions", _confusion_args)
def _confusion(a: argparse.Namespace) -> int:
    return print_paths([confusion_figure(a.ablation, a.condition, a.out, a.overwrite)])


# -- gallery ----------------------------------------------------------------------------------------------
def _gallery_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run", required=True, help="statistics run folder with top_clips.pt (and neurons.pt / neurons.csv)"
    )
    p.add_argument("--dest", default=None, help="gallery folder (default <run>/gallery)")
    p.add_argument(
        "--neurons",
        nargs="+",
        default=list(default(build_gallery, "neurons")),
        metavar="|".join(NEURON_SETS) + "|L:N",
        help="'class' (each class's neurons), 'selected' (every neuron of neurons.csv) and/or layer:index "
        "entries such as 3:17 (default %(default)s)",
    )
    p.add_argument(
        "--per-class",
        type=int,
        default=default(build_gallery, "per_class"),
        help="at most this many neurons per class, lowest entropy first (default: all)",
    )
    p.add_argument(
        "--clips",
        type=int,
        default=default(build_gallery, "clips"),
        help="top clips shown per neuron (default: all kept in top_clips.pt)",
    )
    p.add_argument(
        "--excerpt-seconds",
        type=float,
        default=default(build_gallery, "excerpt_seconds"),
        help="length of the audio excerpt around the peak (default %(default)s; whole clip when shorter)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=default(build_gallery, "batch_size"),
        help="clips per forward of the activation-map pass (default %(default)s)",
    )
    p.add_argument("--evar-root", default=None, help="read the audio from this EVAR root (default: the manifest's)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir for audio and image summaries")
    p.add_argument("--overwrite", action="store_true", help="replace an existing gallery")


@verb(
    "gallery",
    "static listening gallery: each neuron's top clips with spectrogram, activation overlay and audio",
    _gallery_args,
)
def _gallery(a: argparse.Namespace) -> int:
    return print_paths(
        [
            build_gallery(
                a.run,
                dest=a.dest,
                neurons=a.neurons,
                per_class=a.per_class,
                clips=a.clips,
                excerpt_seconds=a.excerpt_seconds,
                batch_size=a.batch_size,
                evar_root=a.evar_root,
                tensorboard=a.tensorboard,
                overwrite=a.overwrite,
            )
        ]
    )


def _tuning_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="statistics run folder of a stimulus set (counted with class_sums)")
    p.add_argument("--dimension", required=True, choices=sorted(DIMENSIONS), help="the stimulus set's dimension")
    p.add_argument("--out", required=True, help="tuning folder to write <dimension>.pt/.csv (and figures) into")
    p.add_argument(
        "--curve",
        default="p_active",
        choices=["p_active", "mean"],
        help="curve the preferred value, bandwidth and selectivity are read from (default %(default)s)",
    )
    p.add_argument(
        "--task-run",
        nargs="*",
        default=[],
        metavar="TASK=RUN",
        help="run folders of tasks (with neurons.pt): figures of each class's units, range claims, page",
    )
    p.add_argument("--model", default="model", help="model name in the range table and page (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


@verb(
    "tuning", "tuning curves of every unit from a stimulus run folder (+ figures of each class's units)", _tuning_args
)
def _tuning(a: argparse.Namespace) -> int:
    runs = {}
    for item in a.task_run:
        task, sep, run = item.partition("=")
        if not sep or not task or not run:
            raise ValueError(f"--task-run expects TASK=RUN, got {item!r}")
        runs[task] = Path(run)
    table = tuning_from_run(a.run, a.dimension, a.out, curve=a.curve, overwrite=a.overwrite)
    print(f"{len(table)} units, {int(table['preferred_value'].notna().sum())} with a preferred {a.dimension}")
    paths = build_tuning_report(a.model, [a.dimension], runs, a.out, overwrite=a.overwrite) if runs else []
    return print_paths([Path(a.out) / tuning_csv(a.dimension), *paths])


# -- sae ----------------------------------------------------------------------------------------------------
def _sae_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="SAE YAML (configs/sae/*.yaml)")
    p.add_argument("--out", default=None, help="output folder (default: the config's 'out')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sae.pt / metrics.csv")


@verb("sae", "train a sparse autoencoder on one site of an encoder (sae.pt + metrics.csv)", _sae_args)
def _sae(a: argparse.Namespace) -> int:
    row = sae_from_config(a.config, out=a.out, overwrite=a.overwrite)
    print(", ".join(f"{k}={v}" for k, v in row.items()))
    return 0
