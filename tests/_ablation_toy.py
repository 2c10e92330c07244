"""A planted toy encoder (protocol-conformant) and helpers shared by the probe/ablation tests.

ToyEncoder: frames of 400 samples at 16 kHz → per frame the FFT magnitudes at the class bins
(10, 20, 30, 40 → 400…1600 Hz) and the frame RMS → two "conv" sites with channel axis 1 and ragged
sizes (8 and 6 channels) → embedding = mean over frames of the first four channels of the second site ``[B, 4]``.

Planted: site 0 neuron k (k < 4) = ReLU(2·band_k − 0.5·rms) fires only for tone class k; site 1 neuron k
passes it through. Site-0 neurons 4/5 code loudness (distributed alike in every class) and feed site-1
neurons 4/5, which the embedding does not read; site-0 neurons 6/7 are dead.
Class 4 ("noise") is white noise of the same loudness: no class neuron fires. Zeroing neuron (0, k)
therefore removes all evidence of class k, whose clips then look like noise.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_modules.audio_classifier import AudioClassifier
from lightning_modules.encoders.base import AudioEncoder, site_view

SR = 16000
FRAME = 400
BINS = [10, 20, 30, 40]
CLASSES = ["t400", "t800", "t1200", "t1600", "noise"]


class Pointwise(nn.Linear):
    """A kernel-1 Conv1d on ``[B, F, T]`` written as a matmul (torch's conv1d is slow for tiny inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ToyEncoder(AudioEncoder):
    sample_rate = SR
    embed_dim = 4
    neuron_sites = ["block0.act", "block1.act"]
    channel_axis = 1
    site_neurons = [8, 6]
    name = "toy"

    def __init__(self) -> None:
        super().__init__()
        self.block0 = nn.Sequential()
        self.block0.add_module("conv", Pointwise(5, 8))
        self.block0.add_module("act", nn.ReLU())
        self.block1 = nn.Sequential()
        self.block1.add_module("conv", Pointwise(8, 6))
        self.block1.add_module("act", nn.ReLU())
        with torch.no_grad():
            w0 = torch.zeros(8, 5)
            b0 = torch.zeros(8)
            for k in range(4):
                w0[k, k], w0[k, 4] = 2.0, -0.5
            w0[4, 4] = 1.0
            w0[5, 4], b0[5] = 0.5, 0.1
            b0[6] = b0[7] = -1.0
            self.block0.conv.weight.copy_(w0)
            self.block0.conv.bias.copy_(b0)
            w1 = torch.zeros(6, 8)
            b1 = torch.zeros(6)
            for k in range(4):
                w1[k, k] = 1.0
            w1[4, 4] = w1[4, 5] = 1.0
            w1[5, 5], b1[5] = 1.0, -0.1
            w1[5, 6] = 1.0
            self.block1.conv.weight.copy_(w1)
            self.block1.conv.bias.copy_(b1)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        T = audio.shape[1] // FRAME
        fr = audio[:, : T * FRAME].reshape(audio.shape[0], T, FRAME)
        n = torch.arange(FRAME, dtype=audio.dtype)
        ang = 2 * math.pi * n[:, None] * torch.tensor(BINS, dtype=audio.dtype)[None, :] / FRAME  # [FRAME, 4]
        mag = ((fr @ ang.cos()) ** 2 + (fr @ ang.sin()) ** 2).sqrt() / (FRAME / 2)  # DFT magnitude at the bins
        rms = fr.pow(2).mean(-1, keepdim=True).sqrt() * math.sqrt(2)  # [B, T, 1]
        return torch.cat([mag, rms], -1).transpose(1, 2)  # [B, 5, T]

    def forward(self, audio: torch.Tensor, lengths=None) -> torch.Tensor:
        h = self.block1(self.block0(self.features(audio)))
        return h[:, :4].mean(-1)


def make_audio(seed: int, per_class: int, seconds: float = 0.25, classes=CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``[N, S]`` and labels ``[N]``: tones at the class bins (random loudness and phase) and noise."""
    g = torch.Generator().manual_seed(seed)
    S = int(SR * seconds)
    t = torch.arange(S) / SR
    xs, ys = [], []
    for c, name in enumerate(classes):
        for _ in range(per_class):
            a = 0.5 + 0.5 * torch.rand((), generator=g)
            if name == "noise":
                x = a * torch.randn(S, generator=g) / math.sqrt(2)
            else:
                f = BINS[c] * SR / FRAME
                x = a * torch.sin(2 * math.pi * f * t + 2 * math.pi * torch.rand((), generator=g))
                x = x + 0.01 * torch.randn(S, generator=g)
            xs.append(x.float())
            ys.append(c)
    return torch.stack(xs), torch.tensor(ys)


class AudioSet(Dataset):
    def __init__(self, audio, labels, split):
        self.audio, self.labels, self.split = audio, labels, split

    def __len__(self):
        return self.audio.shape[0]

    def __getitem__(self, i):
        return {
            "audio": self.audio[i],
            "length": torch.tensor(self.audio.shape[1]),
            "label": self.labels[i],
            "index": torch.tensor(i),
            "split": self.split,
            "file_name": f"{i}.wav",
        }


class ToyAudioDataModule(LightningDataModule):
    """Batch dicts of the project's datamodule contract (test split only)."""

    def __init__(self, audio, labels, classes=CLASSES, batch_size: int = 7):
        super().__init__()
        self.audio, self.labels, self.classes, self.batch_size = audio, labels, list(classes), batch_size

    def test_dataloader(self):
        return DataLoader(AudioSet(self.audio, self.labels, "test"), batch_size=self.batch_size)


def write_run_folder(d: Path, encoder: AudioEncoder, splits: dict, classes=CLASSES, class_sets=None) -> Path:
    """A neuron-statistics run folder (the statistics files) computed by brute force with the toy encoder.

    ``splits``: split name → (audio, labels). ``class_sets``: neurons.pt content (default: the planted
    neurons, class k → [[k], [k]], noise → empty)."""
    d.mkdir(parents=True, exist_ok=True)
    feats, gts, rows = [], [], []
    L, N, C = len(encoder.neuron_sites), max(encoder.site_neurons), len(classes)
    count = torch.zeros(L, N, C, dtype=torch.long)
    act_sum = torch.zeros(L, N, dtype=torch.float64)
    n_tokens = torch.zeros(C, dtype=torch.long)
    r = 0
    for split, (audio, labels) in splits.items():
        acts = {}
        hs = [
            encoder.get_submodule(s).register_forward_hook(
                lambda m, i, o, l=l: acts.__setitem__(l, site_view(o, encoder.channel_axis))
            )
            for l, s in enumerate(encoder.neuron_sites)
        ]
        with torch.no_grad():
            e = encoder(audio)
        for h in hs:
            h.remove()
        for l in range(L):
            a = acts[l]  # [B, P, n_l]
            n_l = a.shape[-1]
            count[l, :n_l] += torch.stack([(a[labels == c] > 0).sum((0, 1)) for c in range(C)], -1)
            act_sum[l, :n_l] += a.double().sum((0, 1))
        n_tokens += torch.bincount(labels, minlength=C) * acts[0].shape[1]
        feats.append(e)
        gts.append(labels)
        rows += [
            dict(row=r + i, index=i, file_name=f"{split}_{i}.wav", label=classes[int(y)], split=split)
            for i, y in enumerate(labels)
        ]
        r += len(labels)
    over_zero = count.float() / n_tokens.float()
    for l, n_l in enumerate(encoder.site_neurons):
        over_zero[l, n_l:] = float("nan")
    torch.save(torch.cat(feats), d / "features.pt")
    torch.save(torch.cat(gts), d / "gts.pt")
    torch.save(over_zero, d / "over_zero.pt")
    torch.save(
        dict(
            count=count,
            n_tokens=n_tokens,
            n_clips=torch.cat(gts).bincount(minlength=C),
            act_sum=act_sum,
            sites=list(encoder.neuron_sites),
            classes=list(classes),
            site_neurons=list(encoder.site_neurons),
        ),
        d / "stats.pt",
    )
    pd.DataFrame(rows).to_csv(d / "index.csv", index=False)
    (d / "classes.txt").write_text("\n".join(classes) + "\n")
    if class_sets is None:
        class_sets = [
            [torch.tensor([k]), torch.tensor([k])]
            if k < 4
            else [torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)]
            for k in range(C)
        ]
    torch.save(class_sets, d / "neurons.pt")
    nrows = []
    rank = 0
    for c, layers in enumerate(class_sets):
        for l, ids in enumerate(layers):
            for n in ids.tolist():
                nrows.append(dict(layer=l, neuron=n, rank=rank, entropy=0.01 * rank, classes=classes[c]))
                rank += 1
    pd.DataFrame(nrows, columns=["layer", "neuron", "rank", "entropy", "classes"]).to_csv(
        d / "neurons.csv", index=False
    )
    return d


def train_probe(
    run_dir: Path, out: Path, epochs: int = 15, lr: float = 0.1, seed: int = 0, batch_size: int = 8
) -> Path:
    """Fit a LinearProbe on the run folder's embeddings; returns the best checkpoint path."""
    from lightning.pytorch import seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint

    from datamodules.features import FeatureDataModule
    from lightning_modules.linear_probe import LinearProbe

    seed_everything(seed, workers=True)
    dm = FeatureDataModule(str(run_dir), seed=seed, batch_size=batch_size)
    ck = ModelCheckpoint(dirpath=str(out), filename="probe")  # last epoch: the tiny valid split saturates
    tr = toy_trainer(max_epochs=epochs, callbacks=[ck], deterministic=True)
    tr.fit(LinearProbe(lr=lr), datamodule=dm)
    return Path(ck.best_model_path)


# -- the planted toy's fixture: run folder, trained probe, test audio ----------------------------
def planted_toy(d: Path) -> dict:
    """Run folder + trained probe + test audio of the planted toy, in folder ``d`` (the ``planted``
    fixture of ``conftest.py``): keys ``run``, ``ckpt``, ``audio``, ``labels``, ``root``."""
    enc = ToyEncoder()
    tr_a, tr_y = make_audio(1, 12)
    te_a, te_y = make_audio(2, 6)
    run = write_run_folder(d / "toy_run", enc, {"train": (tr_a, tr_y), "test": (te_a, te_y)})
    ckpt = train_probe(run, d / "probe")
    return dict(run=run, ckpt=ckpt, audio=te_a, labels=te_y, root=d)


def toy_trainer(**kw) -> Trainer:
    """A quiet one-device CPU Trainer (``logger`` False unless given)."""
    return Trainer(
        accelerator="cpu",
        devices=1,
        logger=kw.pop("logger", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def run_test(planted, cb=None, logger=False, encoder=None):
    """``trainer.test`` of the planted toy's probe on its test audio (``cb``: a callback) → (model, metrics)."""
    model = AudioClassifier(encoder or ToyEncoder(), str(planted["ckpt"]))
    dm = ToyAudioDataModule(planted["audio"], planted["labels"])
    tr = toy_trainer(callbacks=[cb] if cb else [], logger=logger)
    res = tr.test(model, datamodule=dm, verbose=False)[0]
    return model, res
