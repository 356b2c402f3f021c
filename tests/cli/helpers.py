"""Running the real ``fusevis`` command in a subprocess (see ``tests/security/harm.py``)."""

from __future__ import annotations

from tests.security.harm import Measured
from tests.security.harm import fusevis as _measured_fusevis


def fusevis(*args: str, timeout: float = 300) -> Measured:
    """Run ``python -m fusevis ARGS`` (no memory cap) and capture its output."""
    result = _measured_fusevis(*args, timeout=timeout, memory_cap=None)
    assert not result.timed_out, f"fusevis {' '.join(args)} ran past {timeout} s"
    return result


def assert_one_line_error(result: Measured, fragment: str) -> None:
    """Exit status 2, one ``error:`` line naming the problem, no traceback."""
    result.assert_one_line_error(fragment)


__all__ = ["Measured", "assert_one_line_error", "fusevis"]
