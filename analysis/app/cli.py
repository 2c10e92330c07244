"""``python -m analysis <verb>``: every step of aape that is not a Lightning stage (those run through
``python train.py fit|test|predict``). Each verb calls the same public function as the pipeline's stage.

Existing outputs are refused (exit code 2, the message names the file) unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Optional, Sequence

from analysis.app import cli_analysis, cli_data, cli_evaluation, cli_pipeline
from analysis.app.cli_registry import VERBS, default, verb
from analysis.app.config import PipelineError
from analysis.runs.atomic import OutputExistsError

__all__ = ["VERBS", "build_parser", "default", "main", "verb"]

#: The modules whose verbs register in :data:`VERBS` (by family: data, analysis, evaluation, pipeline).
VERB_MODULES = (cli_data, cli_analysis, cli_evaluation, cli_pipeline)
#: The verbs in the order of the top-level help (the study's order: data, analysis, evaluation, pipeline).
VERB_ORDER = (
    "synth",
    "soundfont",
    "tasks",
    "identify",
    "stability",
    "report",
    "compare",
    "probe",
    "confusion",
    "gallery",
    "stimuli",
    "tuning",
    "summary",
    "sae",
    "pipeline",
    "verify",
)


def _ordered_verbs() -> list[str]:
    """:data:`VERB_ORDER`, which must name every registered verb once (a new verb is given its place)."""
    if sorted(VERB_ORDER) != sorted(VERBS):
        missing, unknown = sorted(set(VERBS) - set(VERB_ORDER)), sorted(set(VERB_ORDER) - set(VERBS))
        raise AssertionError(f"analysis.app.cli.VERB_ORDER: verbs without a place {missing}, unregistered {unknown}")
    return list(VERB_ORDER)


# -- entry ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for name in _ordered_verbs():
        help_, add, _ = VERBS[name]
        add(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pipeline":  # logs stage by stage with its own handler
        return VERBS["pipeline"][2](args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = VERBS[args.command][2](args)
        except (OutputExistsError, FileNotFoundError, ValueError, PipelineError) as e:
            print(f"error: {e}", file=sys.stderr)
            code = 2
    seen: set[str] = set()
    for w in caught:  # print each distinct warning once, without source lines
        msg = str(w.message)
        if msg not in seen and not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            seen.add(msg)
            print(f"warning: {msg}", file=sys.stderr)
    return code
