"""HFAudioEncoder on tiny random ``transformers`` models of every family (tests/_hf_models.py), saved to a
temporary folder and loaded offline like a user's local model.

The reference counts are a brute force that does not use the encoder's own bookkeeping: every clip alone,
cut to its valid samples (no batch padding at all), chunked at the model's input length, through the
loaded backbone with plain forward hooks; which positions hold audio comes from the model's and feature
extractor's own outputs (Whisper: the extractor's frame mask and the encoder's output-length formula;
wav2vec 2.0 family: every frame of the unpadded clip; AST: fbank rows that are not padding; CLAP: the
model's own ``reshape_mel2img`` applied to a frame-index ramp).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _hf_models import FAMILIES, save_tiny, transformers
from lightning_modules.encoders import HFAudioEncoder, Positions
from lightning_modules.encoders import hf as hf_module
from _counting import brute_force, run_core
from _model_configs import build_model

SECONDS = {16000: 2.3, 48000: 2.6}  # Whisper: 3 chunks of 1 s, AST: 4 of 0.6 s, CLAP: 2 of 2 s
FRACTIONS = (1.0, 0.45, 0.52, 0.87)  # valid share of each clip (the rest is zero padding)
LABELS = torch.tensor([0, 1, 2, 0])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_models")
    return {f: save_tiny(f, root / f, seed=i) for i, f in enumerate(FAMILIES)}


@pytest.fixture(scope="module")
def encoders(tiny) -> dict[str, HFAudioEncoder]:
    return {f: HFAudioEncoder(str(p)) for f, p in tiny.items()}


def clips(sample_rate: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """audio ``[4, S]`` (zero past each clip's length) and lengths ``[4]``."""
    g = torch.Generator().manual_seed(seed)
    s = int(SECONDS[sample_rate] * sample_rate)
    t = torch.arange(s) / sample_rate
    audio = 0.1 * torch.randn(4, s, generator=g) + 0.3 * torch.sin(2 * math.pi * 440.0 * t)
    lengths = torch.tensor([int(f * s) for f in FRACTIONS])
    audio[torch.arange(s)[None] >= lengths[:, None]] = 0.0
    return audio, lengths


# ------------------------------------------------------------------------------------- brute force
def _hooked(backbone, sites: list[str], run) -> list[torch.Tensor]:
    """Run ``run()`` with plain forward hooks on ``sites`` (paths inside the backbone)."""
    acts: list = [None] * len(sites)
    hs = [
        backbone.get_submodule(s).register_forward_hook(lambda m, i, o, l=l: acts.__setitem__(l, o.detach().clone()))
        for l, s in enumerate(sites)
    ]
    try:
        with torch.inference_mode():
            run()
    finally:
        for h in hs:
            h.remove()
    return acts


def _clap_first_frames(backbone, n_frames: int, n_mels: int, resolutions, ps: tuple[int, int]) -> list[torch.Tensor]:
    """First input frame of every token of every stage, from the model's own spectrogram-to-image fold."""
    ramp = torch.arange(n_frames, dtype=torch.float64)[None, None, :, None].expand(1, 1, n_frames, n_mels)
    img = backbone.audio_encoder.reshape_mel2img(ramp)[0, 0]  # [rows, cols] of frame indices
    out = []
    for s, (h, w) in enumerate(resolutions):
        step = 2**s
        v = img[:: step * ps[0], :: step * ps[1]][:h, :w]
        out.append(v.reshape(-1))
    return out


def own_record(enc: HFAudioEncoder, fe, audio: torch.Tensor, lengths: torch.Tensor) -> list:
    """``(site index, activation [1, P, N], Positions)`` of every clip run alone (see module docstring)."""
    bb, kind = enc.model, enc.kind
    sites = [s[len("model.") :] for s in enc.neuron_sites]
    sr = int(fe.sampling_rate)
    chunk = {
        "whisper": lambda: fe.n_samples,
        "ast": lambda: fe.max_length * 160,
        "clap": lambda: fe.nb_max_samples,
    }.get(kind, lambda: None)()
    record = []
    for b in range(audio.shape[0]):
        x = audio[b, : int(lengths[b])].double().numpy()
        for start in range(0, len(x), chunk or len(x)):
            seg = x[start : start + chunk] if chunk else x
            clip = torch.tensor([b])
            if kind == "whisper":
                f = fe([seg], sampling_rate=sr, return_attention_mask=True, return_tensors="pt")
                n_tok = int(bb._get_feat_extract_output_lengths(f["attention_mask"].sum(1))[0])
                acts = _hooked(bb, sites, lambda: bb(f["input_features"].float()))
                p = acts[0].shape[1]
                grids = [(torch.arange(p)[None] < n_tok, torch.zeros(p, dtype=torch.bool))] * len(sites)
            elif kind in ("wav2vec2", "hubert", "wavlm"):
                f = fe([seg], sampling_rate=sr, return_tensors="pt")
                acts = _hooked(bb, sites, lambda: bb(f["input_values"].float()))
                p = acts[0].shape[1]
                grids = [(torch.ones(1, p, dtype=torch.bool), torch.zeros(p, dtype=torch.bool))] * len(sites)
            elif kind == "ast":
                f = fe([seg], sampling_rate=sr, return_tensors="pt")
                v = f["input_values"][0]  # [frames, mels]; padding rows hold the normalised zero
                pad = torch.full_like(v[0], (0.0 - fe.mean) / (fe.std * 2))
                n_frames = int((v != pad).any(1).sum())
                acts = _hooked(bb, sites, lambda: bb(f["input_values"]))
                fdim, tdim = bb.embeddings.get_shape(bb.config)
                cols = torch.arange(tdim) * bb.config.time_stride < n_frames
                valid = torch.cat([torch.tensor([True, True]), cols.repeat(fdim)])[None]
                special = torch.zeros(valid.shape[1], dtype=torch.bool)
                special[:2] = True
                grids = [(valid, special)] * len(sites)
            else:  # clap
                f = fe([seg], sampling_rate=sr, return_tensors="pt")
                x_in = f["input_features"].float()
                if not bb.config.enable_fusion:
                    x_in = x_in[:, :1]
                acts = _hooked(bb, sites, lambda: bb(x_in, is_longer=torch.zeros(1, 1, dtype=torch.bool)))
                enc_ = bb.audio_encoder
                n_frames = x_in.shape[2]
                first = _clap_first_frames(bb, n_frames, x_in.shape[3], enc_.input_resolutions, enc_.patch_stride)
                n_valid = math.ceil(len(seg) / fe.hop_length)
                assert all((v - n_valid).abs().min() > 1e-3 for v in first), "ambiguous reference: change lengths"
                stage = [s for s, d in enumerate(bb.config.depths) for _ in range(d)]
                grids = [((first[s] < n_valid)[None], torch.zeros(first[s].numel(), dtype=torch.bool)) for s in stage]
            for l, (a, (valid, special)) in enumerate(zip(acts, grids)):
                assert a.shape[1] == valid.shape[1], (kind, l, a.shape, valid.shape)
                record.append((l, a, Positions(clip=clip, valid=valid, special=special)))
    return record


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("family", FAMILIES)
def test_loads_offline_and_declares_the_protocol(encoders, tiny, family):
    enc = encoders[family]
    cfg = transformers.AutoConfig.from_pretrained(str(tiny[family]), local_files_only=True)
    assert enc.kind == hf_module.MODEL_TYPES[cfg.model_type]
    fe = transformers.AutoFeatureExtractor.from_pretrained(str(tiny[family]), local_files_only=True)
    assert enc.sample_rate == fe.sampling_rate
    assert len(enc.neuron_sites) == len(enc.site_neurons) and enc.neuron_sites
    audio, lengths = clips(enc.sample_rate)
    widths: dict[str, int] = {}
    hs = [
        enc.get_submodule(s).register_forward_hook(lambda m, i, o, s=s: widths.__setitem__(s, o.shape[-1]))
        for s in enc.neuron_sites
    ]
    with torch.inference_mode():
        emb = enc(audio[:2], lengths[:2])
    for h in hs:
        h.remove()
    assert [widths[s] for s in enc.neuron_sites] == enc.site_neurons
    assert emb.shape == (2, enc.embed_dim) and torch.isfinite(emb).all()
    assert enc.name == tiny[family].name


@pytest.mark.slow
@pytest.mark.parametrize("family,tokens", [(f, "all") for f in FAMILIES] + [("ast", "patches")])
def test_counts_match_brute_force(encoders, tiny, family, tokens):
    """Counts of the production path (hooks, positions, batches of 3 padded clips) equal the brute force;
    ``patches`` only differs from ``all`` where there are special tokens (AST)."""
    enc = encoders[family]
    fe = transformers.AutoFeatureExtractor.from_pretrained(str(tiny[family]), local_files_only=True)
    audio, lengths = clips(enc.sample_rate)
    got = run_core(enc, audio, lengths, LABELS, 3, tokens, "clip", batch_size=3)
    ref = brute_force(own_record(enc, fe, audio, lengths), LABELS, 3, tokens, list(enc.site_neurons))
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(got[key], ref[key]), key
    assert torch.allclose(got["act_sum"], ref["act_sum"], rtol=1e-4, atol=1e-3)
    assert torch.allclose(got["rate_sum"], ref["rate_sum"], rtol=1e-6, atol=1e-9)
    assert int(got["n_tokens_site"].min()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_padding_is_never_counted(encoders, family):
    """A short clip alone, the same clip zero-padded (with its length) and the padded clip batched with a
    longer one give the same counts and the same embedding."""
    enc = encoders[family]
    audio, lengths = clips(enc.sample_rate, seed=3)
    n = int(lengths[1])
    alone = run_core(enc, audio[1:2, :n], torch.tensor([n]), torch.tensor([0]), 2, "all", "token", batch_size=1)
    padded = run_core(enc, audio[1:2], lengths[1:2], torch.tensor([0]), 2, "all", "token", batch_size=1)
    batched = run_core(enc, audio[:2], lengths[:2], torch.tensor([1, 0]), 2, "all", "token", batch_size=2)
    for other in (padded, batched):
        assert torch.equal(other["n_tokens_site"][:, 0], alone["n_tokens_site"][:, 0])
        assert torch.equal(other["count"][..., 0], alone["count"][..., 0])
    with torch.inference_mode():
        e_alone = enc(audio[1:2, :n])
        e_batched = enc(audio[:2], lengths[:2])[1:2]
    torch.testing.assert_close(e_batched, e_alone, atol=1e-4, rtol=1e-4)


def test_embedding_is_the_mean_of_the_chosen_hidden_state(tiny):
    """wav2vec 2.0 (one call, every frame valid) and AST (one chunk, patch tokens only)."""
    for family, layer in (("wav2vec2", 1), ("ast", -1)):
        enc = HFAudioEncoder(str(tiny[family]), embedding_layer=layer)
        fe = transformers.AutoFeatureExtractor.from_pretrained(str(tiny[family]), local_files_only=True)
        n = int(0.5 * enc.sample_rate)
        x = clips(enc.sample_rate)[0][:1, :n]
        f = fe([x[0].numpy()], sampling_rate=enc.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            hs = enc.model(
                **{k: v for k, v in f.items() if k != "attention_mask"}, output_hidden_states=True
            ).hidden_states
            got = enc(x)
        h = hs[layer]
        if family == "ast":
            fdim, tdim = enc.model.embeddings.get_shape(enc.model.config)
            n_frames = 1 + (n - 400) // 160
            cols = torch.arange(tdim) * enc.model.config.time_stride < n_frames
            h = h[:, 2:][:, cols.repeat(fdim)]
        torch.testing.assert_close(got, h.mean(1), atol=1e-5, rtol=1e-5)
        assert enc.embedding_layer == layer % (len(hs))


def test_positions_say_where_tokens_lie(encoders):
    ast, clap, whisper = encoders["ast"], encoders["clap"], encoders["whisper"]
    seen: dict[str, list] = {}

    def record(enc, audio):
        seen.clear()
        hs = [
            enc.get_submodule(s).register_forward_hook(
                lambda m, i, o, s=s: seen.setdefault(s, []).append(enc.positions(s, o))
            )
            for s in enc.neuron_sites
        ]
        with torch.inference_mode():
            enc(audio)
        for h in hs:
            h.remove()

    # AST: CLS + distillation without place, then frequency-major patches every time_stride frames, chunk offsets
    record(ast, torch.randn(1, int(1.0 * 16000)))  # 2 chunks of 60 frames
    cfg = ast.model.config
    fdim, tdim = ast.model.embeddings.get_shape(cfg)
    assert ast.n_bands == fdim and ast.frames_per_position == cfg.patch_size and ast.frame_seconds == 0.01
    for c, pos in enumerate(seen[ast.neuron_sites[0]]):
        assert pos.special[:2].all() and not pos.special[2:].any()
        assert (pos.band[:2] == -1).all() and pos.band[2:].tolist() == [f for f in range(fdim) for _ in range(tdim)]
        assert pos.frame[0, 2 : 2 + tdim].tolist() == [60 * c + cfg.time_stride * k for k in range(tdim)]
    # Whisper: 2 frames per token, second chunk starts at frame 100
    record(whisper, torch.randn(1, int(1.5 * 16000)))
    calls = seen[whisper.neuron_sites[0]]
    assert [p.frame[0, :3].tolist() for p in calls] == [[0, 2, 4], [100, 102, 104]] and calls[0].band is None
    assert int(calls[1].valid.sum()) == 25  # 0.5 s = 50 frames = 25 tokens
    # CLAP: the stage-1 token grid is half the stage-0 grid; bands in stage-0 units
    record(clap, torch.randn(1, 48000))
    p0, p1 = seen[clap.neuron_sites[0]][0], seen[clap.neuron_sites[1]][0]
    assert p0.valid.shape[1] == 4 * p1.valid.shape[1]
    assert set(p0.band.tolist()) == set(range(clap.n_bands)) and set(p1.band.tolist()) == set(range(0, clap.n_bands, 2))
    assert int(p0.frame.max()) < 201 and p0.valid.sum() < p0.valid.numel()  # 1 s of a 2 s chunk


def test_errors_name_the_problem(tiny, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="config.json"):
        HFAudioEncoder(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="model_type 'whisper'"):
        HFAudioEncoder(str(tiny["whisper"]), kind="ast")
    with pytest.raises(ValueError, match="embedding_layer=9"):
        HFAudioEncoder(str(tiny["wav2vec2"]), embedding_layer=9)
    # weights that do not belong to the model: transformers would initialise them at random
    bad = tmp_path / "bad"
    save_tiny("clap", bad)
    cfg = (bad / "config.json").read_text().replace("ClapAudioModelWithProjection", "ClapAudioModel")
    (bad / "config.json").write_text(cfg)
    with pytest.raises(ValueError, match="lack .* keys of the audio encoder"):
        HFAudioEncoder(str(bad))
    no_fe = tmp_path / "no_fe"
    save_tiny("ast", no_fe)
    (no_fe / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        HFAudioEncoder(str(no_fe))
    monkeypatch.setattr(hf_module, "transformers", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[hf\]"'):
        HFAudioEncoder(str(tiny["ast"]))


@pytest.mark.parametrize("family", ["whisper", "wav2vec2", "hubert", "wavlm", "ast", "clap"])
def test_model_configs_instantiate_with_a_local_folder(tiny, family):
    """configs/model/hf_<family>.yaml with its model_path pointed at the tiny folder of that family."""
    model = build_model(f"hf_{family}.yaml", f"--model.init_args.encoder.init_args.model_path={tiny[family]}")
    enc = model.encoder
    assert isinstance(enc, HFAudioEncoder) and enc.kind == family
    with torch.inference_mode():
        assert model(0.1 * torch.randn(1, enc.sample_rate // 2)).shape == (1, enc.embed_dim)


@pytest.mark.slow
def test_core_install_imports_without_transformers():
    """``pip install -e .`` without the extra: the package imports; the encoder says which extra to install."""
    # torchmetrics (imported by Lightning) imports transformers itself whenever it is installed: let it, then
    # hide transformers from everything imported afterwards, as in an install without the extra
    code = (
        "import sys, lightning.pytorch, torchmetrics; sys.modules['transformers'] = None\n"
        "from lightning_modules.encoders import HFAudioEncoder, M2DEncoder\n"
        "try:\n    HFAudioEncoder('anything')\nexcept ImportError as e:\n    print(e)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert r.returncode == 0, r.stderr
    assert 'pip install -e ".[hf]"' in r.stdout
