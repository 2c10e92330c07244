"""The items of one EVAR split (:class:`EVARDataset`) and the epoch-seeded sampler of the training split
(:class:`EpochShuffleSampler`), used by :class:`datamodules.evar.EVARDataModule` (whose docstring gives the
batch format and the cropping rules).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from .audio import crop_or_pad, crop_seed, load_audio
from .metadata import where

__all__ = ["EVARDataset", "EpochShuffleSampler"]


class EVARDataset(Dataset):
    """Clips of one split. Items are dicts (module docstring); ``ds[i]`` or ``ds[(i, epoch)]``.

    Args:
        rows: table with columns ``index, file_name, label, split`` (this split's rows).
        audio_dir: folder holding the files (``<root>/work/<sr_dir>/<folder>``).
        evar_root: root, for naming files in messages (``work/16k/cremad/x.wav``).
        csv: metadata CSV path (messages).
        classes: class names (index order).
        multilabel: multi-hot float labels instead of class indices.
        sample_rate: model sample rate (Hz); files must have it unless ``resample``.
        n_samples: clip length in samples.
        crop: ``"random"`` or ``"head"``.
        seed: crop seed.
        resample: resample files whose rate differs (off: error).
        file_sample_rate: rate of the files (default ``sample_rate``).
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        audio_dir: Path,
        evar_root: Path,
        csv: Path,
        classes: list[str],
        multilabel: bool,
        sample_rate: int,
        n_samples: int,
        crop: str = "head",
        seed: int = 0,
        resample: bool = False,
        file_sample_rate: Optional[int] = None,
        epoch_in_seed: bool = True,
    ) -> None:
        self.rows = rows.reset_index(drop=True)
        self.audio_dir = Path(audio_dir)
        self.evar_root = Path(evar_root)
        self.csv = Path(csv)
        self.classes = list(classes)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.multilabel = multilabel
        self.sample_rate = int(sample_rate)
        self.n_samples = int(n_samples)
        self.crop = crop
        self.seed = int(seed)
        self.resample = bool(resample)
        self.file_sample_rate = int(file_sample_rate or sample_rate)
        self.epoch_in_seed = epoch_in_seed
        self._file_names = self.rows["file_name"].tolist()
        self._indices = [int(x) for x in self.rows["index"]]
        self._splits = self.rows["split"].tolist()
        self._labels = self.rows["label"].tolist()

    def __len__(self) -> int:
        return len(self._file_names)

    def with_crop(self, crop: str) -> "EVARDataset":
        """A shallow copy using another crop mode (e.g. ``"head"`` for prediction)."""
        other = copy.copy(self)
        other.crop = crop
        return other

    def path(self, i: int) -> Path:
        return self.audio_dir / self._file_names[i]

    def where(self, i: int) -> str:
        return where(self.csv, self._indices[i])

    def encode_label(self, label: str) -> torch.Tensor:
        if self.multilabel:
            y = torch.zeros(len(self.classes), dtype=torch.float32)
            for name in (s.strip() for s in label.split(",")):
                if name:
                    y[self.class_index[name]] = 1.0
            return y
        return torch.tensor(self.class_index[label], dtype=torch.int64)

    def label_tensor(self) -> torch.Tensor:
        """All labels of this split: int64 ``[N]`` or float32 multi-hot ``[N, C]``."""
        if not len(self):
            return torch.zeros(
                (0, len(self.classes)) if self.multilabel else (0,),
                dtype=torch.float32 if self.multilabel else torch.int64,
            )
        return torch.stack([self.encode_label(lab) for lab in self._labels])

    def load(self, i: int) -> torch.Tensor:
        """Raw mono audio ``[S']`` of item ``i`` at ``sample_rate`` (no crop/pad)."""
        p = self.path(i)
        try:
            display = str(p.relative_to(self.evar_root))
        except ValueError:
            display = str(p)
        return load_audio(p, self.sample_rate, resample_audio=self.resample, display=display, where=self.where(i))

    def __getitem__(self, key: Union[int, tuple[int, int]]) -> dict[str, Any]:
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        i = int(i)
        if i < 0:
            i += len(self)
        wav = self.load(i)
        gen = None
        if self.crop == "random":
            gen = torch.Generator().manual_seed(
                crop_seed(self.seed, epoch if self.epoch_in_seed else 0, self._indices[i])
            )
        audio, length = crop_or_pad(wav, self.n_samples, self.crop, gen)
        return {
            "audio": audio,
            "length": length,
            "label": self.encode_label(self._labels[i]),
            "index": self._indices[i],
            "split": self._splits[i],
            "file_name": self._file_names[i],
        }

    def check_files(self) -> list[str]:
        """Messages for every missing audio file of this split (empty list: all exist)."""
        return [
            f"Audio file not found: {self.path(i)} ({self.where(i)})"
            for i in range(len(self))
            if not self.path(i).is_file()
        ]


class EpochShuffleSampler(Sampler):
    """Seeded shuffle whose order depends on (seed, epoch); yields ``(index, epoch)`` so the dataset
    can draw epoch-dependent random crops even inside worker processes. Lightning calls
    :meth:`set_epoch` at each epoch start; without it, each new iteration advances the epoch."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self._explicit = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._explicit = True

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        if not self._explicit:
            self.epoch += 1
        self._explicit = False
        if self.shuffle:
            g = torch.Generator().manual_seed(crop_seed(self.seed, epoch, -1))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = range(self.n)
        for i in order:
            yield (i, epoch)
