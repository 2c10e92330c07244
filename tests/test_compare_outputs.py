"""benchmarks/compare_outputs.py, the before/after check of a refactor: what always differs between two runs
(clock times, the trees' own roots, Lightning's temporary checkpoint paths) is ignored; any other change of a
tensor, a table or a file's presence is reported."""

from __future__ import annotations

import importlib.util
import json

import torch

from conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("compare_outputs", REPO_ROOT / "benchmarks" / "compare_outputs.py")
compare_outputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_outputs)


def _tree(root, time, score, extra=False):
    (root / "runs" / "t_m").mkdir(parents=True)
    (root / "runs" / "t_m" / "manifest.json").write_text(
        json.dumps({"time": time, "out": str(root / "runs" / "t_m"), "clips": 12}), encoding="utf-8"
    )
    (root / "runs" / "t_m" / "table.csv").write_text(f"class,score\na,{score}\n", encoding="utf-8")
    torch.save(
        {"score": torch.tensor([1.0, float("nan"), score]), "best_model_path": str(root / "tmp123" / "best.ckpt")},
        root / "runs" / "t_m" / "stats.pt",
    )
    (root / ".stages").mkdir()
    (root / ".stages" / "stats.json").write_text(time, encoding="utf-8")
    if extra:
        (root / "runs" / "t_m" / "new.csv").write_text("x\n", encoding="utf-8")


def test_runs_differing_only_in_time_and_root_are_the_same(tmp_path):
    _tree(tmp_path / "a", "2026-12-07T08:55:33+00:00", 0.5)
    _tree(tmp_path / "b", "2026-12-07T09:01:02+00:00", 0.5)
    assert compare_outputs.compare_trees(tmp_path / "a", tmp_path / "b") == {}
    assert compare_outputs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0


def test_a_changed_number_or_file_is_reported(tmp_path):
    _tree(tmp_path / "a", "2026-12-07T08:55:33+00:00", 0.5)
    _tree(tmp_path / "b", "2026-12-07T08:55:33+00:00", 0.25, extra=True)
    found = compare_outputs.compare_trees(tmp_path / "a", tmp_path / "b")
    assert found[f"only in {tmp_path / 'b'}"] == ["runs/t_m/new.csv"]
    assert found["runs/t_m/table.csv"] == ["-a,0.5", "+a,0.25"]
    assert found["runs/t_m/stats.pt"] == [".score: max |difference| 0.25"]
    assert compare_outputs.compare_trees(tmp_path / "a", tmp_path / "b", tol=0.3).keys() == {
        f"only in {tmp_path / 'b'}",
        "runs/t_m/table.csv",
    }
    assert compare_outputs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
