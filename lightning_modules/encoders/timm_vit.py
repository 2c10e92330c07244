"""Generic timm ViT on the M2D log-mel front end.

``timm.create_model(model_name, pretrained=False, in_chans=1, img_size=(n_mels, input_frames),
patch_size=patch_size, num_classes=0, **model_kwargs)``; nothing is downloaded, weights come only from
``checkpoint_path`` (strict key check).

Audio ``[B, S]`` -> normalised log-mel ``[B, 1, n_mels, T]`` -> chunks of ``input_frames`` frames, the
last one right-padded with zeros (after normalisation) to the full ``input_frames`` (timm ViTs have a
fixed grid) -> ``forward_features`` per chunk (tokens: prefix tokens (CLS, registers) then patches,
frequency-major ``f * t + k``) -> clip embedding: ``token_pooling='mean'``: mean of the valid patch tokens
of all chunks (final-norm output); ``token_pooling='cls'``: mean over chunks holding input of the first
prefix token. ``embed_dim`` = the ViT width.

The timm model's children and top-level parameters are adopted as this module's own, so neuron sites
are ``blocks.{l}.mlp.act`` and ``state_dict()`` keys are exactly timm's (a saved ``state_dict`` of the
timm model loads as is).

Positions per chunk: ``clip = arange(B)``; ``special`` = prefix tokens; a patch token is valid iff the
first frame of its time column is a frame holding input (``< min(1 + length // hop, T)``; padding to
``input_frames`` never is); prefix tokens are valid iff the chunk holds any valid patch for that clip.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal, Optional

import timm
import torch
from torch import Tensor, nn

from .base import AudioEncoder, Positions, patch_coordinates
from .checkpoints import extract_state_dict, load_checkpoint_file, load_state_dict_strict, strip_prefix
from .m2d import DEFAULT_NORM_STATS
from .melspec import LogMelSpectrogram
from .renamed import renamed_argument


class TimmViTEncoder(AudioEncoder):
    """Any timm ViT taking a 1-channel log-mel.

    Args:
        model_name: timm model name (a ``VisionTransformer``), e.g. ``vit_base_patch16_224``.
        checkpoint_path: local state dict of the timm model (flat, or under ``model``/``state_dict``);
            None = random init.
        checkpoint_prefix: prefix to strip from the checkpoint keys (only keys carrying it are used).
        trust_checkpoint: allow a checkpoint holding arbitrary pickled objects (runs code).
        input_frames: frames per chunk (the ViT's image width).
        n_mels: mel bands (the image height).
        patch_size: square patch size.
        sample_rate: 16000 or 32000 (M2D front-end presets).
        norm_stats: (mean, std) of the log-mel normalisation.
        token_pooling: ``mean`` (valid patch tokens) or ``cls`` (first prefix token).
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``depth``, ``embed_dim``, ``num_heads``).
        name: output-folder suffix.
        seed: RNG seed of the random init (global RNG untouched when set).
        pooling: the old name of ``token_pooling`` (it clashed with M2D's time ``pooling``), accepted for
            one release with a ``FutureWarning``.
    """

    channel_axis = -1

    def __init__(
        self,
        model_name: str = "vit_base_patch16_224",
        checkpoint_path: Optional[str] = None,
        checkpoint_prefix: Optional[str] = None,
        trust_checkpoint: bool = False,
        input_frames: int = 608,
        n_mels: int = 80,
        patch_size: int = 16,
        sample_rate: int = 16000,
        norm_stats: tuple[float, float] = DEFAULT_NORM_STATS,
        token_pooling: Literal["mean", "cls"] = "mean",
        model_kwargs: Optional[dict[str, Any]] = None,
        name: str = "timm_vit",
        seed: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> None:
        super().__init__()
        token_pooling = renamed_argument("TimmViTEncoder", "pooling", pooling, "token_pooling", token_pooling, "mean")
        if token_pooling not in ("mean", "cls"):
            raise ValueError(f"token_pooling must be 'mean' or 'cls', got {token_pooling!r}")
        if n_mels % patch_size or input_frames % patch_size:
            raise ValueError(f"{n_mels} mels x {input_frames} frames is not divisible by patch {patch_size}")
        self.name = name
        self.model_name = model_name
        self.token_pooling = token_pooling
        self.input_frames, self.n_mels, self.patch_size = int(input_frames), int(n_mels), int(patch_size)
        self.sample_rate = int(sample_rate)
        with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            vit = timm.create_model(
                model_name,
                pretrained=False,
                in_chans=1,
                img_size=(self.n_mels, self.input_frames),
                patch_size=self.patch_size,
                num_classes=0,
                **(model_kwargs or {}),
            )
        if not hasattr(vit, "blocks") or not hasattr(vit, "forward_features"):
            raise ValueError(f"timm model {model_name!r} is not a ViT with .blocks / .forward_features")
        self._adopt(vit)
        self.num_prefix_tokens = int(getattr(vit, "num_prefix_tokens", 1))
        if token_pooling == "cls" and self.num_prefix_tokens < 1:
            raise ValueError(f"token_pooling='cls' needs a class token; {model_name!r} has none")
        self.freq_patches = self.n_mels // self.patch_size
        self.time_patches = self.input_frames // self.patch_size
        self.embed_dim = int(vit.num_features)
        self.neuron_sites = [f"blocks.{i}.mlp.act" for i in range(len(vit.blocks))]
        for s in self.neuron_sites:
            self.get_submodule(s)  # raises if the block has no mlp.act
        self.site_neurons = [int(b.mlp.fc1.out_features) for b in vit.blocks]
        self.frontend = LogMelSpectrogram.for_m2d(self.sample_rate, n_mels=self.n_mels)
        self.frame_seconds = self.frontend.hop_length / self.sample_rate
        self.frames_per_position, self.n_bands = self.patch_size, self.freq_patches
        self.register_buffer("norm_stats", torch.tensor(norm_stats, dtype=torch.float32), persistent=False)
        self.checkpoint_path = checkpoint_path
        if checkpoint_path is not None:
            self.load_weights(checkpoint_path, prefix=checkpoint_prefix, trust_checkpoint=trust_checkpoint)

    # -- timm model adoption ---------------------------------------------------------------------
    def _adopt(self, vit: nn.Module) -> None:
        """Register the timm model's children, parameters and buffers as our own (same objects), and
        keep the model itself unregistered for its ``forward_features``."""
        object.__setattr__(self, "_vit", vit)
        self._vit_keys = (list(vit._parameters), list(vit._buffers), set(vit._non_persistent_buffers_set))
        for n, child in vit.named_children():
            self.add_module(n, child)
        for n, p in vit._parameters.items():
            self.register_parameter(n, p)
        for n, b in vit._buffers.items():
            self.register_buffer(n, b, persistent=n not in vit._non_persistent_buffers_set)

    def _sync(self) -> None:
        params, buffers, _ = self._vit_keys
        for n in params:
            self._vit._parameters[n] = self._parameters[n]
        for n in buffers:
            self._vit._buffers[n] = self._buffers[n]

    def _apply(self, fn, recurse=True):  # .to(), .float(), .cuda(): keep the timm model pointing at our tensors
        out = super()._apply(fn, recurse)
        self._sync()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._sync()

    @property
    def vit(self) -> nn.Module:
        """The timm model (shares every module and tensor with this encoder)."""
        return self._vit

    def timm_state_dict(self) -> dict[str, Tensor]:
        """State dict with timm's keys (no front-end buffers)."""
        return self._vit.state_dict()

    def load_weights(self, path: str, prefix: Optional[str] = None, trust_checkpoint: bool = False) -> None:
        """Load a local timm state dict; missing / unexpected keys or wrong shapes are an error listing them."""
        sd = extract_state_dict(load_checkpoint_file(path, trust_checkpoint=trust_checkpoint), path)
        if prefix:
            sd, _ = strip_prefix(sd, prefix)
        load_state_dict_strict(self._vit, sd, path)
        self._sync()

    # -- encoding ----------------------------------------------------------------------------------
    def log_mel(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> normalised log-mel ``[B, 1, n_mels, 1 + S // hop]``."""
        return (self.frontend(audio) - self.norm_stats[0]) / self.norm_stats[1]

    def _chunk_positions(self, start: int, n_valid: Tensor) -> Positions:
        b, dev = n_valid.shape[0], n_valid.device
        first = start + torch.arange(self.time_patches, device=dev) * self.patch_size
        cols = first[None, :] < n_valid[:, None]
        patches = cols[:, None, :].expand(b, self.freq_patches, self.time_patches).reshape(b, -1)
        prefix = cols.any(1, keepdim=True).expand(b, self.num_prefix_tokens)
        valid = torch.cat([prefix, patches], dim=1)
        special = torch.zeros(valid.shape[1], dtype=torch.bool, device=dev)
        special[: self.num_prefix_tokens] = True
        return Positions(
            clip=torch.arange(b, device=dev),
            valid=valid,
            special=special,
            **patch_coordinates(first, self.freq_patches, b, n_prefix=self.num_prefix_tokens),
        )

    def encode_tokens(self, audio: Tensor, lengths: Optional[Tensor] = None) -> list[tuple[Tensor, Positions]]:
        """Per chunk: final-norm tokens ``[B, prefix + F*t, D]`` and their :class:`Positions`."""
        lms = self.log_mel(audio)
        b, total = lms.shape[0], lms.shape[-1]
        if lengths is None:
            n_valid = torch.full((b,), total, dtype=torch.long, device=lms.device)
        else:
            n_valid = torch.clamp(
                1 + torch.as_tensor(lengths, device=lms.device).long() // self.frontend.hop_length, max=total
            )
        out = []
        try:
            for start in range(0, total, self.input_frames):
                chunk = lms[..., start : start + self.input_frames]
                if chunk.shape[-1] < self.input_frames:
                    chunk = torch.nn.functional.pad(chunk, (0, self.input_frames - chunk.shape[-1]))
                self._positions = self._chunk_positions(start, n_valid)
                out.append((self._vit.forward_features(chunk), self._positions))
        finally:
            self._positions = None
        return out

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` -> clip embeddings ``[B, D]`` (see module docstring for token_pooling)."""
        chunks = self.encode_tokens(audio, lengths)
        p = self.num_prefix_tokens
        if self.token_pooling == "cls":
            toks = torch.stack([t[:, 0] for t, _ in chunks], 1)  # [B, C, D]
            w = torch.stack([pos.valid[:, 0] for _, pos in chunks], 1).to(toks.dtype)[..., None]
        else:
            toks = torch.cat([t[:, p:] for t, _ in chunks], 1)
            w = torch.cat([pos.valid[:, p:] for _, pos in chunks], 1).to(toks.dtype)[..., None]
        return (toks * w).sum(1) / w.sum(1).clamp_min(1.0)
