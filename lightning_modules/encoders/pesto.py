"""PESTO (Riou et al., ISMIR 2023), a self-supervised pitch estimator, with the weights of the ``pesto-pitch``
wheel (``pesto/weights/mir-1k_g7.ckpt``, LGPL-3.0; read by :mod:`.pesto_checkpoint`, never pickled code).

Written here from the published architecture and the checkpoint's hyper-parameters (``pesto`` is never
imported: its ``__init__`` pulls torchaudio); the front-end is torch only. For a clip ``[S]`` at 16 kHz:

1. constant-Q transform: 251 bins, 3 per semitone from ``27.5 / 2**(2/72)`` Hz (bin centres on the
   semitones' thirds), variable-Q (``gamma = 7``: kernel length ``ceil(Q sr / (f + gamma / alpha))``,
   ``Q = 1 / alpha``, ``alpha = 2**(1/36) - 1``), periodic-Hann kernels normalised to unit L1 norm,
   centred in ``K = 4096`` samples, then scaled by ``sqrt(length)``; frames every ``hop`` samples with
   ``K/2`` samples of reflection padding on both sides → ``T = 1 + S // hop`` frames, frame ``i``
   centred on sample ``i * hop`` (the clip needs more than 2048 samples);
2. log power ``ln |c|**2`` per bin (the package computes ``20 log10 |c|`` and scales it by ``ln 10 / 10``
   in place), floored at float32 eps; the 16 lowest and 16 highest bins are cropped → 219 bins;
3. per frame ``[1, 219]``: LayerNorm over the 219 bins, ``layers.0``: Conv1d 1→40 (kernel 39, same
   padding) → LeakyReLU(0.3); ``layers.1``, ``layers.2``: Conv1d 40→40 (kernel 39) → LeakyReLU, added to
   their input (residual); ``layers.3..6``: 1×1 Conv1d 40→30→30→10→3 → LeakyReLU; flatten channel-major
   (657) → Toeplitz linear (a 1-channel Conv1d, kernel 1040, padding 383) → 384 pitch bins (3 per
   semitone, bin 0 = MIDI 0) → softmax → rolled by ``-round(3 * shift)`` (the checkpoint's ``shift``).

Neurons: the LeakyReLU outputs ``layers.{i}.act`` (i = 0..6, 40+40+40+30+30+10+3 = 193 neurons), output
``[R, C_i, 219]`` with ``R`` = frames of the call (``channel_axis = 1``; a neuron is a channel, the
positions are the 219 CQT bins of every frame; LeakyReLU output > 0 exactly where its input is > 0). For
the residual layers the site is the activation before the residual sum (the sum is not an activation).
Frames whose centre lies past the clip's valid samples are not counted. Dropout (training only) and the
voicing-confidence head of the checkpoint are not built.

Clip embedding (``embedding_layer`` k, 1-based): the output of layer k (after its residual sum),
flattened channel-major (``c * 219 + f``), averaged over the clip's valid frames: 8760 for k = 1..3,
6570 for 4, 5, 2190 for 6, 657 for 7 (default: every neuron site is upstream of it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AudioEncoder, Positions, site_view
from .resume import FramedResume
from .pesto_checkpoint import convert_state_dict, pesto_weights_path, read_pesto_checkpoint

SAMPLE_RATE = 16000
BINS_PER_SEMITONE = 3
FMIN = 27.5
N_BINS = 251
GAMMA = 7
CROP = 16  # bins cropped at each end (the checkpoint's pitch_shift min_steps / max_steps)
N_BINS_IN = N_BINS - 2 * CROP
CHANNELS = (40, 40, 40, 30, 30, 10, 3)
PREFILTER_KERNEL = 39
N_PREFILTER = 2  # residual prefilter layers after the first conv
LEAKY_SLOPE = 0.3
OUTPUT_DIM = 128 * BINS_PER_SEMITONE
#: What the architecture above assumes of the checkpoint's hyper-parameters (checked when loading).
EXPECTED_HPARAMS = {
    "n_chan_input": 1,
    "n_chan_layers": [40, 30, 30, 10, 3],
    "n_prefilt_layers": 3,
    "prefilt_kernel_size": 39,
    "residual": True,
    "n_bins_in": N_BINS_IN,
    "output_dim": OUTPUT_DIM,
    "activation_fn": "leaky",
    "a_lrelu": LEAKY_SLOPE,
}
EXPECTED_HCQT = {
    "harmonics": [1],
    "fmin": FMIN,
    "bins_per_semitone": BINS_PER_SEMITONE,
    "n_bins": N_BINS,
    "center_bins": True,
    "gamma": GAMMA,
    "center": True,
}


# --------------------------------------------------------------------------------------------
# functional core: the constant-Q kernels
# --------------------------------------------------------------------------------------------
def cqt_kernels(sample_rate: int = SAMPLE_RATE) -> tuple[Tensor, Tensor]:
    """Complex CQT kernels ``[N_BINS, K]`` (complex64) and the sqrt of their lengths ``[N_BINS, 1]``
    (module docstring, step 1)."""
    bpo = 12 * BINS_PER_SEMITONE
    fmin = FMIN / 2 ** ((BINS_PER_SEMITONE - 1) / (24 * BINS_PER_SEMITONE))
    freqs = fmin * 2.0 ** (np.arange(N_BINS) / float(bpo))
    if freqs.max() > sample_rate / 2:
        raise ValueError(f"PESTO's top CQT bin {freqs.max():.1f} Hz is above the Nyquist frequency of {sample_rate} Hz")
    alpha = 2.0 ** (1.0 / bpo) - 1.0
    lengths = np.ceil((1.0 / alpha) * sample_rate / (freqs + GAMMA / alpha))
    width = int(2 ** np.ceil(np.log2(lengths.max())))
    kernels = np.zeros((N_BINS, width), dtype=np.complex64)
    for k, (f, n) in enumerate(zip(freqs, lengths)):
        n_int = int(n)
        start = int(math.ceil(width / 2 - n / 2)) - (1 if n_int % 2 == 1 else 0)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_int) / n_int)  # periodic Hann
        t = np.arange(-(n_int // 2) - (n_int % 2), n_int // 2)  # floor(-n/2) .. ceil(n/2) - 1
        sig = window * np.exp(t * 1j * 2 * np.pi * f / sample_rate) / n
        kernels[k, start : start + n_int] = sig / np.abs(sig).sum()
    return torch.from_numpy(kernels), torch.from_numpy(lengths).float().sqrt()[:, None]


def hop_samples(hop_ms: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Frame hop in samples, rounded as pesto-pitch does (``int(ms * sr / 1000 + 0.5)``)."""
    hop = int(hop_ms * sample_rate / 1000 + 0.5)
    if hop < 1:
        raise ValueError(f"PESTO hop_ms={hop_ms} gives a hop of {hop} samples; it must be >= 1")
    return hop


class ConstantQ(nn.Module):
    """audio ``[B, S]`` → cropped log-power CQT ``[B, T, 219]`` (module docstring, steps 1-2)."""

    def __init__(self, hop: int, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        kernels, sqrt_lengths = cqt_kernels(sample_rate)
        self.hop = int(hop)
        self.width = kernels.shape[1]
        self.register_buffer("weight", torch.cat([kernels.real, -kernels.imag])[:, None, :], persistent=False)
        self.register_buffer("sqrt_lengths", sqrt_lengths, persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        if audio.dim() != 2:
            raise ValueError(f"PESTO expects audio [B, S], got shape {tuple(audio.shape)}")
        if audio.shape[1] <= self.width // 2:
            raise ValueError(
                f"PESTO needs clips longer than {self.width // 2} samples "
                f"({self.width / 2 / SAMPLE_RATE:.3f} s), got {audio.shape[1]}"
            )
        x = F.pad(audio[:, None, :], (self.width // 2, self.width // 2), mode="reflect")
        c = F.conv1d(x, self.weight, stride=self.hop).view(audio.shape[0], 2, N_BINS, -1) * self.sqrt_lengths
        mag = torch.sqrt(c[:, 0] ** 2 + c[:, 1] ** 2)  # [B, F, T]
        eps = torch.finfo(torch.float32).eps
        log_power = mag.clamp(min=eps).log10() * 20 * (math.log(10) / 10)
        return log_power[:, CROP : N_BINS - CROP].transpose(1, 2)


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------
class PestoLayer(nn.Module):
    """``Conv1d -> LeakyReLU`` (the neuron site ``act``), plus the input when ``residual``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, residual: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.conv(x))
        return y + x if self.residual else y


class PestoEncoder(FramedResume, AudioEncoder):
    """PESTO as an :class:`AudioEncoder` (see the module docstring for the maths).

    Args:
        pretrained: load ``pesto/weights/<weights>.ckpt``; False = random initialisation (an untrained
            control), seeded by ``seed``.
        weights: name of the checkpoint in the wheel (``mir-1k_g7``, the package's default).
        hop_ms: frame hop in milliseconds (pesto-pitch's default step is 10 ms).
        embedding_layer: 1-based layer whose output, averaged over the clip's frames, is the embedding.
        name: output-folder suffix (default ``pesto``).
        seed: seed of the random initialisation when ``pretrained`` is False.
        frame_batch_size: frames run through the network per call (the sites then run once per chunk).
    """

    sample_rate = SAMPLE_RATE
    channel_axis = 1

    def __init__(
        self,
        pretrained: bool = True,
        weights: str = "mir-1k_g7",
        hop_ms: float = 10.0,
        embedding_layer: int = 7,
        name: Optional[str] = None,
        seed: int = 0,
        frame_batch_size: int = 1024,
    ) -> None:
        super().__init__()
        if not 1 <= embedding_layer <= len(CHANNELS):
            raise ValueError(f"embedding_layer={embedding_layer} out of range 1..{len(CHANNELS)}")
        if frame_batch_size < 1:
            raise ValueError(f"frame_batch_size={frame_batch_size} must be >= 1")
        self.pretrained = pretrained
        self.hop_ms = float(hop_ms)
        self.hop = hop_samples(hop_ms)
        self.frame_seconds = self.hop / SAMPLE_RATE
        self.embedding_layer = embedding_layer
        self.frame_batch_size = frame_batch_size
        self.name = name or "pesto"
        self.neuron_sites = [f"layers.{i}.act" for i in range(len(CHANNELS))]
        self.site_neurons = list(CHANNELS)
        self.embed_dim = CHANNELS[embedding_layer - 1] * N_BINS_IN
        self.cqt = ConstantQ(self.hop)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.layernorm = nn.LayerNorm([1, N_BINS_IN])
            ins = (1,) + CHANNELS[:-1]
            kernels = [PREFILTER_KERNEL] * (1 + N_PREFILTER) + [1] * (len(CHANNELS) - 1 - N_PREFILTER)
            self.layers = nn.ModuleList(
                PestoLayer(i, o, k, residual=1 <= n <= N_PREFILTER)
                for n, (i, o, k) in enumerate(zip(ins, CHANNELS, kernels))
            )
            fc_in = CHANNELS[-1] * N_BINS_IN
            self.fc = nn.Conv1d(1, 1, fc_in + OUTPUT_DIM - 1, padding=OUTPUT_DIM - 1, bias=False)
        self.register_buffer("shift", torch.zeros(()))
        self.checkpoint_path: Optional[Path] = None
        if pretrained:
            self.checkpoint_path = pesto_weights_path(weights)
            self.load_pesto(self.checkpoint_path)
        self._call: Optional[tuple[Tensor, Tensor, Tensor]] = None  # (clip, valid, frame) [R] of the call
        self.eval()

    # -- weights -------------------------------------------------------------------------------
    def load_pesto(self, path: str | Path) -> None:
        """Load a pesto-pitch checkpoint after checking its hyper-parameters and every key."""
        ck = read_pesto_checkpoint(path)
        enc, hcqt = ck["hparams"].get("encoder", {}), ck["hcqt_params"]
        crop = ck["hparams"].get("pitch_shift", {})
        wrong = [f"{k}={enc.get(k)!r} (expected {v!r})" for k, v in EXPECTED_HPARAMS.items() if enc.get(k) != v]
        wrong += [f"{k}={hcqt.get(k)!r} (expected {v!r})" for k, v in EXPECTED_HCQT.items() if hcqt.get(k) != v]
        if crop != {"min_steps": -CROP, "max_steps": CROP}:
            wrong.append(f"pitch_shift={crop!r} (expected min_steps -{CROP}, max_steps {CROP})")
        if wrong:
            raise ValueError(f"PESTO checkpoint {path}: hyper-parameters differ from the architecture: {wrong}")
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        self.load_state_dict(convert_state_dict(ck["state_dict"], expected, N_PREFILTER, str(path)), strict=True)

    # -- bookkeeping ---------------------------------------------------------------------------
    def positions(self, site: str, output: Tensor) -> Positions:
        """Rows are the frames of the current call, positions the 219 CQT bins; frames centred past a
        clip's valid samples are not counted."""
        if self._call is None:
            return super().positions(site, output)
        clip, fvalid, frame = self._call
        r, p = site_view(output, self.channel_axis).shape[:2]
        if r != clip.numel():
            raise RuntimeError(f"PESTO site {site}: output has {r} rows, the call has {clip.numel()} frames")
        dev = output.device
        return Positions(
            clip=clip.to(dev),
            valid=fvalid.to(dev)[:, None].expand(r, p).contiguous(),
            special=torch.zeros(p, dtype=torch.bool, device=dev),
            frame=frame.to(dev)[:, None].expand(r, p),
        )

    def frame_validity(self, lengths: Optional[Tensor], n_clips: int, n_frames: int, device) -> Tensor:
        """BoolTensor ``[B, T]``: frame ``i`` (centred on ``i * hop``) is valid when ``i * hop < length``."""
        if lengths is None:
            return torch.ones(n_clips, n_frames, dtype=torch.bool, device=device)
        lengths = torch.as_tensor(lengths, device=device).reshape(-1)
        if lengths.numel() != n_clips:
            raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {n_clips} clips")
        return torch.arange(n_frames, device=device)[None, :] * self.hop < lengths[:, None]

    # -- forward -------------------------------------------------------------------------------
    def _run(
        self, audio: Tensor, lengths: Optional[Tensor], keep_layer: Optional[int], classify: bool
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Every frame through the network (chunks of ``frame_batch_size``; every site fires). Returns
        (valid ``[B, T]``, sum over valid frames of layer ``keep_layer``'s output ``[B, D]`` or None,
        pitch activations ``[B, T, 384]`` or None)."""
        spec = self.cqt(audio)  # [B, T, 219]
        b, t, _ = spec.shape
        valid = self.frame_validity(lengths, b, t, audio.device)
        rows = spec.reshape(b * t, 1, N_BINS_IN)
        clip_of_row = torch.arange(b, device=audio.device).repeat_interleave(t)
        frame_of_row = torch.arange(t, device=audio.device).repeat(b)
        valid_rows = valid.reshape(-1)
        emb, acts = None, []
        try:
            for start in range(0, rows.shape[0], self.frame_batch_size):
                sl = slice(start, start + self.frame_batch_size)
                self._call = (clip_of_row[sl], valid_rows[sl], frame_of_row[sl])
                x = self.layernorm(rows[sl])
                for i, layer in enumerate(self.layers):
                    x = layer(x)
                    if keep_layer is not None and i == keep_layer - 1:
                        flat = x.flatten(1) * valid_rows[sl, None].to(x.dtype)
                        emb = (flat.new_zeros(b, flat.shape[1]) if emb is None else emb).index_add(
                            0, clip_of_row[sl], flat
                        )
                if classify:
                    acts.append(torch.softmax(self.fc(x.flatten(1)[:, None, :])[:, 0], dim=-1))
        finally:
            self._call = None
        out = None
        if classify:
            out = torch.cat(acts).reshape(b, t, OUTPUT_DIM)
            out = out.roll(-round(float(self.shift) * BINS_PER_SEMITONE), -1)
        return valid, emb, out

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` (16 kHz) → clip embeddings ``[B, embed_dim]`` (mean over valid frames of layer
        ``embedding_layer``'s output; a clip without valid frames gets zeros)."""
        valid, emb, _ = self._run(audio, lengths, self.embedding_layer, classify=False)
        return emb / valid.sum(1, keepdim=True).clamp(min=1).to(emb.dtype)

    # -- resuming at a site (lightning_modules/encoders/resume.py) -------------------------------------
    def _frame_rows(self, audio: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        spec = self.cqt(audio)  # [B, T, 219]
        b, t, _ = spec.shape
        return spec.reshape(b * t, 1, N_BINS_IN), self.frame_validity(lengths, b, t, audio.device)

    def _chunk_input(self, x: Tensor) -> Tensor:
        return self.layernorm(x)

    def _layer_pre(self, i: int, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        layer = self.layers[i]
        return layer.conv(x), (x if layer.residual else None)

    def _layer_post(self, i: int, a: Tensor, carry: Optional[Tensor]) -> Tensor:
        return a + carry if carry is not None else a

    def activations(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` → pitch activations ``[B, T, 384]`` (softmax; bin ``k`` = MIDI ``k / 3``)."""
        return self._run(audio, None, None, classify=True)[2]

    def pitch_midi(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` → fractional MIDI pitch per frame ``[B, T]`` (argmax bin / 3)."""
        return self.activations(audio).argmax(-1).float() / BINS_PER_SEMITONE

    def extra_repr(self) -> str:
        return (
            f"pretrained={self.pretrained}, hop={self.hop} samples, embedding_layer={self.embedding_layer}, "
            f"embed_dim={self.embed_dim}"
        )
