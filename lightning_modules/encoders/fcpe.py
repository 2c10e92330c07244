"""FCPE pitch network (``CFNaiveMelPE`` of torchfcpe, conv-only conformer) with the weights shipped by
``torchfcpe`` (``assets/fcpe_c_v001.pt``).

Written here from the architecture the checkpoint's ``config_dict`` describes (``conv_only: true``: no
attention in the bundled model); torchfcpe is never imported (its import pulls torchaudio), the weight
file is located with :func:`importlib.util.find_spec` and read with ``weights_only=True``.

Pipeline for a clip ``[S]`` at 16 kHz:

1. log-mel as torchfcpe's ``Wav2MelModule``: pad 432 samples on the left and
   ``max(432, 592 - S)`` on the right (reflect, or zeros when the clip is shorter than that padding),
   STFT n_fft = window = 1024 (periodic Hann), hop 160, not centred; magnitude
   ``sqrt(re^2 + im^2 + 1e-9)``; Slaney mel filterbank (128 bands, 0-8000 Hz, area-normalised);
   ``log(max(mel, 1e-5))``; the frame count is then made ``S // 160 + 1`` (the last frame repeated
   or the extra ones dropped). Frame ``i`` is centred on sample ``i * 160``;
2. input stack ``conv1d 128->512 (k3) -> GroupNorm(4) -> LeakyReLU -> conv1d 512->512 (k3)``;
3. six residual conv blocks ``x + [LayerNorm -> conv1x1 512->2048 -> GLU -> depthwise conv k31 ->
   SiLU -> conv1x1 1024->512](x)``;
4. LayerNorm -> weight-normalised Linear 512 -> 360 -> sigmoid: the pitch "latent", 360 bins of
   20 cents from 32.70 Hz (C1) to 1975.5 Hz (the checkpoint's ``cent_table``).

Neurons (post-activation sites, ``channel_axis`` 1, positions = the clip's frames, rows = clips):
``input_stack.act`` (LeakyReLU, 512) and ``layers.{0..5}.act`` (SiLU after the depthwise conv, 1024
each): 6656 neurons. A unit is "active" when its output is > 0, i.e. when its pre-activation is > 0
(LeakyReLU and SiLU are both positive exactly there), the same event as for a ReLU.

Clip embedding (512): the final LayerNorm output averaged over the clip's valid frames.
"""

from __future__ import annotations

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
N_FFT = 1024
HOP = 160
N_MELS = 128
F_MAX = 8000.0
CLIP_VAL = 1e-5
MAG_EPS = 1e-9
HIDDEN = 512
INNER = 1024
N_LAYERS = 6
KERNEL = 31
PITCH_BINS = 360
F0_MIN, F0_MAX = 32.70, 1975.5
INSTALL_HINT = "pip install --no-deps torchfcpe==0.0.4"
WEIGHTS = "assets/fcpe_c_v001.pt"
#: checkpoint keys the conv-only model never uses (the attention pre-norm of each layer)
UNUSED = tuple(f"net.encoder_layers.{i}.norm.{p}" for i in range(N_LAYERS) for p in ("weight", "bias")) + (
    "gaussian_blurred_cent_mask",
)


# --------------------------------------------------------------------------------------------
# functional core
# --------------------------------------------------------------------------------------------
def fcpe_frames(n_samples: int) -> int:
    """Frames FCPE gives a clip of ``n_samples``: ``n_samples // 160 + 1``."""
    return int(n_samples) // HOP + 1


def frame_validity(
    lengths: Optional[Tensor], n_clips: int, n_frames: int, device: Optional[torch.device] = None
) -> Tensor:
    """BoolTensor ``[B, T]``: True for frames whose window ``[i*160 - 432, i*160 + 592)`` overlaps the
    clip's valid samples ``[0, length)``; ``lengths=None``: all valid."""
    if lengths is None:
        return torch.ones(n_clips, n_frames, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device).reshape(-1)
    if lengths.numel() != n_clips:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {n_clips} clips")
    starts = torch.arange(n_frames, device=lengths.device) * HOP - (N_FFT - HOP) // 2
    return (starts[None, :] < lengths[:, None]) & (lengths[:, None] > 0)


def cent_table() -> Tensor:
    """float32 ``[360]`` cents (above 10 Hz) of the pitch bins, as torchfcpe builds it."""
    lo = 1200.0 * torch.log2(torch.tensor([F0_MIN]) / 10.0)[0]
    hi = 1200.0 * torch.log2(torch.tensor([F0_MAX]) / 10.0)[0]
    return torch.linspace(lo, hi, PITCH_BINS)


def fcpe_weights_path() -> Path:
    """``torchfcpe/assets/fcpe_c_v001.pt`` of the installed wheel (never imported)."""
    return package_file("torchfcpe", WEIGHTS, INSTALL_HINT, "FCPE")


def _their_key(ours: str) -> str:
    """Our parameter name -> the torchfcpe checkpoint's (for the linear layer: its ``weight_v``)."""
    table = {
        "input_stack.conv1": "input_stack.0",
        "input_stack.norm": "input_stack.1",
        "input_stack.conv2": "input_stack.3",
    }
    for a, b in table.items():
        if ours.startswith(a + "."):
            return b + ours[len(a) :]
    if ours.startswith("layers."):
        _, i, part, rest = ours.split(".", 3)
        idx = {"norm": "0", "pointwise_in": "2", "depthwise": "4.conv", "pointwise_out": "6"}[part]
        return f"net.encoder_layers.{i}.conformer.net.{idx}.{rest}"
    if ours == "output_proj.weight":
        return "output_proj.weight_v"
    return ours


def convert_fcpe_state_dict(state: dict, expected: dict[str, torch.Size], source: str) -> dict[str, Tensor]:
    """Map torchfcpe keys to ours, fold the weight norm (``weight = g * v / ||v||`` per output row) and
    check every name and shape; one error lists every problem."""
    converted, missing = {}, []
    for ours in expected:
        theirs = _their_key(ours)
        if theirs not in state:
            missing.append(theirs)
            continue
        converted[ours] = state[theirs]
    if "output_proj.weight_g" not in state:
        missing.append("output_proj.weight_g")
    elif "output_proj.weight" in converted:
        v = converted["output_proj.weight"]
        converted["output_proj.weight"] = state["output_proj.weight_g"] * v / v.norm(dim=1, keepdim=True)
    known = {_their_key(k) for k in expected} | {"output_proj.weight_g"} | set(UNUSED)
    unexpected = sorted(k for k in state if k not in known)
    bad = shape_mismatches(converted, expected, _their_key, "checkpoint")
    refuse_mismatch(f"FCPE checkpoint {source}", missing, unexpected, bad)
    return converted


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class FCPEMel(nn.Module):
    """audio ``[B, S]`` -> log-mel ``[B, 128, S // 160 + 1]`` (torchfcpe's ``Wav2MelModule`` at 16 kHz)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("mel_fb", slaney_mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 0.0, F_MAX), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        if audio.dim() != 2:
            raise ValueError(f"FCPE expects audio [B, S], got shape {tuple(audio.shape)}")
        s = audio.shape[1]
        left = (N_FFT - HOP) // 2
        right = max((N_FFT - HOP + 1) // 2, N_FFT - s - left)
        mode = "reflect" if right < s else "constant"
        y = F.pad(audio[:, None], (left, right), mode=mode)[:, 0]
        spec = torch.stft(
            y,
            N_FFT,
            hop_length=HOP,
            win_length=N_FFT,
            window=self.window,
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAG_EPS)
        mel = torch.log(torch.clamp(torch.matmul(self.mel_fb, mag), min=CLIP_VAL))
        n = fcpe_frames(s)
        if mel.shape[-1] < n:
            mel = torch.cat([mel, mel[..., -1:].expand(*mel.shape[:-1], n - mel.shape[-1])], -1)
        return mel[..., :n]


class InputStack(nn.Module):
    """``conv1d (k3) -> GroupNorm(4) -> LeakyReLU -> conv1d (k3)`` on ``[B, C, T]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(N_MELS, HIDDEN, 3, 1, 1)
        self.norm = nn.GroupNorm(4, HIDDEN)
        self.act = nn.LeakyReLU()
        self.conv2 = nn.Conv1d(HIDDEN, HIDDEN, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.norm(self.conv1(x))))


class ConvBlock(nn.Module):
    """Residual conformer conv module on ``[B, T, 512]``: ``x + W_out SiLU(DW(GLU(W_in LN(x))))``."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(HIDDEN)
        self.pointwise_in = nn.Conv1d(HIDDEN, 2 * INNER, 1)
        self.glu = nn.GLU(dim=1)
        self.depthwise = nn.Conv1d(INNER, INNER, KERNEL, padding=KERNEL // 2, groups=INNER)
        self.act = nn.SiLU()
        self.pointwise_out = nn.Conv1d(INNER, HIDDEN, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.glu(self.pointwise_in(self.norm(x).transpose(1, 2)))
        return x + self.pointwise_out(self.act(self.depthwise(y))).transpose(1, 2)


class FCPEEncoder(AudioEncoder):
    """FCPE (torchfcpe's bundled ``fcpe_c_v001``) as an :class:`AudioEncoder` (see the module docstring
    for the maths and the neuron sites).

    Args:
        pretrained: load ``torchfcpe/assets/fcpe_c_v001.pt``; False = random initialisation (an untrained
            control), seeded by ``seed``.
        name: output-folder suffix.
        seed: seed of the random initialisation when ``pretrained`` is False.
    """

    sample_rate = SAMPLE_RATE
    channel_axis = 1
    embed_dim = HIDDEN
    frame_seconds = HOP / SAMPLE_RATE  # a position's frame: the 10 ms mel frame (centred on i * 160)

    def __init__(self, pretrained: bool = True, name: str = "fcpe", seed: int = 0) -> None:
        super().__init__()
        self.pretrained = pretrained
        self.name = name
        self.neuron_sites = ["input_stack.act"] + [f"layers.{i}.act" for i in range(N_LAYERS)]
        self.site_neurons = [HIDDEN] + [INNER] * N_LAYERS
        self.mel = FCPEMel()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.input_stack = InputStack()
            self.layers = nn.ModuleList(ConvBlock() for _ in range(N_LAYERS))
            self.norm = nn.LayerNorm(HIDDEN)
            self.output_proj = nn.Linear(HIDDEN, PITCH_BINS)
        self.register_buffer("cent_table", cent_table())
        self.checkpoint_path = fcpe_weights_path() if pretrained else None
        if self.checkpoint_path is not None:
            self.load_torchfcpe(self.checkpoint_path)
        self._call: Optional[Positions] = None
        self.eval()

    def load_torchfcpe(self, path: str | Path) -> None:
        """Load a torchfcpe checkpoint (``{'model': state dict, 'config_dict': ...}``, ``weights_only=True``
        through the project's one loader) after checking every key."""
        path = Path(path)
        ckpt = load_tensor_file(path)
        state = ckpt.get("model") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise TypeError(f"FCPE checkpoint {path} holds no 'model' state dict")
        expected = {k: v.shape for k, v in self.state_dict().items()}
        self.load_state_dict(convert_fcpe_state_dict(state, expected, str(path)), strict=True)

    # -- bookkeeping ---------------------------------------------------------------------------
    def positions(self, site: str, output: Tensor) -> Positions:
        """Rows are clips, positions their frames; frames entirely in a clip's padding are not counted."""
        if self._call is None or self._call.valid.shape != (output.shape[0], output.shape[-1]):
            return super().positions(site, output)
        return self._call

    # -- forward -------------------------------------------------------------------------------
    def _run(self, audio: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (valid ``[B, T]``, final hidden ``[B, T, 512]``, latent ``[B, T, 360]``)."""
        mel = self.mel(audio)
        b, _, t = mel.shape
        valid = frame_validity(lengths, b, t, device=audio.device)
        self._call = Positions(
            clip=torch.arange(b, device=audio.device),
            valid=valid,
            special=torch.zeros(t, dtype=torch.bool, device=audio.device),
            frame=torch.arange(t, device=audio.device).expand(b, t),
        )
        try:
            x = self.input_stack(mel).transpose(1, 2)
            for layer in self.layers:
                x = layer(x)
            hidden = self.norm(x)
        finally:
            self._call = None
        return valid, hidden, torch.sigmoid(self.output_proj(hidden))

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """audio ``[B, S]`` (16 kHz) -> ``[B, 512]``: the final hidden state averaged over valid frames."""
        valid, hidden, _ = self._run(audio, lengths)
        w = valid.to(hidden.dtype)[..., None]
        return (hidden * w).sum(1) / w.sum(1).clamp(min=1)

    def latent(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> the pitch latent ``[B, S // 160 + 1, 360]`` (sigmoid, torchfcpe's forward)."""
        return self._run(audio, None)[2]

    def f0_argmax(self, audio: Tensor) -> Tensor:
        """audio ``[B, S]`` -> frequency (Hz) of each frame's most probable bin ``[B, T]`` (no threshold)."""
        return 10.0 * 2.0 ** (self.cent_table[self.latent(audio).argmax(-1)] / 1200.0)

    def extra_repr(self) -> str:
        return f"pretrained={self.pretrained}, hop={HOP} samples, embed_dim={self.embed_dim}"
