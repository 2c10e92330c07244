"""Resumable stage runner: each finished stage leaves a marker ``.stages/<stage>-<key>.json`` holding a
hash of the part of the config it depends on (and of the stages it builds on).

* A re-run skips a stage whose marker matches and whose outputs exist; a marker from a different config
  is an error unless ``force`` (outputs are never overwritten silently).
* A stage writes ``.stages/<stage>-<key>.running.json`` before it starts and removes it when it has
  finished. A run that finds that marker (the stage was killed or failed) discards the stage's partial
  outputs (the paths it ``owns``) and runs it again, with no ``--force`` needed.
* Outputs that exist with no marker at all were made by something else: an error unless ``force``.
* Content: a finished stage's marker records the sha256, size and modification time of every file it
  wrote (:mod:`analysis.runs.integrity`; hashed while writing). Before skipping a stage the runner checks
  them; a file that is missing, truncated or edited is named in a warning, the stage's outputs are
  discarded and the stage runs again — and so does every stage that builds on a stage that ran (in
  this invocation, or since the dependent stage finished: its marker keeps a digest of their records).
* Where the folder lives is not part of the config: absolute paths inside it are hashed relative to it
  (:func:`portable`), so a copied or moved output folder resumes. A marker written before that rule (its
  hash taken over the absolute paths) is still recognised, and rewritten with the portable hash.
* A failing stage stops the run with a message naming it; outputs of completed stages stay intact.
* :meth:`Runner.require_finished`: ``--only`` refuses to run a stage whose earlier stages have not
  finished with this config.
* :class:`OutputLock`: one pipeline per output folder at a time (a ``flock`` on ``.pipeline.lock``,
  released by the kernel when the process dies, so a stale lock never blocks); while holding it the
  pipeline removes the temporary files killed writes left behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from lightning.pytorch import seed_everything

from analysis.app.config import PipelineError
from analysis.runs.atomic import recording, remove_stale_temp, save_json
from analysis.runs.integrity import Damage, damage, snapshot
from analysis.runs.layout import OutputTree

log = logging.getLogger("aape.pipeline")


def config_hash(obj: Any) -> str:
    """Short sha256 of a JSON-serialisable config slice (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: What stands for the output folder in a stage's hashed config slice (:func:`portable`).
OUT_TOKEN = "$OUT"


def portable(obj: Any, root: Path) -> Any:
    """``obj`` (a JSON-like config slice) with every string that is an absolute path inside ``root``
    written relative to it, as ``$OUT/<relative path>``: what a stage's hash is taken over, so that it does
    not depend on where the output folder lives (a feature model's spec names its SAE files inside it).

    >>> portable({"saes": ["/runs/a/saes/m/sae.pt", "/elsewhere/sae.pt"], "n": 3}, Path("/runs/a"))
    {'saes': ['$OUT/saes/m/sae.pt', '/elsewhere/sae.pt'], 'n': 3}
    >>> portable([Path("/runs/a/x.csv"), "/runs/ab/y.csv"], Path("/runs/a"))
    ['$OUT/x.csv', '/runs/ab/y.csv']
    """
    if isinstance(obj, os.PathLike):
        obj = os.fspath(obj)  # hashed as its string (``config_hash`` writes it so)
    if isinstance(obj, str):
        if os.path.isabs(obj):
            for base in {os.path.abspath(root), os.path.realpath(root)}:  # as given and with links resolved
                if obj == base or obj.startswith(base + os.sep):
                    return OUT_TOKEN + obj[len(base) :]
        return obj
    if isinstance(obj, dict):
        return {k: portable(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, root) for v in obj]
    return obj


@dataclass
class Stage:
    """One unit of work: ``name`` (data/stats/...), ``key`` (e.g. ``<task>_<model>``), the config slice it
    depends on (hashed), its output paths, and the function that produces them (called with
    ``overwrite``); ``after`` lists the ids of the stages it builds on; ``owns`` the files and folders
    that hold its results and nothing else (deleted when an interrupted attempt is discarded; default
    ``outputs``)."""

    name: str
    key: str
    depends: Any
    outputs: list[Path]
    run: Callable[[bool], None]
    after: list[str] = field(default_factory=list)
    owns: Optional[list[Path]] = None

    @property
    def id(self) -> str:
        return f"{self.name}-{self.key}" if self.key else self.name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PipelineError(f"{path}: unreadable stage marker ({e}); delete it to re-run that stage") from e
    return data if isinstance(data, dict) else {}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class OutputLock:
    """Exclusive lock of one output tree (``with OutputLock(tree): ...``). A second pipeline on the same
    tree fails at once with :class:`PipelineError` naming the holder; a lock file left by a dead process
    is taken over (the kernel released its ``flock``). The file records pid, host, start time and config."""

    def __init__(self, tree: OutputTree, note: str = "") -> None:
        self.tree, self.note = tree, note
        self._fd: Optional[int] = None

    def __enter__(self) -> "OutputLock":
        path = self.tree.lock
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            os.close(fd)
            raise PipelineError(
                f"another pipeline is writing into {self.tree.root} (lock {path} held by {holder or 'an unknown process'}); "
                f"wait for it to finish or choose another --out"
            ) from None
        previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if previous:
            log.info("lock %s: taking over from a process that is no longer running (%s)", path, previous)
        info = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "config": self.note,
            }
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Runner:
    """Runs stages in order with skip/resume semantics (module docstring); seeds every stage."""

    def __init__(self, out: Path | OutputTree, force: bool = False, seed: Optional[int] = None) -> None:
        tree = out if isinstance(out, OutputTree) else OutputTree(out)
        self.tree = tree
        self.out = tree.root
        self.force = force
        self.seed = seed
        self.marks = tree.stages
        self.hashes: dict[str, str] = {}
        #: The hashes markers held before :func:`portable` (taken over the absolute paths).
        self.legacy_hashes: dict[str, str] = {}
        self.timings: list[tuple[str, str, float]] = []
        self.ran: set[str] = set()

    def _marker(self, st: Stage) -> Path:
        return self.tree.stage_marker(st.id)

    def note(self, st: Stage) -> str:
        """Record (and return) the stage's hash: its config slice (:func:`portable`) plus the hashes of
        what it builds on."""
        h = config_hash(
            {"depends": portable(st.depends, self.out), "after": [self.hashes.get(a, "") for a in st.after]}
        )
        self.hashes[st.id] = h
        self.legacy_hashes[st.id] = config_hash(
            {"depends": st.depends, "after": [self.legacy_hashes.get(a, "") for a in st.after]}
        )
        return h

    def _current(self, st: Stage, marker: dict[str, Any]) -> bool:
        """Whether ``marker`` holds the current hash of ``st`` (or the one taken before :func:`portable`)."""
        return marker.get("hash") in (self.hashes.get(st.id), self.legacy_hashes.get(st.id))

    def clean(self) -> list[Path]:
        """Remove temporary files of killed writes in the tree's own folders and leftover staging folders
        (call under the lock)."""
        removed = [p for folder in self.tree.folders if folder.is_dir() for p in remove_stale_temp(folder)]
        if self.tree.staging_root.is_dir():
            shutil.rmtree(self.tree.staging_root)
            removed.append(self.tree.staging_root)
        for p in removed:
            log.info("removed %s (left by an interrupted run)", p)
        return removed

    def finished(self, st: Stage) -> Optional[str]:
        """None when ``st`` finished with the current config (marker hash matches, outputs exist, no
        interruption since); else why not. Call :meth:`note` on it first."""
        mk = self._marker(st)
        if self.tree.stage_running(st.id).exists():
            return f"it was interrupted (marker {self.tree.stage_running(st.id)})"
        if not mk.exists():
            return f"it has not run in {self.out} (no marker {mk})"
        if not self._current(st, _read_json(mk)):
            return f"it ran with a different config (marker {mk})"
        missing = [str(o) for o in st.outputs if not Path(o).exists()]
        if missing:
            return f"its output {missing[0]} is missing"
        bad = self.damaged(st)
        if bad:
            return f"its output {bad[0]}"
        return None

    def inputs(self, st: Stage) -> str:
        """Digest of the content records of the stages ``st`` builds on (their markers' ``files``): it
        changes when one of them ran again, even in an earlier invocation (``--force --only``)."""
        marks = [self.tree.stage_marker(a) for a in st.after]
        return config_hash([_read_json(m).get("files") if m.exists() else None for m in marks])

    def damaged(self, st: Stage, full: bool = False) -> list[Damage]:
        """The files ``st``'s marker records that are missing or changed (:func:`analysis.runs.integrity.damage`;
        ``[]`` for a marker without records)."""
        mk = self._marker(st)
        return damage(_read_json(mk).get("files") or {}, self.out, full=full) if mk.exists() else []

    def require_finished(self, st: Stage, needed_by: str) -> None:
        """Raise :class:`PipelineError` unless ``st`` finished with the current config."""
        why = self.finished(st)
        if why is not None:
            raise PipelineError(
                f"--only: stage {needed_by} builds on stage {st.id}, which has not finished with "
                f"this config: {why}. Run it first (add '{st.name}' to --only, or drop --only)"
            )

    def _discard(self, st: Stage, why: str = "") -> None:
        """Delete what an interrupted (or damaged, ``why``) attempt of ``st`` left (its owned paths and
        markers)."""
        running = self.tree.stage_running(st.id)
        info = _read_json(running) if running.exists() else {}
        if why:
            log.warning("stage %s: %s: discarding its outputs and running it again", st.id, why)
        else:
            log.warning(
                "stage %s was interrupted (started %s by pid %s): discarding its partial outputs and running it again",
                st.id,
                info.get("started", "?"),
                info.get("pid", "?"),
            )
        for p in st.owns or st.outputs:
            _remove(Path(p))
        self._marker(st).unlink(missing_ok=True)
        running.unlink(missing_ok=True)

    def run(self, st: Stage) -> None:
        h = self.note(st)
        mk = self._marker(st)
        t0 = time.perf_counter()
        if self.tree.stage_running(st.id).exists():
            self._discard(st)
        elif mk.exists() and not self.force:
            old = _read_json(mk)
            current = self._current(st, old)
            if current and all(Path(o).exists() for o in st.outputs):
                bad = damage(old.get("files") or {}, self.out)
                rebuilt = [a for a in st.after if a in self.ran]
                if not rebuilt and old.get("inputs") not in (None, self.inputs(st)):
                    rebuilt = ["(one of " + ", ".join(st.after) + ")"]
                if bad:
                    self._discard(st, f"{bad[0]}" + (f" (and {len(bad) - 1} more file(s))" if len(bad) > 1 else ""))
                elif rebuilt:
                    self._discard(st, f"stage {rebuilt[0]}, which it builds on, ran again")
                else:
                    if old.get("hash") != h:  # a marker from before portable(): keep it, with today's hash
                        save_json({**old, "hash": h}, mk, overwrite=True)
                        log.info(
                            "stage %s: marker %s rewritten with the hash that ignores where the folder is", st.id, mk
                        )
                    log.info("stage %s: outputs exist, match the config and are intact, skipped", st.id)
                    self.timings.append((st.id, "skipped", 0.0))
                    return
            if not current:
                raise PipelineError(
                    f"stage {st.id}: outputs in {self.out} were made with a different config "
                    f"(marker {mk}); re-run with --force to replace them, or choose another --out"
                )
        existing = [o for o in st.outputs if Path(o).exists()]
        if existing and not self.force and not mk.exists():
            raise PipelineError(
                f"stage {st.id}: {existing[0]} already exists but no stage marker does: it was "
                f"not made by this pipeline (another tool's output?); use --force to replace it, "
                f"or choose another --out"
            )
        log.info("stage %s: running", st.id)
        save_json(
            {
                "stage": st.id,
                "hash": h,
                "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "owns": [str(p) for p in (st.owns or st.outputs)],
            },
            self.tree.stage_running(st.id),
            overwrite=True,
        )
        try:
            if self.seed is not None:
                seed_everything(self.seed, verbose=False)
            with recording() as written:
                st.run(self.force or mk.exists())
        except PipelineError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised with the stage name
            raise PipelineError(
                f"stage {st.id} failed: {type(e).__name__}: {e} "
                f"(outputs of completed stages are intact in {self.out}; the next run "
                f"discards this stage's partial outputs and runs it again)"
            ) from e
        missing = [str(o) for o in st.outputs if not Path(o).exists()]
        if missing:
            raise PipelineError(f"stage {st.id} finished but did not produce {missing}")
        files = snapshot(st.owns or st.outputs, written, self.out)
        dt = time.perf_counter() - t0
        self.timings.append((st.id, "ran", dt))
        self.ran.add(st.id)
        save_json(
            {
                "stage": st.id,
                "hash": h,
                "outputs": [str(o) for o in st.outputs],
                "seconds": round(dt, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "files": files,
                "inputs": self.inputs(st),
            },
            mk,
            overwrite=True,
        )
        self.tree.stage_running(st.id).unlink(missing_ok=True)
        log.info("stage %s: done in %.1f s", st.id, dt)
