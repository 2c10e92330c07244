"""Resemblyzer voice encoder (GE2E speaker encoder, 3-layer LSTM) with the weights shipped by
``resemblyzer`` (``pretrained.pt``).

Written here from the package's architecture (``VoiceEncoder``) and its front end, which the package
computes with librosa; here it is plain torch (parity with librosa: ``tests/test_resemblyzer.py``). The
package is never imported (its import pulls librosa, webrtcvad and scipy); the weight file is located
with :func:`importlib.util.find_spec` and read with ``weights_only=True``.

Pipeline for a clip ``[S]`` at 16 kHz (``VoiceEncoder.embed_utterance`` with its defaults, rate 1.3,
min_coverage 0.75, on an already preprocessed waveform):

1. partial utterances of 160 frames (1.6 s) every 77 frames (``compute_partial_slices``); the last one
   is dropped when it covers less than 75 % of its span (unless it is the only one); the clip is
   zero-padded to the end of the last partial;
2. power mel spectrogram as ``librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160,
   n_mels=40)``: centred frames (zero padding of 200 samples on both sides, librosa >= 0.10), periodic
   Hann window of 400, ``|X|^2``, Slaney mel filterbank 0-8000 Hz, area-normalised; no log;
   frame ``i`` is centred on sample ``i * 160``;
3. per partial ``[160, 40]``: three LSTM layers (hidden 256), the last layer's final ``h`` -> Linear
   256 -> 256 -> ReLU -> L2 normalisation (the partial embedding);
4. clip embedding (256): the mean of the partial embeddings, L2-normalised.

Neurons (``channel_axis`` -1):

==============  ========  ====================================================================
site            neurons   positions of one call (rows = partial utterances)
==============  ========  ====================================================================
layers.0.out    256       the 160 frames of each partial: ``h_t`` of LSTM layer 1
layers.1.out    256       ``h_t`` of LSTM layer 2
layers.2.out    256       ``h_t`` of LSTM layer 3
relu            256       one per partial: ``ReLU(W h_T + b)``, the partial embedding before L2 norm
==============  ========  ====================================================================

1024 neurons. What is counted for the LSTM and why: an LSTM layer passes on only its hidden state
``h_t = o_t * tanh(c_t)`` (to the next layer and, for the last layer at the last frame, to the
read-out); gates and cell states are internal to the recurrence, so the 256 units of ``h_t`` of each
layer, at every frame, are that layer's neurons. ``h_t`` lies in (-1, 1) and is symmetric around 0, so
"active" (> 0, the project's criterion) means "on the positive side": the base rate of a unit is near
one half rather than the sparse firing of a ReLU; read entropies of these sites with that in mind.
The final projection's ReLU is the network's one ReLU: its 256 units, one value per partial, are
counted as well.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analysis.runs.read import load_tensor_file

from .base import AudioEncoder, Positions
from .melspec import slaney_mel_filterbank
from .package_assets import package_file, refuse_mismatch, shape_mismatches

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 40
HIDDEN = 256
N_LAYERS = 3
PARTIAL_FRAMES = 160
RATE = 1.3
MIN_COVERAGE = 0.75
INSTALL_HINT = "pip install --no-deps resemblyzer==0.1.4"
WEIGHTS = "pretrained.pt"
#: checkpoint keys of the GE2E training loss (not part of the encoder)
UNUSED = ("similarity_weight", "similarity_bias")


# --------------------------------------------------------------------------------------------
# functional core
# --------------------------------------------------------------------------------------------
def partial_slices(n_samples: int, rate: float = RATE, min_coverage: float = MIN_COVERAGE) -> list[tuple[int, int]]:
    """Mel-frame ranges ``[(start, stop)]`` of the partial utterances of a clip of ``n_samples``
    (Resemblyzer's ``compute_partial_slices``; sample range = frame range x 160).

    >>> partial_slices(16000)
    [(0, 160)]
    >>> partial_slices(48000)
    [(0, 160), (77, 237), (154, 314)]
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage={min_coverage} must be in (0, 1]")
    n_frames = math.ceil((n_samples + 1) / HOP)
    step = int(round((SAMPLE_RATE / rate) / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(
            f"rate={rate} gives a partial step of {step} frames; it must be in 1..{PARTIAL_FRAMES} "
            f"(rate >= {SAMPLE_RATE / (HOP * PARTIAL_FRAMES):.3f})"
        )
    steps = max(1, n_frames - PARTIAL_FRAMES + step + 1)
    slices = [(i, i + PARTIAL_FRAMES) for i in range(0, steps, step)]
    start, stop = slices[-1][0] * HOP, slices[-1][1] * HOP
    if (n_samples - start) / (stop - start) < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def resemblyzer_weights_path() -> Path:
    """``resemblyzer/pretrained.pt`` of the installed wheel (never imported)."""
    return package_file("resemblyzer", WEIGHTS, INSTALL_HINT, "Resemblyzer")


def convert_resemblyzer_state_dict(state: dict, expected: dict[str, torch.Size], source: str) -> dict[str, Tensor]:
    """Map ``lstm.*_l{k}`` to ``layers.{k}.lstm.*_l0`` (one single-layer LSTM per layer: the same maths),
    keep ``linear.*``, ignore the GE2E loss scalars; check every name and shape in one error."""

    def theirs(ours: str) -> str:
        if ours.startswith("layers."):
            _, k, _, name = ours.split(".", 3)
            return f"lstm.{name[:-1]}{k}"
        return ours

    missing = [theirs(k) for k in expected if theirs(k) not in state]
    known = {theirs(k) for k in expected} | set(UNUSED)
    unexpected = sorted(k for k in state if k not in known)
    out = {k: state[theirs(k)] for k in expected if theirs(k) in state}
    bad = shape_mismatches(out, expected, theirs, "checkpoint")
    refuse_mismatch(f"Resemblyzer checkpoint {source}", missing, unexpected, bad)
    return out


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class PowerMel(nn.Module):
    """wave ``[S]`` -> power mel ``[1 + S // 160, 40]`` (librosa's ``melspectrogram`` as Resemblyzer calls it)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer(
            "mel_fb", slaney_mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2), persistent=False
        )

    def forward(self, wave: Tensor) -> Tensor:
        y = F.pad(wave, (N_FFT // 2, N_FFT // 2))
        spec = torch.stft(
            y, N_FFT, hop_length=HOP, win_length=N_FFT, window=self.window, center=False, return_complex=True
        )
        return torch.matmul(self.mel_fb, spec.abs() ** 2).T


class LSTMLayer(nn.Module):
    """One LSTM layer whose per-frame hidden states ``h_t`` ``[R, T, 256]`` pass through ``out`` (the site)."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, HIDDEN, 1, batch_first=True)
        self.out = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.lstm(x)[0])


class ResemblyzerEncoder(AudioEncoder):
    """Resemblyzer's GE2E voice encoder as an :class:`AudioEncoder` (see the module docstring for the
    maths and for what is counted as a neuron).

    Args:
        pretrained: load ``resemblyzer/pretrained.pt``; False = random initialisation (an untrained
            control), seeded by ``seed``.
        rate: partial utterances per second (Resemblyzer's default 1.3).
        min_coverage: keep the last partial when it covers at least this fraction of its span (0.75).
        name: output-folder suffix.
        seed: seed of the random initialisation when ``pretrained`` is False.
    """

    sample_rate = SAMPLE_RATE
    channel_axis = -1
    embed_dim = HIDDEN
    frame_seconds = HOP / SAMPLE_RATE  # a position's frame: the 10 ms mel frame (centred on i * 160)

    def __init__(
        self,
        pretrained: bool = True,
        rate: float = RATE,
        min_coverage: float = MIN_COVERAGE,
        name: str = "resemblyzer",
        seed: int = 0,
    ) -> None:
        super().__init__()
        partial_slices(SAMPLE_RATE, rate, min_coverage)  # validates rate and min_coverage
        self.pretrained = pretrained
        self.rate = float(rate)
        self.min_coverage = float(min_coverage)
        self.name = name
        self.neuron_sites = [f"layers.{k}.out" for k in range(N_LAYERS)] + ["relu"]
        self.site_neurons = [HIDDEN] * (N_LAYERS + 1)
        self.mel = PowerMel()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.layers = nn.ModuleList(LSTMLayer(N_MELS if k == 0 else HIDDEN) for k in range(N_LAYERS))
            self.linear = nn.Linear(HIDDEN, HIDDEN)
        self.relu = nn.ReLU()
        self.checkpoint_path = resemblyzer_weights_path() if pretrained else None
        if self.checkpoint_path is not None:
            self.load_resemblyzer(self.checkpoint_path)
        self._call: Optional[dict[str, Positions]] = None
        self.eval()

    def load_resemblyzer(self, path: str | Path) -> None:
        """Load a Resemblyzer checkpoint (``{'model_state': ..., ...}``, ``weights_only=True`` through the
        project's one loader) after checking every key."""
        path = Path(path)
        ckpt = load_tensor_file(path)
        state = ckpt.get("model_state") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise TypeError(f"Resemblyzer checkpoint {path} holds no 'model_state' state dict")
        expected = {k: v.shape for k, v in self.state_dict().items()}
        self.load_state_dict(convert_resemblyzer_state_dict(state, expected, str(path)), strict=True)

    # -- bookkeeping ---------------------------------------------------------------------------
    def positions(self, site: str, output: Tensor) -> Positions:
        """Rows are the partial utterances of the batch; LSTM sites: their 160 frames (frames whose centre
        lies past the clip's end are not counted); ``relu``: one position per partial."""
        if self._call is None:
            return super().positions(site, output)
        pos = self._call["relu" if site == "relu" else "frames"]
        if pos.valid.shape[0] != output.shape[0]:
            raise RuntimeError(
                f"Resemblyzer site {site}: output has {output.shape[0]} rows, the call has "
                f"{pos.valid.shape[0]} partials"
            )
        return pos

    # -- forward -------------------------------------------------------------------------------
    def partial_mels(self, audio: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """audio ``[B, S]`` -> (mels ``[R, 160, 40]``, clip of each partial ``[R]``, first frame ``[R]``,
        frames of each clip whose centre lies inside the clip ``[B]``)."""
        if audio.dim() != 2:
            raise ValueError(f"Resemblyzer expects audio [B, S], got shape {tuple(audio.shape)}")
        b, s = audio.shape
        lens = torch.full((b,), s) if lengths is None else torch.as_tensor(lengths).reshape(-1).cpu()
        if lens.numel() != b:
            raise ValueError(f"lengths has {lens.numel()} entries for a batch of {b} clips")
        mels, clip, start = [], [], []
        for i in range(b):
            n = int(lens[i])
            slices = partial_slices(n, self.rate, self.min_coverage)
            stop = slices[-1][1] * HOP
            wave = audio[i, :n]
            if stop >= n:
                wave = F.pad(wave, (0, stop - n))
            mel = self.mel(wave)
            mels += [mel[a:z] for a, z in slices]
            clip += [i] * len(slices)
            start += [a for a, _ in slices]
        dev = audio.device
        inside = (lens + HOP - 1) // HOP  # frames i with i * 160 < length
        return (torch.stack(mels), torch.tensor(clip, device=dev), torch.tensor(start, device=dev), inside.to(dev))

    def _run(self, audio: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Returns (partial embeddings ``[R, 256]`` (L2-normalised), clip of each partial ``[R]``)."""
        mels, clip, start, inside = self.partial_mels(audio, lengths)
        frame = start[:, None] + torch.arange(PARTIAL_FRAMES, device=audio.device)[None, :]
        self._call = {
            "frames": Positions(
                clip=clip,
                valid=frame < inside[clip][:, None],
                special=torch.zeros(PARTIAL_FRAMES, dtype=torch.bool, device=audio.device),
                frame=frame,
            ),
            "relu": Positions(
                clip=clip,
                valid=(start < inside[clip])[:, None],
                special=torch.zeros(1, dtype=torch.bool, device=audio.device),
                frame=start[:, None],
            ),
        }
        try:
            x = mels
            for layer in self.layers:
                x = layer(x)
            raw = self.relu(self.linear(x[:, -1]))
        finally:
            self._call = None
        return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12), clip

    def partial_embeddings(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """``[R, 256]``: the L2-normalised embedding of every partial utterance (``VoiceEncoder.forward``)."""
        return self._run(audio, lengths)[0]

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` (16 kHz) -> ``[B, 256]``: Resemblyzer's utterance embedding of each clip."""
        part, clip = self._run(audio, lengths)
        total = part.new_zeros(audio.shape[0], HIDDEN).index_add(0, clip, part)
        return total / total.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def extra_repr(self) -> str:
        return f"pretrained={self.pretrained}, rate={self.rate}, min_coverage={self.min_coverage}"
