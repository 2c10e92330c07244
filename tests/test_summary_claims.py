"""The report's claims are computed: specific = corrected exact test + negative change + probe above chance, the
probe-at-chance rule, stability per set (always), too few draws, the reproduction table and two models compared."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from _fake_run import write_fake_run
from analysis.ablation import ABLATION_COLUMNS
from analysis.app import summary as S
from analysis.app.cli import main as cli_main
from analysis.app.reproduction import PUBLISHED, reproduction_table
from analysis.significance import binomial_sf, wilson_interval

CLASSES = ["a", "b", "c"]


def _run(
    root: Path, model: str, sets: dict[str, list[int]], stability: dict[str, float] | None = None, task: str = "t"
) -> Path:
    """A run folder with one layer of 8 neurons; ``sets``: class → its neurons."""
    count = torch.randint(0, 10, (1, 8, 3), generator=torch.Generator().manual_seed(0))
    d = write_fake_run(root, task, model, count, torch.full((3,), 10), classes=CLASSES)
    torch.save([[torch.tensor(sets.get(c, []), dtype=torch.long)] for c in CLASSES], d / "neurons.pt")
    if stability is not None:
        pd.DataFrame(
            [
                {
                    "class": c,
                    "n_neurons": len(sets.get(c, [])),
                    "mean_jaccard": j,
                    "jaccard_low": j - 0.1,
                    "jaccard_high": min(1.0, j + 0.1),
                    "n_undefined": 0,
                    "replicates": 50,
                }
                for c, j in stability.items()
            ]
        ).to_csv(d / "stability.csv", index=False)
    return d


def _ablation(
    folder: Path,
    n: dict[str, int],
    correct: dict[str, int],
    class_deltas: dict[str, float],
    random_deltas: dict[str, list[float]],
) -> Path:
    """An ablation.csv: baseline with ``correct``/``n`` per class, one class:<c> condition per key of
    ``class_deltas`` (its own class changes by that delta, the others by 0) and its random draws."""
    rows = []

    def cond(name, kind, target, draw, deltas):
        tot_n = sum(n.values())
        for c in CLASSES:
            acc = correct[c] / n[c] + deltas.get(c, 0.0)
            d = deltas.get(c, 0.0)
            rows.append(
                dict(
                    condition=name,
                    kind=kind,
                    target=target,
                    k="",
                    draw=draw,
                    **{"class": c},
                    n=n[c],
                    correct=round(acc * n[c]),
                    accuracy=acc,
                    delta=d,
                    lost=round(max(-d, 0) * n[c]),
                    gained=round(max(d, 0) * n[c]),
                )
            )
        tot = sum(correct.values())
        rows.append(
            dict(
                condition=name,
                kind=kind,
                target=target,
                k="",
                draw=draw,
                **{"class": "ALL"},
                n=tot_n,
                correct=tot,
                accuracy=tot / tot_n,
                delta=0.0,
                lost=0,
                gained=0,
            )
        )

    cond("baseline", "baseline", "", "", {})
    for c, d in class_deltas.items():
        cond(f"class:{c}", "class", c, "", {c: d})
        for i, r in enumerate(random_deltas.get(c, [])):
            cond(f"random:class:{c}:{i}", "random", c, i, {c: r})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=ABLATION_COLUMNS).to_csv(folder / "ablation.csv", index=False)
    return folder / "ablation.csv"


def _tables(tmp_path, correct, draws_a, draws_b, stability=None, alpha=0.05, correction="holm"):
    run = _run(tmp_path / "runs", "m", {"a": [0, 1], "b": [2]}, stability)
    csv = _ablation(
        tmp_path / "abl", {c: 40 for c in CLASSES}, correct, {"a": -0.5, "b": -0.05}, {"a": draws_a, "b": draws_b}
    )
    sets = S.apply_verdicts(S.verdict_rows("m", "t", run, csv), alpha, correction)
    tasks = S.task_rows(sets, {("m", "t"): csv}, {("m", "t"): run}, alpha=alpha, correction=correction)
    return sets, tasks


def test_specific_needs_the_corrected_exact_test(tmp_path):
    draws_a = [0.0, -0.025, 0.025] * 20  # 60 draws, none <= -0.5: p = 1 / 61, Holm over 2 tests: 2 / 61
    draws_b = [0.0, -0.05, -0.1] * 20  # b's -0.05 is matched or beaten by 40 of 60: p = 41 / 61
    sets, tasks = _tables(tmp_path, {c: 36 for c in CLASSES}, draws_a, draws_b, {"a": 0.9, "b": 0.3})
    h = sets.set_index("class")
    assert list(h.index) == ["a", "b"]  # one row per ablated set: c has none
    assert h.loc["a", "p_value"] == pytest.approx(1 / 61) and h.loc["b", "p_value"] == pytest.approx(41 / 61)
    assert h.loc["a", "p_adjusted"] == pytest.approx(2 / 61) and h.loc["b", "p_adjusted"] == pytest.approx(41 / 61)
    assert bool(h.loc["a", "specific"]) and not bool(h.loc["b", "specific"])
    assert h.loc["b", "failed"] == "adjusted p >= alpha"
    # the bootstrap interval of a's change: 20 of 40 clips lost
    assert h.loc["a", "change_lo"] < -0.5 < h.loc["a", "change_hi"] < 0
    # the probe: 108 of 120 with its Wilson interval, above the chance rate 1/3
    assert h.loc["a", "probe_accuracy"] == pytest.approx(0.9)
    assert (h.loc["a", "probe_accuracy_lo"], h.loc["a", "probe_accuracy_hi"]) == pytest.approx(
        wilson_interval(108, 120)
    )
    r = tasks.iloc[0]
    assert r["classes_specific"] == 1 and r["classes_covered"] == 2 and r["random_draws"] == 60
    assert r["selected_neurons"] == 3 and r["class_assignments"] == 3 and bool(r["attainable"])
    assert r["unstable_sets"] == 1 and r["mean_stability_jaccard"] == pytest.approx(0.6)
    (text,) = S.findings(tasks, sets)
    assert "1 of 2 sets specific: a -0.500 [" in text and "(p 0.033)" in text
    assert "Not specific (adjusted p >= alpha: b)" in text
    assert "mean Jaccard 0.60 over replicates of its 2 sets; unstable (< 0.5): b." in text
    assert S.AT_CHANCE not in text
    # Benjamini-Hochberg: a's adjusted p = 2 * (1/61) / 1
    bh, _ = _tables(tmp_path / "bh", {c: 36 for c in CLASSES}, draws_a, draws_b, correction="bh")
    assert bh.set_index("class").loc["a", "p_adjusted"] == pytest.approx(2 / 61)


def test_too_few_draws_can_call_nothing_specific_and_says_so(tmp_path):
    sets, tasks = _tables(tmp_path, {c: 36 for c in CLASSES}, [0.0] * 8, [0.0] * 8)
    assert not sets["specific"].any() and sets["p_value"].min() == pytest.approx(1 / 9)
    assert not bool(tasks["attainable"].item())
    (txt,) = S.run_findings(tasks, sets)
    assert "With 8 draws the smallest attainable p is 0.111, which cannot pass the corrected level for 2 tests" in txt
    assert "nothing can be called specific" in txt


def test_probe_at_chance_replaces_every_ablation_claim_and_keeps_stability(tmp_path):
    # 16 of 120 correct: below 1/3 chance -> at chance, although class a's set "drops" far below random
    sets, tasks = _tables(tmp_path, {"a": 6, "b": 5, "c": 5}, [0.0] * 99, [0.0] * 99, {"a": 0.2, "b": 0.1})
    r = tasks.iloc[0]
    assert r["chance_rate"] == pytest.approx(1 / 3) and not r["probe_above_chance"]
    assert r["probe_p_value"] == pytest.approx(binomial_sf(16, 120, 1 / 3))
    assert not sets["specific"].any() and sets["p_adjusted"].min() < 0.05  # the test alone would have passed
    assert all("probe not above chance" in f for f in sets["failed"])
    (text,) = S.findings(tasks, sets)
    assert S.AT_CHANCE in text and "none of its 2 sets is called specific" in text
    assert "unstable (< 0.5): a, b." in text


def test_no_row_is_specific_without_passing_every_criterion(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        draws = rng.choice([0.0, -0.5, -0.025], size=int(rng.integers(0, 80))).tolist()
        correct = {c: int(rng.integers(5, 40)) for c in CLASSES}
        sets, _ = _tables(tmp_path / str(i), correct, draws, draws)
        bad = sets[
            sets["specific"].astype(bool)
            & (
                (sets["p_adjusted"] >= 0.05)
                | (sets["on_target_delta"] >= 0)
                | (sets["probe_accuracy_lo"] <= sets["chance_rate"])
            )
        ]
        assert bad.empty


def test_majority_rate_is_the_chance_level_when_larger(tmp_path):
    run = _run(tmp_path / "runs", "m", {"a": [0]})
    # 90 of 100 test clips are class a: predicting a always gives 0.90, which is chance here
    csv = _ablation(
        tmp_path / "abl", {"a": 90, "b": 5, "c": 5}, {"a": 90, "b": 1, "c": 1}, {"a": -0.1}, {"a": [0.0] * 5}
    )
    sets = S.apply_verdicts(S.verdict_rows("m", "t", run, csv))
    r = S.task_rows(sets, {("m", "t"): csv}, {("m", "t"): run}).iloc[0]
    assert r["chance_rate"] == pytest.approx(0.9) and not r["probe_above_chance"]


def test_markdown_escapes_labels():
    assert S.md_escape("x|y") == "x\\|y"
    t = S.markdown_table(pd.DataFrame({"class": ["a|b"], "n": [1]}))
    assert t.splitlines()[2] == "| a\\|b | 1 |"


def test_reproduction_table_puts_ours_next_to_the_published_numbers(tmp_path):
    abl = tmp_path / "abl"
    abl.mkdir()
    rows = [
        dict(
            condition="baseline",
            kind="baseline",
            target="",
            k="",
            draw="",
            **{"class": "x1"},
            n=10,
            correct=9,
            accuracy=0.9,
            delta=0.0,
        ),
        dict(
            condition="cremad_ang_hap",
            kind="explicit",
            target="x1+x2",
            k="",
            draw="",
            **{"class": "x1"},
            n=10,
            correct=8,
            accuracy=0.8,
            delta=-0.1,
        ),
    ]
    pd.DataFrame(rows, columns=ABLATION_COLUMNS).to_csv(abl / "ablation.csv", index=False)
    (abl / "ablation_conditions.json").write_text(
        json.dumps({"classes": ["x1", "x2"], "conditions": [{"name": "shared:x1&x2", "neurons": [[0, 1]] * 20}]})
    )
    tasks = pd.DataFrame(
        [
            {"model": "analysis", "task": "cremad", "neurons_per_class": 150.0},
            {"model": "other", "task": "esc50", "neurons_per_class": 10.0},
        ]
    )
    t = reproduction_table(tasks, {("analysis", "cremad"): abl}, {"cremad": {"ANG": "x1", "HAP": "x2"}})
    assert set(t["task"]) == {"cremad"}  # esc50 was run for another model only
    by = t.set_index("detail")
    assert by.loc["mean over classes", "ours"] == 150.0 and by.loc["mean over classes", "study"] == 172.0
    assert by.loc["ANG&HAP", "ours"] == 20 and by.loc["ANG&HAP", "study"] == 22
    assert by.loc["cremad_ang_hap:ANG", "ours"] == pytest.approx(-10.0)
    assert by.loc["cremad_ang_hap:ANG", "study"] == -1.51 and by.loc["cremad_ang_hap:HAP", "study"] == -0.38
    assert math.isnan(by.loc["cremad_ang_hap:HAP", "ours"])  # no row for x2 in this ablation.csv
    assert all(p.source for p in PUBLISHED) and (t["source"].str.len() > 0).all()


def test_compare_two_models_side_by_side(tmp_path, capsys):
    a = _run(tmp_path / "a", "ssl", {"a": [0, 1, 2, 3], "b": [4, 5]}, task="t")
    _run(tmp_path / "a", "ssl", {"a": [1]}, task="u")
    _run(tmp_path / "b", "sl", {"a": [0, 1]}, task="t")
    _run(tmp_path / "b", "sl", {"b": [2]}, task="u")
    assert a.is_dir()
    dest = tmp_path / "cmp"
    assert (
        cli_main(
            [
                "compare",
                "--model",
                "ssl",
                str(tmp_path / "a"),
                "--model",
                "sl",
                str(tmp_path / "b"),
                "--within",
                "t",
                "--cross",
                "t",
                "u",
                "--dest",
                str(dest),
            ]
        )
        == 0
    )
    t = pd.read_csv(dest / "task_level_neuron_statistics_ssl_vs_sl.csv").set_index("task")
    assert t.loc["t", "classes_covered_ssl"] == 2 and t.loc["t", "classes_covered_sl"] == 1
    assert t.loc["t", "mean_neurons_per_class_ssl"] == pytest.approx(2.0)
    assert t.loc["t", "neurons_per_class_ratio_ssl_to_sl"] == pytest.approx(2.0 / (2 / 3))
    assert {"entropy_q05_ssl", "entropy_q50_sl", "dead_neurons_ssl"} <= set(t.columns)
    for f in ("compare_within_task-t.pdf", "compare_cross_task-t-u.pdf", "entropy_distribution.pdf"):
        assert (dest / f).stat().st_size > 0, f
    assert (
        cli_main(
            [
                "compare",
                "--model",
                "ssl",
                str(tmp_path / "a"),
                "--model",
                "sl",
                str(tmp_path / "b"),
                "--within",
                "v",
                "--dest",
                str(tmp_path / "cmp2"),
            ]
        )
        == 2
    )
    assert "has no run folder for task(s) ['v']" in capsys.readouterr().err


def test_summary_md_starts_with_the_verdict_table_and_stays_short(tmp_path):
    sets, tasks = _tables(
        tmp_path, {c: 36 for c in CLASSES}, [0.0, -0.025, 0.025] * 20, [0.0, -0.05, -0.1] * 20, {"a": 0.9, "b": 0.3}
    )
    inp = S.ReportInputs(
        tasks=tasks, verdicts=sets, findings=S.findings(tasks, sets) * 300, figures=[], files=[], manifests={}
    )
    md = S.write_summary_md(inp)
    lines = md.splitlines()
    assert lines[:4] == ["# aape pipeline report", "", "## Verdicts", ""] and lines[4].startswith("| Task | Model |")
    assert lines[6].startswith("| t | m | 0.900 [") and "a -0.500 [" in lines[6] and "(p 0.033)" in lines[6]
    assert lines[6].endswith("| 0.60, 1 of 2 sets unstable |")
    assert len(lines) <= S.MAX_SUMMARY_LINES and "(cut to fit; every finding is in index.html)" in md
    assert "[ablation_summary.csv](ablation_summary.csv)" in md  # the details stay linked after the cut
