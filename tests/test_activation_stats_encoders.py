"""The activation statistics of real encoders against brute force (:mod:`_counting`): the tiny M2D with a clip
cut into chunks (padding chunks, CLS), CREPE tiny with frames and ragged sites.
"""

from __future__ import annotations

import math

import pytest
import torch

from _counting import real_encoder_check


@pytest.mark.parametrize("tokens", ["all", "patches"])
def test_tiny_m2d_chunked_clip_matches_brute_force(tokens: str) -> None:
    from lightning_modules.encoders import M2DEncoder

    # 32-frame chunks: a 1.1 s clip (111 frames) spans 4 chunks; the shorter clips leave padding chunks.
    enc = M2DEncoder(
        width=64, depth=2, num_heads=4, mlp_ratio=4.0, input_frames=32, n_mels=80, patch=16, sample_rate=16000, seed=0
    ).eval()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(3, 17600, generator=g) * 0.1
    lengths = torch.tensor([17600, 5000, 9000])
    audio[torch.arange(17600)[None] >= lengths[:, None]] = 0
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # multi-label
    got = real_encoder_check(enc, audio, lengths, labels, tokens)
    assert int(got["n_clips"].sum()) == 5 and int(got["n_tokens_site"][0].sum()) > 0


def test_crepe_tiny_frames_match_brute_force() -> None:
    from lightning_modules.encoders import CrepeEncoder

    enc = CrepeEncoder(capacity="tiny", pretrained=True, hop_ms=40.0).eval()
    t = torch.arange(4000) / 16000
    audio = torch.stack([torch.sin(2 * math.pi * f * t) for f in (110.0, 440.0, 880.0)]) * 0.5
    lengths = torch.tensor([4000, 2500, 4000])
    audio[1, 2500:] = 0
    got = real_encoder_check(enc, audio, lengths, torch.tensor([0, 1, 2]), "all")
    # ragged sites: 128 neurons in site 0, 16 in site 1 -> rows past 16 stay zero; different positions
    assert got["count"][1, 16:].sum() == 0 and got["n_tokens_site"][0, 0] != got["n_tokens_site"][1, 0]
