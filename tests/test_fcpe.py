"""FCPEEncoder: parity with torchfcpe's own modules (its mel extractor and ``CFNaiveMelPE``, loaded from
the installed wheel with only the non-torch imports stubbed), real weights (pitch of a tone), weight
checks, protocol facts, counts against brute force and a run through the statistics callback."""

from __future__ import annotations

import importlib
import math
import sys
import types

import pytest
import torch

from _encoder_checks import counts_match_brute_force, stats_callback_matches_brute_force, tiny_batch
from lightning_modules.encoders import AudioEncoder, FCPEEncoder
from lightning_modules.encoders import fcpe as fcpe_mod
from lightning_modules.encoders import package_assets
from lightning_modules.encoders.package_assets import package_dir

FCPE_DIR = package_dir("torchfcpe")
needs_weights = pytest.mark.skipif(
    FCPE_DIR is None or not (FCPE_DIR / "assets" / "fcpe_c_v001.pt").is_file(),
    reason="torchfcpe not installed (pip install --no-deps torchfcpe==0.0.4)",
)


@pytest.fixture(scope="module")
def fcpe() -> FCPEEncoder:
    return FCPEEncoder()


@pytest.fixture()
def reference(monkeypatch):
    """torchfcpe's ``models`` and ``mel_extractor`` modules, imported from the wheel's files under a stub
    package (its ``__init__`` never runs). Stubbed, and never called by the bundled conv-only model at
    16 kHz: ``einops`` and ``local_attention`` (attention only), ``torchaudio.transforms.Resample``
    (resampling only); librosa is absent, so torchfcpe uses its own copy of librosa's mel filterbank."""
    pkg = types.ModuleType("torchfcpe")
    pkg.__path__ = [str(FCPE_DIR)]
    einops = types.ModuleType("einops")
    einops.rearrange = einops.repeat = None
    local = types.ModuleType("local_attention")
    local.LocalAttention = None
    ta, tt = types.ModuleType("torchaudio"), types.ModuleType("torchaudio.transforms")
    tt.Resample = None
    ta.transforms = tt
    for name, mod in {
        "torchfcpe": pkg,
        "einops": einops,
        "local_attention": local,
        "torchaudio": ta,
        "torchaudio.transforms": tt,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    for name in (
        "torchfcpe.models",
        "torchfcpe.mel_extractor",
        "torchfcpe.model_conformer_naive",
        "torchfcpe.mel_fn_librosa",
        "librosa",
        "librosa.filters",
    ):
        monkeypatch.delitem(sys.modules, name, raising=False)
    models = importlib.import_module("torchfcpe.models")
    mel = importlib.import_module("torchfcpe.mel_extractor")
    ckpt = torch.load(FCPE_DIR / "assets" / "fcpe_c_v001.pt", map_location="cpu", weights_only=True)
    m = ckpt["config_dict"]["model"]
    net = models.CFNaiveMelPE(
        input_channels=ckpt["config_dict"]["mel"]["num_mels"],
        out_dims=m["out_dims"],
        hidden_dims=m["hidden_dims"],
        n_layers=m["n_layers"],
        n_heads=m["n_heads"],
        f0_max=m["f0_max"],
        f0_min=m["f0_min"],
        use_fa_norm=m["use_fa_norm"],
        conv_only=m["conv_only"],
    )
    net.load_state_dict(ckpt["model"])
    c = ckpt["config_dict"]["mel"]
    wav2mel = mel.Wav2MelModule(
        c["sr"], c["num_mels"], c["n_fft"], c["win_size"], c["hop_size"], c["fmin"], c["fmax"], 1e-5
    )
    return net.eval(), wav2mel, mel


@needs_weights
@pytest.mark.parametrize("n_samples", [3000, 500, 161])  # reflect padding; zero padding of a short clip
def test_matches_torchfcpe_forward(fcpe, reference, n_samples):
    net, wav2mel, _ = reference
    audio = 0.3 * torch.randn(2, n_samples, generator=torch.Generator().manual_seed(n_samples)).clamp(-1, 1)
    with torch.no_grad():
        ref_mel = wav2mel(audio[..., None], 16000)  # [B, T, 128]
        assert torch.equal(fcpe.mel(audio).transpose(1, 2), ref_mel)
        expected = net(ref_mel)
        got = fcpe.latent(audio)
    assert got.shape == expected.shape == (2, n_samples // 160 + 1, 360)
    assert (got - expected).abs().max() <= 1e-4


@needs_weights
def test_mel_filterbank_and_cent_table_match_torchfcpe(fcpe, reference):
    net, _, mel = reference
    fb = torch.tensor(mel.librosa_mel_fn(sr=16000, n_fft=1024, n_mels=128, fmin=0, fmax=8000))
    assert (fb - fcpe.mel.mel_fb).abs().max() <= 1e-7
    torch.testing.assert_close(fcpe.cent_table, net.cent_table, atol=0, rtol=0)


@needs_weights
@pytest.mark.parametrize("freq", [220.0, 440.0])
def test_real_weights_give_the_pitch_of_a_tone(fcpe, freq):
    t = torch.arange(8000) / 16000
    with torch.no_grad():
        f0 = fcpe.f0_argmax((0.5 * torch.sin(2 * math.pi * freq * t))[None])[0, 5:-5]
    assert (1200 * torch.log2(f0 / freq)).abs().max() < 50.0  # within a quarter tone on every interior frame


def test_protocol_facts():
    enc = FCPEEncoder(pretrained=False)
    assert isinstance(enc, AudioEncoder) and enc.sample_rate == 16000 and enc.embed_dim == 512
    assert enc.neuron_sites == ["input_stack.act"] + [f"layers.{i}.act" for i in range(6)]
    assert enc.site_neurons == [512] + [1024] * 6 and sum(enc.site_neurons) == 6656
    assert isinstance(enc.get_submodule("input_stack.act"), torch.nn.LeakyReLU)
    assert all(isinstance(enc.get_submodule(s), torch.nn.SiLU) for s in enc.neuron_sites[1:])
    assert not enc.training and enc.frame_seconds == 0.01
    with torch.no_grad():
        assert enc(torch.randn(2, 1000)).shape == (2, 512)


@needs_weights
def test_checkpoint_problems_are_listed(tmp_path):
    ckpt = torch.load(FCPE_DIR / "assets" / "fcpe_c_v001.pt", map_location="cpu", weights_only=True)
    state = dict(ckpt["model"])
    del state["norm.bias"], state["output_proj.weight_g"]
    state["extra.weight"] = torch.zeros(1)
    state["input_stack.0.bias"] = torch.zeros(3)
    path = tmp_path / "broken.pt"
    torch.save({"model": state}, path)
    with pytest.raises(KeyError) as err:
        FCPEEncoder(pretrained=False).load_torchfcpe(path)
    msg = str(err.value)
    for part in (
        str(path),
        "norm.bias",
        "output_proj.weight_g",
        "unexpected keys ['extra.weight']",
        "input_stack.0.bias: checkpoint (3,), model (512,)",
    ):
        assert part in msg
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(TypeError, match="list.pt"):
        FCPEEncoder(pretrained=False).load_torchfcpe(tmp_path / "list.pt")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(package_assets.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps torchfcpe==0\.0\.4"):
        FCPEEncoder()


def test_untrained_is_seeded_and_differs():
    a, b, c = (FCPEEncoder(pretrained=False, seed=s) for s in (0, 0, 1))
    w = "layers.0.depthwise.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w]) and not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_frame_validity_and_padding_independence():
    valid = fcpe_mod.frame_validity(torch.tensor([1000, 0]), 2, 11)
    # frame i covers [i*160 - 432, i*160 + 592): it holds clip samples while i*160 - 432 < 1000
    assert valid[0].tolist() == [i * 160 - 432 < 1000 for i in range(11)] and not valid[1].any()


@needs_weights
def test_counts_match_brute_force(fcpe):
    audio, lengths, labels = tiny_batch(1600, [1600, 700, 1200])
    got = counts_match_brute_force(fcpe, audio, lengths, labels)
    # padding frames are not counted: clip 1 (700 samples) has fewer counted frames than clip 0
    assert int(got["n_tokens_site"][0, 1]) < int(got["n_tokens_site"][0, 0])


@needs_weights
def test_runs_through_the_stats_callback(fcpe, tmp_path):
    audio, lengths, labels = tiny_batch(1600, [1600, 700, 1200])
    stats = stats_callback_matches_brute_force(fcpe, audio, lengths, labels, tmp_path)
    assert stats["count"].shape == (7, 1024, 3)
