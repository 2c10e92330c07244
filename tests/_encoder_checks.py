"""Checks shared by the tests of the wheel-weight encoders (FCPE, Resemblyzer, Silero VAD): counts of the
production path against a brute-force count of every site activation, and one run of the statistics
callback inside ``trainer.predict`` whose ``stats.pt`` must equal the same brute force."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from analysis.runs.read import load_tensor_file, read_stats
from callbacks import ActivationStatsCallback
from lightning_modules import FeatureExtractor
from lightning_modules.encoders import AudioEncoder
from _counting import real_encoder_check, brute_force, record_sites
from _stats_toy import ToyClips

CLASSES = ["a", "b", "c"]


class _Data(L.LightningDataModule):
    task = "tiny"

    def __init__(self, audio: Tensor, lengths: Tensor, labels: Tensor) -> None:
        super().__init__()
        self.audio, self.lengths, self.labels = audio, lengths, labels
        self.classes, self.multilabel = CLASSES, False

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(ToyClips(self.audio, self.lengths, self.labels, ["train"] * len(self.audio)), batch_size=2)


def tiny_batch(n_samples: int, lengths: list[int], seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``len(lengths)`` clips ``[B, n_samples]`` (tones plus noise, zero after each length), their lengths and
    labels ``i % 3``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_samples) / 16000
    audio = torch.stack([0.4 * torch.sin(2 * torch.pi * (150.0 * (i + 1)) * t) for i in range(len(lengths))])
    audio = audio + 0.05 * torch.randn(audio.shape, generator=g)
    lens = torch.tensor(lengths)
    audio[torch.arange(n_samples)[None] >= lens[:, None]] = 0.0
    return audio, lens, torch.arange(len(lengths)) % 3


def counts_match_brute_force(enc: AudioEncoder, audio: Tensor, lengths: Tensor, labels: Tensor) -> dict:
    """The production counting path (hooks -> accumulate -> fold, batches of 2) equals explicit loops."""
    return real_encoder_check(enc, audio, lengths, labels, "all")


def stats_callback_matches_brute_force(
    enc: AudioEncoder, audio: Tensor, lengths: Tensor, labels: Tensor, out: Path
) -> dict:
    """Run ``FeatureExtractor(enc)`` through ``ActivationStatsCallback`` in ``trainer.predict``; its stats.pt
    counts equal the brute force and its features equal ``enc(audio, lengths)``."""
    cb = ActivationStatsCallback(out_dir=str(out), tokens="all", level="token")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.predict(FeatureExtractor(enc), datamodule=_Data(audio, lengths, labels), return_predictions=False)
    folder = out / f"tiny_{enc.name}"
    stats = read_stats(folder)
    ref = brute_force(record_sites(enc, audio, lengths), labels, 3, "all", list(enc.site_neurons))
    for key in ("count", "n_tokens_site", "n_tokens", "n_clips", "n_positions"):
        assert torch.equal(stats[key], ref[key]), key
    assert stats["sites"] == enc.neuron_sites and stats["site_neurons"] == enc.site_neurons
    with torch.inference_mode():
        emb = enc(audio, lengths)
    torch.testing.assert_close(load_tensor_file(folder / "features.pt"), emb, atol=1e-5, rtol=1e-5)
    return stats
