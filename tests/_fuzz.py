"""Test helper: Hypothesis profiles of the fuzzing harness (tests/test_fuzz_*.py) and the one rule every
reader of a user file must follow — a correct result, or the project's own error naming the file.

Profiles (``HYPOTHESIS_PROFILE``): ``default`` (within ``make test``: :data:`FAST` examples per reader),
``fuzz`` (``make test-fuzz``: :data:`SLOW` examples per reader), ``ci`` (the same as default, derandomised).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FAST, SLOW = 150, 3000
_common = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile("default", max_examples=FAST, **_common)
settings.register_profile("ci", max_examples=FAST, derandomize=True, **_common)
settings.register_profile("fuzz", max_examples=SLOW, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Strings users put in files: empty, spaces, separators, quotes, markup, non-ASCII, control characters.
TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "a",
            "b",
            "train",
            "valid",
            "test",
            "1",
            "0",
            "-1",
            "nan",
            ",",
            ";",
            '"',
            "'",
            "a,b",
            " a ",
            "../x.wav",
            "/abs.wav",
            "x.wav",
            "é",
            "\t",
            "\x00",
            "<img src=x onerror=alert(1)>",
            "null",
            "~",
            "!!python/none",
            "1e3",
            "\ufeff",
        ]
    ),
    st.text(max_size=12),
)


def outcome(read: Callable[[], Any], path: Path, errors: tuple[type[BaseException], ...]) -> Any:
    """``read()``'s result, or None when it raised one of ``errors`` naming ``path``; any other exception,
    or an error that does not name the file, fails the test (re-raised / AssertionError)."""
    try:
        return read()
    except errors as e:
        assert str(path) in str(e), f"{type(e).__name__} does not name {path}: {e}"
        return None
