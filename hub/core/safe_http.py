"""Outbound HTTP to user-given URLs (webhook subscriptions, connector calls), safe from SSRF.

``resolve`` looks the host up once and refuses any loopback/private/link-local/reserved or
multicast address unless ``COEXHUB_OUTBOUND_ALLOW_PRIVATE`` is set; ``client`` then connects to
exactly that vetted address (``PinnedBackend``) while the URL, the ``Host`` header, TLS SNI and
certificate checks keep the name — so a DNS answer that changes after the check (DNS
rebinding) cannot move the connection. Redirects are never followed; ``post`` bounds the time
and the size of what it reads back.
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

CONNECT_TIMEOUT = 5.0
TOTAL_SECONDS = 15.0  # a delivery gives up after this, however slowly the answer trickles
MAX_RESPONSE_BYTES = 64 * 1024  # read back at most this much (the status is what counts)


class PermanentError(Exception):
    """A delivery that must not be retried (e.g. 410 Gone, a refused address)."""


class Refused(PermanentError):
    """A URL the hub will not call (not http(s), or resolving to a non-public address)."""


class Unresolvable(Refused):
    """The host does not resolve (now): refused at subscribe time, retried when delivering."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    address: str  # the vetted IP the connection goes to


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(url: str, allow_private: bool) -> Target:
    """Check ``url`` and resolve its host once: every address it resolves to must be public
    (unless ``allow_private``); the first one is pinned. ``Refused`` says why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"not a valid port in {url}") from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{parts.hostname} does not resolve ({exc})") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise Unresolvable(f"{parts.hostname} does not resolve")
    for address in addresses:
        if not allow_private and not _public(address):
            raise Refused(f"{parts.hostname} resolves to a non-public address ({address})")
    return Target(parts.hostname, port, str(addresses[0]))


class PinnedBackend(httpcore.NetworkBackend):
    """Connects to the vetted address whatever host the request names (no second lookup)."""

    def __init__(self, target: Target):
        self.target, self._inner = target, httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if host.lower() != self.target.host.lower() or port != self.target.port:
            raise httpcore.ConnectError(f"{host}:{port} is not the vetted target")
        return self._inner.connect_tcp(self.target.address, port, timeout=timeout, local_address=local_address,
                                       socket_options=socket_options)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not outbound targets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


_ssl: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process (building one loads the CA bundle: ~10-70 ms)."""
    global _ssl
    with _ssl_lock:
        if _ssl is None:
            _ssl = httpx.create_ssl_context()
        return _ssl


class PinnedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connections go to ``target.address`` only."""

    def __init__(self, target: Target):
        super().__init__(verify=ssl_context(), retries=0)
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context(), network_backend=PinnedBackend(target),
                                             max_connections=4)


def client(url: str, allow_private: bool, *, timeout: float = 10.0, **kwargs) -> httpx.Client:
    """An ``httpx.Client`` for ``url``'s host, pinned to the address checked now; redirects off.
    Raises ``Refused`` for a URL the hub will not call."""
    target = resolve(url, allow_private)
    return httpx.Client(transport=PinnedTransport(target), follow_redirects=False, trust_env=False,  # no proxy
                        timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT), **kwargs)


def post(url: str, body: bytes, headers: dict[str, str], allow_private: bool) -> tuple[int, bytes]:
    """POST ``body``; the status and at most ``MAX_RESPONSE_BYTES`` of the answer, within
    ``TOTAL_SECONDS`` (a slower answer is a ``TimeoutError``)."""
    deadline = time.monotonic() + TOTAL_SECONDS
    with client(url, allow_private) as http, http.stream("POST", url, content=body, headers=headers) as response:
        got = bytearray()
        for chunk in response.iter_raw():
            got += chunk[:MAX_RESPONSE_BYTES - len(got)]
            if len(got) >= MAX_RESPONSE_BYTES:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the answer took longer than {TOTAL_SECONDS:.0f} s")
        return response.status_code, bytes(got)
