"""Silero VAD v6 (16 kHz) voice-activity network with the weights shipped by ``silero-vad``.

Written here from the published architecture (the package ships a TorchScript file, ONNX files and a
safetensors file of the 16 kHz weights; the package is never imported, the safetensors file is located
with :func:`importlib.util.find_spec` and read with ``safetensors`` -- no pickle).

Pipeline for a clip ``[S]`` at 16 kHz (as the package's streaming model, chunk by chunk):

1. the clip is zero-padded on the right to ``n = max(1, ceil(S / 512))`` chunks of 512 samples and 64
   zeros are prepended (the first chunk's context); chunk ``i`` is the 576 samples
   ``[i*512 - 64, (i+1)*512)`` (64 samples of context, then its own 512);
2. "STFT": right reflect-pad by 64 -> 640 samples -> conv1d 258 kernels of 256, stride 128 (no bias) ->
   4 steps; magnitude ``sqrt(re^2 + im^2)`` of the 129 (re, im) pairs -> ``[129, 4]``;
3. encoder: four ``conv1d (k=3, pad 1) -> ReLU`` blocks, channels 128, 64, 64, 128, strides 1, 2, 2, 1
   -> ``[128, 1]`` per chunk;
4. decoder: an ``LSTMCell(128, 128)`` carries ``(h, c)`` from chunk to chunk (zeros before the first);
   ``ReLU(h)`` -> conv1d 128 -> 1 -> sigmoid: the chunk's speech probability.

Neurons (post-activation sites, ``channel_axis`` 1):

==================  ========  ===========================================================
site                neurons   positions of one call
==================  ========  ===========================================================
encoder.0.relu      128       4 STFT steps of each chunk (rows = chunks)
encoder.1.relu      64        2 steps
encoder.2.relu      64        1 step
encoder.3.relu      128       1 step
decoder.relu        128       the chunks of the clip (rows = clips): ``ReLU(h_t)``
==================  ========  ===========================================================

512 neurons. For the LSTM the counted units are its 128 hidden states ``h_t`` after the network's own
ReLU (``decoder.relu``), one value per chunk: that ReLU is the only non-linearity the network applies to
the LSTM output before its decision, so "``ReLU(h_t) > 0``" is exactly "unit t passes signal to the
speech/non-speech read-out", the same criterion as every other ReLU site. The gates and the cell
state ``c_t`` are internal to the recurrence and are not counted.

Clip embedding (128): the mean over the clip's valid chunks of ``ReLU(h_t)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from .base import AudioEncoder, Positions, site_view
from .package_assets import package_file, refuse_mismatch, shape_mismatches

SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64
STFT_PAD = 64
N_FFT = 256
STFT_HOP = 128
BINS = N_FFT // 2 + 1
CHANNELS = (128, 64, 64, 128)
STRIDES = (1, 2, 2, 1)
HIDDEN = 128
INSTALL_HINT = "pip install --no-deps silero-vad==6.2.3"
WEIGHTS = "data/silero_vad_16k.safetensors"

#: our parameter name -> the name in silero_vad_16k.safetensors
_KEY_MAP: dict[str, str] = {"stft.weight": "stft_conv.weight"}
for _i in range(4):
    for _p in ("weight", "bias"):
        _KEY_MAP[f"encoder.{_i}.conv.{_p}"] = f"conv{_i + 1}.{_p}"
for _p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
    _KEY_MAP[f"decoder.rnn.{_p}"] = f"lstm_cell.{_p}"
for _p in ("weight", "bias"):
    _KEY_MAP[f"decoder.conv.{_p}"] = f"final_conv.{_p}"


# --------------------------------------------------------------------------------------------
# functional core
# --------------------------------------------------------------------------------------------
def n_chunks(n_samples: int) -> int:
    """Chunks of 512 samples covering ``n_samples`` (at least one)."""
    return max(1, -(-int(n_samples) // CHUNK))


def chunk_audio(audio: Tensor) -> Tensor:
    """audio ``[B, S]`` -> chunks with context ``[B, n, 576]``: chunk ``i`` holds original samples
    ``[i*512 - 64, (i+1)*512)`` (zeros before the clip and after its end)."""
    if audio.dim() != 2:
        raise ValueError(f"Silero VAD expects audio [B, S], got shape {tuple(audio.shape)}")
    n = n_chunks(audio.shape[1])
    padded = F.pad(audio, (CONTEXT, n * CHUNK - audio.shape[1]))
    return padded.unfold(-1, CHUNK + CONTEXT, CHUNK)


def chunk_validity(lengths: Optional[Tensor], n_clips: int, n: int, device: Optional[torch.device] = None) -> Tensor:
    """BoolTensor ``[B, n]``: True for chunks holding at least one valid sample of their own 512
    (``i * 512 < length``); ``lengths=None``: all valid."""
    if lengths is None:
        return torch.ones(n_clips, n, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device).reshape(-1)
    if lengths.numel() != n_clips:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {n_clips} clips")
    starts = torch.arange(n, device=lengths.device) * CHUNK
    return starts[None, :] < lengths[:, None]


def silero_weights_path() -> Path:
    """``silero_vad/data/silero_vad_16k.safetensors`` of the installed wheel (never imported)."""
    return package_file("silero_vad", WEIGHTS, INSTALL_HINT, "Silero VAD")


def convert_silero_state_dict(
    state: dict[str, Tensor], expected: dict[str, torch.Size], source: str
) -> dict[str, Tensor]:
    """Rename the safetensors keys to ours and check names and shapes; one error lists every problem."""
    theirs = {v: k for k, v in _KEY_MAP.items()}
    missing = sorted(_KEY_MAP[k] for k in expected if _KEY_MAP.get(k) not in state)
    unexpected = sorted(k for k in state if k not in theirs)
    out = {theirs[k]: v for k, v in state.items() if k in theirs}
    bad = shape_mismatches(out, expected, _KEY_MAP.__getitem__, "file")
    refuse_mismatch(f"Silero VAD weights {source}", missing, unexpected, bad, verb="do")
    return out


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class SileroBlock(nn.Module):
    """``conv1d (k=3, pad 1) -> ReLU`` on ``[R, C, T]``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 3, stride, 1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))


class SileroDecoder(nn.Module):
    """LSTMCell over the chunks, then ``ReLU -> conv1d 1x1 -> sigmoid`` (the speech probability)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTMCell(HIDDEN, HIDDEN)
        self.relu = nn.ReLU()
        self.conv = nn.Conv1d(HIDDEN, 1, 1)


class SileroVADEncoder(AudioEncoder):
    """Silero VAD v6 (16 kHz) as an :class:`AudioEncoder` (see the module docstring for the maths and
    for what is counted as a neuron).

    Args:
        pretrained: load ``silero_vad/data/silero_vad_16k.safetensors``; False = random initialisation
            (an untrained control), seeded by ``seed``.
        name: output-folder suffix.
        seed: seed of the random initialisation when ``pretrained`` is False.
    """

    sample_rate = SAMPLE_RATE
    channel_axis = 1
    embed_dim = HIDDEN
    frame_seconds = CHUNK / SAMPLE_RATE  # a position's frame: the 32 ms chunk

    def __init__(self, pretrained: bool = True, name: str = "silero_vad", seed: int = 0) -> None:
        super().__init__()
        self.pretrained = pretrained
        self.name = name
        self.neuron_sites = [f"encoder.{i}.relu" for i in range(4)] + ["decoder.relu"]
        self.site_neurons = list(CHANNELS) + [HIDDEN]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stft = nn.Conv1d(1, 2 * BINS, N_FFT, STFT_HOP, bias=False)
            ins = (BINS,) + CHANNELS[:-1]
            self.encoder = nn.ModuleList(SileroBlock(i, o, s) for i, o, s in zip(ins, CHANNELS, STRIDES))
            self.decoder = SileroDecoder()
        self.checkpoint_path = silero_weights_path() if pretrained else None
        if self.checkpoint_path is not None:
            self.load_silero(self.checkpoint_path)
        self._call: Optional[dict[str, Positions]] = None
        self.eval()

    def load_silero(self, path: str | Path) -> None:
        """Load a silero ``.safetensors`` file (no pickle) after checking every key and shape."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Silero VAD weight file not found: {path}")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"Silero VAD weights {path}: not a readable safetensors file ({e})") from e
        expected = {k: v.shape for k, v in self.state_dict().items()}
        self.load_state_dict(convert_silero_state_dict(state, expected, str(path)), strict=True)

    # -- bookkeeping ---------------------------------------------------------------------------
    def positions(self, site: str, output: Tensor) -> Positions:
        """Encoder sites: rows are the chunks of the batch (clip-major), every step of a valid chunk
        counted. ``decoder.relu``: rows are clips, positions their chunks."""
        if self._call is None:
            return super().positions(site, output)
        pos = self._call["decoder" if site == "decoder.relu" else "encoder"]
        r, p = site_view(output, self.channel_axis).shape[:2]
        if r != pos.clip.numel():
            raise RuntimeError(f"Silero VAD site {site}: output has {r} rows, the call has {pos.clip.numel()}")
        if pos.valid.shape[1] == p:
            return pos
        return Positions(
            clip=pos.clip,
            valid=pos.valid[:, :1].expand(r, p).contiguous(),
            special=torch.zeros(p, dtype=torch.bool, device=output.device),
            frame=pos.frame[:, :1].expand(r, p),
        )

    def _bookkeeping(self, valid: Tensor) -> dict[str, Positions]:
        b, n = valid.shape
        dev = valid.device
        chunk = torch.arange(n, device=dev)
        return {
            "encoder": Positions(
                clip=torch.arange(b, device=dev).repeat_interleave(n),
                valid=valid.reshape(-1, 1),
                special=torch.zeros(1, dtype=torch.bool, device=dev),
                frame=chunk.repeat(b)[:, None],
            ),
            "decoder": Positions(
                clip=torch.arange(b, device=dev),
                valid=valid,
                special=torch.zeros(n, dtype=torch.bool, device=dev),
                frame=chunk.expand(b, n),
            ),
        }

    # -- forward -------------------------------------------------------------------------------
    def _run(self, audio: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (valid ``[B, n]``, ``ReLU(h)`` ``[B, 128, n]``, speech probability ``[B, n]``)."""
        chunks = chunk_audio(audio)  # [B, n, 576]
        b, n, _ = chunks.shape
        valid = chunk_validity(lengths, b, n, device=audio.device)
        self._call = self._bookkeeping(valid)
        try:
            x = F.pad(chunks.reshape(b * n, 1, -1), (0, STFT_PAD), mode="reflect")
            spec = self.stft(x)
            x = torch.sqrt(spec[:, :BINS] ** 2 + spec[:, BINS:] ** 2)
            for block in self.encoder:
                x = block(x)
            feats = x.reshape(b, n, HIDDEN)
            h = feats.new_zeros(b, HIDDEN)
            c = feats.new_zeros(b, HIDDEN)
            hs = []
            for t in range(n):
                h, c = self.decoder.rnn(feats[:, t], (h, c))
                hs.append(h)
            act = self.decoder.relu(torch.stack(hs, dim=2))  # [B, 128, n]
            prob = torch.sigmoid(self.decoder.conv(act))[:, 0]
        finally:
            self._call = None
        return valid, act, prob

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` (16 kHz) -> ``[B, 128]``: mean of ``ReLU(h_t)`` over the clip's valid chunks
        (zeros for a clip without valid samples)."""
        valid, act, _ = self._run(audio, lengths)
        w = valid.to(act.dtype)[:, None, :]
        return (act * w).sum(-1) / w.sum(-1).clamp(min=1)

    def speech_probability(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> the model's speech probability per 32 ms chunk ``[B, n]``."""
        return self._run(audio, None)[2]

    def extra_repr(self) -> str:
        return f"pretrained={self.pretrained}, chunk={CHUNK} samples, embed_dim={self.embed_dim}"
