"""The access policy alone: Host parsing, allow-lists, origins, token comparison."""

import pytest

from fusevis.errors import FuseVisError
from fusevis.viewer.access import Access, host_names, split_host

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:8765", ("localhost", 8765)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8765", ("::1", 8765)),
        ("[0:0:0:0:0:0:0:1]", ("::1", None)),
        ("viewer.lab", ("viewer.lab", None)),
    ],
)
def test_split_host(value: str, parsed: tuple[str, int | None]) -> None:
    assert split_host(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "",
        "::1",
        "[::1",
        "[evil]:80",
        "localhost:",
        "localhost:x",
        "localhost:123456",
        "a b",
        "évil",
        "evil/x",
        "user@localhost",
        "localhost:80:80",
        "[::1]x",
    ],
)
def test_malformed_hosts(value: str) -> None:
    assert split_host(value) is None
    assert not Access(TOKEN).host_allowed(value)


def test_loopback_bind_allows_loopback_names_and_allowed_hosts_only() -> None:
    access = Access.for_server("127.0.0.1", 8765, TOKEN, ["Viewer.Lab", "10.1.2.3"])
    assert access.cookie == "fusevis_token_8765"
    for host in [
        "localhost:8765",
        "127.0.0.1",
        "127.0.0.2:1",
        "[::1]:8765",
        "viewer.lab:8765",
        "10.1.2.3:8765",
    ]:
        assert access.host_allowed(host), host
    for host in ["evil.example", "localhost.evil.example", "10.1.2.4", "192.168.0.1:8765"]:
        assert not access.host_allowed(host), host


def test_wildcard_bind_allows_ip_addresses_but_not_other_names() -> None:
    access = Access.for_server("0.0.0.0", 8765, TOKEN)
    assert access.host_allowed("192.168.0.1:8765") and access.host_allowed("[fe80::1]:8765")
    assert not access.host_allowed("evil.example:8765")


def test_bad_allow_host_names_are_one_line_errors() -> None:
    with pytest.raises(FuseVisError, match="--allow-host 'a/b'"):
        host_names(["ok.lab", "a/b"])
    assert host_names(["OK.Lab", "[::1]"]) == ["ok.lab", "::1"]


@pytest.mark.parametrize(
    ("origin", "host", "own"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765", True),
        ("http://LOCALHOST:8765", "localhost:8765", True),
        ("http://localhost", "localhost:80", True),
        ("https://viewer.lab", "viewer.lab", True),
        ("http://localhost:8765", "127.0.0.1:8765", False),
        ("http://127.0.0.1:8766", "127.0.0.1:8765", False),
        ("http://evil.example:8765", "127.0.0.1:8765", False),
        ("null", "127.0.0.1:8765", False),
        ("file://", "127.0.0.1:8765", False),
        ("http://127.0.0.1:8765/x", "127.0.0.1:8765", False),
        ("ws://127.0.0.1:8765", "127.0.0.1:8765", False),
    ],
)
def test_origin_is_own(origin: str, host: str, own: bool) -> None:
    assert Access.origin_is_own(origin, host) is own


def test_tokens_compare_as_ascii_bytes() -> None:
    access = Access(TOKEN)
    assert access.token_matches(TOKEN)
    for given in ["", TOKEN[:-1], TOKEN + "0", "é" * 32, TOKEN[:-1] + "é", "\x00" * 32]:
        assert not access.token_matches(given)
    with pytest.raises(FuseVisError):
        Access("short")


def scope(headers: list[tuple[bytes, bytes]], query: bytes = b"", method: str = "GET") -> dict:
    return {"type": "http", "method": method, "headers": headers, "query_string": query}


def test_refusal_reasons() -> None:
    access = Access(TOKEN)
    host = (b"host", b"127.0.0.1:8765")
    token = b"token=" + TOKEN.encode()
    assert access.refusal(scope([host], token)) is None
    cookie = (b"cookie", b"a=1; fusevis_token=" + TOKEN.encode())
    assert access.refusal(scope([host, cookie])) is None
    for site in (b"same-origin", b"none"):
        assert access.refusal(scope([host, cookie, (b"sec-fetch-site", site)])) is None
    for site in (b"same-site", b"cross-site"):
        assert "another site" in access.refusal(scope([host, cookie, (b"sec-fetch-site", site)]))
        assert access.refusal(scope([host, (b"sec-fetch-site", site)], token)) is None
    assert "host" in access.refusal(scope([(b"host", b"evil.example")], token))
    assert "host" in access.refusal(scope([host, host], token))  # two Host headers
    assert "host" in access.refusal(scope([], token))
    assert "token" in access.refusal(scope([host]))
    assert "token" in access.refusal(scope([host, (b"cookie", b"fusevis_token=\xe9")]))
    assert "token" in access.refusal(scope([host], b"&".join([b"a=1"] * 100) + b"&" + token))
    origin = (b"origin", b"http://evil.example")
    assert "cross-origin" in access.refusal(scope([host, origin], token))
    assert "Origin" in access.refusal(scope([host], token, method="POST"))
    own = (b"origin", b"http://127.0.0.1:8765")
    assert access.refusal(scope([host, own], token, method="POST")) is None
