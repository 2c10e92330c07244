"""Resumable stage runner: each finished stage leaves a marker ``.stages/<stage>-<key>.json`` holding a
hash of the part of the config it depends on (and of the stages it builds on).

A re-run skips a stage whose marker matches and whose outputs exist; a marker from a different config is
an error unless ``force`` (outputs are never overwritten silently). A failing stage stops the run with a
message naming it; outputs of completed stages stay intact.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from lightning.pytorch import seed_everything

from analysis.app.config import PipelineError
from analysis.runs.atomic import save_json
from analysis.runs.layout import OutputTree

log = logging.getLogger("aape.pipeline")


def config_hash(obj: Any) -> str:
    """Short sha256 of a JSON-serialisable config slice (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    """One unit of work: ``name`` (data/stats/...), ``key`` (e.g. ``<task>_<model>``), the config slice it
    depends on (hashed), its output paths, and the function that produces them (called with
    ``overwrite``); ``after`` lists the ids of the stages it builds on."""

    name: str
    key: str
    depends: Any
    outputs: list[Path]
    run: Callable[[bool], None]
    after: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.key}" if self.key else self.name


class Runner:
    """Runs stages in order with skip/resume semantics (module docstring); seeds every stage."""

    def __init__(self, out: Path | OutputTree, force: bool = False, seed: Optional[int] = None) -> None:
        tree = out if isinstance(out, OutputTree) else OutputTree(out)
        self.out = tree.root
        self.force = force
        self.seed = seed
        self.marks = tree.stages
        self.hashes: dict[str, str] = {}
        self.timings: list[tuple[str, str, float]] = []

    def _marker(self, st: Stage) -> Path:
        return self.marks / f"{st.id}.json"

    def note(self, st: Stage) -> str:
        """Record (and return) the stage's hash: its config slice plus the hashes of what it builds on."""
        h = config_hash({"depends": st.depends, "after": [self.hashes.get(a, "") for a in st.after]})
        self.hashes[st.id] = h
        return h

    def run(self, st: Stage) -> None:
        h = self.note(st)
        mk = self._marker(st)
        t0 = time.perf_counter()
        if mk.exists() and not self.force:
            old = json.loads(mk.read_text(encoding="utf-8"))
            if old.get("hash") == h and all(Path(o).exists() for o in st.outputs):
                log.info("stage %s: outputs exist and match the config, skipped", st.id)
                self.timings.append((st.id, "skipped", 0.0))
                return
            if old.get("hash") != h:
                raise PipelineError(
                    f"stage {st.id}: outputs in {self.out} were made with a different config "
                    f"(marker {mk}); re-run with --force to replace them, or choose another --out")
        existing = [o for o in st.outputs if Path(o).exists()]
        if existing and not self.force and not mk.exists():
            raise PipelineError(f"stage {st.id}: {existing[0]} already exists but no finished-stage marker does "
                                f"(an interrupted run or another tool's output); use --force to replace it")
        log.info("stage %s: running", st.id)
        try:
            if self.seed is not None:
                seed_everything(self.seed, verbose=False)
            st.run(self.force)
        except PipelineError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised with the stage name
            raise PipelineError(f"stage {st.id} failed: {type(e).__name__}: {e} "
                                f"(outputs of completed stages are intact in {self.out})") from e
        missing = [str(o) for o in st.outputs if not Path(o).exists()]
        if missing:
            raise PipelineError(f"stage {st.id} finished but did not produce {missing}")
        dt = time.perf_counter() - t0
        self.timings.append((st.id, "ran", dt))
        save_json({"stage": st.id, "hash": h, "outputs": [str(o) for o in st.outputs], "seconds": round(dt, 2),
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, mk, overwrite=True)
        log.info("stage %s: done in %.1f s", st.id, dt)
