"""The pipeline's ``sae`` section: validated against the config (models, tasks, loaded files, k), and the
feature model joins the models with stages that build on its SAE."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.app.config import PipelineError, load_config
from analysis.app.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, **sae) -> Path:
    raw = yaml.safe_load((ROOT / "configs/pipeline/demo.yaml").read_text())
    raw["sae"] = {**raw["sae"], **sae}
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("sae, message", [
    ({"models": ["nope"]}, r"sae.models\[0\]: 'nope' is not in 'models'"),
    ({"train_tasks": ["x"]}, r"sae.train_tasks\[0\]: 'x' is not in 'tasks'"),
    ({"load": {"crepe_tiny": {"blocks.5.relu": "/no/such/sae.pt"}}}, r"sae.load.crepe_tiny.blocks.5.relu: /no/such"),
    ({"d_sae": 8, "k": 9}, r"sae: k=9 must be in 1..d_sae=8"),
    ({"suffix": "_untrained"}, r"sae.suffix: the feature models \['crepe_tiny_untrained'\]"),
    ({"kk": 3}, r"unknown key\(s\) \['kk'\] in 'sae'"),
])
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
    assert "sae-crepe_tiny-blocks.5.relu" in stages["stats-synth_octave_sine_crepe_tiny_sae"].after
    assert "ablation-synth_octave_saw_crepe_tiny_sae" in stages["features"].after
    assert "features" in stages["summary"].after
    with pytest.raises(PipelineError, match="sae.sites: \\['blocks.9.relu'\\]"):
        Pipeline(load_config(_cfg(tmp_path, sites=["blocks.9.relu"])))
