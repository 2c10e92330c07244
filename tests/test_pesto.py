"""PestoEncoder: parity with pesto-pitch's own forward pass (reference fixture), the checkpoint read without
pickled code, real weights (pitch of tones), neuron sites and positions, counts against a brute force."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest
import torch

from analysis.app.specs import instantiate
from analysis.runs.read import UnsafeFileError, load_tensor_file
from lightning_modules.encoders import PestoEncoder
from lightning_modules.encoders import pesto as P
from lightning_modules.encoders.pesto_checkpoint import ALLOWED, convert_state_dict, pesto_weights_path, plain
from _counting import brute_force, record_sites, run_core

FIXTURE = Path(__file__).parent / "fixtures" / "pesto_reference"
SR = 16000


@pytest.fixture(scope="module")
def ref() -> dict:
    return load_tensor_file(FIXTURE / "reference.pt")


@pytest.fixture(scope="module")
def pesto10() -> PestoEncoder:
    return PestoEncoder(hop_ms=10.0)


def tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds), dtype=torch.float64) / SR
    return (0.5 * torch.sin(2 * math.pi * freq * t)).float()


def test_fixture_is_the_committed_one():
    lines = (FIXTURE / "sha256sums.txt").read_text().split()
    assert (
        lines[1] == "reference.pt" and hashlib.sha256((FIXTURE / "reference.pt").read_bytes()).hexdigest() == lines[0]
    )


def test_matches_pesto_pitch_forward_pass(ref, pesto10):
    """<= 1e-4 on the pitch activations (the package's output), and the CQT front-end on its log-CQT."""
    with torch.no_grad():
        acts = pesto10.activations(ref["audio"])
        spec = pesto10.cqt(ref["audio"])
    assert acts.shape == ref["activations"].shape == (2, 51, 384)
    assert (acts - ref["activations"]).abs().max() <= 1e-4
    theirs = ref["log_cqt_db"][:, :, P.CROP : P.N_BINS - P.CROP] * (math.log(10) / 10)
    assert (spec - theirs).abs().max() <= 1e-4
    # the package's pitch (argmax-local weighted average) of the 220 Hz clip is MIDI 57, and ours agrees
    assert torch.allclose(ref["pitch"][0, 5:45], torch.full((40,), 57.0), atol=0.05)
    assert (pesto10.pitch_midi(ref["audio"][:1])[0, 5:45] == 57.0).all()


@pytest.mark.parametrize("freq", [130.81, 440.0, 1046.5])
def test_real_weights_give_the_pitch_of_a_tone(freq):
    enc = PestoEncoder(hop_ms=20.0)
    with torch.no_grad():
        midi = enc.pitch_midi(tone(freq)[None])[0, 3:-3]
    assert (midi - (69 + 12 * math.log2(freq / 440))).abs().max() < 0.5


def test_checkpoint_needs_the_stand_ins_and_nothing_runs():
    path = pesto_weights_path()
    with pytest.raises(UnsafeFileError, match="omegaconf|list"):
        load_tensor_file(path)  # plain weights_only=True refuses the omegaconf objects
    ck = load_tensor_file(path, allow=ALLOWED)
    hp = plain(ck["hparams"])
    assert hp["encoder"]["n_chan_layers"] == [40, 30, 30, 10, 3] and hp["pitch_shift"] == {
        "min_steps": -16,
        "max_steps": 16,
    }
    assert "omegaconf" not in sys.modules and "pesto" not in sys.modules and "torchaudio" not in sys.modules


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_checkpoint_with_other_globals_is_refused(tmp_path):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hparams": _Evil(), "hcqt_params": {}}, bad)
    with pytest.raises(UnsafeFileError, match="bad.ckpt"):
        load_tensor_file(bad, allow=ALLOWED)


def test_key_mapping_lists_problems():
    enc = PestoEncoder(pretrained=False)
    expected = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    state = {
        "encoder.conv1.0.weight": torch.zeros(40, 1, 39),
        "encoder.mystery.weight": torch.zeros(1),
        "confidence.linear.bias": torch.zeros(1),
    }
    with pytest.raises(KeyError, match=r"missing \[.*layers\.1\.conv\.weight.*unexpected \['encoder\.mystery"):
        convert_state_dict(state, expected, P.N_PREFILTER, "x.ckpt")


def test_protocol_facts_and_default_spec():
    enc = instantiate({"class_path": "lightning_modules.encoders.PestoEncoder"}, "models.pesto")
    assert enc.pretrained and enc.checkpoint_path == pesto_weights_path()
    assert enc.neuron_sites == [f"layers.{i}.act" for i in range(7)]
    assert enc.site_neurons == [40, 40, 40, 30, 30, 10, 3] and enc.embed_dim == 657 and enc.channel_axis == 1
    for site in enc.neuron_sites:
        assert isinstance(enc.get_submodule(site), torch.nn.LeakyReLU)
    with pytest.raises(ValueError, match="embedding_layer"):
        PestoEncoder(pretrained=False, embedding_layer=8)
    with pytest.raises(ValueError, match="longer than 2048 samples"):
        enc(torch.zeros(1, 2000))


def test_sites_are_post_activation_and_positions_are_frames_by_bins():
    enc = PestoEncoder(pretrained=False, hop_ms=20.0, frame_batch_size=7)
    audio = torch.randn(2, 4000, generator=torch.Generator().manual_seed(1)) * 0.1
    lengths = torch.tensor([4000, 1000])
    audio[1, 1000:] = 0
    rec = record_sites(enc, audio, lengths)
    n_frames = 1 + 4000 // 320
    exp_valid = torch.tensor([[i * 320 < int(n) for i in range(n_frames)] for n in lengths])
    for layer, site in enumerate(enc.neuron_sites):
        calls = [(v, p) for l, v, p in rec if l == layer]
        assert len(calls) == math.ceil(2 * n_frames / 7)
        views = torch.cat([v for v, _ in calls])
        assert views.shape == (2 * n_frames, 219, enc.site_neurons[layer])
        assert torch.equal(torch.cat([p.clip for _, p in calls]), torch.arange(2).repeat_interleave(n_frames))
        assert torch.equal(torch.cat([p.valid for _, p in calls]), exp_valid.reshape(-1, 1).expand(-1, 219))
        assert torch.equal(torch.cat([p.frame[:, 0] for _, p in calls]), torch.arange(n_frames).repeat(2))
        assert (views < 0).any() and (views.clamp(max=0) / P.LEAKY_SLOPE).abs().max() > 0  # leaky, not ReLU


def test_counts_match_brute_force():
    """Counts of the production path equal explicit loops over rows, positions and classes. One batch of
    all clips on both sides: a float32 convolution may round differently for another batch size, and a
    pre-activation that close to 0 would flip (a property of the arithmetic, not of the counting)."""
    enc = PestoEncoder(hop_ms=40.0).eval()
    audio = torch.stack([tone(f, 0.3) for f in (110.0, 440.0, 880.0)])
    lengths = torch.tensor([4800, 3000, 4800])
    audio[1, 3000:] = 0
    labels = torch.tensor([0, 1, 2])
    got = run_core(enc, audio, lengths, labels, 3, "all", "clip", batch_size=3)
    ref = brute_force(record_sites(enc, audio, lengths), labels, 3, "all", list(enc.site_neurons))
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(got[key], ref[key]), key
    assert torch.allclose(got["rate_sum"], ref["rate_sum"], rtol=1e-9, atol=1e-12)
    assert got["count"][6, 3:].sum() == 0 and got["count"][6, :3].sum() > 0  # ragged: the last site has 3 neurons
    assert int(got["n_tokens_site"][0, 1]) == 219 * (1 + (3000 - 1) // enc.hop)  # clip 1: its valid frames only


def test_embedding_is_the_mean_over_valid_frames_and_chunking_does_not_matter():
    a = PestoEncoder(pretrained=False, frame_batch_size=3)
    b = PestoEncoder(pretrained=False, frame_batch_size=10_000)
    audio = torch.randn(2, 4000, generator=torch.Generator().manual_seed(4)) * 0.1
    lengths = torch.tensor([4000, 2500])
    audio[1, 2500:] = 0
    rec = record_sites(a, audio, lengths)
    last = [(v, p) for l, v, p in rec if l == 6]  # layers.6.act: the last layer's output is the embedding
    rows = torch.cat([v for v, _ in last]).transpose(1, 2).flatten(1)  # [R, 3 * 219] channel-major
    clip = torch.cat([p.clip for _, p in last])
    valid = torch.cat([p.valid[:, 0] for _, p in last])
    expected = torch.stack([rows[(clip == c) & valid].mean(0) for c in range(2)])
    with torch.no_grad():
        got = a(audio, lengths)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got, b(audio, lengths), atol=1e-5, rtol=1e-5)
    assert int(valid.view(2, -1)[1].sum()) == 1 + (2500 - 1) // a.hop


def test_untrained_control_differs_and_is_seeded(pesto10):
    x = tone(440.0)[None]
    u0, u0b, u1 = (PestoEncoder(pretrained=False, hop_ms=10.0, seed=s) for s in (0, 0, 1))
    with torch.no_grad():
        assert torch.equal(u0(x), u0b(x)) and not torch.allclose(u0(x), u1(x))
        assert not torch.allclose(u0(x), pesto10(x))
    assert u0.checkpoint_path is None
