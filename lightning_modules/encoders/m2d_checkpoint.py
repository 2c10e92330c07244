"""What an M2D checkpoint holds: its run-folder name, its encoder state dict and the geometry they give.

* :func:`parse_run_name` / :func:`run_name_of`: the input geometry encoded in the run-folder name
  ``<model>-<F>x<T>p<ph>x<pw>[p16k|p32k][p<extra>]-...`` (mels, frames per chunk, patch, sample rate).
* :func:`load_m2d_state_dict`: the encoder keys of a checkpoint in any of the three formats (full training
  file, encoder-only flat dict, EVAR fine-tuned flat dict with :data:`EVAR_PREFIX`); the keys of
  :data:`NON_ENCODER_PREFIXES` are dropped, any other non-encoder key is an error listing the keys.
* :func:`checkpoint_geometry`: width, depth, MLP ratio, patch and input geometry of the state dict and
  run name, checked against the values the caller gave (a disagreement is an error naming the file).

The encoder itself is :class:`lightning_modules.encoders.m2d.M2DEncoder`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from torch import Tensor

from .checkpoints import CheckpointKeyError, extract_state_dict, load_checkpoint_file

#: Key prefix of the backbone in EVAR fine-tuned checkpoints.
EVAR_PREFIX = "module.ar.runtime.backbone."
#: Keys dropped silently (every other non-encoder key is an error), by who writes them:
#:
#: ===========================  =====================================================================
#: prefix                       written by
#: ===========================  =====================================================================
#: ``target_``                  M2D training: EMA target encoder (``target_blocks``, ``target_norm``)
#: ``decoder_``, ``mask_token``  M2D training: decoder
#: ``module.``                  EVAR fine-tuning: task head (after the backbone prefix is stripped)
#: ``offline_predictor.``       M2D-X, M2D-AS, M2D-S: the offline-target prediction head
#: ``audio_proj.``              M2D-CLAP: audio projection (MLP or semantic-token blocks)
#: ``text_proj.``               M2D-CLAP: text projection
#: ``text_encoder.``            M2D-CLAP files that include the text tower ("TI")
#: ``logit_scale``              M2D-CLAP: contrastive temperature
#: ===========================  =====================================================================
NON_ENCODER_PREFIXES: tuple[str, ...] = (
    "target_",
    "decoder_",
    "mask_token",
    "module.",
    "offline_predictor.",
    "audio_proj.",
    "text_proj.",
    "text_encoder.",
    "logit_scale",
)


# ---------------------------------------------------------------------------------------------
# Run-folder names
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class M2DRunName:
    """What an M2D run-folder name encodes, e.g. ``m2d_vit_base-80x608p16x16-221006-mr7``."""

    model: str
    n_mels: int
    input_frames: int
    patch: tuple[int, int]
    sample_rate: int
    extra: tuple[str, ...] = field(default=())


_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")


def parse_run_name(name: str) -> M2DRunName:
    """Parse ``<model>-<F>x<T>p<P>x<P>[p<sr>k][p...]-...``: F mels x T frames per chunk, PxP patches,
    sample rate ``<sr>`` kHz (default 16k). Raises ValueError when ``name`` does not follow it."""
    parts = name.split("-")
    if len(parts) < 2:
        raise ValueError(f"Not an M2D run name (expected '<model>-<F>x<T>p<P>x<P>[p16k|p32k]-...'): {name!r}")
    fields = parts[1].split("p")
    size = _SIZE_RE.match(fields[0])
    patch = _SIZE_RE.match(fields[1]) if len(fields) > 1 else None
    if not size or not patch:
        raise ValueError(f"Not an M2D run name (expected '<model>-<F>x<T>p<P>x<P>[p16k|p32k]-...'): {name!r}")
    sr = fields[2] if len(fields) > 2 else "16k"
    m = re.fullmatch(r"(\d+)k", sr)
    if not m:
        raise ValueError(f"Cannot read the sample rate {sr!r} in M2D run name {name!r} (expected e.g. 16k, 32k)")
    return M2DRunName(
        model=parts[0],
        n_mels=int(size.group(1)),
        input_frames=int(size.group(2)),
        patch=(int(patch.group(1)), int(patch.group(2))),
        sample_rate=int(m.group(1)) * 1000,
        extra=tuple(fields[3:]),
    )


def run_name_of(path: str | Path) -> Optional[M2DRunName]:
    """The run name of a checkpoint: its parent folder's name, else the file stem, else None."""
    path = Path(path)
    for candidate in (path.parent.name, path.stem):
        try:
            return parse_run_name(candidate)
        except ValueError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Checkpoint reading
# ---------------------------------------------------------------------------------------------
def _is_encoder_key(k: str) -> bool:
    return k in ("cls_token", "pos_embed", "norm_stats") or k.startswith(("patch_embed.", "blocks.", "norm."))


def load_m2d_state_dict(
    path: str | Path, trust_checkpoint: bool = False, ignore_prefixes: Sequence[str] = ()
) -> dict[str, Tensor]:
    """Encoder state dict of an M2D checkpoint in any of the three formats (module docstring).

    Keys starting with :data:`NON_ENCODER_PREFIXES` (or ``ignore_prefixes``) are dropped; every other
    key must be an encoder key (``cls_token``, ``pos_embed``, ``norm_stats``, ``patch_embed.*``,
    ``blocks.*``, ``norm.*``), else :class:`CheckpointKeyError` lists the unknown keys."""
    obj = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    sd = extract_state_dict(obj, path, container_keys=("model",))
    if any(k.startswith(EVAR_PREFIX) for k in sd):
        sd = {(k[len(EVAR_PREFIX) :] if k.startswith(EVAR_PREFIX) else k): v for k, v in sd.items()}
    drop = tuple(NON_ENCODER_PREFIXES) + tuple(ignore_prefixes)
    kept = {k: v for k, v in sd.items() if not k.startswith(drop)}
    unknown = sorted(k for k in kept if not _is_encoder_key(k))
    if unknown:
        raise CheckpointKeyError(
            f"Checkpoint {path} has unexpected keys ({len(unknown)}) that are neither "
            f"M2D encoder keys nor known non-encoder keys: {', '.join(unknown[:40])}"
        )
    if not kept:
        raise CheckpointKeyError(
            f"Checkpoint {path} holds no M2D encoder keys (cls_token, pos_embed, "
            f"patch_embed.*, blocks.*, norm.*); keys: {sorted(sd)[:20]}"
        )
    return kept


@dataclass
class _Arch:
    width: int
    depth: int
    mlp_hidden: int
    patch: tuple[int, int]
    pos_tokens: int


def _arch_from_state_dict(sd: dict[str, Tensor], path: str | Path) -> _Arch:
    need = ["cls_token", "patch_embed.proj.weight"]
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointKeyError(
            f"Checkpoint {path} does not match the M2D encoder: missing keys: {', '.join(missing)}"
        )
    width = int(sd["cls_token"].shape[-1])
    ids = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    if not ids:
        raise CheckpointKeyError(f"Checkpoint {path} does not match the M2D encoder: missing keys: blocks.*")
    fc1 = [v for k, v in sd.items() if re.fullmatch(r"blocks\.\d+\.mlp\.fc1\.weight", k)]
    if not fc1:
        raise CheckpointKeyError(
            f"Checkpoint {path} does not match the M2D encoder: missing keys: blocks.*.mlp.fc1.weight"
        )
    w = sd["patch_embed.proj.weight"]
    if w.shape[1] != 1:
        raise CheckpointKeyError(
            f"Checkpoint {path}: patch_embed.proj.weight has {w.shape[1]} input channels, expected 1"
        )
    pos = int(sd["pos_embed"].shape[1]) if "pos_embed" in sd else -1
    return _Arch(
        width=width,
        depth=max(ids) + 1,
        mlp_hidden=int(fc1[0].shape[0]),
        patch=(int(w.shape[2]), int(w.shape[3])),
        pos_tokens=pos,
    )


def patch_pair(patch: Optional[int | Sequence[int]]) -> Optional[tuple[int, int]]:
    """``16`` -> ``(16, 16)``; ``[80, 2]`` -> ``(80, 2)``; None stays None."""
    if patch is None:
        return None
    if isinstance(patch, int):
        return (patch, patch)
    ph, pw = patch
    return (int(ph), int(pw))


def _check_same(what: str, given, found, path) -> None:
    if given is not None and given != found:
        raise ValueError(f"{what}={given!r} was given but checkpoint {path} has {what}={found!r}")


@dataclass(frozen=True)
class M2DGeometry:
    """The dimensions an M2D encoder is built with (``sample_rate`` None: not in the run name)."""

    width: int
    depth: int
    mlp_ratio: float
    input_frames: int
    n_mels: int
    patch: tuple[int, int]
    sample_rate: Optional[int]


def checkpoint_geometry(
    sd: dict[str, Tensor],
    path: str | Path,
    *,
    width: Optional[int] = None,
    depth: Optional[int] = None,
    mlp_ratio: Optional[float] = None,
    input_frames: Optional[int] = None,
    n_mels: Optional[int] = None,
    patch: Optional[int | Sequence[int]] = None,
    sample_rate: Optional[int] = None,
) -> M2DGeometry:
    """The geometry of checkpoint ``path``: dimensions from its state dict ``sd``, input geometry from its
    run name (:func:`run_name_of`; without one: 80 mels, frames inferred from ``pos_embed``). Every value
    the caller gave must agree (else ValueError naming ``path``); ``depth`` is taken as given (a different
    depth shows up as missing / unexpected keys when loading)."""
    arch = _arch_from_state_dict(sd, path)
    run = run_name_of(path)
    _check_same("width", width, arch.width, path)
    if patch is not None and patch_pair(patch) != arch.patch:
        raise ValueError(f"patch={patch} was given but checkpoint {path} has patch {arch.patch}")
    if run is not None:
        _check_same("n_mels", n_mels, run.n_mels, path)
        _check_same("input_frames", input_frames, run.input_frames, path)
        _check_same("sample_rate", sample_rate, run.sample_rate, path)
        if run.patch != arch.patch:
            raise ValueError(f"Run name of {path} says patch {run.patch}, state dict has {arch.patch}")
        n_mels, input_frames, sample_rate = run.n_mels, run.input_frames, run.sample_rate
    ph, pw = arch.patch
    n_mels = 80 if n_mels is None else n_mels
    if input_frames is None:  # infer from pos_embed: 1 + (n_mels/ph) * (frames/pw) tokens
        input_frames = ((arch.pos_tokens - 1) // (n_mels // ph)) * pw if arch.pos_tokens > 1 else 608
    if arch.mlp_hidden % arch.width:
        raise ValueError(
            f"Checkpoint {path}: MLP hidden size {arch.mlp_hidden} is not a multiple of width {arch.width}"
        )
    found_ratio = arch.mlp_hidden / arch.width
    if mlp_ratio is not None and mlp_ratio != found_ratio:
        raise ValueError(f"mlp_ratio={mlp_ratio} was given but checkpoint {path} has {found_ratio}")
    return M2DGeometry(
        width=arch.width,
        depth=arch.depth if depth is None else depth,
        mlp_ratio=found_ratio,
        input_frames=input_frames,
        n_mels=n_mels,
        patch=arch.patch,
        sample_rate=sample_rate,
    )
