"""What a stage wrote, and whether it is still there: the content records of the pipeline's stage markers.

A finished stage's marker lists every file under the paths the stage owns with its sha256, size and
modification time (``{relative path: {"sha256", "size", "mtime_ns"}}``). The digests come from
:func:`analysis.runs.atomic.recording` — computed while the files were written, so a multi-GB
``features.pt`` is never read back —; only a file written by another process (a ``train.py`` subprocess)
is hashed after the stage.

:func:`damage` checks the records: a missing file, a different size (truncated, grown) or different
content. ``full=False`` (what a resumed pipeline does before skipping a stage) re-hashes only a file whose
size or modification time changed, so resuming stays cheap; ``full=True`` (``python -m analysis verify``)
re-hashes every file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from analysis.runs.atomic import sha256_file
from analysis.runs.layout import is_temp_name


@dataclass(frozen=True)
class Damage:
    """``path`` (absolute) no longer holds what its stage wrote: ``problem`` says how."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_file():
            yield p
        elif p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not is_temp_name(d))
                yield from (Path(dirpath) / f for f in sorted(filenames) if not is_temp_name(f))


def snapshot(
    owned: Iterable[str | os.PathLike], recorded: Mapping[str, tuple[str, int]], root: str | os.PathLike
) -> dict[str, dict[str, Any]]:
    """The records of every file under ``owned`` (files or folders), keyed by their path relative to
    ``root``: the digest of ``recorded`` (``{absolute path: (sha256, size)}``) when its size still matches,
    else the file hashed now."""
    root = Path(root).absolute()
    out: dict[str, dict[str, Any]] = {}
    for f in _files(owned):
        st = f.stat()
        digest, size = recorded.get(str(f.absolute()), (None, -1))
        if digest is None or size != st.st_size:
            digest = sha256_file(f)
        rel = os.path.relpath(f.absolute(), root)
        out[Path(rel).as_posix()] = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def damage(records: Mapping[str, Mapping[str, Any]], root: str | os.PathLike, full: bool = False) -> list[Damage]:
    """Every recorded file that is missing, has another size, or (re-hashed when ``full`` or when its size or
    modification time changed) other content; ``[]`` when all are intact."""
    root = Path(root)
    out = []
    for rel, want in records.items():
        p = root / rel
        if not p.is_file():
            out.append(Damage(p, "missing (the stage wrote it)"))
            continue
        st = p.stat()
        if st.st_size != want.get("size"):
            out.append(Damage(p, f"{st.st_size} bytes, the stage wrote {want.get('size')} (truncated or edited)"))
            continue
        if full or st.st_mtime_ns != want.get("mtime_ns"):
            got = sha256_file(p)
            if got != want.get("sha256"):
                out.append(
                    Damage(
                        p,
                        f"content changed since the stage wrote it (sha256 {got[:12]}…, "
                        f"recorded {str(want.get('sha256'))[:12]}…)",
                    )
                )
    return out
