"""Parity of M2DEncoder with the official M2D code, through the fixture tests/fixtures/m2d_reference
(outputs produced by the official runtime on a tiny random-weight model; see its README)."""

from __future__ import annotations


import pytest
import torch

from conftest import M2D_REFERENCE
from lightning_modules.encoders import M2DEncoder

FIXTURE = M2D_REFERENCE
RUN = "m2d_vit_tiny-80x608p16x16p16k-261125-dd1bs512-e300"
CHECKPOINTS = {"full": f"{RUN}/checkpoint-0.pth", "enconly": f"{RUN}_enconly/checkpoint-0.pth"}
INPUTS = ["wav_2x2s", "wav_1x6p5s"]
ATOL = 1e-5  # activations / embeddings (README: atol=1e-5, rtol=1e-5 on CPU float32)
LOGMEL_ATOL = 1e-5  # conv1d-kernel STFT: bit-identical on the producing machine, ~1e-6 elsewhere


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE / "inputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def outputs() -> dict[str, dict]:
    return {k: torch.load(FIXTURE / f"outputs_{k}.pt", weights_only=True) for k in INPUTS}


@pytest.fixture(scope="module")
def models() -> dict[str, M2DEncoder]:
    return {k: M2DEncoder.from_checkpoint(FIXTURE / p, num_heads=4).eval() for k, p in CHECKPOINTS.items()}


def _run_with_hooks(model: M2DEncoder, wav: torch.Tensor):
    acts: dict[str, list[torch.Tensor]] = {s: [] for s in model.neuron_sites}
    positions: dict[str, list] = {s: [] for s in model.neuron_sites}
    handles = []
    for site in model.neuron_sites:

        def hook(mod, inp, out, site=site):
            acts[site].append(out.detach().clone())
            positions[site].append(model.positions(site, out))

        handles.append(model.get_submodule(site).register_forward_hook(hook))
    try:
        with torch.no_grad():
            frames = model.encode_frames(wav)
        for a in acts.values():
            a.clear()
        for p in positions.values():
            p.clear()
        with torch.no_grad():
            clip = model(wav)
    finally:
        for h in handles:
            h.remove()
    return frames, clip, acts, positions


@pytest.mark.parametrize("ckpt", list(CHECKPOINTS))
@pytest.mark.parametrize("inp", INPUTS)
def test_parity_with_official_outputs(models, inputs, outputs, ckpt, inp):
    model, wav, ref = models[ckpt], inputs[inp], outputs[inp]
    assert model.width == 64 and model.depth == 2 and model.embed_dim == 320 and model.sample_rate == 16000
    # front end
    with torch.no_grad():
        logmel = model.frontend(wav)
        lms = model.log_mel(wav)
    assert logmel.shape == ref["logmel"].shape
    torch.testing.assert_close(logmel, ref["logmel"], atol=LOGMEL_ATOL, rtol=0)
    torch.testing.assert_close(lms, ref["lms_norm"], atol=LOGMEL_ATOL, rtol=0)
    # encoder
    frames, clip, acts, positions = _run_with_hooks(model, wav)
    assert frames.shape == ref["encode"].shape
    torch.testing.assert_close(frames, ref["encode"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(clip, ref["scene"], atol=ATOL, rtol=ATOL)
    for site in model.neuron_sites:
        ref_chunks = ref["mlp_act"][site]
        assert len(acts[site]) == len(ref_chunks), f"{site}: hook fired {len(acts[site])} times, expected one per chunk"
        for got, want, pos in zip(acts[site], ref_chunks, positions[site]):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=ATOL, rtol=ATOL)
            assert pos.valid.shape == got.shape[:2] and pos.valid.all()  # no lengths: every token holds input
            assert pos.special.nonzero().flatten().tolist() == [0]


def test_full_and_encoder_only_load_identically(models, inputs):
    full, enc = models["full"].state_dict(), models["enconly"].state_dict()
    assert full.keys() == enc.keys()
    for k in full:
        assert torch.equal(full[k], enc[k]), k
    with torch.no_grad():
        assert torch.equal(models["full"](inputs["wav_1x6p5s"]), models["enconly"](inputs["wav_1x6p5s"]))


def test_stored_norm_stats_are_used(models):
    expected = torch.tensor([-7.261779308319092, 4.3511505126953125])
    for m in models.values():
        assert torch.equal(m.norm_stats, expected)


def test_target_encoder_is_never_loaded(models):
    """The EMA target encoder is independently random in the fixture: our blocks must be `blocks.*`."""
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        sd = torch.load(FIXTURE / CHECKPOINTS["full"], weights_only=True)["model"]
    own = models["full"].state_dict()
    for k in own:
        if k.startswith("blocks."):
            assert torch.equal(own[k], sd[k])
            assert not torch.equal(own[k], sd["target_" + k]), k
    torch.testing.assert_close(own["norm.weight"], sd["norm.weight"], atol=0, rtol=0)
    assert not torch.equal(own["norm.weight"], sd["target_norm.weight"])
