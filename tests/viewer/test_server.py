"""A real uvicorn server on loopback: URLs with their token, wildcard binds, the CLI's errors.

The attacks on the server are tested in ``tests/security/test_viewer.py``.
"""

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from fusevis.viewer.data import ViewerData
from fusevis.viewer.server import is_loopback, start_in_thread


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=10
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_loopback_url_carries_a_random_token(demo_data: ViewerData) -> None:
    running = start_in_thread(demo_data)
    try:
        parts = urllib.parse.urlsplit(running.url)
        assert running.url.startswith("http://127.0.0.1:") and parts.path == "/"
        token = urllib.parse.parse_qs(parts.query)["token"][0]
        assert token == running.token and len(token) >= 43
        assert running.origin == f"http://127.0.0.1:{running.port}"
        assert fetch(running.origin + "/api/session")[0] == 403
        status, body = fetch(running.origin + f"/api/session?token={token}")
        assert status == 200 and json.loads(body)["models"] == ["DeepFuse", "MaskNet"]
        status, page = fetch(running.url)
        assert status == 200 and '<script type="module"' in page
    finally:
        running.server.should_exit = True
        running.thread.join(timeout=10)
    other = start_in_thread(demo_data)
    try:
        assert other.token != token  # a new token each start
    finally:
        other.server.should_exit = True
        other.thread.join(timeout=10)


def test_wildcard_host_answers_loopback_and_ip_addresses_with_the_token(
    demo_data: ViewerData,
) -> None:
    running = start_in_thread(demo_data, host="0.0.0.0")
    try:
        assert running.url.startswith("http://127.0.0.1:") and "?token=" in running.url
        base = f"http://127.0.0.1:{running.port}/"
        assert fetch(base)[0] == 403
        assert fetch(base + "api/session")[0] == 403
        assert fetch(base + "api/session?token=" + running.token)[0] == 200
        lan = {"Host": f"192.0.2.7:{running.port}"}  # as from another machine, by address
        assert fetch(base + "api/session?token=" + running.token, lan)[0] == 200
        rebound = {"Host": f"evil.example:{running.port}"}
        assert fetch(base + "api/session?token=" + running.token, rebound)[0] == 403
    finally:
        running.server.should_exit = True
        running.thread.join(timeout=10)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.png", "also.png", "--model", "DeepFuse"], "missing.png"),
        (["{a}", "{b}", "--model", "NoSuchNet"], "unknown model 'NoSuchNet'"),
        (["{a}", "{b}", "--model", "DeepFuse", "--host", "256.1.1.1"], "cannot listen on"),
        (["{a}", "{b}", "--model", "DeepFuse", "--allow-host", "a/b"], "--allow-host 'a/b'"),
        (
            ["{a}", "{b}", "--model", "DeepFuse", "--max-pixels", "1000"],
            "exceeds the limit of 1000",
        ),
    ],
)
def test_view_command_errors_are_one_line(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    from fusevis.io import export_demo

    a, b = export_demo("mri-pet", tmp_path)
    argv = [part.format(a=a, b=b) for part in arguments]
    result = subprocess.run(
        [sys.executable, "-m", "fusevis", "view", *argv, "--no-browser", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
