"""Who may talk to the viewer: a token, a ``Host`` allow-list and an ``Origin`` check.

The model is Jupyter's. The viewer serves one user, who holds a random token; anything
else that can reach its port is hostile: any web page open in any browser tab (it can
make the browser send requests to ``127.0.0.1``) and any host name an attacker points at
the loopback address (DNS rebinding: the browser then treats the viewer as the attacker's
own site). :class:`AccessGuard` is a pure ASGI middleware, so it sees plain HTTP requests
and websocket handshakes alike, and refuses with 403 before any route runs:

- ``Host`` must name an allowed host (any port): ``localhost``, a loopback address, the
  address the server is bound to, names given with ``--allow-host``; for a server bound
  to every interface (``0.0.0.0``, ``::``) also this machine's host name and any literal
  IP address (an IP address is never a DNS-rebinding name). This is what stops a rebound
  ``evil.example`` from reading anything.
- ``Origin``, when a request carries one, must be the viewer's own (``http://`` or
  ``https://`` and the same host and port as ``Host``); requests other than ``GET`` and
  ``HEAD`` must carry it. Browsers always send ``Origin`` on websocket handshakes, so a
  page from another origin never gets a websocket, token or not.
- The token, from ``?token=`` or the HttpOnly SameSite=Strict cookie the page receives
  on its first load, compared in constant time as ASCII bytes: a missing, wrong,
  non-ASCII or malformed token or cookie is a 403, never a 500. SameSite treats other
  ports of the same host as the same site, so a request that has only the cookie and
  that the browser marks ``Sec-Fetch-Site: same-site`` or ``cross-site`` (an ``<img>`` on
  a page served from another local port) is refused too.

Every HTTP response also gets ``X-Frame-Options: DENY`` (with the matching CSP
``frame-ancestors``), ``Referrer-Policy: no-referrer`` and ``X-Content-Type-Options:
nosniff``.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fusevis.errors import FuseVisError

TOKEN_COOKIE = "fusevis_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SAFE_METHODS = frozenset({"GET", "HEAD"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
]
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,252})?")

Scope = dict[str, Any]


def new_token() -> str:
    """A random token: 32 bytes from :mod:`secrets`, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def normalise_host(name: str) -> str | None:
    """A host name lower-cased, an IP address in its short form; None if it is neither."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    return name if _NAME.fullmatch(name) else None


def host_names(names: Iterable[str]) -> list[str]:
    """``--allow-host`` names normalised, or a FuseVisError naming the first bad one."""
    normalised = []
    for name in names:
        normal = normalise_host(name)
        if normal is None:
            raise FuseVisError(f"--allow-host {name!r} is not a host name or IP address")
        normalised.append(normal)
    return normalised


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def split_host(value: str) -> tuple[str, int | None] | None:
    """(name, port) of a ``Host`` header or origin authority; None when malformed."""
    if not value or not value.isascii() or len(value) > 300:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if not _is_ip(name) or ":" not in name:
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    port = None
    if rest:
        digits = rest[1:]
        if not rest.startswith(":") or not digits.isdigit() or len(digits) > 5:
            return None
        port = int(digits)
    normal = normalise_host(name)
    return None if normal is None else (normal, port)


@dataclass(frozen=True)
class Access:
    """The access policy of one viewer.

    Attributes
    ----------
    token : str
        The secret the printed URL carries (random unless given).
    hosts : frozenset of str
        Host names (normalised) that ``Host`` may name, besides loopback addresses.
    any_address : bool
        Also allow any literal IP address in ``Host`` (servers bound to every interface).
    cookie : str
        Name of the token cookie (the server's port is part of it, so that viewers on
        different ports of one machine do not overwrite each other's cookie).
    """

    token: str = field(default_factory=new_token)
    hosts: frozenset[str] = LOOPBACK_NAMES
    any_address: bool = False
    cookie: str = TOKEN_COOKIE

    def __post_init__(self) -> None:
        if len(self.token) < 16 or not self.token.isascii() or not self.token.isprintable():
            raise FuseVisError("the viewer's token must be at least 16 printable ASCII characters")

    @classmethod
    def for_server(
        cls,
        bind_host: str,
        port: int,
        token: str | None = None,
        allow_hosts: Iterable[str] = (),
    ) -> Access:
        """The policy of a server bound to ``bind_host:port``.

        Raises
        ------
        FuseVisError
            If a name in ``allow_hosts`` is not a host name or IP address.
        """
        hosts = set(LOOPBACK_NAMES) | set(host_names(allow_hosts))
        wildcard = bind_host.strip("[]") in WILDCARD_HOSTS
        if wildcard:
            for name in (socket.gethostname(), socket.getfqdn()):
                normal = normalise_host(name)
                if normal is not None:
                    hosts.add(normal)
        else:
            normal = normalise_host(bind_host)
            if normal is not None:
                hosts.add(normal)
        return cls(token or new_token(), frozenset(hosts), wildcard, f"{TOKEN_COOKIE}_{port}")

    # -- the checks -------------------------------------------------------------------
    def host_allowed(self, value: str) -> bool:
        """True when a ``Host`` header names this viewer (any port)."""
        parsed = split_host(value)
        if parsed is None:
            return False
        name = parsed[0]
        if name in self.hosts:
            return True
        if _is_ip(name):
            return self.any_address or ipaddress.ip_address(name).is_loopback
        return False

    @staticmethod
    def origin_is_own(origin: str, host: str) -> bool:
        """True when ``origin`` is the origin of the page this ``Host`` serves."""
        scheme, separator, authority = origin.partition("://")
        if not separator or scheme.lower() not in ("http", "https") or "/" in authority:
            return False
        default = 80 if scheme.lower() == "http" else 443
        own, theirs = split_host(host), split_host(authority)
        if own is None or theirs is None:
            return False
        return own[0] == theirs[0] and (own[1] or default) == (theirs[1] or default)

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison; False for anything that is not the ASCII token."""
        if not given.isascii():
            return False
        return hmac.compare_digest(given.encode("ascii"), self.token.encode("ascii"))

    def tokens_in(
        self, scope: Scope, headers: dict[bytes, list[str]]
    ) -> tuple[list[str], list[str]]:
        """The token candidates a request carries: the first ``?token=``, and the cookies."""
        query = scope.get("query_string", b"").decode("latin-1")
        in_url = [value for key, value in parse_qsl(query, max_num_fields=64) if key == "token"]
        in_cookie = []
        for line in headers.get(b"cookie", []):
            for part in line.split(";"):
                name, equals, value = part.strip().partition("=")
                if equals and name.strip() == self.cookie:
                    in_cookie.append(value.strip())
        return in_url[:1], in_cookie

    def refusal(self, scope: Scope) -> str | None:
        """Why a request or handshake is refused, or None when it may go on."""
        headers: dict[bytes, list[str]] = {}
        for name, value in scope.get("headers", []):
            headers.setdefault(name.lower(), []).append(value.decode("latin-1"))
        hosts = headers.get(b"host", [])
        if len(hosts) != 1 or not self.host_allowed(hosts[0]):
            return (
                "host not allowed: open the viewer at the address it printed, or start it "
                "with --allow-host NAME"
            )
        origins = headers.get(b"origin", [])
        if len(origins) > 1 or (origins and not self.origin_is_own(origins[0], hosts[0])):
            return "cross-origin requests are refused"
        if scope["type"] == "http" and scope.get("method") not in SAFE_METHODS and not origins:
            return "a request that changes something must carry the viewer's Origin"
        try:
            in_url, in_cookie = self.tokens_in(scope, headers)
        except ValueError:  # too many query fields
            in_url, in_cookie = [], []
        if any(self.token_matches(given) for given in in_url):
            return None
        if any(self.token_matches(given) for given in in_cookie):
            # SameSite=Strict still sends the cookie from other ports of the same host
            # (same site); such requests, like cross-site ones, need the token in the URL
            site = headers.get(b"sec-fetch-site", [""])[0].strip().lower()
            if site in ("cross-site", "same-site"):
                return "a request from another site must carry the token in its URL"
            return None
        return (
            "missing or wrong token: open the URL that `fusevis view` printed "
            "(it ends in ?token=...)"
        )


class AccessGuard:
    """Pure ASGI middleware applying an :class:`Access` to HTTP requests and websockets."""

    def __init__(self, app: Any, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Refuse (403) or pass on one request or websocket handshake."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self.access.refusal(scope)
        if scope["type"] == "websocket":
            if problem is None:
                await self.app(scope, receive, send)
                return
            message = await receive()  # websocket.connect; closing before accept is a 403
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": problem})
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if problem is None:
            await self.app(scope, receive, send_with_headers)
            return
        body = (problem + "\n").encode()
        await send_with_headers(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
