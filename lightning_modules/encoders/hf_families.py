"""The Hugging Face audio-model families behind :class:`~lightning_modules.encoders.hf.HFAudioEncoder`.

One class per family (:data:`FAMILIES`, keyed by ``kind``) says what differs between them: the neuron
sites and their widths, the fixed chunk length (if any), the feature extractor call, the hidden states,
and the token grids of a backbone call (``valid``, ``special``, ``frame``, ``band`` per position, from the
valid samples only; the rules are in the :mod:`~lightning_modules.encoders.hf` docstring, step 3). The
families read the backbone's config and modules; none imports ``transformers``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

#: ASTFeatureExtractor's numpy fbank (used whenever torchaudio is absent): window and hop in samples.
AST_WINDOW, AST_HOP = 400, 160


def conv_output_length(n: Tensor, kernel: int, stride: int, padding: int = 0) -> Tensor:
    """Output length of a 1-D convolution over ``n`` inputs: ``floor((n + 2p - k) / s) + 1`` (>= 0)."""
    return torch.clamp(torch.div(n + 2 * padding - kernel, stride, rounding_mode="floor") + 1, min=0)


def ceil_div(n: Tensor, d: int) -> Tensor:
    """``ceil(n / d)`` of a LongTensor."""
    return torch.div(n + d - 1, d, rounding_mode="floor")


# ---------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------
class _Family:
    """What differs between model families: backbone, sites, chunking, features and positions.

    Positions are built per *grid* (token layout); every site and every hidden state lives on one grid
    (:meth:`site_grid`, :meth:`hidden_grid`); all families but CLAP have one grid."""

    chunk_samples: Optional[int] = None  # fixed model input (samples), None = whole clip
    min_samples: int = 1  # shorter cut clips are zero-padded to this (one front-end frame)
    split_by_length: bool = False  # one call per distinct clip length (models without masks)
    frame_seconds: Optional[float] = None
    frames_per_position: int = 1
    n_bands: int = 0

    def __init__(self, backbone: nn.Module, config: Any, fe: Any) -> None:
        self.config, self.fe = config, fe
        self.sample_rate = int(fe.sampling_rate)

    def sites(self) -> list[str]:
        raise NotImplementedError

    def site_neurons(self) -> list[int]:
        raise NotImplementedError

    def n_hidden(self) -> int:
        """Entries of ``output_hidden_states`` (layers + 1)."""
        raise NotImplementedError

    def site_grid(self, index: int) -> int:
        return 0

    def hidden_grid(self, index: int) -> int:
        return 0

    def features(self, segments: list[np.ndarray]) -> dict[str, Tensor]:
        raise NotImplementedError

    def grids(self, lengths: Tensor, start: int, n_in: int) -> list[dict[str, Optional[Tensor]]]:
        """Per grid: ``valid`` ``[r, P]``, ``special`` ``[P]``, ``frame`` ``[r, P]``, ``band`` ``[P]`` or None,
        for cut clips of ``lengths`` samples starting at sample ``start`` of the clip, padded to ``n_in``."""
        raise NotImplementedError

    def hidden_states(self, backbone: nn.Module, inputs: dict[str, Tensor]) -> list[Tensor]:
        """Run the backbone; hidden states as ``[r, P, D]`` (all sites fire during this call)."""
        out = backbone(**inputs, output_hidden_states=True)
        return list(out.hidden_states)


class _Whisper(_Family):
    """Whisper encoder: log-mel padded to ``chunk_length`` s, two convs (stride 1, 2), sinusoidal positions."""

    def __init__(self, backbone, config, fe) -> None:
        super().__init__(backbone, config, fe)
        self.chunk_samples = int(fe.n_samples)
        self.hop = int(fe.hop_length)
        self.min_samples = 1
        self.frame_seconds = self.hop / self.sample_rate
        self.convs = [backbone.conv1, backbone.conv2]
        self.frames_per_position = int(backbone.conv1.stride[0] * backbone.conv2.stride[0])
        self.n_tokens = int(config.max_source_positions)
        if fe.nb_max_frames != self.n_tokens * self.frames_per_position:
            raise ValueError(
                f"Whisper feature extractor gives {fe.nb_max_frames} frames per chunk but the encoder "
                f"expects {self.n_tokens * self.frames_per_position} (max_source_positions "
                f"{self.n_tokens}); check preprocessor_config.json (chunk_length)"
            )

    def sites(self) -> list[str]:
        return [f"model.layers.{i}.activation_fn" for i in range(self.config.encoder_layers)]

    def site_neurons(self) -> list[int]:
        return [int(self.config.encoder_ffn_dim)] * int(self.config.encoder_layers)

    def n_hidden(self) -> int:
        return int(self.config.encoder_layers) + 1

    def features(self, segments):
        f = self.fe(segments, sampling_rate=self.sample_rate, return_tensors="pt")
        return {"input_features": f["input_features"]}

    def grids(self, lengths, start, n_in):
        n = ceil_div(lengths, self.hop)  # mel frames centred inside the clip (the extractor's attention mask)
        for c in self.convs:
            n = conv_output_length(n, c.kernel_size[0], c.stride[0], c.padding[0])
        k = torch.arange(self.n_tokens)
        first = start // self.hop + k * self.frames_per_position
        return [
            dict(
                valid=k[None, :] < n[:, None],
                special=torch.zeros(self.n_tokens, dtype=torch.bool),
                frame=first.expand(len(lengths), -1),
                band=None,
            )
        ]


class _Wav2Vec2(_Family):
    """wav2vec 2.0 / HuBERT / WavLM: conv feature encoder on the raw waveform, then a transformer."""

    def __init__(self, backbone, config, fe) -> None:
        super().__init__(backbone, config, fe)
        self.kernels = [int(k) for k in config.conv_kernel]
        self.strides = [int(s) for s in config.conv_stride]
        rf = 1
        for k, s in zip(reversed(self.kernels), reversed(self.strides)):
            rf = (rf - 1) * s + k
        self.min_samples = rf
        self.frame_seconds = math.prod(self.strides) / self.sample_rate
        self.use_mask = bool(getattr(fe, "return_attention_mask", False))
        self.split_by_length = not self.use_mask

    def sites(self) -> list[str]:
        return [
            f"model.encoder.layers.{i}.feed_forward.intermediate_act_fn" for i in range(self.config.num_hidden_layers)
        ]

    def site_neurons(self) -> list[int]:
        return [int(self.config.intermediate_size)] * int(self.config.num_hidden_layers)

    def n_hidden(self) -> int:
        return int(self.config.num_hidden_layers) + 1

    def out_length(self, n: Tensor) -> Tensor:
        for k, s in zip(self.kernels, self.strides):
            n = conv_output_length(n, k, s)
        return n

    def features(self, segments):
        f = self.fe(
            segments, sampling_rate=self.sample_rate, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        inputs = {"input_values": f["input_values"]}
        if self.use_mask:
            inputs["attention_mask"] = f["attention_mask"]
        return inputs

    def grids(self, lengths, start, n_in):
        p = int(self.out_length(torch.tensor(n_in)))
        k = torch.arange(p)
        return [
            dict(
                valid=k[None, :] < self.out_length(lengths)[:, None],
                special=torch.zeros(p, dtype=torch.bool),
                frame=k.expand(len(lengths), -1),
                band=None,
            )
        ]


class _AST(_Family):
    """Audio Spectrogram Transformer: Kaldi-style fbank padded to ``max_length`` frames, overlapping 2-D patches,
    CLS + distillation tokens first."""

    n_prefix = 2

    def __init__(self, backbone, config, fe) -> None:
        super().__init__(backbone, config, fe)
        self.max_frames = int(fe.max_length)
        if self.max_frames != int(config.max_length):
            raise ValueError(
                f"AST feature extractor pads to {self.max_frames} frames but the model expects "
                f"max_length={config.max_length}"
            )
        self.chunk_samples = AST_HOP * self.max_frames
        self.min_samples = AST_WINDOW
        self.frame_seconds = AST_HOP / self.sample_rate
        self.patch, self.tstride = int(config.patch_size), int(config.time_stride)
        self.freq_patches, self.time_patches = backbone.embeddings.get_shape(config)
        self.frames_per_position, self.n_bands = self.patch, self.freq_patches

    def sites(self) -> list[str]:
        return [f"model.layers.{i}.mlp.activation_fn" for i in range(self.config.num_hidden_layers)]

    def site_neurons(self) -> list[int]:
        return [int(self.config.intermediate_size)] * int(self.config.num_hidden_layers)

    def n_hidden(self) -> int:
        return int(self.config.num_hidden_layers) + 1

    def features(self, segments):
        f = self.fe(segments, sampling_rate=self.sample_rate, return_tensors="pt")
        return {"input_values": f["input_values"]}

    def grids(self, lengths, start, n_in):
        frames = torch.where(
            lengths >= AST_WINDOW,
            1 + torch.div(lengths - AST_WINDOW, AST_HOP, rounding_mode="floor"),
            (lengths > 0).long(),
        )
        first = torch.arange(self.time_patches) * self.tstride
        cols = first[None, :] < frames[:, None]  # [r, t]
        r, f, t = len(lengths), self.freq_patches, self.time_patches
        patches = cols[:, None, :].expand(r, f, t).reshape(r, f * t)
        valid = torch.cat([cols.any(1, keepdim=True).expand(r, self.n_prefix), patches], 1)
        special = torch.zeros(valid.shape[1], dtype=torch.bool)
        special[: self.n_prefix] = True
        none = torch.full((self.n_prefix,), -1, dtype=torch.long)
        frame = torch.cat([none, (start // AST_HOP + first).repeat(f)])
        band = torch.cat([none, torch.arange(f).repeat_interleave(t)])
        return [dict(valid=valid, special=special, frame=frame.expand(r, -1), band=band)]


class _Clap(_Family):
    """CLAP audio tower (HTSAT): log-mel of ``max_length_s`` s (repeat-padded), stretched to ``spec_size *
    freq_ratio`` columns, folded into a square image (``freq_ratio`` time segments stacked along frequency),
    4x4 patches, Swin stages with patch merging (grid halves per stage)."""

    def __init__(self, backbone, config, fe) -> None:
        super().__init__(backbone, config, fe)
        enc = backbone.audio_encoder
        self.chunk_samples = int(fe.nb_max_samples)
        self.hop = int(fe.hop_length)
        self.min_samples = 1
        self.frame_seconds = self.hop / self.sample_rate
        self.n_frames = self.chunk_samples // self.hop + 1  # centred STFT frames of one chunk
        self.width = int(enc.spec_size * enc.freq_ratio)  # columns after the stretch
        if self.n_frames > self.width:
            raise ValueError(f"CLAP chunk of {self.n_frames} frames exceeds the model's {self.width} columns")
        self.segment = self.width // enc.freq_ratio  # columns per folded time segment
        self.mel_rows = max(int(config.num_mel_bins), enc.spec_size // enc.freq_ratio)
        self.ps_h, self.ps_w = (int(v) for v in enc.patch_stride)
        self.resolutions = [tuple(int(v) for v in r) for r in enc.input_resolutions]
        self.depths = [int(d) for d in config.depths]
        self.fusion = bool(config.enable_fusion)
        self.n_bands = self.mel_rows // self.ps_h
        self.frames_per_position = max(1, round(self.ps_w * (self.n_frames - 1) / max(self.width - 1, 1)))
        self._site_stage = [s for s, d in enumerate(self.depths) for _ in range(d)]

    def sites(self) -> list[str]:
        return [
            f"model.audio_encoder.layers.{s}.blocks.{b}.intermediate.intermediate_act_fn"
            for s, d in enumerate(self.depths)
            for b in range(d)
        ]

    def site_neurons(self) -> list[int]:
        dim = int(self.config.patch_embeds_hidden_size)
        return [int(self.config.mlp_ratio * dim * 2**s) for s in self._site_stage]

    def n_hidden(self) -> int:
        return len(self.depths) + 1

    def site_grid(self, index: int) -> int:
        return self._site_stage[index]

    def hidden_grid(self, index: int) -> int:
        return min(index, len(self.depths) - 1)  # h_0: patches; h_i: stage i-1 output, merged to stage i's grid

    def features(self, segments):
        f = self.fe(segments, sampling_rate=self.sample_rate, return_tensors="pt")
        x = f["input_features"]
        if not self.fusion and x.shape[1] > 1:  # a 'fusion' extractor stacks 4 identical copies for short audio
            x = x[:, :1]
        # No chunk is longer than the extractor's maximum, so no clip is 'longer' (the extractor marks a
        # random one as longer when none is: that would send it through the fusion branch at random).
        return {"input_features": x, "is_longer": torch.zeros(x.shape[0], 1, dtype=torch.bool)}

    def grids(self, lengths, start, n_in):
        n_valid = ceil_div(lengths, self.hop)
        ratio = (self.n_frames - 1) / (self.width - 1) if self.n_frames < self.width else 1.0
        out = []
        for s, (h, w) in enumerate(self.resolutions):
            scale = 2**s
            rows = torch.arange(h) * scale * self.ps_h  # first image row of each token row
            cols = torch.arange(w) * scale * self.ps_w  # first column within the segment
            segment, mel_row = rows // self.mel_rows, rows % self.mel_rows
            column = segment[:, None] * self.segment + cols[None, :]  # [h, w] stretched column
            frame = torch.floor(column.double() * ratio).long().reshape(-1)  # first input frame
            band = (mel_row // self.ps_h)[:, None].expand(h, w).reshape(-1)
            valid = frame[None, :] < n_valid[:, None]
            out.append(
                dict(
                    valid=valid,
                    special=torch.zeros(h * w, dtype=torch.bool),
                    frame=(start // self.hop + frame).expand(len(lengths), -1),
                    band=band,
                )
            )
        return out

    def hidden_states(self, backbone, inputs):
        out = backbone(**inputs, output_hidden_states=True)
        return [h.flatten(2).transpose(1, 2) for h in out.hidden_states]  # [r, C, H, W] -> [r, H*W, C]


FAMILIES: dict[str, type[_Family]] = {
    "whisper": _Whisper,
    "wav2vec2": _Wav2Vec2,
    "hubert": _Wav2Vec2,
    "wavlm": _Wav2Vec2,
    "ast": _AST,
    "clap": _Clap,
}
