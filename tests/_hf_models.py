"""Tiny random ``transformers`` audio models of every family HFAudioEncoder supports, written to a folder
with ``save_pretrained`` (model + feature extractor) so that tests load them like a user's local model.

Sizes, layer counts and front-end settings differ from every published default (and between families)
so that nothing can pass by assuming a default. ``transformers`` must be installed (the ``hf`` extra).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

#: The tiny models: one per family, CLAP twice (audio tower alone; two towers with feature fusion).
FAMILIES = ("whisper", "wav2vec2", "hubert", "wavlm", "ast", "clap", "clap_fused")


def _whisper():
    cfg = transformers.WhisperConfig(
        d_model=48,
        encoder_layers=3,
        encoder_attention_heads=4,
        encoder_ffn_dim=72,
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=32,
        num_mel_bins=40,
        max_source_positions=50,
        max_target_positions=16,
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    fe = transformers.WhisperFeatureExtractor(feature_size=40, chunk_length=1)  # 1 s chunks = 100 frames = 50 tokens
    return transformers.WhisperForConditionalGeneration(cfg), fe


def _w2v_kwargs(layers: int, hidden: int, inter: int) -> dict:
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=inter,
        conv_dim=(16, 24, 24),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 4),
        conv_bias=True,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4,
        vocab_size=12,
        mask_time_prob=0.0,
    )


def _wav2vec2():  # group-norm feature encoder, no attention mask (like wav2vec2-base)
    cfg = transformers.Wav2Vec2Config(feat_extract_norm="group", **_w2v_kwargs(2, 40, 56))
    fe = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True)
    return transformers.Wav2Vec2ForCTC(cfg), fe


def _hubert():  # layer-norm feature encoder, stable layer norm, attention mask (like hubert-large)
    cfg = transformers.HubertConfig(feat_extract_norm="layer", do_stable_layer_norm=True, **_w2v_kwargs(3, 36, 44))
    fe = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True)
    return transformers.HubertModel(cfg), fe


def _wavlm():
    cfg = transformers.WavLMConfig(
        feat_extract_norm="group", num_buckets=16, max_bucket_distance=40, **_w2v_kwargs(2, 32, 52)
    )
    fe = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=False)
    return transformers.WavLMModel(cfg), fe


def _ast():
    cfg = transformers.ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        num_mel_bins=36,
        max_length=60,
        patch_size=12,
        frequency_stride=8,
        time_stride=6,
        num_labels=3,
    )
    fe = transformers.ASTFeatureExtractor(num_mel_bins=36, max_length=60, mean=-5.0, std=3.0)
    return transformers.ASTForAudioClassification(cfg), fe


def _clap_audio(fusion: bool) -> dict:
    return dict(
        spec_size=64,
        num_mel_bins=16,
        window_size=4,
        patch_embeds_hidden_size=12,
        depths=[1, 2],
        num_attention_heads=[2, 4],
        hidden_size=24,
        projection_dim=8,
        enable_fusion=fusion,
        mlp_ratio=3.0,
    )


def _clap():  # the audio tower alone with its projection head
    cfg = transformers.ClapAudioConfig(**_clap_audio(False))
    fe = transformers.ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=48000,
        hop_length=480,
        max_length_s=2,
        fft_window_size=1024,
        truncation="rand_trunc",
        padding="repeatpad",
    )
    return transformers.ClapAudioModelWithProjection(cfg), fe


def _clap_fused():  # both towers, feature fusion (like clap-htsat-fused)
    cfg = transformers.ClapConfig(
        audio_config=_clap_audio(True),
        projection_dim=8,
        text_config=dict(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20, vocab_size=40
        ),
    )
    fe = transformers.ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=48000,
        hop_length=480,
        max_length_s=2,
        fft_window_size=1024,
        truncation="fusion",
        padding="repeatpad",
    )
    return transformers.ClapModel(cfg), fe


_BUILD = {
    "whisper": _whisper,
    "wav2vec2": _wav2vec2,
    "hubert": _hubert,
    "wavlm": _wavlm,
    "ast": _ast,
    "clap": _clap,
    "clap_fused": _clap_fused,
}


def save_tiny(family: str, folder: Path, seed: int = 0) -> Path:
    """Build the tiny random ``family`` model (seeded; biases and norms perturbed so that no activation
    is trivially zero) and save model + feature extractor into ``folder``; returns ``folder``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, fe = _BUILD[family]()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("bias"):
                    p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(str(folder))
    fe.save_pretrained(str(folder))
    return Path(folder)
