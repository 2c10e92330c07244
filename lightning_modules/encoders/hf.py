"""Hugging Face ``transformers`` audio models behind the encoder protocol, loaded from a local folder.

``HFAudioEncoder(model_path)`` reads ``config.json``, the weights and ``preprocessor_config.json`` of a
model saved with ``save_pretrained`` (``local_files_only=True``: nothing is ever downloaded). The class
named in the config's ``architectures`` is loaded (a task model such as ``Wav2Vec2ForCTC`` or
``WhisperForConditionalGeneration`` is fine), its audio encoder is kept as ``self.model`` and the rest
(decoder, text tower, heads) is dropped. A weight of the kept part missing from the folder is an error
(``transformers`` would only warn and initialise it at random). Weights in pickle format
(``pytorch_model*.bin``; safetensors hold no code) are first read through the project's one loader
(:func:`analysis.runs.read.load_tensor_file`, ``weights_only=True``) so that a file holding other pickled
objects, or a text/truncated file, is refused naming it; ``transformers`` then loads with
``weights_only=True`` too.

Families (``kind``; default: from the config's ``model_type``):

=============  ==========================  =====================================================  ===========
kind           backbone (``self.model``)   neuron sites (feed-forward post-activation)            features
=============  ==========================  =====================================================  ===========
``whisper``    ``WhisperEncoder``          ``model.layers.{i}.activation_fn``                     log-mel, 30 s
``wav2vec2``   ``Wav2Vec2Model``           ``model.encoder.layers.{i}.feed_forward.intermediate_act_fn``  waveform
``hubert``     ``HubertModel``             same as wav2vec2                                       waveform
``wavlm``      ``WavLMModel``              same as wav2vec2                                       waveform
``ast``        ``ASTModel``                ``model.layers.{i}.mlp.activation_fn``                 fbank, 10.24 s
``clap``       ``ClapAudioModel`` (HTSAT)  ``model.audio_encoder.layers.{s}.blocks.{b}.intermediate.intermediate_act_fn``  log-mel, 10 s
=============  ==========================  =====================================================  ===========

Audio ``[B, S]`` at the model's ``sample_rate`` (the feature extractor's ``sampling_rate``) is handled as

1. **calls**: each clip is cut to its valid samples (``lengths``); models with a fixed input length
   (Whisper, AST, CLAP) see consecutive chunks of that length, one backbone call per chunk with the clips
   that still hold audio there (a clip's padding is never given to the model: the feature extractor
   pads each chunk as the model was trained: zeros for Whisper/AST, repeat-then-zeros for CLAP);
   wav2vec 2.0-style models see the whole clip: with an attention mask when their feature extractor
   returns one (``return_attention_mask``: models trained with masks), else (group-norm models, trained
   without masks) one call per distinct clip length, so padding never changes their activations;
2. **features**: the model's own feature extractor (``AutoFeatureExtractor`` of the folder) on the
   cut clips (numpy, on CPU), moved to the backbone's device;
3. **positions** of each call (:class:`~lightning_modules.encoders.base.Positions`) from the valid
   samples only: Whisper token ``k`` (2 mel frames of 10 ms) is valid iff ``2k < ceil(L / hop)``;
   wav2vec 2.0 frame ``k`` iff ``k <`` the conv output length of ``L`` samples; AST patch column ``k`` iff
   ``k * time_stride <`` the clip's fbank frames (``1 + (L - 400) // 160``), CLS and distillation tokens
   are ``special`` (valid iff the chunk holds a valid patch); a CLAP token iff the first input frame it
   covers lies in the clip's first pass (``< ceil(L / hop)``; the repeated copies are not counted);
4. **embedding** = mean over the counted positions (special tokens excluded) of hidden state
   ``embedding_layer`` of ``output_hidden_states`` (0 = input of the first layer, ``i`` = output of
   layer/stage ``i``, -1 = the last one as the model reports it), over all calls of the clip.

Positions carry ``frame`` (first front-end frame, in the clip's frames of ``frame_seconds``) and, for
spectrogram patch tokens, ``band`` (AST: patch row ``f`` of ``n_bands``; CLAP: the lowest stage-0 patch
row the token covers, so every stage uses the ``n_bands`` bands of stage 0). CLAP's sites have a
different token grid per Swin stage; :meth:`HFAudioEncoder.positions` looks the grid up by site. Nothing
model-specific runs per activation beyond that lookup.

``transformers`` is an optional dependency (``pip install -e ".[hf]"``); without it this module still
imports and :class:`HFAudioEncoder` raises an ImportError saying which extra to install.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import numpy as np
import torch
from torch import Tensor, nn

from analysis.runs.read import load_tensor_file

from .base import AudioEncoder, Positions

try:
    import transformers
except ImportError:  # optional extra
    transformers = None

#: How to get the optional dependency.
HF_EXTRA_HINT = 'pip install -e ".[hf]"'
#: ``config.model_type`` -> kind.
MODEL_TYPES: dict[str, str] = {
    "whisper": "whisper",
    "wav2vec2": "wav2vec2",
    "hubert": "hubert",
    "wavlm": "wavlm",
    "audio-spectrogram-transformer": "ast",
    "clap": "clap",
    "clap_audio_model": "clap",
}
Kind = Literal["whisper", "wav2vec2", "hubert", "wavlm", "ast", "clap"]
KINDS: tuple[str, ...] = get_args(Kind)
#: ASTFeatureExtractor's numpy fbank (used whenever torchaudio is absent): window and hop in samples.
AST_WINDOW, AST_HOP = 400, 160


def _require_transformers() -> None:
    if transformers is None:
        raise ImportError(f"HFAudioEncoder needs the optional Hugging Face extra (transformers): {HF_EXTRA_HINT}")


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


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def detect_kind(config: Any, model_path: str | Path, kind: Optional[str] = None) -> str:
    """The family of a loaded config; ``kind`` (when given) must agree with the config's ``model_type``."""
    found = MODEL_TYPES.get(getattr(config, "model_type", None))
    if found is None:
        raise ValueError(
            f"{model_path}: model_type {getattr(config, 'model_type', None)!r} is not a supported "
            f"audio model (supported: {', '.join(sorted(MODEL_TYPES))})"
        )
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
        if kind != found:
            raise ValueError(
                f"kind={kind!r} was given but {model_path}/config.json has model_type {config.model_type!r} ({found})"
            )
    return found


def _backbone_of(model: nn.Module, kind: str) -> nn.Module:
    """The audio encoder inside a loaded model (base model, task model or two-tower CLAP)."""
    if kind == "clap":
        return getattr(model, "audio_model", model)
    base = model.base_model
    return base.encoder if kind == "whisper" else base


def load_backbone(model_path: str | Path, kind: str, config: Any) -> nn.Module:
    """Load the folder's architecture (``config.architectures[0]``, else the base model) from local files
    and return its audio encoder in eval mode. A missing weight of the audio encoder is an error."""
    archs = list(getattr(config, "architectures", None) or [])
    cls = getattr(transformers, archs[0], None) if archs else None
    if cls is None:
        cls = transformers.ClapModel if config.model_type == "clap" else transformers.AutoModel
    for weights in sorted(Path(model_path).glob("pytorch_model*.bin")):
        load_tensor_file(weights)  # refuses pickled code and names an unreadable file
    model, info = cls.from_pretrained(
        str(model_path), local_files_only=True, output_loading_info=True, weights_only=True
    )
    backbone = _backbone_of(model, kind)
    prefix = next(n for n, m in model.named_modules() if m is backbone)
    prefix = prefix + "." if prefix else ""
    missing = sorted(k for k in info.get("missing_keys", ()) if k.startswith(prefix))
    if missing:
        shown = ", ".join(missing[:20]) + (f", ... (+{len(missing) - 20} more)" if len(missing) > 20 else "")
        raise ValueError(
            f"{model_path}: the weights of {cls.__name__} lack {len(missing)} keys of the audio "
            f"encoder ({shown}); the folder does not hold this model's weights"
        )
    return backbone.eval()


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------
@dataclass
class _Call:
    """One backbone call: rows (clips) and the part of each clip they see."""

    clip: Tensor  # [r] clip index in the batch
    start: int  # first sample of the chunk within the clip
    lengths: Tensor  # [r] valid samples of each row in the chunk


class HFAudioEncoder(AudioEncoder):
    """A ``transformers`` audio model from a local folder (see the module docstring).

    Args:
        model_path: folder written by ``save_pretrained`` (``config.json``, weights,
            ``preprocessor_config.json``); nothing is downloaded.
        kind: ``whisper``, ``wav2vec2``, ``hubert``, ``wavlm``, ``ast`` or ``clap``; None = from the
            config's ``model_type`` (a given kind must agree with it).
        embedding_layer: hidden state averaged into the clip embedding: index into
            ``output_hidden_states`` (0 = input of the first layer, ``i`` = output of layer/stage ``i``,
            negative from the end; -1 = last).
        name: output-folder suffix; default: the folder's name.
    """

    channel_axis = -1

    def __init__(
        self, model_path: str, kind: Optional[Kind] = None, embedding_layer: int = -1, name: Optional[str] = None
    ) -> None:
        super().__init__()
        _require_transformers()
        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: no config.json; HFAudioEncoder loads a local folder written by "
                f"save_pretrained (nothing is downloaded)"
            )
        if not (path / "preprocessor_config.json").is_file():
            raise FileNotFoundError(
                f"{path}: no preprocessor_config.json (the model's feature extractor); save it "
                f"with the model's feature extractor's save_pretrained({str(path)!r})"
            )
        self.model_path = str(path)
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        self.kind = detect_kind(config, path, kind)
        fe = transformers.AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        self.model = load_backbone(path, self.kind, config)
        self.family = FAMILIES[self.kind](self.model, getattr(self.model, "config", config), fe)
        fam = self.family
        self.sample_rate = fam.sample_rate
        self.neuron_sites = fam.sites()
        self.site_neurons = fam.site_neurons()
        for s in self.neuron_sites:
            self.get_submodule(s)  # the module path exists
        self._site_grid = {s: fam.site_grid(i) for i, s in enumerate(self.neuron_sites)}
        n = fam.n_hidden()
        if not -n <= embedding_layer < n:
            raise ValueError(
                f"embedding_layer={embedding_layer} out of range for {n} hidden states "
                f"({n - 1} layers + input) of {path}"
            )
        self.embedding_layer = embedding_layer % n
        self.embed_grid = fam.hidden_grid(self.embedding_layer)
        self.embed_dim = self._hidden_width()
        self.frame_seconds = fam.frame_seconds
        self.frames_per_position, self.n_bands = fam.frames_per_position, fam.n_bands
        self.name = name or path.name
        self._call_positions: Optional[list[Positions]] = None
        self.eval()

    def _hidden_width(self) -> int:
        """Width of hidden state ``embedding_layer`` (CLAP: the width of its Swin stage)."""
        c = self.model.config
        if self.kind == "whisper":
            return int(c.d_model)
        if self.kind == "clap":
            return int(c.patch_embeds_hidden_size * 2**self.embed_grid)
        return int(c.hidden_size)

    # -- bookkeeping ---------------------------------------------------------------------------
    def positions(self, site: str, output: Tensor) -> Positions:
        """Positions of the backbone call in progress, on the grid of ``site``."""
        if self._call_positions is None:
            return super().positions(site, output)
        return self._call_positions[self._site_grid[site]]

    def plan(self, lengths: Tensor) -> list[_Call]:
        """The backbone calls for clips of ``lengths`` valid samples (see the module docstring, step 1)."""
        fam = self.family
        longest = max(int(lengths.max()), 1) if lengths.numel() else 1
        chunk = fam.chunk_samples or longest
        calls = []
        for start in range(0, longest, chunk):
            rows = torch.nonzero((lengths > start) | (start == 0)).flatten()
            seg = torch.clamp(lengths[rows] - start, 0, chunk)
            if fam.split_by_length:
                for v in torch.unique(seg):
                    sel = rows[seg == v]
                    calls.append(_Call(sel, start, seg[seg == v]))
            else:
                calls.append(_Call(rows, start, seg))
        return calls

    def _segments(self, audio: np.ndarray, call: _Call) -> tuple[list[np.ndarray], int]:
        """The cut clips of a call (zero-padded to ``min_samples``) and the longest one's length."""
        m = self.family.min_samples
        segs = []
        for b, n in zip(call.clip.tolist(), call.lengths.tolist()):
            x = audio[b, call.start : call.start + n]
            segs.append(np.pad(x, (0, m - n)) if n < m else x)
        return segs, max(len(s) for s in segs)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` at ``sample_rate`` -> clip embeddings ``[B, embed_dim]`` (mean of hidden state
        ``embedding_layer`` over the clip's counted positions; zeros for a clip without any)."""
        if audio.dim() != 2:
            raise ValueError(f"HFAudioEncoder expects audio [B, S], got shape {tuple(audio.shape)}")
        b, s = audio.shape
        lengths = (
            torch.full((b,), s, dtype=torch.long)
            if lengths is None
            else torch.clamp(torch.as_tensor(lengths).detach().long().cpu().reshape(-1), 0, s)
        )
        wave = audio.detach().float().cpu().numpy()
        dev = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        emb = torch.zeros(b, self.embed_dim, dtype=torch.float32, device=dev)
        count = torch.zeros(b, dtype=torch.float32, device=dev)
        for call in self.plan(lengths):
            segs, n_in = self._segments(wave, call)
            inputs = {
                k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev))
                for k, v in self.family.features(segs).items()
            }
            clip = call.clip.to(dev)
            self._call_positions = [
                Positions(
                    clip=clip,
                    valid=g["valid"].to(dev),
                    special=g["special"].to(dev),
                    frame=g["frame"].to(dev),
                    band=None if g["band"] is None else g["band"].to(dev),
                )
                for g in self.family.grids(call.lengths, call.start, n_in)
            ]
            try:
                h = self.family.hidden_states(self.model, inputs)[self.embedding_layer]
                w = self._call_positions[self.embed_grid].counted("patches").to(torch.float32)
            finally:
                self._call_positions = None
            emb.index_add_(0, clip, torch.einsum("rp,rpd->rd", w, h.float()))
            count.index_add_(0, clip, w.sum(1))
        return emb / count.clamp_min(1.0)[:, None]

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, model_path={self.model_path!r}, sample_rate={self.sample_rate}, "
            f"sites={len(self.neuron_sites)}, embedding_layer={self.embedding_layer}, embed_dim={self.embed_dim}"
        )


__all__ = ["HFAudioEncoder", "HF_EXTRA_HINT", "KINDS", "MODEL_TYPES", "detect_kind", "load_backbone"]
