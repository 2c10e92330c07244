"""``EVARDataModule``: an EVAR-format task (metadata CSV + prepared audio) as a LightningDataModule.

On-disk layout::

    <evar_root>/evar/metadata/<task>.csv          file_name, label, split | fold [, other columns]
    <evar_root>/work/<sr_dir>/<folder>/<file_name> audio at the model's sample rate (16k, 22k, 32k, ...)

``setup()`` reads only the CSV (no audio); audio is read lazily when an item is loaded, and a bad file
raises an error naming the file and its CSV row (the items: :mod:`.evar_dataset`). Batches are dicts::

    audio      float32 [B, S]   S = int(sample_rate * unit_sec), right zero-padded
    length     int64   [B]      valid samples before the padding
    label      int64   [B]      class index (single-label) | float32 [B, C] multi-hot (multi-label)
    index      int64   [B]      0-based data row of the metadata CSV
    split      list[str]        "train" | "valid" | "test" | "none" (a row without a split, predict only)
    file_name  list[str]        as in the CSV

Cropping: clips longer than S are randomly cropped in train and valid (seeded: the crop of clip ``i``
depends on ``(seed, epoch, i)`` in train and on ``(seed, i)`` in valid), and head-cropped in test and in
``predict_dataloader()`` (all splits of ``predict_splits``, train→valid→test order, then with
``predict_unsplit`` the rows without a split, no shuffle).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import lightning.pytorch as pl
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt

from analysis.runs.write import data_list_sha256, index_table

from .evar_dataset import EVARDataset, EpochShuffleSampler
from .metadata import NO_SPLIT, SPLITS, MetadataError, Split, label_map_function, read_metadata
from .tasks import TaskSpec, get_task, sr_dir

__all__ = ["EVARDataset", "EpochShuffleSampler", "EVARDataModule", "resolve_evar_root"]


def resolve_evar_root(evar_root: Union[str, os.PathLike, None]) -> Path:
    """``evar_root`` or, when None, the ``$EVAR`` environment variable."""
    if evar_root is None or str(evar_root) == "":
        env = os.environ.get("EVAR")
        if not env:
            raise ValueError("No EVAR root: pass evar_root (data.init_args.evar_root) or set $EVAR")
        evar_root = env
    return Path(os.path.expanduser(str(evar_root)))


class EVARDataModule(pl.LightningDataModule):
    """An EVAR-format task as a LightningDataModule.

    Args:
        evar_root: EVAR root holding ``evar/metadata/`` and ``work/``; ``None`` reads ``$EVAR``.
        task: task name: one of the task table (esc50, us8k, gtzan, cremad, cremad_gender, vc1, voxforge,
            surge, nsynth, nspitch, nsvelocity, spcv2, fsd50k, as20k), a task defined by ``task_def``, or
            a task with a definition file ``<evar_root>/evar/metadata/<task>.yaml`` (synthetic tasks).
        sample_rate: the MODEL's sample rate (Hz); audio is read from ``work/<sr_dir>/`` for it
            (16000→16k, 22000→22k, 32000→32k, 44100→44k, 48000→48k).
        fold: test fold of fold tasks (1-based; esc50 1..5, us8k 1..10); ignored by split tasks.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
        label_map: relabelling applied before the class list is built: a dict ``{old: new}`` (labels
            not in it are kept; ``null`` drops the row) or a named mapping: ``midi_to_octave`` (MIDI
            pitch → ``octave_<midi // 12 - 1>``), ``midi_to_octave_number`` (→ ``"<midi // 12 - 1>"``).
        unit_sec: clip length in seconds (default: the task's).
        resample: resample files whose sample rate differs from ``sample_rate`` (default: error).
        file_sample_rate: read the files prepared for this rate (``work/<sr_dir of it>/``) instead
            of the model's, then resample to ``sample_rate`` (requires ``resample=true``).
        seed: seed of the train shuffle and of the random crops.
        predict_splits: splits iterated by ``predict_dataloader`` in this order (default: every
            non-empty split, train→valid→test).
        predict_unsplit: also predict the metadata rows that have no split (or no fold), after the
            splits, with split ``none`` (e.g. GTZAN's clips outside its split lists), so that statistics
            can count every clip of the task. Their labels must be classes of the train split.
        limit: keep only the first ``limit`` clips (CSV order) of each split (quick runs); the class
            list still comes from the whole train split.
        task_def: define or override the task: a dict of task fields (``unit_sec``, ``folds``,
            ``folder``, ``metadata`` — CSV path, relative to ``evar_root`` unless absolute —,
            ``multilabel``) or the path of a YAML file holding them. A dict without ``unit_sec``
            overrides fields of a known task.
        pin_memory: DataLoader ``pin_memory``.
        allow_duplicates: keep a file listed twice in one split (each row counts); by default that is an
            error naming both CSV rows. A file in two splits is always an error.
    """

    def __init__(
        self,
        evar_root: Optional[str] = None,
        task: str = "cremad",
        sample_rate: int = 16000,
        fold: PositiveInt = 1,
        batch_size: PositiveInt = 32,
        num_workers: NonNegativeInt = 0,
        label_map: Union[str, dict[str, Optional[str]], None] = None,
        unit_sec: Optional[PositiveFloat] = None,
        resample: bool = False,
        file_sample_rate: Optional[int] = None,
        seed: int = 42,
        predict_splits: Optional[list[Split]] = None,
        predict_unsplit: bool = False,
        limit: Optional[PositiveInt] = None,
        task_def: Union[dict[str, Any], str, None] = None,
        pin_memory: bool = False,
        allow_duplicates: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if unit_sec is not None and not unit_sec > 0:
            raise ValueError(f"unit_sec must be > 0, got {unit_sec}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if file_sample_rate is not None and file_sample_rate != sample_rate and not resample:
            raise ValueError(
                f"file_sample_rate={file_sample_rate} differs from sample_rate={sample_rate}: set resample=true"
            )
        if predict_splits is not None:
            bad = [s for s in predict_splits if s not in SPLITS]
            if bad:
                raise ValueError(f"predict_splits has unknown split(s) {bad}; expected some of {list(SPLITS)}")
        if label_map is not None:
            label_map_function(label_map)  # fail early on an unknown named mapping
        sr_dir(sample_rate)  # fail early on an unknown model rate
        self.evar_root = evar_root
        self.task = task
        self.sample_rate = int(sample_rate)
        self.fold = fold
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.label_map = label_map
        self.unit_sec = unit_sec
        self.resample = resample
        self.file_sample_rate = int(file_sample_rate or sample_rate)
        self.seed = seed
        self.predict_splits = predict_splits
        self.predict_unsplit = predict_unsplit
        self.limit = limit
        self.task_def = task_def
        self.pin_memory = pin_memory
        self.allow_duplicates = allow_duplicates
        self.datasets: dict[str, EVARDataset] = {}
        self.classes: list[str] = []
        self.multilabel: bool = False
        self.metadata: Optional[pd.DataFrame] = None
        self.task_spec: Optional[TaskSpec] = None
        self.root: Optional[Path] = None
        self.metadata_path: Optional[Path] = None

    # ---------------------------------------------------------------- setup
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def clip_samples(self) -> int:
        """Samples per clip, ``int(sample_rate * unit_sec)``."""
        spec = self.task_spec or get_task(self.task, self.evar_root, self.task_def)
        return int(self.sample_rate * (self.unit_sec or spec.unit_sec))

    @property
    def audio_dir(self) -> Path:
        assert self.root is not None and self.task_spec is not None, "call setup() first"
        return self.root / "work" / sr_dir(self.file_sample_rate) / self.task_spec.audio_folder

    def setup(self, stage: Optional[str] = None) -> None:
        """Read the metadata CSV (no audio) and build the split datasets. Idempotent."""
        if self.datasets:
            return
        root = resolve_evar_root(self.evar_root)
        spec = get_task(self.task, root, self.task_def)
        csv = spec.metadata_path(root)
        df, classes, multilabel = read_metadata(
            csv,
            folds=spec.folds,
            fold=self.fold,
            label_map=self.label_map,
            multilabel=spec.multilabel,
            unsplit=self.predict_unsplit,
            allow_duplicates=self.allow_duplicates,
        )
        self.root, self.task_spec, self.metadata_path = root, spec, csv
        self.metadata, self.classes, self.multilabel = df, classes, multilabel
        n = int(self.sample_rate * (self.unit_sec or spec.unit_sec))
        for split in SPLITS + (NO_SPLIT,):
            rows = df[df["split"] == split]
            if self.limit is not None:
                rows = rows.head(self.limit)
            self.datasets[split] = EVARDataset(
                rows,
                self.audio_dir,
                root,
                csv,
                classes,
                multilabel,
                self.sample_rate,
                n,
                crop="head" if split in ("test", NO_SPLIT) else "random",
                seed=self.seed,
                resample=self.resample,
                file_sample_rate=self.file_sample_rate,
                epoch_in_seed=(split == "train"),
            )

    def check_files(self, splits: Optional[list[str]] = None) -> None:
        """Raise FileNotFoundError listing missing audio files of ``splits`` (default: all, including the
        rows without a split when ``predict_unsplit``)."""
        self.setup()
        missing: list[str] = []
        for s in splits or list(SPLITS) + [NO_SPLIT]:
            missing += self.datasets[s].check_files()
        if missing:
            head = "\n  ".join(missing[:20])
            more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise FileNotFoundError(f"{len(missing)} audio file(s) missing for task {self.task!r}:\n  {head}{more}")

    def require_splits(self, needs: dict[str, str]) -> None:
        """Raise :class:`MetadataError` naming the metadata CSV (and how many rows each split has) when a
        split of ``needs`` (split → what needs it) has no rows."""
        self.setup()
        for split, why in needs.items():
            if len(self.datasets[split]) == 0:
                sizes = ", ".join(f"{s} {len(self.datasets[s])}" for s in SPLITS)
                raise MetadataError(
                    f"metadata {self.metadata_path}: split {split!r} of task {self.task!r} has no rows "
                    f"({why}); rows per split: {sizes}"
                )

    def _dataset(self, split: str) -> EVARDataset:
        self.setup()
        ds = self.datasets[split]
        if len(ds) == 0:
            extra = (
                " (fold tasks have no valid split: fold k is test, the others train)"
                if split == "valid" and self.task_spec and self.task_spec.folds
                else ""
            )
            raise MetadataError(
                f"Requested split {split!r} of task {self.task!r} is empty in {self.metadata_path}{extra}"
            )
        return ds

    # ---------------------------------------------------------- dataloaders
    def _loader(self, ds: Dataset, sampler: Optional[Sampler] = None) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset("train")
        return self._loader(ds, EpochShuffleSampler(len(ds), self.seed, shuffle=True))

    def val_dataloader(self) -> Union[DataLoader, list]:
        self.setup()
        if len(self.datasets["valid"]) == 0 and self.task_spec is not None and self.task_spec.folds:
            return []  # fold tasks have no valid split: Lightning skips validation
        return self._loader(self._dataset("valid"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"))

    def predict_datasets(self) -> list[EVARDataset]:
        """Datasets iterated by :meth:`predict_dataloader` (head crop), in ``predict_splits`` order, then
        the rows without a split when ``predict_unsplit``."""
        self.setup()
        if self.predict_splits is None:
            splits = [s for s in SPLITS if len(self.datasets[s])]
        else:
            splits = list(self.predict_splits)
        if self.predict_unsplit and len(self.datasets[NO_SPLIT]):
            splits.append(NO_SPLIT)
        return [self._dataset(s).with_crop("head") for s in splits]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(ConcatDataset(self.predict_datasets()))

    def predict_index(self) -> pd.DataFrame:
        """The ``index.csv`` table (``row, index, file_name, label, split``) a statistics pass over
        :meth:`predict_dataloader` records, rows in dataset-index order."""
        parts = self.predict_datasets()
        index = torch.as_tensor([i for ds in parts for i in ds._indices], dtype=torch.long)
        names = [n for ds in parts for n in ds._file_names]
        splits = [s for ds in parts for s in ds._splits]
        labels = [ds.label_tensor() for ds in parts]
        gts = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        order = torch.argsort(index, stable=True).tolist()
        return index_table(
            index[order], [names[i] for i in order], gts[order], [splits[i] for i in order], self.classes
        )

    def data_list_sha256(self) -> str:
        """sha256 of :meth:`predict_index` as a statistics run's ``manifest.json`` records it."""
        return data_list_sha256(self.predict_index())
