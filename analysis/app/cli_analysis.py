"""The verbs that analyse run folders: ``identify`` (AAPE selection), ``stability`` (resampling stability and
threshold sweep), ``report`` (one model's table and figures) and ``compare`` (models side by side).
Registered in :data:`analysis.app.cli_registry.VERBS`; the CLI: :mod:`analysis.app.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import yaml

from analysis.aape import ACTIVATION_BAR_RATIO, FILTER_RATE
from analysis.app.compare import build_compare
from analysis.app.identify import identify_run
from analysis.app.report import ReportSpec, build_report
from analysis.app.stability import stability_run
from analysis.runs import strict_yaml
from analysis.stability import REPLICATES
from analysis.app.cli_registry import print_paths, verb


# -- identify / stability ---------------------------------------------------------------------------------
def _top_rate_table(path: Optional[str]) -> Optional[dict[str, float]]:
    if path is None:
        return None
    try:
        cfg = strict_yaml.safe_load(Path(path).read_text(encoding="utf-8"), str(path)) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read top-rate table: {e}") from e
    table = cfg.get("top_rate", cfg) if isinstance(cfg, dict) else None
    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) for v in table.values()):
        raise ValueError(f"{path}: expected a mapping 'top_rate: {{task: rate, default: rate}}'")
    return {str(k): float(v) for k, v in table.items()}


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder <out>/<task>_<suffix> (over_zero.pt, classes.txt, ...)")
    p.add_argument(
        "--mode",
        choices=["default", "lape"],
        default="default",
        help="'lape' reproduces LAPE identify.py exactly; 'default' fixes its defects (default)",
    )
    p.add_argument(
        "--top-rate",
        type=float,
        default=None,
        help="share of neurons selected by lowest entropy (default: per task, 0.02 for esc50/gise51, else 0.01)",
    )
    p.add_argument(
        "--filter-rate",
        type=float,
        default=FILTER_RATE,
        help=f"quantile a neuron must exceed for some class to be a candidate (default {FILTER_RATE})",
    )
    p.add_argument(
        "--activation-bar-ratio",
        type=float,
        default=ACTIVATION_BAR_RATIO,
        help=f"quantile a selected neuron must exceed for a class to be assigned (default {ACTIVATION_BAR_RATIO})",
    )
    p.add_argument(
        "--top-rate-table",
        default=None,
        help="YAML 'top_rate: {task: rate, default: rate}' overriding the study's per-task rates",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _selection(a: argparse.Namespace) -> dict:
    return dict(
        mode=a.mode,
        top_rate=a.top_rate,
        filter_rate=a.filter_rate,
        activation_bar_ratio=a.activation_bar_ratio,
        top_rate_table=_top_rate_table(a.top_rate_table),
    )


@verb("identify", "select class-specific neurons of one run folder (neurons.csv/.pt/.json)", _selection_args)
def _identify(a: argparse.Namespace) -> int:
    result, run = identify_run(a.run, overwrite=a.overwrite, **_selection(a))
    sizes = result.class_masks().flatten(1).sum(1).tolist()
    print(
        f"{run.path}: {result.n_selected} neurons selected (top_rate={result.top_rate}, mode={result.mode}); "
        f"{sum(1 for s in sizes if s)}/{len(sizes)} classes covered; wrote neurons.csv, neurons.pt, neurons.json"
    )
    return 0


def _stability_args(p: argparse.ArgumentParser) -> None:
    _selection_args(p)
    p.add_argument(
        "--scheme",
        choices=["clips", "tokens"],
        default="clips",
        help="effective sample size of the binomial resampling: n_clips (conservative, default) "
        "or n_tokens (optimistic)",
    )
    p.add_argument("--replicates", type=int, default=REPLICATES, help=f"resampling replicates (default {REPLICATES})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-sweep", action="store_true", help="skip the threshold sweep")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir")


@verb("stability", "bootstrap stability of the class neuron sets + threshold sweep", _stability_args)
def _stability(a: argparse.Namespace) -> int:
    return print_paths(
        stability_run(
            a.run,
            scheme=a.scheme,
            replicates=a.replicates,
            seed=a.seed,
            sweep=not a.no_sweep,
            tensorboard=a.tensorboard,
            overwrite=a.overwrite,
            **_selection(a),
        ).values()
    )


# -- report ---------------------------------------------------------------------------------------------
def _figure_spec_args(p: argparse.ArgumentParser) -> None:
    """The figure options shared by ``report`` and ``compare``."""
    p.add_argument(
        "--config",
        action="append",
        default=[],
        help="report YAML (configs/report/*.yaml) naming cross_task pairs and within_task tasks; repeatable",
    )
    p.add_argument(
        "--cross",
        nargs=2,
        action="append",
        default=[],
        metavar=("TASK_A", "TASK_B"),
        help="add a cross-task figure; repeatable",
    )
    p.add_argument("--within", action="append", default=[], metavar="TASK", help="add a within-task figure; repeatable")


def _figure_spec(a: argparse.Namespace) -> Optional[ReportSpec]:
    """The figures asked for by :func:`_figure_spec_args` (None: the defaults)."""
    if not (a.config or a.cross or a.within):
        return None
    spec = ReportSpec.from_yaml(a.config)
    spec.cross_task += [tuple(x) for x in a.cross]
    spec.within_task += list(a.within)
    return spec


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, help="output folder holding <task>_<suffix>/ run folders")
    p.add_argument("--suffix", required=True, help="model suffix of the run folders (e.g. analysis, vit)")
    _figure_spec_args(p)
    p.add_argument("--dest", default=None, help="output folder (default <runs>/report_<suffix>)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir for figures, table text and scalars")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


@verb("report", "task statistics table and cross/within-task figures of one model suffix", _report_args)
def _report(a: argparse.Namespace) -> int:
    spec = _figure_spec(a)
    return print_paths(
        build_report(
            a.runs, a.suffix, spec=spec, dest=a.dest, tensorboard=a.tensorboard, overwrite=a.overwrite
        ).values()
    )


# -- compare ----------------------------------------------------------------------------------------------
def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        nargs=2,
        action="append",
        required=True,
        metavar=("SUFFIX", "RUNS"),
        help="a model: its run-folder suffix and the folder holding its <task>_<suffix>/ run folders; "
        "give two or more, in column order",
    )
    _figure_spec_args(p)
    p.add_argument("--dest", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


@verb(
    "compare",
    "several models side by side: one task table, cross-/within-task figures and the entropy "
    "distribution of all neurons",
    _compare_args,
)
def _compare(a: argparse.Namespace) -> int:
    models = dict(a.model)
    if len(models) != len(a.model):
        raise ValueError(f"--model: a suffix is given twice ({[m for m, _ in a.model]})")
    spec = _figure_spec(a)
    return print_paths(build_compare(models, spec=spec, dest=a.dest, overwrite=a.overwrite).values())
