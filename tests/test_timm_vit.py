"""TimmViTEncoder: a tiny timm ViT (depth 2, dim 64) on the M2D log-mel front end."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.encoders import TimmViTEncoder
from lightning_modules.encoders.base import site_view
from lightning_modules.encoders.checkpoints import CheckpointKeyError

TINY = dict(model_name="vit_tiny_patch16_224", input_frames=64, model_kwargs=dict(depth=2, embed_dim=64, num_heads=4))


@pytest.fixture(scope="module")
def audio() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(2, 16000, generator=g)  # 101 frames -> 2 chunks of 64 frames


def test_forward_shape_sites_and_positions(audio):
    m = TimmViTEncoder(**TINY, seed=0).eval()
    assert m.neuron_sites == ["blocks.0.mlp.act", "blocks.1.mlp.act"] and m.site_neurons == [256, 256]
    assert m.embed_dim == 64 and m.channel_axis == -1 and m.num_prefix_tokens == 1
    calls = []
    hooks = [
        m.get_submodule(s).register_forward_hook(
            lambda mod, i, o, s=s: calls.append((s, site_view(o, m.channel_axis).shape, m.positions(s, o)))
        )
        for s in m.neuron_sites
    ]
    try:
        with torch.no_grad():
            emb = m(audio, torch.tensor([16000, 5000]))
    finally:
        for h in hooks:
            h.remove()
    assert emb.shape == (2, 64) and torch.isfinite(emb).all()
    assert [c[0] for c in calls] == ["blocks.0.mlp.act", "blocks.1.mlp.act"] * 2  # once per chunk
    for _, shape, pos in calls:
        assert tuple(shape) == (2, 1 + 5 * 4, 256) and pos.valid.shape == (2, 21)
        assert pos.special.tolist() == [True] + [False] * 20 and pos.clip.tolist() == [0, 1]
    # clip 0: 101 frames: chunk 0 all 4 time columns, chunk 1 columns at frames 64, 80, 96 (< 101)
    # clip 1: 1 + 5000 // 160 = 32 frames: chunk 0 columns 0, 16; chunk 1 nothing (CLS invalid too)
    p0, p1 = calls[0][2], calls[2][2]
    assert p0.valid.sum(1).tolist() == [21, 1 + 5 * 2] and p1.valid.sum(1).tolist() == [1 + 5 * 3, 0]
    assert torch.equal(p1.valid[0, 1:].reshape(5, 4), torch.tensor([True, True, True, False]).expand(5, 4))


def test_mean_pooling_uses_valid_patch_tokens_only(audio):
    m = TimmViTEncoder(**TINY, seed=0).eval()
    lengths = torch.tensor([16000, 5000])
    with torch.no_grad():
        chunks = m.encode_tokens(audio, lengths)
        emb = m(audio, lengths)
        cls_emb = TimmViTEncoder(**TINY, seed=0, token_pooling="cls").eval()(audio, lengths)
    # hand pooling: clip 1 keeps chunk 0, time columns 0 and 1 in each of the 5 frequency rows
    tok = chunks[0][0][1, 1:].reshape(5, 4, 64)[:, :2].reshape(-1, 64)
    torch.testing.assert_close(emb[1], tok.mean(0))
    torch.testing.assert_close(cls_emb[1], chunks[0][0][1, 0])
    torch.testing.assert_close(cls_emb[0], (chunks[0][0][0, 0] + chunks[1][0][0, 0]) / 2)


def test_seeded_init_and_weights_roundtrip(tmp_path, audio):
    a = TimmViTEncoder(**TINY, seed=1).eval()
    b = TimmViTEncoder(**TINY, seed=2).eval()
    assert not torch.equal(a.blocks[0].mlp.fc1.weight, b.blocks[0].mlp.fc1.weight)
    path = tmp_path / "vit.pth"
    torch.save(a.timm_state_dict(), path)
    assert set(a.state_dict()) == set(a.timm_state_dict())  # no front-end buffers in the state dict
    c = TimmViTEncoder(**TINY, seed=2, checkpoint_path=str(path)).eval()
    with torch.no_grad():
        assert torch.equal(a(audio), c(audio))
    # prefixed / wrapped formats
    torch.save({"state_dict": {"net." + k: v for k, v in a.timm_state_dict().items()}}, tmp_path / "wrapped.ckpt")
    d = TimmViTEncoder(**TINY, checkpoint_path=str(tmp_path / "wrapped.ckpt"), checkpoint_prefix="net.").eval()
    with torch.no_grad():
        assert torch.equal(a(audio), d(audio))


def test_wrong_keys_are_listed(tmp_path):
    sd = TimmViTEncoder(**TINY, seed=1).timm_state_dict()
    bad = {k: v for k, v in sd.items() if k != "blocks.1.mlp.fc2.weight"}
    bad["head.weight"] = torch.zeros(3, 64)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointKeyError) as e:
        TimmViTEncoder(**TINY, checkpoint_path=str(path))
    msg = str(e.value)
    assert "blocks.1.mlp.fc2.weight" in msg and "head.weight" in msg and str(path) in msg
    wrong_shape = dict(sd, **{"pos_embed": torch.zeros(1, 5, 64)})
    torch.save(wrong_shape, path)
    with pytest.raises(CheckpointKeyError, match="pos_embed"):
        TimmViTEncoder(**TINY, checkpoint_path=str(path))


def test_dtype_move_keeps_timm_model_in_sync(audio):
    m = TimmViTEncoder(**TINY, seed=0).eval().double()
    assert m.vit.cls_token is m.cls_token and m.vit.cls_token.dtype == torch.float64
    with torch.no_grad():
        assert m(audio.double()).dtype == torch.float64
