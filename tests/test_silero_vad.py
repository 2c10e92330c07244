"""SileroVADEncoder: parity with the silero-vad package's own models through the reference fixture
``tests/fixtures/silero_vad`` (its tinygrad model with the wheel's safetensors weights -- the weights we
load -- and its TorchScript model, with that model's own weights), weight checks, bookkeeping, counts
against brute force and a run through the statistics callback."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from _encoder_checks import counts_match_brute_force, stats_callback_matches_brute_force, tiny_batch
from conftest import FIXTURES
from lightning_modules.encoders import AudioEncoder, SileroVADEncoder, site_view
from lightning_modules.encoders import package_assets
from lightning_modules.encoders import silero_vad as sv
from lightning_modules.encoders.package_assets import package_dir

REF = FIXTURES / "silero_vad"
SV_DIR = package_dir("silero_vad")
needs_weights = pytest.mark.skipif(
    SV_DIR is None or not (SV_DIR / sv.WEIGHTS).is_file(),
    reason="silero-vad not installed (pip install --no-deps silero-vad==6.2.3)",
)
#: TorchScript parameter name -> ours (same architecture, the module names of the TorchScript file)
JIT_NAMES = {
    "stft.forward_basis_buffer": "stft.weight",
    **{f"encoder.{i}.reparam_conv.{p}": f"encoder.{i}.conv.{p}" for i in range(4) for p in ("weight", "bias")},
    **{f"decoder.rnn.{p}": f"decoder.rnn.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    **{f"decoder.decoder.2.{p}": f"decoder.conv.{p}" for p in ("weight", "bias")},
}


@pytest.fixture(scope="module")
def silero() -> SileroVADEncoder:
    return SileroVADEncoder()


@needs_weights
def test_matches_the_packages_tinygrad_model_with_the_wheels_weights(silero):
    ref = load_file(str(REF / "reference.safetensors"))
    with torch.no_grad():
        got = silero.speech_probability(ref["audio"])
    assert got.shape == ref["prob"].shape == (2, 3)
    assert (got - ref["prob"]).abs().max() <= 1e-4


def test_architecture_matches_the_torchscript_model_with_its_weights():
    """Our network with the TorchScript model's weights reproduces its probabilities and hidden states
    over 16 chunks (state carried from chunk to chunk, last chunk zero-padded)."""
    ref = load_file(str(REF / "jit_reference.safetensors"))
    enc = SileroVADEncoder(pretrained=False)
    enc.load_state_dict({JIT_NAMES[k[len("weight.") :]]: v for k, v in ref.items() if k.startswith("weight.")})
    with torch.no_grad():
        _, act, prob = enc._run(ref["audio"], None)
    assert prob.shape == (2, 16)
    assert (prob - ref["prob"]).abs().max() <= 1e-4
    assert (act - ref["hidden"].relu()).abs().max() <= 1e-4
    assert prob[0].mean() > 2 * prob[1].mean()  # the voiced clip scores above the noise


def test_protocol_facts():
    enc = SileroVADEncoder(pretrained=False)
    assert isinstance(enc, AudioEncoder) and enc.sample_rate == 16000 and enc.embed_dim == 128
    assert enc.neuron_sites == ["encoder.0.relu", "encoder.1.relu", "encoder.2.relu", "encoder.3.relu", "decoder.relu"]
    assert enc.site_neurons == [128, 64, 64, 128, 128] and sum(enc.site_neurons) == 512
    assert all(isinstance(enc.get_submodule(s), torch.nn.ReLU) for s in enc.neuron_sites)
    assert enc.frame_seconds == 0.032 and not enc.training


def test_chunking_covers_the_clip_with_context():
    audio = torch.arange(1, 1201, dtype=torch.float32)[None]
    chunks = sv.chunk_audio(audio)
    assert chunks.shape == (1, 3, 576)
    for i in range(3):
        idx = torch.arange(i * 512 - 64, (i + 1) * 512)
        inside = (idx >= 0) & (idx < 1200)
        assert torch.equal(chunks[0, i], torch.where(inside, audio[0, idx.clamp(0, 1199)], torch.zeros(())))
    assert sv.chunk_validity(torch.tensor([1200, 512, 0]), 3, 3).tolist() == [
        [True, True, True],
        [True, False, False],
        [False, False, False],
    ]


def test_positions_rows_are_chunks_then_clips():
    enc = SileroVADEncoder(pretrained=False)
    audio, lengths, _ = tiny_batch(1600, [1600, 500])
    rec = {}

    def hook(site):
        def keep(m, i, out) -> None:  # a forward hook returning a value would replace the output
            rec.setdefault(site, (site_view(out, 1).shape, enc.positions(site, out)))

        return keep

    hs = [enc.get_submodule(s).register_forward_hook(hook(s)) for s in enc.neuron_sites]
    with torch.no_grad():
        emb = enc(audio, lengths)
    for h in hs:
        h.remove()
    shape, pos = rec["encoder.0.relu"]
    assert shape == (8, 4, 128) and pos.clip.tolist() == [0] * 4 + [1] * 4
    assert pos.valid[:, 0].tolist() == [True] * 4 + [True, False, False, False] and pos.valid.shape == (8, 4)
    shape, pos = rec["decoder.relu"]
    assert shape == (2, 4, 128) and pos.valid.tolist() == [[True] * 4, [True, False, False, False]]
    assert pos.frame.tolist() == [[0, 1, 2, 3]] * 2
    # the embedding averages ReLU(h) over valid chunks only: clip 1 alone gives the same embedding
    with torch.no_grad():
        alone = enc(audio[1:, :512])
    torch.testing.assert_close(emb[1], alone[0], atol=1e-6, rtol=0)


def test_weight_file_problems_are_named(tmp_path):
    enc = SileroVADEncoder(pretrained=False)
    state = {sv._KEY_MAP[k]: v for k, v in enc.state_dict().items()}
    del state["conv2.bias"]
    state["extra"] = torch.zeros(1)
    state["final_conv.bias"] = torch.zeros(2)
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(KeyError) as err:
        enc.load_silero(path)
    for part in (
        str(path),
        "missing keys ['conv2.bias']",
        "unexpected keys ['extra']",
        "final_conv.bias: file (2,), model (1,)",
    ):
        assert part in str(err.value)
    (tmp_path / "text.safetensors").write_text("not a safetensors file")
    with pytest.raises(ValueError, match="text.safetensors"):
        enc.load_silero(tmp_path / "text.safetensors")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(package_assets.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps silero-vad==6\.2\.3"):
        SileroVADEncoder()


@needs_weights
def test_counts_match_brute_force(silero):
    audio, lengths, labels = tiny_batch(2000, [2000, 600, 1500])
    got = counts_match_brute_force(silero, audio, lengths, labels)
    assert int(got["n_tokens_site"][4, 1]) == 2  # clip 1: 600 samples = 2 chunks at the LSTM site


@needs_weights
def test_runs_through_the_stats_callback(silero, tmp_path):
    audio, lengths, labels = tiny_batch(2000, [2000, 600, 1500])
    stats = stats_callback_matches_brute_force(silero, audio, lengths, labels, tmp_path)
    assert stats["count"].shape == (5, 128, 3)
