"""``python -m analysis report``: task statistics table, cross/within-task PDFs (read back), refusal of
runs from different models/sites, TensorBoard output, the study's report configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pypdf import PdfReader

from _fake_run import planted_counts, write_fake_run

from analysis.app.cli import main
from analysis.app.report import ReportSpec, TABLE_COLUMNS, build_report

REPO = Path(__file__).resolve().parents[1]
L, N = 3, 40


def _sets(run_dir: Path) -> dict[str, set[tuple[int, int]]]:
    """Class → {(layer, neuron)} read from neurons.csv (independent of the report code)."""
    classes = (run_dir / "classes.txt").read_text().split()
    df = pd.read_csv(run_dir / "neurons.csv", keep_default_na=False)
    out = {c: set() for c in classes}
    for r in df.itertuples():
        for c in filter(None, r.classes.split(";")):
            out[c].add((r.layer, r.neuron))
    return out


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    """Three runs of suffix 'm' (alpha, beta: same model; gamma: other sites) + identify on each."""
    # beta = alpha's three classes + a fourth class that copies alpha's class 0 (multi-class neurons)
    ca, na, _ = planted_counts(L, N, 3, 300, per_class=2, seed=5)
    cb, nb = torch.cat([ca, ca[..., :1]], -1), torch.cat([na, na[:1]])
    cg, ng, _ = planted_counts(L, N, 2, 300, per_class=2, seed=6)
    man = {"encoder": "M2DEncoder", "checkpoint_sha256": "abc"}
    write_fake_run(tmp_path, "alpha", "m", ca, na, classes=["a0", "a1", "a2"], manifest=man)
    write_fake_run(tmp_path, "beta", "m", cb, nb, classes=["b0", "b1", "b2", "b3"], manifest=man)
    write_fake_run(
        tmp_path, "gamma", "m", cg, ng, classes=["g0", "g1"], manifest=man, sites=[f"features.{l}" for l in range(L)]
    )
    # a run of another suffix must be ignored
    write_fake_run(tmp_path, "alpha", "other", ca, na)
    for t in ("alpha", "beta", "gamma"):
        assert main(["identify", "--run", str(tmp_path / f"{t}_m"), "--top-rate", "0.1"]) == 0
    return tmp_path


def test_task_table_columns_and_values(out):
    dest = out / "rep"
    assert main(["report", "--runs", str(out), "--suffix", "m", "--dest", str(dest)]) == 0
    df = pd.read_csv(dest / "task_level_neuron_statistics_m.csv")
    assert list(df.columns) == TABLE_COLUMNS + [f"layer_{l}" for l in range(L)]
    assert df["task"].tolist() == ["alpha", "beta", "gamma"]
    for r in df.itertuples():
        sets = _sets(out / f"{r.task}_m")
        sizes = [len(s) for s in sets.values()]
        union = set().union(*sets.values())
        multi = [x for x in union if sum(x in s for s in sets.values()) >= 2]
        assert r.classes == len(sets)
        assert r.classes_covered == sum(1 for s in sizes if s)
        assert r.coverage == pytest.approx(r.classes_covered / r.classes)
        assert r.selected_neurons == len(pd.read_csv(out / f"{r.task}_m" / "neurons.csv"))
        assert r.assigned_neurons == len(union)
        assert r.class_assignments == sum(sizes)
        assert r.mean_neurons_per_class == pytest.approx(np.mean(sizes))
        assert r.median_neurons_per_class == pytest.approx(np.median(sizes))
        assert r.share_multiclass == pytest.approx(len(multi) / len(union))
        for l in range(L):
            assert getattr(r, f"layer_{l}") == sum(1 for x in union if x[0] == l)
    # default spec: one within-task figure per task, no cross-task figure
    assert sorted(p.name for p in dest.glob("*.pdf")) == [
        "within_task-alpha.pdf",
        "within_task-beta.pdf",
        "within_task-gamma.pdf",
    ]


def _pdf_text(path: Path) -> tuple[int, str]:
    r = PdfReader(str(path))
    return len(r.pages), "\n".join(p.extract_text() for p in r.pages)


def test_pdfs_read_back_with_expected_axes(out):
    dest = out / "rep"
    assert (
        main(
            [
                "report",
                "--runs",
                str(out),
                "--suffix",
                "m",
                "--dest",
                str(dest),
                "--cross",
                "alpha",
                "beta",
                "--within",
                "beta",
            ]
        )
        == 0
    )
    pages, text = _pdf_text(dest / "cross_task-alpha-beta.pdf")
    assert pages == 1
    for s in (
        "Jaccard of class neuron sets: alpha x beta",
        "beta class",
        "alpha class",
        "Shared neurons per layer",
        "layer",
        "neurons",
        "a2",
        "b3",
        "cross_task-alpha-beta",
    ):
        assert s in text, s
    pages, text = _pdf_text(dest / "within_task-beta.pdf")
    assert pages == 1
    for s in ("Jaccard between classes: beta", "Neurons per class per layer", "layer", "class", "b0", "b3"):
        assert s in text, s
    assert not (dest / "within_task-alpha.pdf").exists()


def test_cross_task_jaccard_matches_sets(out):
    from analysis.app.report import cross_task, load_task_neurons

    a, b = load_task_neurons(out / "alpha_m"), load_task_neurons(out / "beta_m")
    jac, per_layer = cross_task(a, b)
    sa, sb = _sets(out / "alpha_m"), _sets(out / "beta_m")
    for i, ca in enumerate(sa):
        for j, cb in enumerate(sb):
            u = sa[ca] | sb[cb]
            exp = len(sa[ca] & sb[cb]) / len(u) if u else float("nan")
            assert jac[i, j] == pytest.approx(exp, nan_ok=True)
    ua, ub = set().union(*sa.values()), set().union(*sb.values())
    assert per_layer["shared"].tolist() == [sum(1 for x in ua & ub if x[0] == l) for l in range(L)]
    assert jac[0, 0] > 0 and jac[0, 3] > 0  # a0's neurons are b0's and b3's


def test_report_refuses_runs_from_different_sites(out, capsys):
    dest = out / "rep"
    assert main(["report", "--runs", str(out), "--suffix", "m", "--dest", str(dest), "--cross", "alpha", "gamma"]) == 2
    err = capsys.readouterr().err
    assert "different models/sites" in err and "sites" in err and "gamma_m" in err
    assert not dest.exists() or not any(dest.iterdir())  # nothing written
    # a different checkpoint is refused too
    import json

    m = json.loads((out / "beta_m" / "manifest.json").read_text())
    m["checkpoint_sha256"] = "zzz"
    (out / "beta_m" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="checkpoint_sha256"):
        build_report(out, "m", spec=ReportSpec(cross_task=[("alpha", "beta")]), dest=dest)


def test_report_refuses_overwrite_and_missing_tasks(out, capsys):
    dest = out / "rep"
    args = ["report", "--runs", str(out), "--suffix", "m", "--dest", str(dest), "--within", "alpha"]
    assert main(args) == 0
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert main(["report", "--runs", str(out), "--suffix", "m", "--dest", str(out / "r2"), "--within", "esc50"]) == 2
    assert "esc50" in capsys.readouterr().err


def test_report_tensorboard(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = out / "tb"
    build_report(
        out,
        "m",
        spec=ReportSpec(cross_task=[("alpha", "beta")], within_task=["alpha"]),
        dest=out / "rep",
        tensorboard=tb,
    )
    acc = EventAccumulator(str(tb), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"aape_m/cross_task-alpha-beta", "aape_m/within_task-alpha"} <= set(tags["images"])
    assert "aape_m/alpha/coverage" in tags["scalars"]
    assert any("task_level_neuron_statistics_m" in t for t in tags["tensors"])
    # the PDFs were still written
    assert (out / "rep" / "cross_task-alpha-beta.pdf").is_file()


def test_study_report_configs():
    names = {p.stem for p in (REPO / "configs/report").glob("*.yaml")}
    six = {
        "cross_task-surge-nspitch",
        "cross_task-esc50-gise51",
        "cross_task-vc1-cremad_gender",
        "within_task-gtzan",
        "within_task-cremad",
        "within_task-voxforge",
    }
    assert six <= names
    for name in six:
        spec = ReportSpec.from_yaml([REPO / "configs/report" / f"{name}.yaml"])
        figs = [f"cross_task-{a}-{b}" for a, b in spec.cross_task] + [f"within_task-{t}" for t in spec.within_task]
        assert figs == [name]
    spec = ReportSpec.from_yaml([REPO / "configs/report/paper.yaml"])
    figs = {f"cross_task-{a}-{b}" for a, b in spec.cross_task} | {f"within_task-{t}" for t in spec.within_task}
    assert figs == six


def test_bad_report_config_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("cross_task:\n  - [a]\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*cross_task\[0\]"):
        ReportSpec.from_yaml([p])


def test_report_rejects_absent_neurons_in_neurons_pt(tmp_path):
    from analysis.app.report import load_task_neurons

    count, n, _ = planted_counts(2, 8, 2, 100, per_class=1, seed=9)
    d = write_fake_run(tmp_path, "t", "m", count, n, site_neurons=[8, 4])
    torch.save([[torch.tensor([0]), torch.tensor([6])], [torch.tensor([], dtype=torch.long)] * 2], d / "neurons.pt")
    with pytest.raises(ValueError, match="absent"):
        load_task_neurons(d)
