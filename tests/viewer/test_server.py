"""A real uvicorn server on loopback: URLs, tokens beyond loopback, the CLI's errors."""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fusevis.viewer.engine import ViewerData
from fusevis.viewer.server import is_loopback, start_in_thread


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_loopback_needs_no_token(demo_data: ViewerData) -> None:
    running = start_in_thread(demo_data)
    try:
        assert running.url.startswith("http://127.0.0.1:") and "token" not in running.url
        status, body = fetch(running.url + "api/session")
        assert status == 200 and json.loads(body)["models"] == ["DeepFuse", "MaskNet"]
    finally:
        running.server.should_exit = True
        running.thread.join(timeout=10)


def test_non_loopback_host_gets_a_random_token(demo_data: ViewerData) -> None:
    running = start_in_thread(demo_data, host="0.0.0.0")
    try:
        assert "?token=" in running.url
        token = running.url.split("?token=")[1]
        assert len(token) >= 24
        port = running.url.split(":")[2].split("/")[0]
        base = f"http://127.0.0.1:{port}/"
        assert fetch(base)[0] == 403
        assert fetch(base + "api/session")[0] == 403
        assert fetch(base + "api/session?token=" + token)[0] == 200
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
