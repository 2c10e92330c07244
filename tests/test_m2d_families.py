"""Parity of M2DEncoder with the official M2D code for every M2D family, through the fixture
tests/fixtures/m2d_families (tiny random-weight models saved and run by the official code; see its
README): 1001-frame units, M2D-AS at 32 kHz, M2D-S (80x2 patches), M2D-X, M2D-CLAP (full and
encoder-only files) and the official runtime's ``dur_frames`` (resampled and trimmed ``pos_embed``)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FIXTURES
from lightning_modules.encoders import M2DEncoder
from lightning_modules.encoders.checkpoints import CheckpointKeyError
from lightning_modules.encoders.m2d import NON_ENCODER_PREFIXES, resize_pos_embed
from _model_configs import build_model

FIXTURE = FIXTURES / "m2d_families"
CONFIG = json.loads((FIXTURE / "config.json").read_text())
CASES = CONFIG["cases"]
ATOL = 1e-5  # activations / embeddings, as tests/test_m2d_parity.py
LOGMEL_ATOL = 1e-5
PARAMS = [(c, i) for c, e in CASES.items() for i in e["inputs"]]


@pytest.fixture(scope="module")
def inputs() -> dict[str, dict[str, torch.Tensor]]:
    return torch.load(FIXTURE / "inputs.pt", weights_only=True)


def load(case: str, **kw) -> M2DEncoder:
    e = CASES[case]
    return M2DEncoder.from_checkpoint(
        FIXTURE / e["checkpoint"], num_heads=e["num_heads"], dur_frames=e["dur_frames"], **kw
    ).eval()


@pytest.fixture(scope="module")
def models() -> dict[str, M2DEncoder]:
    return {c: load(c) for c in CASES}


def run_hooked(model: M2DEncoder, wav: torch.Tensor):
    acts = {s: [] for s in model.neuron_sites}
    pos = {s: [] for s in model.neuron_sites}

    def hook(m, i, o, s):
        acts[s].append(o.detach().clone())
        pos[s].append(model.positions(s, o))

    hs = [
        model.get_submodule(s).register_forward_hook(lambda m, i, o, s=s: hook(m, i, o, s)) for s in model.neuron_sites
    ]
    try:
        with torch.no_grad():
            frames = model.encode_frames(wav)
            for v in (*acts.values(), *pos.values()):
                v.clear()
            clip = model(wav)
    finally:
        for h in hs:
            h.remove()
    return frames, clip, acts, pos


@pytest.mark.parametrize("case,inp", PARAMS, ids=[f"{c}-{i}" for c, i in PARAMS])
def test_parity_with_official_outputs(models, inputs, case, inp):
    e, model = CASES[case], models[case]
    wav = inputs[str(e["sample_rate"])][inp]
    ref = torch.load(FIXTURE / f"outputs_{case}_{inp}.pt", weights_only=True)
    assert model.width == e["embed_dim"] and model.depth == e["depth"] and model.sample_rate == e["sample_rate"]
    assert torch.allclose(model.norm_stats, torch.tensor(e["norm_stats"]))
    with torch.no_grad():
        torch.testing.assert_close(model.frontend(wav), ref["logmel"], atol=LOGMEL_ATOL, rtol=0)
        torch.testing.assert_close(model.log_mel(wav), ref["lms_norm"], atol=LOGMEL_ATOL, rtol=0)
    frames, clip, acts, pos = run_hooked(model, wav)
    assert frames.shape == ref["encode"].shape
    torch.testing.assert_close(frames, ref["encode"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(clip, ref["scene"], atol=ATOL, rtol=ATOL)
    for site in model.neuron_sites:
        want = ref["mlp_act"][site]
        assert len(acts[site]) == len(want), f"{site}: {len(acts[site])} calls, official {len(want)}"
        for got, w, p in zip(acts[site], want, pos[site]):
            assert got.shape == w.shape
            torch.testing.assert_close(got, w, atol=ATOL, rtol=ATOL)
            assert p.valid.shape == got.shape[:2] and p.valid.all()
            assert p.special.nonzero().flatten().tolist() == [0]


def test_family_geometry():
    s, unit, as32k = load("s"), load("unit1001"), load("as32k")
    # M2D-S: 80x2 patches -> one band, 2 frames per token, 64-d frame embeddings
    assert s.patch == (80, 2) and s.n_bands == 1 and s.frames_per_position == 2 and s.embed_dim == s.width
    seen = []
    h = s.get_submodule(s.neuron_sites[0]).register_forward_hook(lambda m, i, o: seen.append(s.positions("", o)))
    with torch.no_grad():
        s(torch.randn(1, 16000))  # 101 frames -> padded to 102 -> 51 tokens
    h.remove()
    p = seen[0]
    assert p.band[1:].unique().tolist() == [0] and p.frame[0, 1:].tolist() == list(range(0, 102, 2))
    # 1001-frame units: 62 time patches per chunk, the second chunk starts at frame 1001
    assert unit.input_frames == 1001 and unit.max_time_patches == 62
    # M2D-AS p32k: the 32 kHz front end (hop 320 samples = 10 ms)
    assert as32k.sample_rate == 32000 and as32k.frontend.hop_length == 320 and as32k.frame_seconds == 0.01


def test_dur_frames_resizes_the_checkpoint_pos_embed():
    base = load("x")
    ck = FIXTURE / CASES["x"]["checkpoint"]
    longer = M2DEncoder.from_checkpoint(ck, num_heads=4, dur_frames=1001)
    shorter = M2DEncoder.from_checkpoint(ck, num_heads=4, dur_frames=400)
    grid = base.pos_embed[0, 1:].reshape(5, 38, -1)
    assert longer.pos_embed.shape[1] == 1 + 5 * 62 and shorter.pos_embed.shape[1] == 1 + 5 * 25
    assert torch.equal(shorter.pos_embed[0, 1:].reshape(5, 25, -1), grid[:, :25])
    assert torch.equal(longer.pos_embed[0, 0], base.pos_embed[0, 0])
    assert torch.equal(resize_pos_embed(base.pos_embed.data, 5, 62), longer.pos_embed.data)
    assert torch.equal(resize_pos_embed(base.pos_embed.data, 5, 38), base.pos_embed.data)  # same size: unchanged
    # along time only: a row that is constant in time stays constant
    flat = torch.cat([base.pos_embed.data[:, :1], grid[:, :1].expand(5, 38, -1).reshape(1, 190, -1)], 1)
    torch.testing.assert_close(resize_pos_embed(flat, 5, 62)[0, 1:].reshape(5, 62, -1), grid[:, :1].expand(5, 62, -1))
    with pytest.raises(ValueError, match="needs a checkpoint"):
        M2DEncoder(width=64, depth=1, num_heads=4, dur_frames=400)


def test_clap_heads_dropped_by_prefix_and_unknown_keys_still_refused(tmp_path):
    e = CASES["clap"]
    full, enc = (
        load("clap"),
        M2DEncoder.from_checkpoint(FIXTURE / f"{e['run']}_enconly" / "checkpoint-0.pth", num_heads=4),
    )
    assert {k.split(".")[0] for k in e["enconly_keys"]} >= {"audio_proj", "text_proj"}
    for k, v in full.state_dict().items():
        assert torch.equal(v, enc.state_dict()[k]), k
    heads = {k for k in e["checkpoint_keys"] if k.startswith(NON_ENCODER_PREFIXES)}
    assert {"logit_scale", "audio_proj.0.weight", "text_proj.weight"} <= heads
    assert not any(k.startswith(NON_ENCODER_PREFIXES) for k in full.state_dict())
    sd = torch.load(FIXTURE / f"{e['run']}_enconly" / "checkpoint-0.pth", weights_only=True)
    run = tmp_path / e["run"]
    run.mkdir()
    torch.save(dict(sd, **{"text_encoder.embeddings.weight": torch.zeros(2)}), run / "ti.pth")  # "TI" files
    M2DEncoder.from_checkpoint(run / "ti.pth", num_heads=4)
    torch.save(dict(sd, **{"audio_head.weight": torch.zeros(2)}), run / "bad.pth")
    with pytest.raises(CheckpointKeyError, match="audio_head.weight"):
        M2DEncoder.from_checkpoint(run / "bad.pth", num_heads=4)


def test_x_as_s_offline_predictor_is_not_an_encoder_key():
    for case in ("x", "as32k", "s"):
        keys = CASES[case]["checkpoint_keys"]
        assert any(k.startswith("offline_predictor.") for k in keys)
        assert not any(k.startswith("offline_predictor.") for k in load(case).state_dict())


@pytest.mark.parametrize(
    "config,case,name",
    [
        ("m2d_as_p32k.yaml", "as32k", "m2d_as"),
        ("m2d_s.yaml", "s", "m2d_s"),
        ("m2d_x.yaml", "x", "m2d_x"),
        ("m2d_clap.yaml", "clap", "m2d_clap"),
    ],
)
def test_family_configs_instantiate_with_the_fixture_checkpoints(config, case, name):
    e = CASES[case]
    enc = build_model(
        config,
        f"--model.init_args.encoder.init_args.checkpoint={FIXTURE / e['checkpoint']}",
        f"--model.init_args.encoder.init_args.num_heads={e['num_heads']}",
    ).encoder
    assert isinstance(enc, M2DEncoder) and enc.name == name and enc.sample_rate == e["sample_rate"]
    assert enc.width == e["embed_dim"] and enc.depth == e["depth"]
