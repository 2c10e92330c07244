"""The pipeline's ``data`` stages: tasks the pipeline writes itself before analysing them.

``data.synthetic`` (:func:`datamodules.synthetic.write_task`, verb ``synth``) writes harmonic-tone octave
tasks; ``data.soundfont`` (:func:`datamodules.soundfont.write_soundfont_task`, verb ``soundfont``) renders
NSynth-like tasks from a GM SoundFont, the kind of each task read from the end of its (EVAR) name
(``gm_family``, ``gm_octave``, ``gm_pitch_class``). Either writes every task of the config into the output
folder's EVAR root unless ``data.evar_root`` names another. A SoundFont task's stage depends on the
``.sf2`` file's sha256, so another SoundFont under the same path re-renders the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from datamodules.soundfont import default_soundfont, file_sha256, write_soundfont_task
from datamodules.synthetic import write_task
from datamodules.tasks import sr_dir

__all__ = ["DataTask", "writer_section", "data_tasks"]


@dataclass
class DataTask:
    """One written task: its EVAR name, what its stage depends on, its CSV, what it owns and the writer
    (called with ``overwrite``)."""

    key: str
    depends: dict[str, Any]
    csv: Path
    owns: list[Path]
    write: Callable[[bool], None]


def writer_section(cfg: dict[str, Any]) -> Optional[str]:
    """``"synthetic"``, ``"soundfont"`` or None: which section of ``data`` writes the tasks."""
    d = cfg.data
    return "synthetic" if d.get("synthetic") else "soundfont" if d.get("soundfont") else None


def sf2_path(section: dict[str, Any]) -> Path:
    """The SoundFont of a ``data.soundfont`` section (its ``sf2``, else the default)."""
    return Path(section["sf2"]) if section.get("sf2") else default_soundfont()


def data_tasks(cfg: dict[str, Any], evar_root: Path, evar_tasks: list[str]) -> list[DataTask]:
    """The tasks the ``data`` stages write (none without a writer section)."""
    which = writer_section(cfg)
    if which is None:
        return []
    section = dict(cfg.data[which])
    seed = section.pop("seed")
    seed = int(cfg.seed if seed is None else seed)
    out = []
    for task in evar_tasks:
        csv = evar_root / "evar" / "metadata" / f"{task}.csv"
        audio = evar_root / "work" / sr_dir(section["sample_rate"]) / task
        if which == "synthetic":
            depends = {"synthetic": cfg.data.synthetic, "task": task}

            def write(overwrite: bool, task: str = task) -> None:
                write_task(evar_root, task, seed=seed, overwrite=overwrite, **section)
        else:
            depends = {
                "soundfont": cfg.data.soundfont,
                "task": task,
                "sf2_sha256": file_sha256(sf2_path(section)),
            }

            def write(overwrite: bool, task: str = task) -> None:
                write_soundfont_task(evar_root, task, seed=seed, overwrite=overwrite, **section)

        out.append(DataTask(task, depends, csv, [csv, csv.with_suffix(".yaml"), audio], write))
    return out
