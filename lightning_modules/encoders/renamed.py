"""Renamed constructor arguments: the old name is accepted for one release with a ``FutureWarning``."""

from __future__ import annotations

import warnings
from typing import Any, Optional


def renamed_argument(owner: str, old: str, old_value: Optional[Any], new: str, new_value: Any, default: Any) -> Any:
    """The value of ``new``, or of the deprecated ``old`` when only that one is given (with a warning).

    >>> renamed_argument("M2DEncoder", "pooling", None, "frame_pooling", "valid", "all")
    'valid'
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     renamed_argument("M2DEncoder", "pooling", "valid", "frame_pooling", "all", "all"), str(w[0].message)
    ('valid', "M2DEncoder: 'pooling' is renamed 'frame_pooling'; the old name goes in the next release")
    """
    if old_value is None:
        return new_value
    if new_value != default and new_value != old_value:
        raise ValueError(
            f"{owner}: give {new!r} only ({old!r} is its old name), got both: {new_value!r}, {old_value!r}"
        )
    warnings.warn(
        f"{owner}: {old!r} is renamed {new!r}; the old name goes in the next release", FutureWarning, stacklevel=3
    )
    return old_value
