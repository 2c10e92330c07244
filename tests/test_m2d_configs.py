"""configs/model YAMLs of the M2D / ViT encoders instantiate through jsonargparse (as LightningCLI does)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _model_configs import build_model
from conftest import M2D_REFERENCE
from lightning_modules.encoders import M2DEncoder, TimmViTEncoder

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = M2D_REFERENCE
ENC = FIXTURE / "m2d_vit_tiny-80x608p16x16p16k-261125-dd1bs512-e300_enconly" / "checkpoint-0.pth"


@pytest.mark.parametrize(
    "config,cls,name,dim",
    [
        ("m2d_tiny_untrained.yaml", M2DEncoder, "m2d_tiny_untrained", 320),
        ("timm_vit_tiny_untrained.yaml", TimmViTEncoder, "timm_vit_tiny_untrained", 64),
    ],
)
def test_untrained_configs(config, cls, name, dim):
    model = build_model(config)
    enc = model.encoder
    assert isinstance(enc, cls) and enc.name == name and enc.embed_dim == dim
    with torch.no_grad():
        assert model(0.1 * torch.randn(2, 8000)).shape == (2, dim)
    # seeded: a second build is identical
    again = build_model(config).encoder
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("config,name", [("m2d.yaml", "analysis"), ("vit_supervised.yaml", "vit")])
def test_checkpoint_configs(config, name):
    model = build_model(
        config,
        f"--model.init_args.encoder.init_args.checkpoint={ENC}",
        "--model.init_args.encoder.init_args.num_heads=4",
    )
    enc = model.encoder
    assert isinstance(enc, M2DEncoder) and enc.name == name and enc.checkpoint_path == str(ENC)
    assert enc.width == 64 and enc.depth == 2


def test_checkpoint_config_without_file_fails_clearly():
    with pytest.raises(Exception, match="Checkpoint file not found"):
        build_model(
            "m2d.yaml", "--model.init_args.encoder.init_args.checkpoint=/nonexistent/m2d_vit_base-80x608p16x16-x/c.pth"
        )
