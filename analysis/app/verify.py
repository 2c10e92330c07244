"""``python -m analysis verify OUT``: does a pipeline output folder (or one folder inside it, e.g. a run
folder) still hold what its stages wrote? Every file a finished stage's marker records is re-hashed
(:func:`analysis.runs.integrity.damage` with ``full=True``); a missing, truncated or edited file is named with
its stage. The same check, made cheaply (re-hashing only files whose size or time changed), is what a
resumed pipeline does before it skips a stage (:mod:`analysis.app.runner`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from analysis.runs.integrity import Damage, damage
from analysis.runs.layout import OutputTree

#: Suffix of the marker of a stage that has started and not finished.
_RUNNING = ".running.json"


@dataclass
class StageCheck:
    """One stage marker: its stage id, how many files it records (under the folder checked), what is
    damaged, and ``note`` (interrupted, unreadable marker, no records)."""

    stage: str
    files: int = 0
    damaged: list[Damage] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.note

    def __str__(self) -> str:
        if self.damaged:
            return "\n".join(f"DAMAGED  {self.stage}: {d}" for d in self.damaged)
        if self.note:
            return f"CHECK    {self.stage}: {self.note}"
        return f"ok       {self.stage} ({self.files} file{'s' if self.files != 1 else ''})"


def tree_root(path: str | Path) -> Path:
    """The pipeline output folder holding ``path`` (the nearest folder, ``path`` included, with stage
    markers); ``ValueError`` naming ``path`` when there is none."""
    p = Path(path).absolute()
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    for c in [p, *p.parents]:
        if OutputTree(c).stages.is_dir():
            return c
    raise ValueError(
        f"{path}: not inside a pipeline output folder (no {OutputTree(p).stages.name}/ with stage "
        "markers here or above): nothing records what its files should hold"
    )


def verify(path: str | Path) -> list[StageCheck]:
    """The check of every stage marker of the output folder holding ``path``, restricted to the files
    under ``path``."""
    root = tree_root(path)
    target = Path(path).absolute()
    out = []
    for mk in sorted(OutputTree(root).stages.glob("*.json")):
        if mk.name.endswith(_RUNNING):
            out.append(
                StageCheck(
                    mk.name[: -len(_RUNNING)],
                    note=f"interrupted (marker {mk}): the next pipeline "
                    "run discards its partial outputs and re-runs it",
                )
            )
            continue
        stage = mk.name[: -len(".json")]
        try:
            marker = json.loads(mk.read_text(encoding="utf-8"))
            files = marker.get("files") if isinstance(marker, dict) else None
        except (OSError, json.JSONDecodeError) as e:
            out.append(StageCheck(stage, note=f"unreadable stage marker {mk} ({e})"))
            continue
        if not isinstance(files, dict):
            out.append(
                StageCheck(
                    stage,
                    note=f"its marker {mk} records no file contents (written by an older "
                    "version): re-run the stage with --force to record them",
                )
            )
            continue
        mine = {
            rel: rec
            for rel, rec in files.items()
            if (root / rel).absolute() == target or target in (root / rel).absolute().parents
        }
        if mine or target == root:
            out.append(StageCheck(stage, len(mine), damage(mine, root, full=True)))
    return out
