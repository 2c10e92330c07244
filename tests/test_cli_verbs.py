"""The verb registry of ``python -m analysis`` (:mod:`analysis.app.cli_registry`): every verb module registers
its family, the top-level help lists the verbs in the study's order, and a verb without a place in that
order is refused when the parser is built (not silently left out of the help)."""

from __future__ import annotations

import pytest

from analysis.app import cli, cli_analysis, cli_data, cli_evaluation, cli_pipeline
from analysis.app.cli_registry import VERBS

#: Each family module and its verbs, written out by hand.
FAMILIES = {
    cli_data: {"synth", "soundfont", "tasks", "stimuli"},
    cli_analysis: {"identify", "stability", "report", "compare"},
    cli_evaluation: {"probe", "confusion", "gallery", "tuning", "sae"},
    cli_pipeline: {"summary", "pipeline", "verify"},
}
HELP_ORDER = (
    "synth soundfont tasks identify stability report compare probe confusion gallery stimuli tuning summary sae "
    "pipeline verify"
).split()


def test_each_family_module_registers_its_verbs():
    by_module: dict[str, set[str]] = {}
    for name, (_, _, run) in VERBS.items():
        by_module.setdefault(run.__module__, set()).add(name)
    assert by_module == {m.__name__: verbs for m, verbs in FAMILIES.items()}


def test_top_level_help_lists_every_verb_in_the_study_order(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    lines = capsys.readouterr().out.splitlines()
    # the verb lines of the VERB list: four spaces, the name, its help (continuation lines start deeper)
    listed = [line.split()[0] for line in lines if line.startswith("    ") and not line.startswith("     ")]
    assert listed == HELP_ORDER


def test_a_verb_without_a_place_in_the_help_order_is_refused(monkeypatch):
    monkeypatch.setitem(VERBS, "extra", ("an unplaced verb", lambda p: None, lambda a: 0))
    with pytest.raises(AssertionError, match=r"VERB_ORDER: verbs without a place \['extra'\]"):
        cli.build_parser()
