"""Helpers of the EVARDataModule tests (test_datamodule.py, test_datamodule_batches.py)."""

from __future__ import annotations

from datamodules import EVARDataModule

SR = 16000


def dm_of(root, task, **kw) -> EVARDataModule:
    kw.setdefault("batch_size", 4)
    kw.setdefault("num_workers", 0)
    dm = EVARDataModule(evar_root=str(root), task=task, **kw)
    dm.setup()
    return dm


def sizes(dm) -> tuple[int, int, int]:
    return tuple(len(dm.datasets[s]) for s in ("train", "valid", "test"))


def rows_split(labels_by_split: dict[str, list[str]], ext=".wav") -> list[dict]:
    """CSV rows ``{split}_{k}{ext}`` with the given labels per split."""
    out = []
    for split, labels in labels_by_split.items():
        for k, lab in enumerate(labels):
            out.append({"file_name": f"{split}_{k}{ext}", "label": lab, "split": split})
    return out
