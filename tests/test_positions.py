"""Where each site position lies in the clip (Positions.frame / band): the coordinates the top-clip
tracking and the gallery's activation maps use, checked against each encoder's own geometry."""

from __future__ import annotations

import torch

from lightning_modules.encoders import CrepeEncoder, M2DEncoder, TimmViTEncoder


def _record(enc, audio, lengths=None):
    seen = []
    site = enc.neuron_sites[0]
    h = enc.get_submodule(site).register_forward_hook(lambda m, i, o: seen.append(enc.positions(site, o)))
    try:
        with torch.no_grad():
            enc(audio, lengths)
    finally:
        h.remove()
    return seen


def test_m2d_tokens_are_frequency_major_patches_of_16_frames_per_chunk():
    enc = M2DEncoder(
        checkpoint=None, width=16, depth=1, num_heads=2, mlp_ratio=2.0, input_frames=32, n_mels=80, seed=0
    ).eval()
    assert enc.frame_seconds == 0.01 and enc.frames_per_position == 16 and enc.n_bands == 5
    audio = torch.randn(2, 16000 * 7 // 10)  # 71 frames: chunks of 32, 32, 7 (padded to 16) frames
    calls = _record(enc, audio)
    assert len(calls) == 3
    for chunk, pos in enumerate(calls):
        t = (pos.valid.shape[1] - 1) // 5
        assert pos.frame.shape == pos.valid.shape and pos.band.shape == (pos.valid.shape[1],)
        assert pos.frame[0, 0] == -1 and pos.band[0] == -1  # CLS
        for f in range(5):
            for k in range(t):
                tok = 1 + f * t + k
                assert pos.band[tok] == f and int(pos.frame[1, tok]) == 32 * chunk + 16 * k


def test_timm_vit_prefix_tokens_have_no_place():
    enc = TimmViTEncoder(
        model_name="vit_tiny_patch16_224",
        input_frames=32,
        model_kwargs=dict(depth=1, embed_dim=32, num_heads=2),
        seed=0,
    ).eval()
    pos = _record(enc, torch.randn(1, 16000))[0]
    n = enc.num_prefix_tokens
    assert (pos.frame[:, :n] == -1).all() and (pos.band[:n] == -1).all()
    assert pos.band[n:].tolist() == [f for f in range(5) for _ in range(2)]
    assert pos.frame[0, n:].tolist() == [0, 16] * 5


def test_crepe_positions_are_the_frames_of_their_rows():
    enc = CrepeEncoder(capacity="tiny", pretrained=False, hop_ms=100.0).eval()
    assert enc.frame_seconds == 0.1 and enc.n_bands == 0
    calls = _record(enc, torch.randn(2, 8000))  # 1 + 8000 // 1600 = 6 frames per clip
    pos = calls[0]
    assert pos.band is None
    assert pos.frame[:, 0].tolist() == list(range(6)) * 2 and (pos.frame == pos.frame[:, :1]).all()
    assert pos.clip.tolist() == [0] * 6 + [1] * 6
