"""The report's claims are computed: specific = below the random draws' interval per class, the probe-at-chance
rule, stability per set, coarse intervals, the reproduction table and the comparison of two models."""
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
from analysis.significance import binomial_sf

CLASSES = ["a", "b", "c"]


def _run(root: Path, model: str, sets: dict[str, list[int]], stability: dict[str, float] | None = None,
         task: str = "t") -> Path:
    """A run folder with one layer of 8 neurons; ``sets``: class → its neurons."""
    count = torch.randint(0, 10, (1, 8, 3), generator=torch.Generator().manual_seed(0))
    d = write_fake_run(root, task, model, count, torch.full((3,), 10), classes=CLASSES)
    torch.save([[torch.tensor(sets.get(c, []), dtype=torch.long)] for c in CLASSES], d / "neurons.pt")
    if stability is not None:
        pd.DataFrame([{"class": c, "n_neurons": len(sets.get(c, [])), "mean_jaccard": j, "jaccard_low": j - 0.1,
                       "jaccard_high": min(1.0, j + 0.1), "n_undefined": 0, "replicates": 50}
                      for c, j in stability.items()]).to_csv(d / "stability.csv", index=False)
    return d


def _ablation(folder: Path, n: dict[str, int], correct: dict[str, int], class_deltas: dict[str, float],
              random_deltas: dict[str, list[float]]) -> Path:
    """An ablation.csv: baseline with ``correct``/``n`` per class, one class:<c> condition per key of
    ``class_deltas`` (its own class changes by that delta, the others by 0) and its random draws."""
    rows = []

    def cond(name, kind, target, draw, deltas):
        tot_n = sum(n.values())
        for c in CLASSES:
            acc = correct[c] / n[c] + deltas.get(c, 0.0)
            rows.append(dict(condition=name, kind=kind, target=target, k="", draw=draw, **{"class": c}, n=n[c],
                             correct=round(acc * n[c]), accuracy=acc, delta=deltas.get(c, 0.0)))
        tot = sum(correct.values())
        rows.append(dict(condition=name, kind=kind, target=target, k="", draw=draw, **{"class": "ALL"}, n=tot_n,
                         correct=tot, accuracy=tot / tot_n, delta=0.0))

    cond("baseline", "baseline", "", "", {})
    for c, d in class_deltas.items():
        cond(f"class:{c}", "class", c, "", {c: d})
        for i, r in enumerate(random_deltas.get(c, [])):
            cond(f"random:class:{c}:{i}", "random", c, i, {c: r})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=ABLATION_COLUMNS).to_csv(folder / "ablation.csv", index=False)
    return folder / "ablation.csv"


def _tables(tmp_path, correct, draws_a, draws_b, stability=None):
    run = _run(tmp_path / "runs", "m", {"a": [0, 1], "b": [2]}, stability)
    csv = _ablation(tmp_path / "abl", {c: 40 for c in CLASSES}, correct, {"a": -0.5, "b": -0.05},
                    {"a": draws_a, "b": draws_b})
    head = S.headline_rows("m", "t", run, csv)
    tasks = S.task_rows(head, {("m", "t"): csv}, {("m", "t"): run})
    return head, tasks


def test_specific_only_below_the_per_class_interval_and_coarse_with_few_draws(tmp_path):
    draws_a = [0.0, -0.025, 0.0, 0.025, 0.0]
    draws_b = [0.0, -0.05, -0.1, 0.0, 0.025]  # b's own -0.05 lies inside b's random interval
    head, tasks = _tables(tmp_path, {c: 36 for c in CLASSES}, draws_a, draws_b, {"a": 0.9, "b": 0.3})
    h = head.set_index("class")
    lo_a = float(np.quantile(draws_a, 0.025))
    assert h.loc["a", "random_delta_lo"] == pytest.approx(lo_a) and bool(h.loc["a", "specific"])
    assert not bool(h.loc["b", "specific"]) and not bool(h.loc["c", "specific"])  # c has no set
    r = tasks.iloc[0]
    assert r["classes_specific"] == 1 and r["classes_covered"] == 2 and r["random_draws"] == 5
    assert r["unstable_sets"] == 1 and r["mean_stability_jaccard"] == pytest.approx(0.6)
    (text,) = S.findings(tasks, head)
    assert "1 of 2 covered classes have a set called specific" in text
    assert "a (-0.500 vs random" in text and "set stability mean Jaccard 0.90 [0.80, 1.00]" in text
    assert "Not specific: b (-0.050" in text
    assert "interval is coarse" in text and "5 random draws" in text
    assert "unstable (mean Jaccard < 0.5): b." in text
    assert S.AT_CHANCE not in text


def test_twenty_draws_are_not_coarse_and_no_specific_set_is_a_negative_result(tmp_path):
    draws = [(-1) ** i * 0.6 * (i % 3) / 2 for i in range(20)]  # wide: -0.5 is not below
    head, tasks = _tables(tmp_path, {c: 36 for c in CLASSES}, draws, draws)
    (text,) = S.findings(tasks, head)
    assert "0 of 2 covered classes" in text and "NEGATIVE RESULT" in text
    assert "coarse" not in text and "Set stability was not measured" in text


def test_probe_at_chance_replaces_every_ablation_claim(tmp_path):
    # 16 of 120 correct: below 1/3 chance -> at chance, although class a's set "drops" far below random
    head, tasks = _tables(tmp_path, {"a": 6, "b": 5, "c": 5}, [0.0] * 5, [0.0] * 5)
    r = tasks.iloc[0]
    assert r["chance_rate"] == pytest.approx(1 / 3) and not r["probe_above_chance"]
    assert r["probe_p_value"] == pytest.approx(binomial_sf(16, 120, 1 / 3))
    (text,) = S.findings(tasks, head)
    assert S.AT_CHANCE in text and "specific" not in text and "NEGATIVE" not in text


def test_majority_rate_is_the_chance_level_when_larger(tmp_path):
    run = _run(tmp_path / "runs", "m", {"a": [0]})
    # 90 of 100 test clips are class a: predicting a always gives 0.90, which is chance here
    csv = _ablation(tmp_path / "abl", {"a": 90, "b": 5, "c": 5}, {"a": 90, "b": 1, "c": 1}, {"a": -0.1},
                    {"a": [0.0] * 5})
    head = S.headline_rows("m", "t", run, csv)
    r = S.task_rows(head, {("m", "t"): csv}).iloc[0]
    assert r["chance_rate"] == pytest.approx(0.9) and not r["probe_above_chance"]


def test_reproduction_table_puts_ours_next_to_the_published_numbers(tmp_path):
    abl = tmp_path / "abl"
    abl.mkdir()
    rows = [dict(condition="baseline", kind="baseline", target="", k="", draw="", **{"class": "x1"}, n=10, correct=9,
                 accuracy=0.9, delta=0.0),
            dict(condition="cremad_ang_hap", kind="explicit", target="x1+x2", k="", draw="", **{"class": "x1"}, n=10,
                 correct=8, accuracy=0.8, delta=-0.1)]
    pd.DataFrame(rows, columns=ABLATION_COLUMNS).to_csv(abl / "ablation.csv", index=False)
    (abl / "ablation_conditions.json").write_text(json.dumps({"classes": ["x1", "x2"], "conditions": [
        {"name": "shared:x1&x2", "neurons": [[0, 1]] * 20}]}))
    tasks = pd.DataFrame([{"model": "analysis", "task": "cremad", "neurons_per_class": 150.0},
                          {"model": "other", "task": "esc50", "neurons_per_class": 10.0}])
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
    assert cli_main(["compare", "--model", "ssl", str(tmp_path / "a"), "--model", "sl", str(tmp_path / "b"),
                     "--within", "t", "--cross", "t", "u", "--dest", str(dest)]) == 0
    t = pd.read_csv(dest / "task_level_neuron_statistics_ssl_vs_sl.csv").set_index("task")
    assert t.loc["t", "classes_covered_ssl"] == 2 and t.loc["t", "classes_covered_sl"] == 1
    assert t.loc["t", "mean_neurons_per_class_ssl"] == pytest.approx(2.0)
    assert t.loc["t", "neurons_per_class_ratio_ssl_to_sl"] == pytest.approx(2.0 / (2 / 3))
    assert {"entropy_q05_ssl", "entropy_q50_sl", "dead_neurons_ssl"} <= set(t.columns)
    for f in ("compare_within_task-t.pdf", "compare_cross_task-t-u.pdf", "entropy_distribution.pdf"):
        assert (dest / f).stat().st_size > 0, f
    assert cli_main(["compare", "--model", "ssl", str(tmp_path / "a"), "--model", "sl", str(tmp_path / "b"),
                     "--within", "v", "--dest", str(tmp_path / "cmp2")]) == 2
    assert "has no run folder for task(s) ['v']" in capsys.readouterr().err
