"""Audio loading, resampling and crop/pad (datamodules/audio.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import write_wav
from datamodules.audio import AudioFileError, crop_or_pad, crop_seed, load_audio, resample


def test_load_mono_mean_of_channels(tmp_path):
    left = np.linspace(-0.5, 0.5, 100, dtype=np.float32)
    right = np.full(100, 0.25, dtype=np.float32)
    p = write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1))
    wav = load_audio(p, 16000)
    assert wav.dtype == torch.float32 and wav.shape == (100,)
    np.testing.assert_allclose(wav.numpy(), (left + right) / 2, atol=1e-7)


def test_load_pcm16_scaled_to_float(tmp_path):
    p = tmp_path / "pcm.wav"
    sf.write(str(p), np.array([0, 16384, -32768], dtype=np.int16), 16000, subtype="PCM_16")
    np.testing.assert_allclose(load_audio(p, 16000).numpy(), [0.0, 0.5, -1.0])


def test_missing_file_names_file_and_row(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_audio(tmp_path / "nope.wav", 16000, where="metadata m.csv row 3 (line 5)")
    assert "nope.wav" in str(e.value) and "row 3" in str(e.value) and "not found" in str(e.value)


def test_corrupt_file(tmp_path):
    p = tmp_path / "bad.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage-garbage")
    with pytest.raises(AudioFileError) as e:
        load_audio(p, 16000, display="work/16k/t/bad.wav", where="metadata m.csv row 0 (line 2)")
    msg = str(e.value)
    assert "work/16k/t/bad.wav" in msg and "row 0" in msg and "unreadable or corrupt" in msg


def test_zero_byte_placeholder_is_corrupt(tmp_path):
    p = tmp_path / "empty.wav"
    p.touch()
    with pytest.raises(AudioFileError, match="empty.wav.*unreadable or corrupt"):
        load_audio(p, 16000)


def test_zero_length_file(tmp_path):
    p = write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioFileError) as e:
        load_audio(p, 16000, where="metadata m.csv row 7 (line 9)")
    assert "zero.wav" in str(e.value) and "row 7" in str(e.value) and "zero-length" in str(e.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = np.zeros(50, dtype=np.float32)
    x[10] = bad
    p = write_wav(tmp_path / "nan.wav", x)
    with pytest.raises(AudioFileError) as e:
        load_audio(p, 16000, where="metadata m.csv row 2 (line 4)")
    assert "nan.wav" in str(e.value) and "row 2" in str(e.value) and "NaN/inf" in str(e.value)


def test_sample_rate_mismatch_message(tmp_path):
    p = write_wav(tmp_path / "x.wav", np.zeros(441, dtype=np.float32), 44100)
    with pytest.raises(AudioFileError) as e:
        load_audio(p, 16000, display="work/16k/cremad/x.wav", where="metadata m.csv row 1 (line 3)")
    assert "Expected sample rate 16000 in work/16k/cremad/x.wav, got 44100" in str(e.value)
    assert "row 1" in str(e.value)


def test_resample_on_request(tmp_path):
    sr = 44100
    t = np.arange(sr // 2) / sr
    p = write_wav(tmp_path / "x.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    wav = load_audio(p, 16000, resample_audio=True)
    assert wav.shape == (8000,)
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    assert np.abs(wav.numpy()[100:-100] - ref[100:-100]).max() < 1e-3


@pytest.mark.parametrize("orig,new", [(44100, 16000), (16000, 48000), (22000, 16000), (32000, 16000)])
def test_resample_sine_accuracy_and_length(orig, new):
    n = orig // 4
    x = torch.sin(2 * math.pi * 1000.0 * torch.arange(n, dtype=torch.float64) / orig).float()
    y = resample(x, orig, new)
    assert y.shape == (math.ceil(n * new / orig),) and y.dtype == torch.float32
    ref = torch.sin(2 * math.pi * 1000.0 * torch.arange(y.shape[0], dtype=torch.float64) / new)
    assert (y[64:-64].double() - ref[64:-64]).abs().max() < 1e-3


def test_resample_removes_content_above_new_nyquist():
    orig, new = 48000, 16000
    x = torch.sin(2 * math.pi * 9000.0 * torch.arange(orig // 4, dtype=torch.float64) / orig).float()
    y = resample(x, orig, new)  # 9 kHz is above the 8 kHz Nyquist of 16 kHz: must not alias to 7 kHz
    assert y[64:-64].abs().max() < 0.01


def test_resample_batched_matches_single():
    x = torch.randn(3, 1000)
    y = resample(x, 22000, 16000)
    for i in range(3):
        torch.testing.assert_close(y[i], resample(x[i], 22000, 16000))


def test_crop_head_pad_right():
    x = torch.arange(1, 11, dtype=torch.float32)
    out, n = crop_or_pad(x, 4, "head")
    assert n == 4 and out.tolist() == [1, 2, 3, 4]
    out, n = crop_or_pad(x, 13, "head")
    assert n == 10 and out[:10].tolist() == x.tolist() and out[10:].tolist() == [0, 0, 0]
    out, n = crop_or_pad(x, 13, "random", torch.Generator().manual_seed(0))  # short clips never shift
    assert n == 10 and out[:10].tolist() == x.tolist()


def test_random_crop_reproducible_and_varies():
    x = torch.arange(1000, dtype=torch.float32)
    starts = []
    for seed in range(20):
        a, _ = crop_or_pad(x, 100, "random", torch.Generator().manual_seed(seed))
        b, _ = crop_or_pad(x, 100, "random", torch.Generator().manual_seed(seed))
        assert torch.equal(a, b)
        assert torch.equal(a, torch.arange(a[0].item(), a[0].item() + 100))  # contiguous window
        starts.append(int(a[0]))
    assert len(set(starts)) > 5 and min(starts) >= 0 and max(starts) <= 900


def test_random_crop_needs_generator():
    with pytest.raises(ValueError, match="Generator"):
        crop_or_pad(torch.zeros(10), 5, "random")


def test_crop_seed_depends_on_each_part():
    base = crop_seed(1, 0, 5)
    assert base == crop_seed(1, 0, 5)
    assert len({base, crop_seed(2, 0, 5), crop_seed(1, 1, 5), crop_seed(1, 0, 6)}) == 4
    assert 0 <= base < 2**63
