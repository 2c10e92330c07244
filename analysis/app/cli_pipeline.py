"""The verbs over a pipeline's output folder: ``summary`` (report/summary.md and index.html), ``pipeline``
(the whole study from one YAML) and ``verify`` (every file the stages wrote is unchanged). Registered in
:data:`analysis.app.cli_registry.VERBS`; the CLI: :mod:`analysis.app.cli`.
"""

from __future__ import annotations

import argparse
import sys


from analysis.app.config import PipelineError, load_config
from analysis.app.config_reference import config_yaml
from analysis.app.summary import write_summary
from analysis.app.verify import verify
from analysis.runs.layout import OutputTree
from analysis.app.pipeline import Pipeline, run_pipeline
from analysis.app.pipeline import add_arguments as add_pipeline_arguments
from analysis.app.cli_registry import print_paths, verb


# -- summary / pipeline -----------------------------------------------------------------------------------
def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the pipeline YAML the outputs were made with")
    p.add_argument("--out", default=None, help="the pipeline's output folder (default: the config's 'out')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report/")


@verb("summary", "write report/summary.md and report/index.html of a finished pipeline run", _summary_args)
def _summary(a: argparse.Namespace) -> int:
    cfg = Pipeline(load_config(a.config, out=a.out)).cfg  # with the feature models of an sae section
    return print_paths(write_summary(OutputTree(cfg.out), cfg.models, cfg.tasks, overwrite=a.overwrite, **cfg.summary))


@verb("pipeline", "run the whole study from one YAML (resumable stages)", add_pipeline_arguments)
def _pipeline(a: argparse.Namespace) -> int:
    if a.print_config:
        try:
            print(config_yaml(a.config, a.out), end="")
        except PipelineError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if a.config is None:
        print("error: pipeline needs --config FILE (configs/pipeline/*.yaml)", file=sys.stderr)
        return 2
    return run_pipeline(a.config, a.out, a.force, a.only)


@verb(
    "verify",
    "check that every file the pipeline's stages wrote under OUT is unchanged (sha256, size)",
    lambda p: p.add_argument("out", help="a pipeline output folder, or a folder inside it (e.g. a run folder)"),
)
def _verify(a: argparse.Namespace) -> int:
    checks = verify(a.out)
    for c in checks:
        print(c)
    bad = [c for c in checks if c.damaged]
    print(
        f"{len(bad)} of {len(checks)} stage(s) damaged" if bad else f"all {len(checks)} stage(s) intact",
        file=sys.stderr if bad else sys.stdout,
    )
    return 1 if bad else 0
