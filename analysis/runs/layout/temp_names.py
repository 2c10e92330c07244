"""Names of the temporary siblings of atomic writes (see :mod:`analysis.runs.layout`)."""

from __future__ import annotations

import re

TEMP_TAG = ".aape-"
TEMP_SUFFIX = ".tmp"


def temp_prefix(name: str) -> str:
    """Prefix of the temporary sibling of ``name`` while it is being written (``.<name>.aape-``)."""
    return f".{name}{TEMP_TAG}"


#: Temporary names of earlier versions (``tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")``).
_LEGACY_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_temp_name(name: str) -> bool:
    """True for the temporary file/folder names of this project's atomic writes (:func:`temp_prefix`, and
    the ``.<name>.<8 random characters>.tmp`` of earlier versions).

    >>> is_temp_name(".over_zero.pt.aape-k2j4x9q1.tmp"), is_temp_name(".stats.pt.ab12cd34.tmp"), is_temp_name("x.tmp")
    (True, True, False)
    """
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    return TEMP_TAG in name or _LEGACY_TEMP.fullmatch(name) is not None
