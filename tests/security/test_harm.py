"""The harm meter itself: a child's peak memory is its own, not its parent's."""

from __future__ import annotations

import sys

from tests.security.harm import run_measured

MIB = 1 << 20


def test_a_small_child_of_a_large_parent_measures_small() -> None:
    ballast = bytearray(600 * MIB)
    ballast[::4096] = b"x" * len(ballast[::4096])  # resident, not only reserved
    measured = run_measured([sys.executable, "-c", "print('hello')"])
    assert measured.returncode == 0, measured.stderr
    assert measured.stdout.strip() == "hello"
    assert measured.peak_rss_mb < 200, f"{measured.peak_rss_mb:.0f} MiB"
    del ballast


def test_a_child_that_allocates_measures_what_it_allocated() -> None:
    code = "import sys; b = bytearray(400 << 20); b[::4096] = b'x' * len(b[::4096]); sys.exit(3)"
    measured = run_measured([sys.executable, "-c", code])
    assert measured.returncode == 3, measured.stderr
    assert 400 <= measured.peak_rss_mb < 700, f"{measured.peak_rss_mb:.0f} MiB"


def test_a_module_run_sees_its_own_arguments() -> None:
    measured = run_measured([sys.executable, "-m", "json.tool", "--help"])
    assert measured.returncode == 0, measured.stderr
    assert "json.tool" in measured.stdout
