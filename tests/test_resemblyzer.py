"""ResemblyzerEncoder: parity with the resemblyzer package (its ``VoiceEncoder`` module loaded from the
wheel with only ``resemblyzer.audio`` stubbed, and the reference fixture ``tests/fixtures/resemblyzer``
made once with the package and librosa for the librosa front end and ``embed_utterance``), partial
slicing, weight checks, counts against brute force and a run through the statistics callback."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from _encoder_checks import counts_match_brute_force, stats_callback_matches_brute_force, tiny_batch
from conftest import FIXTURES
from lightning_modules.encoders import AudioEncoder, ResemblyzerEncoder
from lightning_modules.encoders import package_assets
from lightning_modules.encoders import resemblyzer as rz
from lightning_modules.encoders.package_assets import package_dir

REF = FIXTURES / "resemblyzer" / "reference.safetensors"
RZ_DIR = package_dir("resemblyzer")
needs_weights = pytest.mark.skipif(
    RZ_DIR is None or not (RZ_DIR / "pretrained.pt").is_file(),
    reason="resemblyzer not installed (pip install --no-deps resemblyzer==0.1.4)",
)


@pytest.fixture(scope="module")
def resem() -> ResemblyzerEncoder:
    return ResemblyzerEncoder()


@pytest.fixture()
def voice_encoder(monkeypatch):
    """The package's ``VoiceEncoder`` (pure torch), imported from the wheel under a stub package whose
    ``audio`` module (librosa, webrtcvad, scipy) is a stub; it loads ``pretrained.pt`` itself."""
    pkg = types.ModuleType("resemblyzer")
    pkg.__path__ = [str(RZ_DIR)]
    pkg.audio = types.ModuleType("resemblyzer.audio")
    monkeypatch.setitem(sys.modules, "resemblyzer", pkg)
    monkeypatch.setitem(sys.modules, "resemblyzer.audio", pkg.audio)
    for name in ("resemblyzer.voice_encoder", "resemblyzer.hparams"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("resemblyzer.voice_encoder").VoiceEncoder(device="cpu", verbose=False).eval()


@needs_weights
def test_matches_voice_encoder_forward_on_the_same_mels(resem, voice_encoder):
    audio = 0.3 * torch.randn(2, 45000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mels, clip, _, _ = resem.partial_mels(audio, None)
        assert mels.shape == (6, 160, 40) and clip.tolist() == [0, 0, 0, 1, 1, 1]
        expected = voice_encoder(mels)
        assert (resem.partial_embeddings(audio) - expected).abs().max() <= 1e-4


@needs_weights
@pytest.mark.parametrize("clip", ["a", "b"])  # 2.5 s: two partials, no padding; 1 s: one padded partial
def test_matches_embed_utterance_and_the_librosa_front_end(resem, clip):
    ref = load_file(str(REF))
    audio, mel = ref[f"{clip}.audio"], ref[f"{clip}.mel"]
    padded = F.pad(audio, (0, max(0, (mel.shape[0] - 1) * 160 - audio.shape[0])))
    with torch.no_grad():
        got_mel = resem.mel(padded)
        assert got_mel.shape == mel.shape
        assert ((got_mel - mel).abs() <= 1e-4 * mel.abs().max()).all()  # power values: relative to the peak
        assert (resem.partial_embeddings(audio[None]) - ref[f"{clip}.partials"]).abs().max() <= 1e-4
        assert (resem(audio[None])[0] - ref[f"{clip}.embed"]).abs().max() <= 1e-4


@needs_weights
def test_lengths_make_padding_irrelevant_and_voices_differ(resem):
    ref = load_file(str(REF))
    a, b = ref["a.audio"], ref["b.audio"]
    batch = torch.stack([a, F.pad(b, (0, a.shape[0] - b.shape[0]))])
    with torch.no_grad():
        emb = resem(batch, torch.tensor([a.shape[0], b.shape[0]]))
    assert (emb[0] - ref["a.embed"]).abs().max() <= 1e-4 and (emb[1] - ref["b.embed"]).abs().max() <= 1e-4
    assert float(emb[0] @ emb[1]) < 0.95  # two synthetic voices are not the same speaker


def test_partial_slices_follow_resemblyzer():
    """Hand-computed: 77-frame step, 160-frame partials, the last dropped under 75 % coverage."""
    assert rz.partial_slices(0) == [(0, 160)]
    assert rz.partial_slices(25600) == [(0, 160)]  # 161 frames: the second partial starts
    assert rz.partial_slices(40000) == [(0, 160), (77, 237)]  # (40000-24640)/25600 = 0.6 < 0.75: dropped
    assert rz.partial_slices(45000) == [(0, 160), (77, 237), (154, 314)]  # 0.795: kept
    with pytest.raises(ValueError, match="rate"):
        ResemblyzerEncoder(pretrained=False, rate=0.1)


def test_protocol_facts():
    enc = ResemblyzerEncoder(pretrained=False)
    assert isinstance(enc, AudioEncoder) and enc.sample_rate == 16000 and enc.embed_dim == 256
    assert enc.neuron_sites == ["layers.0.out", "layers.1.out", "layers.2.out", "relu"]
    assert enc.site_neurons == [256] * 4 and enc.channel_axis == -1 and not enc.training


@needs_weights
def test_checkpoint_problems_are_listed(tmp_path):
    ckpt = torch.load(RZ_DIR / "pretrained.pt", map_location="cpu", weights_only=True)
    state = dict(ckpt["model_state"])
    del state["lstm.bias_hh_l2"]
    state["lstm.weight_ih_l3"] = torch.zeros(1)
    state["linear.bias"] = torch.zeros(5)
    path = tmp_path / "broken.pt"
    torch.save({"model_state": state}, path)
    with pytest.raises(KeyError) as err:
        ResemblyzerEncoder(pretrained=False).load_resemblyzer(path)
    for part in (
        str(path),
        "missing keys ['lstm.bias_hh_l2']",
        "unexpected keys ['lstm.weight_ih_l3']",
        "linear.bias: checkpoint (5,), model (256,)",
    ):
        assert part in str(err.value)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(package_assets.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps resemblyzer==0\.1\.4"):
        ResemblyzerEncoder()


@needs_weights
def test_counts_match_brute_force(resem):
    audio, lengths, labels = tiny_batch(3200, [3200, 800, 2000])
    got = counts_match_brute_force(resem, audio, lengths, labels)
    # clip 1: 800 samples -> frames 0..4 have their centre inside the clip
    assert int(got["n_tokens_site"][0, 1]) == 5 and int(got["n_tokens_site"][3, 1]) == 1


@needs_weights
def test_runs_through_the_stats_callback(resem, tmp_path):
    audio, lengths, labels = tiny_batch(3200, [3200, 800, 2000])
    stats = stats_callback_matches_brute_force(resem, audio, lengths, labels, tmp_path)
    assert stats["count"].shape == (4, 256, 3)
