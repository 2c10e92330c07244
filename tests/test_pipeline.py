"""End-to-end tests of ``python -m analysis pipeline`` on a tiny synthetic task with the real CREPE tiny.

One module-scoped run is shared: the tests check its outputs, the headline table (recomputed here from
``ablation.csv`` and ``neurons.csv`` with independent code), resume/skip, config-change refusal, --force
of selected stages, and a failing stage leaving completed outputs intact.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from _pipeline_config import pipeline_config, write_config
from analysis.app.cli import main as cli_main
from analysis.app.config import PipelineError, load_config
from analysis.app.pipeline import Pipeline
from analysis.draws import matched_draws
from analysis.runs.read import read_ablation_conditions

pytest.importorskip("soundfile")


def main(argv: list[str]) -> int:
    """``python -m analysis pipeline <argv>``."""
    return cli_main(["pipeline", *argv])


@pytest.fixture(scope="module")
def pipeline_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pipeline")
    out = tmp / "out"
    cfg_path = write_config(pipeline_config(synthetic_root, out), tmp / "pipe.yaml")
    rc = main(["--config", str(cfg_path)])
    assert rc == 0
    return cfg_path, out


def test_pipeline_writes_every_stage_output(pipeline_run):
    _, out = pipeline_run
    run = out / "runs" / "synth_octave_sine_crepe_tiny"
    for f in (
        "over_zero.pt",
        "stats.pt",
        "features.pt",
        "gts.pt",
        "index.csv",
        "manifest.json",
        "classes.txt",
        "neurons.csv",
        "neurons.pt",
        "stability.csv",
        "threshold_sweep.csv",
    ):
        assert (run / f).is_file(), f
    assert (out / "models" / "crepe_tiny" / "task_level_neuron_statistics_crepe_tiny.csv").is_file()
    assert (out / "models" / "crepe_tiny" / "within_task-synth_octave_sine.pdf").is_file()
    probe = pd.read_csv(out / "probes" / "synth_octave_sine_crepe_tiny" / "probe_results.csv", dtype={"seed": str})
    assert list(probe["seed"]) == ["42", "43", "mean", "std"]
    abl = out / "ablation" / "synth_octave_sine_crepe_tiny"
    for f in ("ablation.csv", "ablation_groups.csv", "ablation_matrix.pdf", "ablation_k_curve.pdf"):
        assert (abl / f).is_file(), f
    for f in ("summary.md", "index.html", "ablation_summary.csv", "tasks.csv"):
        assert (out / "report" / f).is_file(), f
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "within_task-synth_octave_sine.pdf" in html and "ablation_matrix.pdf" in html
    assert "manifest" in html.lower()


def test_verdicts_match_ablation_and_neurons_csv(pipeline_run):
    """The summary's numbers are computed, not typed: recompute them from the stage outputs."""
    _, out = pipeline_run
    run = out / "runs" / "synth_octave_sine_crepe_tiny"
    abl = pd.read_csv(
        out / "ablation" / "synth_octave_sine_crepe_tiny" / "ablation.csv", keep_default_na=False, na_values=[""]
    )
    conds = read_ablation_conditions(out / "ablation" / "synth_octave_sine_crepe_tiny")["conditions"]
    neurons = pd.read_csv(run / "neurons.csv", keep_default_na=False)
    classes = (run / "classes.txt").read_text().split()
    sets = pd.read_csv(out / "report" / "ablation_summary.csv", keep_default_na=False, na_values=[""])
    # neurons per class from the ';'-joined 'classes' column of neurons.csv
    per_class = {c: 0 for c in classes}
    for cell in neurons["classes"]:
        for c in filter(None, str(cell).split(";")):
            per_class[c] += 1
    assert sum(per_class.values()) > 0, "the pretrained CREPE should have some class-specific neuron"
    assert list(sets["class"]) == [c for c in classes if per_class[c]]  # one row per ablated set
    assert dict(zip(sets["class"], sets["neurons"])) == {c: n for c, n in per_class.items() if n}
    for _, h in sets.iterrows():
        c = h["class"]
        rows = abl[abl["condition"] == f"class:{c}"]
        base = abl[(abl["condition"] == "baseline") & (abl["class"] == c)]["accuracy"].item()
        own = rows[rows["class"] == c]
        assert h["on_target_delta"] == pytest.approx(own["accuracy"].item() - base, abs=1e-12)
        assert own["gained"].item() - own["lost"].item() == round(h["on_target_delta"] * own["n"].item())
        others = rows[(rows["class"] != c) & (rows["class"] != "ALL")]["delta"]
        assert h["off_target_delta_mean"] == pytest.approx(others.mean(), abs=1e-12)
        names = [m["name"] for m in matched_draws(conds, f"class:{c}")]
        draws = [abl[(abl["condition"] == n) & (abl["class"] == c)]["delta"].item() for n in names]
        assert h["random_draws"] == 3
        assert h["random_delta_mean"] == pytest.approx(sum(draws) / 3, abs=1e-12)
        hits = sum(d <= h["on_target_delta"] + 1e-12 for d in draws)
        assert h["p_value"] == pytest.approx((1 + hits) / 4)
        assert not h["specific"]  # 3 draws: the smallest p is 0.25
    md = (out / "report" / "summary.md").read_text(encoding="utf-8")
    tasks = pd.read_csv(out / "report" / "tasks.csv")
    assert tasks["classes_covered"].item() == sum(1 for v in per_class.values() if v > 0)
    assert tasks["selected_neurons"].item() == len(neurons)  # distinct neurons
    assert tasks["class_assignments"].item() == sum(per_class.values())
    assert md.startswith("# aape pipeline report\n\n## Verdicts\n\n| Task | Model | Probe accuracy")
    assert "| synth_octave_sine | crepe_tiny |" in md and len(md.splitlines()) <= 150


def test_rerun_skips_finished_stages(pipeline_run, capsys):
    cfg_path, out = pipeline_run
    before = (out / "report" / "summary.md").stat().st_mtime_ns
    assert main(["--config", str(cfg_path)]) == 0
    msg = capsys.readouterr().out
    assert "(0 stages ran," in msg and "skipped)" in msg
    assert (out / "report" / "summary.md").stat().st_mtime_ns == before


def test_changed_config_is_refused_then_forced(pipeline_run, tmp_path, capsys):
    cfg_path, out = pipeline_run
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["ablation"]["random_draws"] = 2
    changed = write_config(cfg, tmp_path / "changed.yaml")
    assert main(["--config", str(changed)]) == 1
    err = capsys.readouterr().err
    assert "stage ablation-synth_octave_sine_crepe_tiny" in err and "--force" in err
    old = pd.read_csv(out / "ablation" / "synth_octave_sine_crepe_tiny" / "ablation.csv")
    assert (old["kind"] == "random").any() and set(old[old["kind"] == "random"]["draw"].dropna()) == {0, 1, 2}
    # --force on the changed stages only
    assert main(["--config", str(changed), "--force", "--only", "ablation", "summary"]) == 0
    new = pd.read_csv(out / "ablation" / "synth_octave_sine_crepe_tiny" / "ablation.csv")
    assert set(new[new["kind"] == "random"]["draw"].dropna()) == {0, 1}
    # put the original back so the module's other tests see a consistent folder
    assert main(["--config", str(cfg_path), "--force", "--only", "ablation", "summary"]) == 0


def test_failing_stage_names_itself_and_keeps_completed_outputs(synthetic_root, tmp_path, capsys):
    cfg = pipeline_config(synthetic_root, tmp_path / "out")
    # a valid config whose model cannot be built when its stage runs (the checkpoint file is missing)
    cfg["models"]["broken"] = {
        "class_path": "lightning_modules.encoders.M2DEncoder",
        "init_args": {"checkpoint": str(tmp_path / "missing" / "checkpoint.pth")},
    }
    path = write_config(cfg, tmp_path / "p.yaml")
    assert main(["--config", str(path), "--only", "stats", "identify"]) == 1
    err = capsys.readouterr().err
    assert "stage stats-synth_octave_sine_broken failed" in err
    good = tmp_path / "out" / "runs" / "synth_octave_sine_crepe_tiny"
    assert (good / "neurons.pt").is_file() and (good / "over_zero.pt").is_file()
    assert not (tmp_path / "out" / "runs" / "synth_octave_sine_broken").exists()


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"tasks": {}}, "'tasks' is empty"),
        ({"bogus": 1}, "unknown key(s) ['bogus']"),
        ({"probe": {"seedz": [1]}}, "unknown key(s) ['seedz'] in 'probe'"),
        ({"models": {"m": {"init_args": {}}}}, "models.m needs a 'class_path'"),
    ],
)
def test_bad_config_errors_name_the_problem(tmp_path, bad, msg):
    cfg = {"tasks": {"t": {}}, "models": {"m": {"class_path": "x.Y"}}, "data": {"evar_root": str(tmp_path)}}
    cfg.update(bad)
    p = write_config(cfg, tmp_path / "bad.yaml")
    with pytest.raises(PipelineError) as e:
        load_config(p)
    assert msg in str(e.value) and str(p) in str(e.value)


def test_unset_environment_variable_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("AAPE_TEST_UNSET", raising=False)
    p = write_config(
        {"tasks": {"t": {}}, "models": {"m": {"class_path": "x.Y"}}, "data": {"evar_root": "${AAPE_TEST_UNSET}"}},
        tmp_path / "env.yaml",
    )
    with pytest.raises(PipelineError, match="AAPE_TEST_UNSET is not set"):
        load_config(p)
    monkeypatch.setenv("AAPE_TEST_UNSET", str(tmp_path))
    assert load_config(p)["data"]["evar_root"] == str(tmp_path)


def test_malformed_yaml_names_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("tasks: [unclosed\n", encoding="utf-8")
    with pytest.raises(PipelineError, match="malformed YAML"):
        load_config(p)


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "configs" / "pipeline").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_pipeline_config_loads_and_builds_its_stages(path, tmp_path, monkeypatch):
    """Each shipped pipeline YAML validates; its stage list covers every (model, task); the demo's models
    (no checkpoint needed) are instantiated for real."""
    from analysis.app.pipeline import Pipeline, instantiate

    for var in ("EVAR", "M2D_CHECKPOINT", "VIT_CHECKPOINT"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    cfg = load_config(path, out=str(tmp_path / "out"))
    stages = Pipeline(cfg).stages()
    ids = {s.id for s in stages}
    for model in cfg["models"]:
        for task in cfg["tasks"]:
            for st in ("stats", "identify", "probe", "ablation"):
                assert f"{st}-{task}_{model}" in ids
    assert stages[-1].name == "summary"
    if path.name == "demo.yaml":
        # the SAE feature models (sae section) need their trained sae.pt, written by the sae stage
        plain = {m: spec for m, spec in cfg["models"].items() if "FeatureEncoder" not in str(spec)}
        assert len(plain) < len(cfg["models"])
        encoders = [instantiate(spec, f"models.{m}") for m, spec in plain.items()]
        assert [e.name for e in encoders] == list(plain)


@pytest.mark.ddp
def test_ddp_statistics_stage_matches_one_device(pipeline_run, tmp_path):
    """trainer.devices=2 (gloo on CPU): the stats stage runs through train.py predict (Lightning's DDP
    re-launches the command line); its counts equal the one-device run of the module fixture exactly."""
    import torch

    cfg_path, out = pipeline_run
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["out"] = str(tmp_path / "ddp")
    cfg["trainer"] = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    path = write_config(cfg, tmp_path / "ddp.yaml")
    assert main(["--config", str(path), "--only", "stats"]) == 0
    one = torch.load(out / "runs" / "synth_octave_sine_crepe_tiny" / "stats.pt", weights_only=False)
    two = torch.load(tmp_path / "ddp" / "runs" / "synth_octave_sine_crepe_tiny" / "stats.pt", weights_only=False)
    for k in ("count", "n_tokens", "n_tokens_site", "n_clips", "n_positions"):
        assert torch.equal(one[k], two[k]), k
    man = yaml.safe_load((tmp_path / "ddp" / "runs" / "synth_octave_sine_crepe_tiny" / "manifest.json").read_text())
    assert man["world_size"] == 2


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_ablation_stage_matches_one_device(pipeline_run, tmp_path):
    """trainer.devices=2: the ablation stage's function runs ``train.py test`` under DDP on the same run folder
    and probe as the one-device run (a copy of its outputs; the runner itself would re-run the statistics,
    whose stage depends on the trainer section); ablation.csv is identical (each test clip scored once,
    counts summed once)."""
    cfg_path, out = pipeline_run
    shutil.copytree(out, tmp_path / "ddp")
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["out"] = str(tmp_path / "ddp")
    cfg["trainer"] = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    pipe = Pipeline(load_config(write_config(cfg, tmp_path / "ddp.yaml")))
    assert pipe.multi_process() and pipe.processes() == 2
    pipe._ablation("synth_octave_sine", "crepe_tiny", overwrite=True)
    for f in ("ablation.csv", "ablation_groups.csv"):
        a = pd.read_csv(out / "ablation" / "synth_octave_sine_crepe_tiny" / f)
        b = pd.read_csv(tmp_path / "ddp" / "ablation" / "synth_octave_sine_crepe_tiny" / f)
        assert a.equals(b), (f, a.compare(b))
    assert (tmp_path / "ddp" / ".stages" / "test-synth_octave_sine_crepe_tiny.yaml").exists()


def test_task_alias_does_not_clobber_the_task_it_reads(synthetic_root, tmp_path):
    """A pipeline task reading another EVAR task (``evar_task``) gets its own run folder, even when the
    aliased task is analysed in the same run under its own name."""
    import torch

    cfg = pipeline_config(synthetic_root, tmp_path / "out")
    cfg["tasks"] = {"synth_octave_sine": {}, "alias": {"evar_task": "synth_octave_sine"}}
    path = write_config(cfg, tmp_path / "alias.yaml")
    assert main(["--config", str(path), "--only", "stats"]) == 0
    runs = tmp_path / "out" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["alias_crepe_tiny", "synth_octave_sine_crepe_tiny"]
    a = torch.load(runs / "alias_crepe_tiny" / "stats.pt", weights_only=False)
    b = torch.load(runs / "synth_octave_sine_crepe_tiny" / "stats.pt", weights_only=False)
    assert torch.equal(a["count"], b["count"])  # same audio, same model: same counts
    assert not (tmp_path / "out" / ".staging").exists() or not any((tmp_path / "out" / ".staging").iterdir())


def test_each_stage_is_logged_once(tmp_path, capsys):
    """One line per stage event (running, done, skipped), through the pipeline's logger only."""
    import io
    import logging

    from analysis.app.runner import Runner, Stage

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    lg = logging.getLogger("aape.pipeline")
    old_level = lg.level
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    try:
        target = tmp_path / "out" / "x.txt"
        stage = Stage("demo", "k", {"v": 1}, [target], lambda overwrite: target.write_text("x"))
        target.parent.mkdir()
        Runner(tmp_path / "out").run(stage)
        Runner(tmp_path / "out").run(stage)  # second time: skipped
    finally:
        lg.removeHandler(handler)
        lg.setLevel(old_level)
    lines = [ln for ln in stream.getvalue().splitlines() if "demo-k" in ln]
    assert len(lines) == 3, lines
    assert "running" in lines[0] and "done in" in lines[1] and "skipped" in lines[2]
    assert "demo-k" not in capsys.readouterr().out  # no second copy printed to stdout


def test_compare_outputs_finds_a_changed_result(pipeline_run, tmp_path):
    """tests/compare_outputs.py (the refactor check): a copy is identical, a changed CSV is reported."""
    import shutil

    from compare_outputs import compare

    _, out = pipeline_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert compare(out, copy, {}) == []
    csv = copy / "ablation" / "synth_octave_sine_crepe_tiny" / "ablation.csv"
    csv.write_text(csv.read_text().replace("baseline", "baselinX", 1))
    (copy / "runs" / "synth_octave_sine_crepe_tiny" / "neurons.pt").unlink()
    diffs = compare(out, copy, {})
    assert "differs: ablation/synth_octave_sine_crepe_tiny/ablation.csv" in diffs
    assert f"only in {out}: runs/synth_octave_sine_crepe_tiny/neurons.pt" in diffs


def test_identify_splits_all_counts_every_clip_and_the_probe_ignores_unsplit_rows(synthetic_root, tmp_path):
    """``stats.identify_splits: all``: every row of the CSV is predicted and counted (rows without a split
    too, with split ``none`` in index.csv), so n_clips sums to the CSV's rows; the probe still trains on
    train/valid and tests on test only."""
    import os

    import torch

    root = tmp_path / "evar"
    (root / "evar" / "metadata").mkdir(parents=True)
    (root / "work" / "16k").mkdir(parents=True)
    src = synthetic_root / "evar" / "metadata"
    os.symlink(synthetic_root / "work" / "16k" / "synth_octave_sine", root / "work" / "16k" / "synth_octave_sine")
    os.symlink(src / "synth_octave_sine.yaml", root / "evar" / "metadata" / "synth_octave_sine.yaml")
    df = pd.read_csv(src / "synth_octave_sine.csv")
    blank = df.index[df["split"] == "test"][:2].tolist() + df.index[df["split"] == "train"][:1].tolist()
    df.loc[blank, "split"] = ""
    df.to_csv(root / "evar" / "metadata" / "synth_octave_sine.csv", index=False)
    cfg = pipeline_config(root, tmp_path / "out", stats={"identify_splits": "all"})
    path = write_config(cfg, tmp_path / "all.yaml")
    assert main(["--config", str(path), "--only", "stats", "probe"]) == 0
    run = tmp_path / "out" / "runs" / "synth_octave_sine_crepe_tiny"
    stats = torch.load(run / "stats.pt", weights_only=True)
    assert int(stats["n_clips"].sum()) == len(df)
    index = pd.read_csv(run / "index.csv", keep_default_na=False)
    assert sorted(index["index"]) == list(range(len(df)))
    assert sorted(index.loc[index["split"] == "none", "index"]) == sorted(blank)
    probe = pd.read_csv(
        tmp_path / "out" / "probes" / "synth_octave_sine_crepe_tiny" / "probe_results.csv", dtype={"seed": str}
    )
    seed = probe[probe["seed"] == "42"].iloc[0]
    assert int(seed["n_test"]) == int((df["split"] == "test").sum())
    assert int(seed["n_train"]) + int(seed["n_valid"]) == int(df["split"].isin(["train", "valid"]).sum())


def test_summary_claims_follow_from_the_verdicts(pipeline_run):
    """Every set is specific exactly when it passes the three criteria (recomputed here); the run says that
    3 draws cannot pass the corrected level, and states the stability of the sets."""
    _, out = pipeline_run
    sets = pd.read_csv(out / "report" / "ablation_summary.csv", keep_default_na=False, na_values=[""])
    for _, h in sets.iterrows():
        ok = h["p_adjusted"] < h["alpha"] and h["on_target_delta"] < 0 and h["probe_accuracy_lo"] > h["chance_rate"]
        assert bool(h["specific"]) == ok
    md = (out / "report" / "summary.md").read_text(encoding="utf-8")
    assert "With 3 draws the smallest attainable p is 0.25" in md and "nothing can be called specific" in md
    tasks = pd.read_csv(out / "report" / "tasks.csv")
    assert f"mean Jaccard {tasks['mean_stability_jaccard'].item():.2f} over replicates" in md
    stab = pd.read_csv(out / "runs" / "synth_octave_sine_crepe_tiny" / "stability.csv", keep_default_na=False)
    for _, h in sets.iterrows():
        row = stab[stab["class"] == h["class"]].iloc[0]
        assert h["stability_mean_jaccard"] == pytest.approx(row["mean_jaccard"])


def test_two_models_get_a_compare_stage(synthetic_root, tmp_path):
    """A pipeline with two models writes compare/: one task table with both models' columns, the
    within-task figure with the models side by side, the entropy distribution of all neurons."""
    cfg = pipeline_config(synthetic_root, tmp_path / "out")
    cfg["models"]["untrained"] = {
        "class_path": "lightning_modules.encoders.CrepeEncoder",
        "init_args": {
            "capacity": "tiny",
            "pretrained": False,
            "hop_ms": 100.0,
            "embedding_layer": 6,
            "name": "untrained",
        },
    }
    path = write_config(cfg, tmp_path / "two.yaml")
    assert main(["--config", str(path), "--only", "stats", "identify", "report", "compare"]) == 0
    cmp = tmp_path / "out" / "compare"
    t = pd.read_csv(cmp / "task_level_neuron_statistics_crepe_tiny_vs_untrained.csv")
    assert list(t["task"]) == ["synth_octave_sine"]
    own = pd.read_csv(tmp_path / "out" / "models" / "crepe_tiny" / "task_level_neuron_statistics_crepe_tiny.csv")
    assert t["mean_neurons_per_class_crepe_tiny"].item() == pytest.approx(own["mean_neurons_per_class"].item())
    assert {"classes_covered_untrained", "entropy_q50_crepe_tiny", "entropy_q50_untrained"} <= set(t.columns)
    for f in ("compare_within_task-synth_octave_sine.pdf", "entropy_distribution.pdf"):
        assert (cmp / f).stat().st_size > 0
