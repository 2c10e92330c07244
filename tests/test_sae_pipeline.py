"""The pipeline's ``sae`` section: validated against the config (models, tasks, loaded files, k), and the
feature model joins the models with stages that build on its SAE."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from analysis.app.config import PipelineError, load_config
from analysis.app.pipeline import Pipeline
from analysis.neurons_vs_features import comparison_row

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, **sae) -> Path:
    raw = yaml.safe_load((ROOT / "configs/pipeline/demo.yaml").read_text())
    raw["sae"] = {**raw["sae"], **sae}
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize(
    "sae, message",
    [
        ({"models": ["nope"]}, r"sae.models\[0\]: 'nope' is not in 'models'"),
        ({"train_tasks": ["x"]}, r"sae.train_tasks\[0\]: 'x' is not in 'tasks'"),
        (
            {"load": {"crepe_tiny": {"blocks.5.relu": "/no/such/sae.pt"}}},
            r"sae.load.crepe_tiny.blocks.5.relu: /no/such",
        ),
        ({"d_sae": 8, "k": 9}, r"sae: k=9 must be in 1..d_sae=8"),
        ({"suffix": "_untrained"}, r"sae.suffix: the feature models \['crepe_tiny_untrained'\]"),
        ({"kk": 3}, r"unknown key\(s\) \['kk'\] in 'sae'"),
    ],
)
def test_bad_sae_sections_name_the_key(tmp_path: Path, sae: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        load_config(_cfg(tmp_path, **sae))


def test_feature_model_joins_the_models(tmp_path: Path) -> None:
    pipe = Pipeline(load_config(_cfg(tmp_path), out=str(tmp_path / "out")))
    assert list(pipe.feature_models) == ["crepe_tiny_sae"]
    spec = pipe.cfg["models"]["crepe_tiny_sae"]
    assert spec["class_path"] == "lightning_modules.encoders.FeatureEncoder"
    assert spec["init_args"]["saes"] == [str((tmp_path / "out/saes/crepe_tiny/blocks.5.relu/sae.pt").resolve())]
    stages = {s.id: s for s in pipe.stages()}
    first, last = list(pipe.cfg["tasks"])[0], list(pipe.cfg["tasks"])[-1]
    assert "sae-crepe_tiny-blocks.5.relu" in stages[f"stats-{first}_crepe_tiny_sae"].after
    assert f"ablation-{last}_crepe_tiny_sae" in stages["features"].after
    assert "features" in stages["summary"].after
    with pytest.raises(PipelineError, match="sae.sites: \\['blocks.9.relu'\\]"):
        Pipeline(load_config(_cfg(tmp_path, sites=["blocks.9.relu"])))


def test_comparison_row_against_hand_values() -> None:
    classes = ["a", "b"]
    # 2 layers x 3 units x 2 classes; unit (1, 2) dead, layer 1 units 0 and 1 specific
    oz = torch.tensor([[[0.9, 0.1], [0.5, 0.5], [0.2, 0.0]], [[0.8, 0.0], [0.0, 0.6], [0.0, 0.0]]])
    neurons = [[torch.tensor([2]), torch.tensor([0])], [torch.tensor([], dtype=torch.long), torch.tensor([1, 0])]]
    stab = pd.DataFrame(
        {
            "class": classes,
            "mean_jaccard": [0.5, 1.0],
            "jaccard_low": [0, 0],
            "jaccard_high": [1, 1],
            "replicates": [9, 9],
        }
    )
    summ = pd.DataFrame(
        {
            "group": ["class:a", "class:a", "class:b", "class:b", "random:class:a"],
            "kind": ["class", "class", "class", "class", "random"],
            "target": ["a", "a", "b", "b", "a"],
            "class": ["a", "b", "a", "b", "a"],
            "on_target": [True, False, False, True, True],
            "delta_mean": [-0.6, 0.1, -0.2, -0.4, -0.9],
        }
    )
    r = comparison_row("t", "m", "s1", "neuron", 3, neurons, classes, 1, oz, stab, summ, "m_sae")
    assert (r["units"], r["specific_units"]) == (3, 2)
    assert r["mean_jaccard"] == 0.75
    assert r["mean_on_target_delta"] == -0.5  # (-0.6 + -0.4) / 2; random rows ignored
    assert math.isclose(r["on_target_delta_per_unit"], (-0.6 / 2 + -0.4 / 2) / 2)  # set sizes a: 2, b: 2
    assert math.isclose(r["off_target_delta_per_unit"], (0.1 / 2 + -0.2 / 2) / 2)
    # layer 1: live units 0 (entropy 0) and 1 (entropy 0); unit 2 dead -> dropped
    assert r["median_normalized_entropy"] == 0.0
