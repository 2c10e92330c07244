"""A whole folder written at once (:func:`staged_folder`): filled in a private sibling, renamed into place."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from analysis.runs.atomic import check_writable, record_move, temp_dir


@contextmanager
def staged_folder(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Write a whole folder at once: yields a private temporary sibling of ``dest`` to fill; when the block
    ends without error it replaces ``dest`` (an existing ``dest`` only with ``overwrite``, else
    :class:`OutputExistsError`, checked before and after), when it fails it is removed."""
    final = Path(dest)
    check_writable(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(final)
    try:
        yield tmp
        check_writable(final, overwrite)
        old = None
        if final.exists():
            old = temp_dir(final)  # a temporary name: removed by the next run if a kill leaves it
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        record_move(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
