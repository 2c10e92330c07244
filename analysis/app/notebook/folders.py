"""Where the outputs of one (task, model) are: a pipeline output tree (:class:`~analysis.runs.layout.OutputTree`)
or a single statistics run folder, found from the files themselves (nothing is written)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from analysis.runs.layout import ABLATION_CSV, GALLERY_DIR, INDEX_HTML, OVER_ZERO, PROBE_RESULTS, OutputTree
from analysis.runs.read import read_manifest, task_of


class NotARunError(FileNotFoundError):
    """The folder is neither a pipeline output tree nor a statistics run folder."""


@dataclass(frozen=True)
class RunFolders:
    """The folders of one (task, model): the statistics run folder and, when they exist, the probe, ablation
    and gallery folders."""

    task: str
    model: str
    run: Path
    probe: Optional[Path] = None
    ablation: Optional[Path] = None
    gallery: Optional[Path] = None


def model_of(run_dir: Path, manifest: dict[str, Any], task: str) -> str:
    """The model name of a run folder: the pipeline's ``config.model``, else the folder name after
    ``<task>_``, else the manifest's ``encoder_name``."""
    cfg = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    if isinstance(cfg.get("model"), str):
        return cfg["model"]
    if run_dir.name.startswith(f"{task}_"):
        return run_dir.name[len(task) + 1 :]
    return str(manifest.get("encoder_name") or run_dir.name)


def _pipeline_task(run_dir: Path, manifest: dict[str, Any]) -> str:
    cfg = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    if isinstance(cfg.get("task"), str):
        return cfg["task"]
    return task_of(run_dir, manifest) or run_dir.name


def _existing(path: Path, marker: str) -> Optional[Path]:
    return path if (path / marker).is_file() else None


def discover(root: str | Path) -> tuple[Optional[OutputTree], dict[tuple[str, str], RunFolders]]:
    """``(tree, (task, model) → folders)`` of a pipeline output tree (``root/runs/<task>_<model>/``), or
    ``(None, {...})`` with one entry when ``root`` is itself a run folder (``over_zero.pt`` inside)."""
    root = Path(root)
    if not root.is_dir():
        raise NotARunError(f"{root}: folder not found")
    if (root / OVER_ZERO).is_file():
        man = read_manifest(root)
        task = task_of(root, man) or root.name
        model = model_of(root, man, task)
        return None, {(task, model): RunFolders(task, model, root, gallery=_existing(root / GALLERY_DIR, INDEX_HTML))}
    tree = OutputTree(root)
    if not tree.runs.is_dir():
        raise NotARunError(
            f"{root}: neither a pipeline output folder (no {tree.runs.name}/) nor a statistics run "
            f"folder (no {OVER_ZERO})"
        )
    found: dict[tuple[str, str], RunFolders] = {}
    for d in sorted(tree.runs.iterdir()):
        if not (d / OVER_ZERO).is_file():
            continue
        man = read_manifest(d)
        task = _pipeline_task(d, man)
        model = model_of(d, man, task)
        found[(task, model)] = RunFolders(
            task,
            model,
            d,
            probe=_existing(tree.probe(task, model), PROBE_RESULTS),
            ablation=_existing(tree.ablation(task, model), ABLATION_CSV),
            gallery=_existing(tree.gallery(task, model), INDEX_HTML),
        )
    if not found:
        raise NotARunError(f"{tree.runs}: no run folder (<task>_<model>/ with {OVER_ZERO})")
    return tree, found
