"""The study's two ablation experiment configs end to end on a synthetic stand-in with a tiny M2D.

Chain: ``train.py predict`` (ActivationStatsCallback) → ``python -m analysis identify`` → probe
(``analysis.app.probe``) → ``train.py test --config configs/experiment/ablation_<study>.yaml``. The tiny
M2D keeps the study's geometry where the neuron lists need it (12 blocks, 3072 MLP neurons) but has width
16, so every listed ``[layer, neuron]`` exists. The only overrides of the study configs are paths, the
encoder size, the stand-in task, fewer random draws, no per-class sets (time) and ``class_aliases`` mapping the study's class names
(ANG/HAP, jazz/classical) onto synthetic octave classes.
"""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import yaml

from analysis.draws import matched_draws
from conftest import REPO_ROOT, STUDY_ABLATIONS

EXP = REPO_ROOT / "configs" / "experiment"
TINY = dict(
    checkpoint=None,
    width=16,
    depth=12,
    num_heads=2,
    mlp_ratio=192.0,
    input_frames=32,
    n_mels=80,
    patch=16,
    sample_rate=16000,
    name="m2d_tiny12",
    seed=0,
)


def _train(args, cwd, monkeypatch):
    """``python train.py <args>`` in-process (no DDP here, so no re-launch) from ``cwd``."""
    import train

    with monkeypatch.context() as m:
        m.chdir(cwd)
        m.setattr(sys, "argv", ["train.py"])
        train.main(args)


@pytest.fixture(scope="module")
def stand_in(synthetic_root, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    """Statistics run + neurons + probe of the tiny 12-block M2D on ``synth_octave_sine``."""
    work = tmp_path_factory.mktemp("study")
    cfg = yaml.safe_load((EXP / "m2d_tiny_synth_octave_sine.yaml").read_text())
    cfg["model"]["init_args"]["encoder"]["init_args"] = dict(TINY)
    cfg["data"]["init_args"]["evar_root"] = str(synthetic_root)
    cfg["trainer"]["logger"] = False
    cfg["trainer"]["enable_progress_bar"] = False
    cfg["trainer"]["accelerator"] = "cpu"
    (work / "predict.yaml").write_text(yaml.safe_dump(cfg))
    _train(["predict", "--config", str(work / "predict.yaml")], work, mp)
    run = work / "outputs" / "stats" / "synth_octave_sine_m2d_tiny12"
    from analysis.app.cli import main as analysis_main

    assert analysis_main(["identify", "--run", str(run), "--top-rate", "0.05"]) in (0, None)
    from analysis.app.probe import best_checkpoint, fit_seeds

    fit_seeds(run, work / "probe", seeds=(42,), lr=1e-2, max_epochs=10, patience=5)
    classes = (run / "classes.txt").read_text().split()
    return dict(work=work, run=run, ckpt=best_checkpoint(work / "probe"), classes=classes, root=synthetic_root)


@pytest.mark.parametrize("study", ["cremad_ang_hap", "gtzan_classical_jazz"])
def test_study_config_runs_on_stand_in(stand_in, study, monkeypatch):
    cfg = yaml.safe_load((EXP / f"ablation_{study}.yaml").read_text())
    shared = yaml.safe_load(STUDY_ABLATIONS.read_text())[study]
    cb = cfg["trainer"]["callbacks"][0]["init_args"]
    assert cb["neuron_lists"][0]["neurons"] == shared["neurons"] and cb["index_plus_one"] is True
    targets = cb["neuron_lists"][0]["targets"]
    classes = stand_in["classes"]
    out = stand_in["work"] / "ablation" / study
    # --- the small override -------------------------------------------------------------------------
    cb.update(
        out_dir=str(out),
        run_dir=str(stand_in["run"]),
        random_draws=3,
        class_sets=False,  # seconds
        class_aliases={t: classes[i] for i, t in enumerate(targets)},
    )
    cfg["trainer"].update(logger=False, enable_progress_bar=False, accelerator="cpu")
    cfg["model"]["init_args"]["probe_checkpoint"] = str(stand_in["ckpt"])
    cfg["model"]["init_args"]["encoder"]["init_args"] = dict(TINY)
    cfg["data"]["init_args"].update(evar_root=str(stand_in["root"]), task="synth_octave_sine", num_workers=0)
    path = stand_in["work"] / f"ablation_{study}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _train(["test", "--config", str(path)], stand_in["work"], monkeypatch)
    # --- outputs -------------------------------------------------------------------------------------
    t = pd.read_csv(out / "ablation.csv", keep_default_na=False, na_values=[""])
    kinds = set(t["kind"])
    assert {"baseline", "explicit", "index_plus_one", "random"} <= kinds
    n_test = int(t[(t.condition == "baseline") & (t["class"] == "ALL")]["n"].iloc[0])
    meta = pd.read_csv(stand_in["root"] / "evar" / "metadata" / "synth_octave_sine.csv")
    assert n_test == int((meta["split"] == "test").sum())  # every test clip once
    conds = __import__("json").loads((out / "ablation_conditions.json").read_text())["conditions"]
    by = {c["name"]: c for c in conds}
    assert by[study]["neurons"] == sorted(shared["neurons"])
    assert by[f"index+1:{study}"]["neurons"] == sorted([l, n + 1] for l, n in shared["neurons"])
    matched = matched_draws(conds, study)
    assert [c["draw"] for c in matched] == [0, 1, 2]
    for c in matched:
        r = c["neurons"]
        per_layer = lambda ns: sorted(pd.Series([l for l, _ in ns]).value_counts().items())  # noqa: E731
        assert per_layer(r) == per_layer(shared["neurons"])  # layer-matched
        assert not set(map(tuple, r)) & set(map(tuple, shared["neurons"]))
    assert set(t[t.condition == study]["target"]) == {"+".join(classes[: len(targets)])}
    s = pd.read_csv(out / "ablation_groups.csv")
    assert (s[s.group == study]["random_group"] == matched[0]["group"]).all()
    for f in ("ablation_matrix.pdf", "ablation_k_curve.pdf"):
        assert (out / f).stat().st_size > 0
