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
model-specific runs per activation beyond that lookup. What differs between the families (sites,
chunking, features, token grids) lives in :mod:`.hf_families`; loading and the encoder live here.

``transformers`` is an optional dependency (``pip install -e ".[hf]"``); without it this module still
imports and :class:`HFAudioEncoder` raises an ImportError saying which extra to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import numpy as np
import torch
from torch import Tensor, nn

from analysis.runs.read import load_tensor_file

from .base import AudioEncoder, Positions
from .hf_families import FAMILIES

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


def _require_transformers() -> None:
    if transformers is None:
        raise ImportError(f"HFAudioEncoder needs the optional Hugging Face extra (transformers): {HF_EXTRA_HINT}")


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
