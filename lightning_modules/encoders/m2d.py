"""M2D (Masked Modeling Duo) audio ViT encoder, loaded from official checkpoints of every M2D family.

Written from the behaviour of the official code and checked against official-code fixtures
(``tests/fixtures/m2d_reference``, ``tests/fixtures/m2d_families``; tests/test_m2d_parity.py,
tests/test_m2d_families.py); no official code is copied.

Pipeline for audio ``[B, S]`` at ``sample_rate``:

1. log-mel ``[B, 1, 80, T]`` (:mod:`.melspec`, ``T = 1 + S // hop``), normalised ``(x - mean) / std``
   with the checkpoint's ``norm_stats`` (fallback (-7.1, 4.2));
2. split time into chunks of ``input_frames`` frames (the unit of the run name, e.g. 608 or 1001, or
   ``dur_frames``); the last chunk is right-padded with zeros to a whole number of patches (with
   ``dur_frames``: cut to whole patches, as the official runtime's one-pass ``dur_frames`` mode); a full
   chunk whose length is not a multiple of the patch width (1001 = 62 x 16 + 9) leaves its last frames out;
3. per chunk: Conv2d ``ph x pw`` patch embedding (16x16; M2D-S: 80x2) -> tokens frequency-major (index
   ``f * t + k``), plus ``pos_embed[:, 1:]`` truncated to the chunk's ``t`` time patches in every frequency
   row; prepend ``cls_token + pos_embed[:, :1]``; timm ``Block`` s (pre-norm, qkv bias, exact GELU,
   LayerNorm eps 1e-6); final LayerNorm; drop CLS; ``b (f t) d -> b t (f d)``;
4. concatenate chunks in time -> frame embeddings ``[B, T', F*D]`` (:meth:`M2DEncoder.encode_frames`);
   clip embedding = mean over time ``[B, F*D]`` (``F = n_mels // ph``: 5 and 3840 for ViT-Base with
   16x16 patches, 1 and 768 for M2D-S).

Families (from the run-folder name ``<model>-<F>x<T>p<ph>x<pw>[p16k|p32k][p<extra>]-...``): M2D
(``m2d_vit_*``), M2D-X (``m2d_x_vit_*``), M2D-AS (``m2d_as_vit_*``, usually ``p32k``: the 32 kHz front
end), M2D-S (``m2d_s_vit_*-80x608p80x2``: one band of 80 mels per token, 2 frames per token), M2D-CLAP
(``m2d_clap_vit_*``). They share the audio encoder; their training heads are dropped by prefix
(:data:`NON_ENCODER_PREFIXES`).

Other unit lengths (``dur_frames``, the official runtime's option): the model runs on chunks of
``dur_frames`` frames; ``pos_embed`` is resampled from the checkpoint's time grid to ``dur_frames // pw``
patches by bicubic interpolation (``align_corners=False``, no antialiasing; frequency rows and the CLS
row unchanged) when that is longer, and its first ``dur_frames // pw`` time columns are kept when it is
shorter (:func:`resize_pos_embed`).

Neuron sites are ``blocks.{l}.mlp.act`` (output ``[B, 1 + F*t, mlp_hidden]`` per chunk; the blocks run
once per chunk, so a site hook fires once per chunk). Before each chunk :attr:`_positions` is set:
``clip = arange(B)``, ``special`` = the CLS column, ``valid`` as described in :meth:`M2DEncoder.chunk_positions`.

Checkpoints (:func:`~.m2d_checkpoint.load_m2d_state_dict`, with the run-name parsing in :mod:`.m2d_checkpoint`): the full training file ``{'model', 'optimizer', 'epoch',
'scaler', 'args': argparse.Namespace}``, the encoder-only flat state dict, and EVAR fine-tuned flat dicts
whose backbone keys carry the prefix ``module.ar.runtime.backbone.``. Only encoder keys are loaded; the
EMA target (``target_*``), decoder (``decoder_*``, ``mask_token``) and EVAR head (``module.*``) keys are
dropped; any other key, or a missing encoder key, is an error listing the keys.
"""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch
from timm.layers import build_sincos2d_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from .base import AudioEncoder, Positions, patch_coordinates
from .checkpoints import CheckpointKeyError, check_keys, check_shapes
from .m2d_checkpoint import (
    EVAR_PREFIX,
    NON_ENCODER_PREFIXES,
    M2DRunName,
    patch_pair,
    checkpoint_geometry,
    load_m2d_state_dict,
    parse_run_name,
    run_name_of,
)
from .melspec import LogMelSpectrogram
from .renamed import renamed_argument

#: Fallback normalisation statistics (mean, std) when a checkpoint stores none.
DEFAULT_NORM_STATS: tuple[float, float] = (-7.1, 4.2)
#: Attention heads of the standard ViT widths (64 per head); other widths need ``num_heads``.
STANDARD_HEADS: dict[int, int] = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


class _PatchEmbed(nn.Module):
    """``[B, 1, F, T] -> [B, (F/p)*(T/p), D]`` (frequency-major) with a Conv2d ``proj``."""

    def __init__(self, width: int, patch: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, width, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def resize_pos_embed(pos_embed: Tensor, freq_patches: int, time_patches: int) -> Tensor:
    """``pos_embed`` ``[1, 1 + F*T, D]`` (CLS row first, patches frequency-major) resized to ``time_patches``
    time columns: bicubic interpolation (``align_corners=False``, no antialiasing) of the ``[D, F, T]`` grid
    to ``[D, F, time_patches]`` when longer, the first ``time_patches`` columns when shorter (the CLS row
    and the frequency rows are kept). Returns ``[1, 1 + F*time_patches, D]``."""
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    d = grid.shape[-1]
    if grid.shape[1] % freq_patches:
        raise ValueError(f"pos_embed has {grid.shape[1]} patch rows, not a multiple of {freq_patches} bands")
    t = grid.shape[1] // freq_patches
    grid = grid.reshape(1, freq_patches, t, d)
    if time_patches > t:
        grid = torch.nn.functional.interpolate(
            grid.permute(0, 3, 1, 2), size=(freq_patches, time_patches), mode="bicubic", align_corners=False
        ).permute(0, 2, 3, 1)
    else:
        grid = grid[:, :, :time_patches]
    return torch.cat([cls, grid.reshape(1, freq_patches * time_patches, d)], dim=1)


class M2DEncoder(AudioEncoder):
    """M2D ViT encoder (see module docstring).

    Args:
        checkpoint: path to an M2D checkpoint (any of the three formats). When given, dimensions come
            from the state dict and the input geometry (mels, frames, patch, sample rate) from the run
            folder name (e.g. ``m2d_vit_base-80x608p16x16-221006-mr7``); the other arguments below
            default to those and must agree when given. When None, a randomly initialised model is
            built (ViT-Base defaults; set ``seed`` for reproducibility).
        num_heads: attention heads. Not stored in checkpoints: default 12 for width 768 (ViT-Base), the
            standard 64-per-head value for widths 192/384/1024/1280; required for any other width
            (the fixture's width-64 model needs 4).
        width: token width D (768 for ViT-Base).
        depth: number of transformer blocks.
        mlp_ratio: MLP hidden size / width.
        input_frames: frames per chunk (608 for M2D ViT-Base).
        n_mels: mel bands (80).
        patch: patch size: an int (square, 16) or ``[frequency, time]`` (M2D-S: ``[80, 2]``).
        sample_rate: 16000 or 32000 (selects the log-mel front end).
        norm_stats: (mean, std) of the log-mel normalisation, used when the checkpoint stores none
            (default (-7.1, 4.2)); a checkpoint's stored ``norm_stats`` always wins (a different
            explicit value is an error).
        trust_checkpoint: allow loading a checkpoint holding arbitrary pickled objects (runs code).
        ignore_prefixes: extra state-dict key prefixes to drop (beyond :data:`NON_ENCODER_PREFIXES`).
        name: output-folder suffix (``analysis`` for M2D, ``vit`` for the supervised ViT).
        seed: RNG seed for random initialisation (ignored with a checkpoint; global RNG untouched).
        frame_pooling: clip embedding = mean over time of ``all`` time steps of the (padded) input, as
            EVAR's M2D feature does for clips zero-padded to the task's unit duration (default), or
            of the ``valid`` ones only (time patches holding input according to ``lengths``).
            Either way padded positions are marked invalid for the statistics hooks.
        pooling: the old name of ``frame_pooling`` (it clashed with the timm ViT's token ``pooling``),
            accepted for one release with a ``FutureWarning``.
        dur_frames: run the model on chunks of this many frames instead of the checkpoint's unit
            (the official runtime's ``dur_frames``): ``pos_embed`` is resized (:func:`resize_pos_embed`)
            and the last chunk is cut to whole patches instead of padded. Needs a checkpoint.
    """

    channel_axis = -1

    def __init__(
        self,
        checkpoint: Optional[str] = None,
        num_heads: Optional[int] = None,
        width: Optional[int] = None,
        depth: Optional[int] = None,
        mlp_ratio: Optional[float] = None,
        input_frames: Optional[int] = None,
        n_mels: Optional[int] = None,
        patch: Optional[int | tuple[int, int]] = None,
        sample_rate: Optional[int] = None,
        norm_stats: Optional[tuple[float, float]] = None,
        trust_checkpoint: bool = False,
        ignore_prefixes: Sequence[str] = (),
        name: str = "analysis",
        seed: Optional[int] = None,
        frame_pooling: Literal["all", "valid"] = "all",
        dur_frames: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> None:
        super().__init__()
        frame_pooling = renamed_argument("M2DEncoder", "pooling", pooling, "frame_pooling", frame_pooling, "all")
        if frame_pooling not in ("all", "valid"):
            raise ValueError(f"frame_pooling must be 'all' or 'valid', got {frame_pooling!r}")
        self.frame_pooling = frame_pooling
        self.name = name
        self.checkpoint_path: Optional[str] = str(checkpoint) if checkpoint is not None else None
        sd: Optional[dict[str, Tensor]] = None
        if checkpoint is not None:
            sd = load_m2d_state_dict(checkpoint, trust_checkpoint=trust_checkpoint, ignore_prefixes=ignore_prefixes)
            g = checkpoint_geometry(
                sd,
                checkpoint,
                width=width,
                depth=depth,
                mlp_ratio=mlp_ratio,
                input_frames=input_frames,
                n_mels=n_mels,
                patch=patch,
                sample_rate=sample_rate,
            )
            width, depth, mlp_ratio, (ph, pw) = g.width, g.depth, g.mlp_ratio, g.patch
            input_frames, n_mels, sample_rate = g.input_frames, g.n_mels, g.sample_rate
        else:
            width = 768 if width is None else width
            depth = 12 if depth is None else depth
            mlp_ratio = 4.0 if mlp_ratio is None else mlp_ratio
            input_frames = 608 if input_frames is None else input_frames
            n_mels = 80 if n_mels is None else n_mels
            ph, pw = patch_pair(16 if patch is None else patch)
        sample_rate = 16000 if sample_rate is None else int(sample_rate)
        if num_heads is None:
            if width not in STANDARD_HEADS:
                where = f" of checkpoint {checkpoint}" if checkpoint is not None else ""
                raise ValueError(
                    f"num_heads is required for width {width}{where} (heads are not stored in "
                    f"checkpoints; defaults exist only for widths {sorted(STANDARD_HEADS)})"
                )
            num_heads = STANDARD_HEADS[width]
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        if n_mels % ph or input_frames < pw:
            raise ValueError(
                f"{n_mels} mels x {input_frames} frames does not fit patches {ph}x{pw} (the mels must "
                f"be a multiple of {ph}, the frames at least {pw})"
            )
        self.trained_frames = int(input_frames)  # the unit of the checkpoint's pos_embed
        if dur_frames is not None:
            if sd is None:
                raise ValueError(
                    "dur_frames resizes a checkpoint's pos_embed: it needs a checkpoint "
                    "(for a random model set input_frames)"
                )
            if int(dur_frames) < pw:
                raise ValueError(f"dur_frames={dur_frames} is shorter than one patch ({pw} frames)")
            input_frames = int(dur_frames)
        self.dur_frames = None if dur_frames is None else int(dur_frames)

        self.width, self.depth, self.num_heads = int(width), int(depth), int(num_heads)
        self.n_mels, self.input_frames, self.patch = int(n_mels), int(input_frames), (int(ph), int(pw))
        self.freq_patches = self.n_mels // ph
        self.max_time_patches = self.input_frames // pw
        self.mlp_hidden = int(round(self.width * mlp_ratio))
        self.sample_rate = sample_rate
        self.embed_dim = self.freq_patches * self.width
        self.neuron_sites = [f"blocks.{i}.mlp.act" for i in range(self.depth)]
        self.site_neurons = [self.mlp_hidden] * self.depth

        # With ``seed``: build and initialise from that seed without touching the global RNG.
        # Without: draw from the global RNG (as any nn.Module does).
        with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            self.frontend = LogMelSpectrogram.for_m2d(sample_rate, n_mels=self.n_mels)
            self.frame_seconds = self.frontend.hop_length / sample_rate
            self.frames_per_position, self.n_bands = pw, self.freq_patches
            self.register_buffer(
                "norm_stats",
                torch.tensor(norm_stats if norm_stats is not None else DEFAULT_NORM_STATS, dtype=torch.float32),
            )
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.width))
            n_pos = 1 + self.freq_patches * self.max_time_patches
            self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, self.width), requires_grad=False)
            self.patch_embed = _PatchEmbed(self.width, self.patch)
            self.blocks = nn.ModuleList(
                [
                    Block(
                        self.width,
                        self.num_heads,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=True,
                        norm_layer=partial(nn.LayerNorm, eps=1e-6),
                        act_layer=nn.GELU,
                    )
                    for _ in range(self.depth)
                ]
            )
            self.norm = nn.LayerNorm(self.width, eps=1e-6)
            if self.blocks[0].mlp.fc1.out_features != self.mlp_hidden:
                raise ValueError(
                    f"mlp_ratio {mlp_ratio} gives hidden {self.blocks[0].mlp.fc1.out_features}, "
                    f"expected {self.mlp_hidden}"
                )
            if sd is None:
                self._random_init()
        if sd is not None:
            self._load(sd, checkpoint, norm_stats)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        num_heads: Optional[int] = None,
        trust_checkpoint: bool = False,
        name: str = "analysis",
        **kwargs,
    ) -> "M2DEncoder":
        """Build from an M2D checkpoint (full training file, encoder-only or EVAR fine-tuned)."""
        return cls(checkpoint=str(path), num_heads=num_heads, trust_checkpoint=trust_checkpoint, name=name, **kwargs)

    def _load(self, sd: dict[str, Tensor], path, norm_stats: Optional[tuple[float, float]]) -> None:
        own = self.state_dict()
        if self.dur_frames is not None and "pos_embed" in sd:
            grid = self.trained_frames // self.patch[1]
            if sd["pos_embed"].shape[1] != 1 + self.freq_patches * grid:
                raise CheckpointKeyError(
                    f"Checkpoint {path}: pos_embed has {sd['pos_embed'].shape[1]} rows, expected "
                    f"1 + {self.freq_patches} x {grid} for {self.trained_frames} frames"
                )
            sd = dict(sd, pos_embed=resize_pos_embed(sd["pos_embed"], self.freq_patches, self.max_time_patches))
        check_keys(own.keys(), sd.keys(), path, optional=["norm_stats"])
        check_shapes(own, sd, path)
        if "norm_stats" in sd:
            stored = tuple(float(v) for v in sd["norm_stats"].reshape(-1).tolist())
            if norm_stats is not None and not torch.allclose(
                torch.tensor(stored), torch.tensor(norm_stats, dtype=torch.float32)
            ):
                raise ValueError(f"norm_stats={tuple(norm_stats)} was given but checkpoint {path} stores {stored}")
        else:
            sd = dict(sd, norm_stats=self.norm_stats.clone())
        self.load_state_dict(sd, strict=True)

    def _random_init(self) -> None:
        """Fixed 2-D sin-cos ``pos_embed`` (CLS row zero), N(0, 0.02) CLS, Xavier patch projection,
        truncated-normal(0.02) Linear weights, zero biases, unit LayerNorms (uses the current RNG)."""
        pos = build_sincos2d_pos_embed([self.freq_patches, self.max_time_patches], dim=self.width)
        with torch.no_grad():
            self.pos_embed[0, 1:] = pos.reshape(-1, self.width)
            nn.init.normal_(self.cls_token, std=0.02)
            w = self.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(self.patch_embed.proj.bias)
            for m in self.blocks.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)

    # -- front end -----------------------------------------------------------------------------
    def log_mel(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> normalised log-mel ``[B, 1, n_mels, 1 + S // hop]``."""
        x = self.frontend(audio)
        return (x - self.norm_stats[0]) / self.norm_stats[1]

    def valid_frames(self, lengths: Optional[Tensor], batch: int, total_frames: int, device) -> Tensor:
        """LongTensor ``[B]``: frames holding input per clip, ``min(1 + length // hop, T)`` (the frames
        the clip would have if encoded alone); all ``T`` when ``lengths`` is None."""
        if lengths is None:
            return torch.full((batch,), total_frames, dtype=torch.long, device=device)
        lengths = torch.as_tensor(lengths, device=device).long()
        return torch.clamp(1 + lengths // self.frontend.hop_length, max=total_frames)

    # -- bookkeeping ---------------------------------------------------------------------------
    def chunk_positions(self, start_frame: int, time_patches: int, n_valid: Tensor) -> Positions:
        """Positions of the chunk starting at frame ``start_frame`` with ``time_patches`` patches.

        Padding rule: time patch k of the chunk covers frames ``start_frame + 16k ...``; it holds input
        (valid) iff its first frame is a valid frame of the clip (``start_frame + 16k < n_valid``,
        see :meth:`valid_frames`); a patch only partly covered by the clip is valid. All frequency
        patches of a time column share its validity (token ``f * t + k``). The CLS token (position 0,
        ``special``) is valid iff the chunk holds any valid patch of that clip."""
        b = n_valid.shape[0]
        dev = n_valid.device
        first = start_frame + torch.arange(time_patches, device=dev) * self.patch[1]
        cols = first[None, :] < n_valid[:, None]  # [B, t]
        patches = cols[:, None, :].expand(b, self.freq_patches, time_patches).reshape(b, -1)
        valid = torch.cat([cols.any(1, keepdim=True), patches], dim=1)
        special = torch.zeros(valid.shape[1], dtype=torch.bool, device=dev)
        special[0] = True
        return Positions(
            clip=torch.arange(b, device=dev),
            valid=valid,
            special=special,
            **patch_coordinates(first, self.freq_patches, b, n_prefix=1),
        )

    # -- encoding ------------------------------------------------------------------------------
    def encode_chunk(self, x: Tensor) -> Tensor:
        """Normalised log-mel chunk ``[B, 1, n_mels, t * patch]`` -> final-norm tokens ``[B, 1 + F*t, D]``."""
        tokens = self.patch_embed(x)
        t = tokens.shape[1] // self.freq_patches
        if t > self.max_time_patches:
            raise ValueError(f"Chunk of {t} time patches exceeds the model's {self.max_time_patches}")
        pos = self.pos_embed[:, 1:].reshape(1, self.freq_patches, self.max_time_patches, self.width)[:, :, :t]
        tokens = tokens + pos.reshape(1, self.freq_patches * t, self.width)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)

    def encode_frames(
        self, audio: Tensor, lengths: Optional[Tensor] = None, return_valid: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """audio ``[B, S]`` -> frame embeddings ``[B, T', F*D]`` (``T'`` time patches over all chunks).
        With ``return_valid`` also BoolTensor ``[B, T']``: time patches holding input (see
        :meth:`chunk_positions`)."""
        lms = self.log_mel(audio)
        b, total = lms.shape[0], lms.shape[-1]
        n_valid = self.valid_frames(lengths, b, total, lms.device)
        unit, pw = self.input_frames, self.patch[1]
        outs, valids = [], []
        try:
            for start in range(0, total, unit):
                chunk = lms[..., start : start + unit]
                if chunk.shape[-1] < unit and self.dur_frames is None:  # the last chunk: pad to whole patches
                    chunk = torch.nn.functional.pad(chunk, (0, (-chunk.shape[-1]) % pw))
                t = chunk.shape[-1] // pw
                if t == 0:  # dur_frames: a remainder shorter than one patch is left out
                    continue
                chunk = chunk[..., : t * pw]  # frames past the last whole patch are not seen (1001 = 62 x 16 + 9)
                self._positions = self.chunk_positions(start, t, n_valid)
                valids.append(self._positions.valid[:, 1 : 1 + t])
                h = self.encode_chunk(chunk)[:, 1:]  # [B, F*t, D]
                h = h.reshape(b, self.freq_patches, t, self.width).permute(0, 2, 1, 3).reshape(b, t, self.embed_dim)
                outs.append(h)
        finally:
            self._positions = None
        if not outs:
            raise ValueError(f"Input of {total} frames is shorter than one patch ({pw} frames)")
        frames = torch.cat(outs, dim=1)
        return (frames, torch.cat(valids, dim=1)) if return_valid else frames

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` -> clip embeddings ``[B, F*D]``: mean of the frame embeddings over time
        (``frame_pooling='valid'`` and ``lengths`` given: over the valid time patches only)."""
        frames, valid = self.encode_frames(audio, lengths, return_valid=True)
        if lengths is None or self.frame_pooling == "all":
            return frames.mean(1)
        w = valid.to(frames.dtype)[..., None]
        return (frames * w).sum(1) / w.sum(1).clamp_min(1.0)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, width={self.width}, depth={self.depth}, heads={self.num_heads}, "
            f"input={self.n_mels}x{self.input_frames}, patch={self.patch}, sample_rate={self.sample_rate}, "
            f"dur_frames={self.dur_frames}, "
            f"checkpoint={self.checkpoint_path!r}"
        )


__all__ = [
    "DEFAULT_NORM_STATS",
    "EVAR_PREFIX",
    "NON_ENCODER_PREFIXES",
    "STANDARD_HEADS",
    "M2DEncoder",
    "M2DRunName",
    "load_m2d_state_dict",
    "parse_run_name",
    "resize_pos_embed",
    "run_name_of",
]
