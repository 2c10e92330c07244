"""M2DEncoder: run-name parsing, checkpoint formats and key checks, norm_stats, positions, random init,
log-mel front end (16 kHz and 32 kHz)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch

from conftest import M2D_REFERENCE
from lightning_modules.encoders import M2DEncoder
from lightning_modules.encoders.checkpoints import CheckpointKeyError, UnsafeCheckpointError
from lightning_modules.encoders.m2d import DEFAULT_NORM_STATS, parse_run_name
from lightning_modules.encoders.melspec import LogMelSpectrogram, slaney_mel_filterbank

FIXTURE = M2D_REFERENCE
RUN = "m2d_vit_tiny-80x608p16x16p16k-261125-dd1bs512-e300"


class Arbitrary:
    """A custom class: pickling an instance makes a file that weights_only loading must refuse."""

    def __init__(self) -> None:
        self.payload = 42


@pytest.fixture(scope="module")
def enc_sd() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE / f"{RUN}_enconly" / "checkpoint-0.pth", weights_only=True)


@pytest.fixture(scope="module")
def wav() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(2, 16000, generator=g)


def _save(tmp_path: Path, obj, folder: str = RUN + "_test") -> Path:
    p = tmp_path / folder / "checkpoint.pth"
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, p)
    return p


# -- run names ---------------------------------------------------------------------------------
def test_parse_run_name_variants():
    r = parse_run_name("m2d_vit_base-80x608p16x16-221006-mr7")
    assert (r.model, r.n_mels, r.input_frames, r.patch, r.sample_rate) == ("m2d_vit_base", 80, 608, (16, 16), 16000)
    r = parse_run_name("m2d_vit_base-80x608p16x16p32k-240213-mr7")
    assert (r.n_mels, r.input_frames, r.sample_rate) == (80, 608, 32000)
    r = parse_run_name(RUN + "_enconly")
    assert (r.model, r.input_frames, r.patch, r.sample_rate) == ("m2d_vit_tiny", 608, (16, 16), 16000)
    r = parse_run_name("m2d_as_vit_base-80x1001p16x16p16kpAS-250101")
    assert (r.input_frames, r.sample_rate, r.extra) == (1001, 16000, ("AS",))
    for bad in ["checkpoint-300", "weights", "m2d-80by608"]:
        with pytest.raises(ValueError, match="M2D run name"):
            parse_run_name(bad)


# -- checkpoint formats ----------------------------------------------------------------------
def test_evar_prefixed_dict_loads(tmp_path, enc_sd, wav):
    ref = M2DEncoder.from_checkpoint(FIXTURE / f"{RUN}_enconly" / "checkpoint-0.pth", num_heads=4).eval()
    evar = {"module.ar.runtime.backbone." + k: v for k, v in enc_sd.items()}
    evar["module.head.mlp.mlp.0.weight"] = torch.zeros(10, 320)  # EVAR task head: dropped
    evar["module.head.norm.running_mean"] = torch.zeros(320)
    path = _save(tmp_path, evar, folder=RUN)
    m = M2DEncoder.from_checkpoint(path, num_heads=4).eval()
    for k, v in ref.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(m(wav), ref(wav))


def test_missing_block_is_an_error_listing_keys(tmp_path, enc_sd):
    sd = {k: v for k, v in enc_sd.items() if not k.startswith("blocks.0.")}
    path = _save(tmp_path, sd)
    with pytest.raises(CheckpointKeyError) as e:
        M2DEncoder.from_checkpoint(path, num_heads=4)
    msg = str(e.value)
    assert str(path) in msg and "missing" in msg
    for k in enc_sd:
        if k.startswith("blocks.0."):
            assert k in msg
    # the last block removed: detected when the expected depth is given
    sd = {k: v for k, v in enc_sd.items() if not k.startswith("blocks.1.")}
    path = _save(tmp_path, sd, folder=RUN + "_last")
    with pytest.raises(CheckpointKeyError, match=r"blocks\.1\.mlp\.fc1\.weight"):
        M2DEncoder.from_checkpoint(path, num_heads=4, depth=2)
    # one tensor removed
    sd = {k: v for k, v in enc_sd.items() if k != "blocks.1.attn.proj.bias"}
    path = _save(tmp_path, sd, folder=RUN + "_one")
    with pytest.raises(CheckpointKeyError, match=r"missing keys \(1\): blocks\.1\.attn\.proj\.bias"):
        M2DEncoder.from_checkpoint(path, num_heads=4)


def test_unknown_key_is_an_error_listing_it(tmp_path, enc_sd):
    path = _save(
        tmp_path, dict(enc_sd, **{"blocks.0.mlp.extra_gate": torch.zeros(3), "speech_head.0.weight": torch.zeros(2)})
    )
    with pytest.raises(CheckpointKeyError) as e:
        M2DEncoder.from_checkpoint(path, num_heads=4)
    assert "speech_head.0.weight" in str(e.value) and str(path) in str(e.value)
    # an explicit ignore prefix drops a known extra head; the nested unknown key is still listed
    with pytest.raises(CheckpointKeyError, match=r"blocks\.0\.mlp\.extra_gate"):
        M2DEncoder.from_checkpoint(path, num_heads=4, ignore_prefixes=["speech_head."])


def test_target_blocks_alone_are_not_used(tmp_path):
    """A full checkpoint whose online `blocks.*` are gone must fail, not fall back to `target_blocks`."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        full = torch.load(FIXTURE / RUN / "checkpoint-0.pth", weights_only=True)
    full["model"] = {k: v for k, v in full["model"].items() if not k.startswith("blocks.")}
    path = _save(tmp_path, full)
    with pytest.raises(CheckpointKeyError, match="blocks"):
        M2DEncoder.from_checkpoint(path, num_heads=4)


def test_arbitrary_pickled_object_refused_unless_trusted(tmp_path, enc_sd, wav):
    path = _save(tmp_path, {"model": enc_sd, "epoch": 0, "extra": Arbitrary()})
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load.*GLOBAL.*trust_checkpoint") as e:
        M2DEncoder.from_checkpoint(path, num_heads=4)
    assert str(path) in str(e.value) and "Arbitrary" in str(e.value)
    with pytest.warns(UserWarning, match="weights_only=False"):
        m = M2DEncoder.from_checkpoint(path, num_heads=4, trust_checkpoint=True)
    assert torch.equal(m.blocks[0].mlp.fc1.weight, enc_sd["blocks.0.mlp.fc1.weight"])


def test_norm_stats_fallback_when_not_stored(tmp_path, enc_sd, wav):
    path = _save(tmp_path, {k: v for k, v in enc_sd.items() if k != "norm_stats"})
    m = M2DEncoder.from_checkpoint(path, num_heads=4)
    assert torch.equal(m.norm_stats, torch.tensor(DEFAULT_NORM_STATS))
    expected = (m.frontend(wav) - (-7.1)) / 4.2
    torch.testing.assert_close(m.log_mel(wav), expected, atol=1e-6, rtol=0)
    # given explicitly when the checkpoint stores none: used
    m = M2DEncoder.from_checkpoint(path, num_heads=4, norm_stats=(-5.0, 3.0))
    torch.testing.assert_close(m.log_mel(wav), (m.frontend(wav) + 5.0) / 3.0, atol=1e-6, rtol=0)
    # contradicting stored stats: error
    path2 = _save(tmp_path, enc_sd, folder=RUN + "_ns")
    with pytest.raises(ValueError, match="norm_stats"):
        M2DEncoder.from_checkpoint(path2, num_heads=4, norm_stats=(-5.0, 3.0))


def test_heads_required_for_nonstandard_width(tmp_path):
    with pytest.raises(ValueError, match="num_heads is required for width 64"):
        M2DEncoder.from_checkpoint(FIXTURE / f"{RUN}_enconly" / "checkpoint-0.pth")


def test_unparseable_folder_uses_defaults_checked_against_pos_embed(tmp_path, enc_sd):
    path = tmp_path / "plain" / "weights.pth"
    path.parent.mkdir()
    torch.save(enc_sd, path)
    m = M2DEncoder.from_checkpoint(path, num_heads=4)
    assert (m.n_mels, m.input_frames, m.sample_rate) == (80, 608, 16000)  # 608 inferred from pos_embed (1+5*38)
    with pytest.raises(ValueError, match="input_frames"):
        M2DEncoder.from_checkpoint(FIXTURE / f"{RUN}_enconly" / "checkpoint-0.pth", num_heads=4, input_frames=1001)


# -- positions -----------------------------------------------------------------------------------
def test_positions_for_chunked_clips_with_lengths():
    """Batch: clip A 6.5 s (651 frames), clip B 2 s right-padded to 6.5 s (valid 1 + 32000//160 = 201
    frames). Chunk 0 = 608 frames (38 time patches); chunk 1 = 43 frames padded to 48 (3 patches)."""
    m = M2DEncoder.from_checkpoint(FIXTURE / f"{RUN}_enconly" / "checkpoint-0.pth", num_heads=4).eval()
    inp = torch.load(FIXTURE / "inputs.pt", weights_only=True)
    a = inp["wav_1x6p5s"]
    b = torch.zeros_like(a)
    b[:, :32000] = inp["wav_2x2s"][:1]
    audio = torch.cat([a, b])
    lengths = torch.tensor([104000, 32000])
    seen = []
    site = m.neuron_sites[1]
    h = m.get_submodule(site).register_forward_hook(lambda mod, i, o: seen.append((o.shape, m.positions(site, o))))
    try:
        with torch.no_grad():
            emb = m(audio, lengths)
            frames, valid = m.encode_frames(audio, lengths, return_valid=True)
    finally:
        h.remove()
    (s0, p0), (s1, p1) = seen[:2]
    assert s0 == (2, 1 + 5 * 38, 256) and s1 == (2, 1 + 5 * 3, 256)
    for p in (p0, p1):
        assert p.clip.tolist() == [0, 1]
        assert p.special.tolist() == [True] + [False] * (p.valid.shape[1] - 1)
    # chunk 0: A fully valid; B valid for time patches k with 16k < 201 -> k = 0..12, in every freq row
    assert p0.valid[0].all()
    cols_b = torch.tensor([k < 13 for k in range(38)])
    assert p0.valid[1, 0]  # CLS
    assert torch.equal(p0.valid[1, 1:].reshape(5, 38), cols_b.expand(5, 38))
    # chunk 1: A frames 608, 624, 640 < 651 -> all 3 patches valid; B holds only padding (CLS invalid too)
    assert p1.valid[0].all() and not p1.valid[1].any()
    # frame validity and masked pooling
    assert valid.shape == (2, 41) and valid[0].all() and valid[1].sum() == 13
    torch.testing.assert_close(emb, frames.mean(1))  # default frame_pooling='all': EVAR's feature of the padded clip
    assert m._positions is None  # cleared after forward
    m.frame_pooling = "valid"
    with torch.no_grad():
        emb_valid = m(audio, lengths)
    torch.testing.assert_close(emb_valid[1], frames[1, :13].mean(0))
    torch.testing.assert_close(emb_valid[0], frames[0].mean(0))


# -- random init / config path ---------------------------------------------------------------
def test_tiny_random_init_is_seeded_and_has_protocol_facts(wav):
    state = torch.random.get_rng_state()
    m1 = M2DEncoder(width=64, depth=2, num_heads=4, seed=3, name="m2d_tiny_untrained")
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    m2 = M2DEncoder(width=64, depth=2, num_heads=4, seed=3)
    m3 = M2DEncoder(width=64, depth=2, num_heads=4, seed=4)
    assert torch.equal(m1.blocks[1].mlp.fc1.weight, m2.blocks[1].mlp.fc1.weight)
    assert not torch.equal(m1.blocks[1].mlp.fc1.weight, m3.blocks[1].mlp.fc1.weight)
    assert m1.neuron_sites == ["blocks.0.mlp.act", "blocks.1.mlp.act"]
    assert m1.site_neurons == [256, 256] and m1.embed_dim == 320 and m1.channel_axis == -1
    assert m1.name == "m2d_tiny_untrained" and m1.sample_rate == 16000
    with torch.no_grad():
        out = m1(wav)
    assert out.shape == (2, 320) and torch.isfinite(out).all()
    assert m1.encode_frames(wav).shape == (2, 7, 320)  # 101 frames -> padded 112 -> 7 time patches
    # a random-init model saved in the encoder-only format loads back identically
    assert set(m1.state_dict()) == {
        "cls_token",
        "pos_embed",
        "norm_stats",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "norm.weight",
        "norm.bias",
    } | {
        f"blocks.{i}.{n}"
        for i in range(2)
        for n in [
            "norm1.weight",
            "norm1.bias",
            "attn.qkv.weight",
            "attn.qkv.bias",
            "attn.proj.weight",
            "attn.proj.bias",
            "norm2.weight",
            "norm2.bias",
            "mlp.fc1.weight",
            "mlp.fc1.bias",
            "mlp.fc2.weight",
            "mlp.fc2.bias",
        ]
    }


def test_random_init_roundtrip_and_32k(tmp_path, wav):
    m = M2DEncoder(width=64, depth=2, num_heads=4, seed=0, sample_rate=32000)
    assert m.frontend.hop_length == 320 and m.frontend.n_fft == 800 and m.frontend.f_max == 16000
    path = tmp_path / "m2d_vit_tiny-80x608p16x16p32k-000000" / "checkpoint-0.pth"
    path.parent.mkdir()
    torch.save(m.state_dict(), path)
    m2 = M2DEncoder.from_checkpoint(path, num_heads=4)
    assert m2.sample_rate == 32000 and m2.frontend.hop_length == 320
    audio = torch.cat([wav, wav], dim=1)  # 1 s at 32 kHz
    with torch.no_grad():
        assert torch.equal(m(audio), m2(audio))
    with pytest.raises(ValueError, match="sample_rate"):
        M2DEncoder.from_checkpoint(path, num_heads=4, sample_rate=16000)


# -- front end ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", [16000, 32000])
def test_logmel_matches_torch_stft_reference(sr):
    """The conv1d STFT equals torch.stft (periodic Hann, centred, reflect pad) up to float32 noise, and
    frames = 1 + S // hop."""
    fe = LogMelSpectrogram.for_m2d(sr)
    g = torch.Generator().manual_seed(1)
    audio = 0.3 * torch.randn(2, sr // 2 + 37, generator=g)
    power = fe.power_spectrogram(audio)
    spec = torch.stft(
        audio.double(),
        n_fft=fe.n_fft,
        hop_length=fe.hop_length,
        win_length=fe.win_length,
        window=torch.hann_window(fe.win_length, periodic=True, dtype=torch.float64),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    ref = spec.abs() ** 2
    assert power.shape == ref.shape and power.shape[-1] == 1 + audio.shape[-1] // fe.hop_length
    torch.testing.assert_close(power.double(), ref, rtol=1e-4, atol=1e-4 * float(ref.max()))
    logmel = fe(audio)
    ref_log = torch.log(fe.mel_fb.double() @ ref + 1.1920929e-07)[:, None]
    torch.testing.assert_close(logmel.double(), ref_log, atol=1e-3, rtol=0)


@pytest.mark.parametrize("sr,f_max", [(16000, 8000.0), (32000, 16000.0)])
def test_slaney_filterbank_shape_and_tone_peak(sr, f_max):
    fe = LogMelSpectrogram.for_m2d(sr)
    fb = fe.mel_fb
    assert fb.shape == (80, fe.n_fft // 2 + 1) and (fb >= 0).all()
    bin_hz = sr / fe.n_fft
    # filters live between 50 Hz and f_max
    nz = (fb > 0).any(0).nonzero().flatten()
    assert nz.min() * bin_hz > 50 - bin_hz and nz.max() * bin_hz < f_max + bin_hz
    # area normalisation: sum_k w_k * bin_hz ~= 1 for wide (high) bands (triangle area = (hi-lo)/2 * 2/(hi-lo))
    assert abs(float(fb[-1].sum()) * bin_hz - 1.0) < 0.05
    # a tone peaks in increasing bands as its frequency rises, and the peak band contains the tone
    t = torch.arange(sr, dtype=torch.float64) / sr
    peaks = []
    for f in (300.0, 1000.0, 3000.0, 0.7 * f_max):
        tone = torch.sin(2 * math.pi * f * t).float()[None]
        band = int(fe(tone)[0, 0].mean(-1).argmax())
        peaks.append(band)
        assert fb[band, round(f / bin_hz)] > 0
    assert peaks == sorted(peaks) and len(set(peaks)) == 4
    assert torch.equal(fb, slaney_mel_filterbank(sr, fe.n_fft, 80, 50.0, f_max))
