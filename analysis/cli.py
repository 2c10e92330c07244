"""``python -m analysis <command>``: identify, report, stability, pipeline.

* ``identify --run <out>/<task>_<suffix>`` → ``neurons.csv``, ``neurons.pt``, ``neurons.json`` in the run folder.
* ``report --runs <out> --suffix <s>`` → ``task_level_neuron_statistics_<s>.csv`` and the figures' PDFs in
  ``--dest`` (default ``<out>/report_<s>/``).
* ``stability --run <dir>`` → ``stability.csv`` and ``threshold_sweep.csv`` in the run folder.
* ``pipeline ...`` → ``analysis.pipeline.main(argv)`` (all remaining arguments are passed on).

Existing outputs are refused unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Sequence

import yaml


def _top_rate_table(path: str | None) -> dict[str, float] | None:
    if path is None:
        return None
    try:
        cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"error: {path}: cannot read top-rate table: {e}")
    table = cfg.get("top_rate", cfg) if isinstance(cfg, dict) else None
    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) for v in table.values()):
        raise SystemExit(f"error: {path}: expected a mapping 'top_rate: {{task: rate, default: rate}}'")
    return {str(k): float(v) for k, v in table.items()}


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["default", "lape"], default="default",
                   help="'lape' reproduces LAPE identify.py exactly; 'default' fixes its defects (default)")
    p.add_argument("--top-rate", type=float, default=None,
                   help="share of neurons selected by lowest entropy (default: per task, 0.02 for esc50/gise51, "
                        "else 0.01)")
    p.add_argument("--filter-rate", type=float, default=0.95,
                   help="quantile a neuron must exceed for some class to be a candidate (default 0.95)")
    p.add_argument("--activation-bar-ratio", type=float, default=0.95,
                   help="quantile a selected neuron must exceed for a class to be assigned (default 0.95)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("identify", help="select class-specific neurons of one run folder")
    p.add_argument("--run", required=True, help="run folder <out>/<task>_<suffix> (over_zero.pt, classes.txt, ...)")
    _add_selection_args(p)
    p.add_argument("--top-rate-table", default=None,
                   help="YAML with 'top_rate: {task: rate, default: rate}' (e.g. configs/report/top_rate.yaml)")
    p.add_argument("--overwrite", action="store_true", help="replace existing neurons.csv/.pt/.json")

    p = sub.add_parser("report", help="task statistics table and cross/within-task figures for one suffix")
    p.add_argument("--runs", required=True, help="output folder holding <task>_<suffix>/ run folders")
    p.add_argument("--suffix", required=True, help="model suffix of the run folders (e.g. analysis, vit)")
    p.add_argument("--config", action="append", default=[],
                   help="report YAML (configs/report/*.yaml) naming cross_task pairs and within_task tasks; repeatable")
    p.add_argument("--cross", nargs=2, action="append", default=[], metavar=("TASK_A", "TASK_B"),
                   help="add a cross-task figure; repeatable")
    p.add_argument("--within", action="append", default=[], metavar="TASK", help="add a within-task figure; repeatable")
    p.add_argument("--dest", default=None, help="output folder (default <runs>/report_<suffix>)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir for figures, table text and scalars")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    p = sub.add_parser("stability", help="resampling stability of class neuron sets + threshold sweep")
    p.add_argument("--run", required=True, help="run folder <out>/<task>_<suffix> (needs stats.pt)")
    _add_selection_args(p)
    p.add_argument("--scheme", choices=["clips", "tokens"], default="clips",
                   help="effective sample size of the binomial resampling: n_clips (conservative, default) "
                        "or n_tokens (optimistic)")
    p.add_argument("--replicates", type=int, default=100, help="resampling replicates (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-sweep", action="store_true", help="skip the threshold sweep")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log dir")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    sub.add_parser("pipeline", help="run the whole pipeline (analysis.pipeline; arguments passed on)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "pipeline":
        from analysis import pipeline  # lazy: written separately, heavy imports

        return int(pipeline.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from analysis.io import OutputExistsError

    logging.captureWarnings(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = _run(args, OutputExistsError)
    seen: set[str] = set()
    for w in caught:  # print each distinct warning once, without source lines
        msg = str(w.message)
        if msg not in seen and not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            seen.add(msg)
            print(f"warning: {msg}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace, OutputExistsError: type) -> int:
    try:
        if args.command == "identify":
            from analysis.identify import identify_run

            result, run = identify_run(args.run, mode=args.mode, top_rate=args.top_rate, filter_rate=args.filter_rate,
                                       activation_bar_ratio=args.activation_bar_ratio,
                                       top_rate_table=_top_rate_table(args.top_rate_table), overwrite=args.overwrite)
            sizes = result.class_masks().flatten(1).sum(1).tolist()
            print(f"{run.path}: {result.n_selected} neurons selected (top_rate={result.top_rate}, mode={result.mode}); "
                  f"{sum(1 for s in sizes if s)}/{len(sizes)} classes covered; wrote neurons.csv, neurons.pt, neurons.json")
        elif args.command == "report":
            from analysis.report import ReportSpec, build_report

            spec = None
            if args.config or args.cross or args.within:
                spec = ReportSpec.from_yaml(args.config)
                spec.cross_task += [tuple(x) for x in args.cross]
                spec.within_task += list(args.within)
            written = build_report(args.runs, args.suffix, spec=spec, dest=args.dest, tensorboard=args.tensorboard,
                                   overwrite=args.overwrite)
            for path in written.values():
                print(path)
        elif args.command == "stability":
            from analysis.stability import stability_run

            written = stability_run(args.run, scheme=args.scheme, replicates=args.replicates, seed=args.seed,
                                    mode=args.mode, top_rate=args.top_rate, filter_rate=args.filter_rate,
                                    activation_bar_ratio=args.activation_bar_ratio, sweep=not args.no_sweep,
                                    tensorboard=args.tensorboard, overwrite=args.overwrite)
            for path in written.values():
                print(path)
    except (OutputExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
