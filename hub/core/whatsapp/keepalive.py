"""The send call's HTTP path: one kept-alive ``http.client`` connection per thread and origin.

A send is one small JSON POST; httpx spends ~0.7 ms of CPU building and parsing each one (its
pool lock and bookkeeping shared by the dispatch threads), ``http.client`` ~0.2 ms. Each thread
of a worker keeps its own connection per origin (no pool, no lock), checks before reusing it
that the server has not closed it meanwhile, and drops it after any error (a timed-out answer
may still arrive on it). A connection that could not be opened raises ``NotSent``: the request
never left, so Meta cannot have the send. ``direct`` says whether a URL may take this path:
http(s) with no proxy configured for its host (those go through httpx, which honours them).
"""
from __future__ import annotations

import http.client
import os
import select
import threading
import urllib.request
from urllib.parse import urlsplit

import httpx

_local = threading.local()
_ssl: list = []  # the TLS context (httpx's defaults: certifi or SSL_CERT_FILE), made on first use
_ssl_lock = threading.Lock()
USER_AGENT = "coexhub"


class NotSent(OSError):
    """The connection could not be opened: the request never left this process."""


def direct(url: str) -> bool:
    """True when ``url`` is plain http(s) with no proxy configured for its host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    return not (proxies.get(parts.scheme) or proxies.get("all")) or urllib.request.proxy_bypass(parts.hostname)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         connect_timeout: float) -> tuple[int, bytes]:
    """POST ``body`` on this thread's connection to ``url``'s origin: ``(status, response body)``.
    Raises ``NotSent`` when no connection could be opened, ``OSError`` / ``http.client.HTTPException``
    (``TimeoutError`` for a timeout) once the request may have left."""
    parts = urlsplit(url)
    key, conns = (parts.scheme, parts.hostname, parts.port), _connections()
    conn = conns.pop(key, None)  # put back only after a clean answer
    if conn is not None and _closed_by_server(conn):
        conn.close()
        conn = None
    if conn is None:
        conn = _open(parts.scheme, parts.hostname, parts.port, connect_timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.sock.settimeout(timeout)
        conn.request("POST", path, body,
                     {"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read()
    except BaseException:
        conn.close()
        raise
    if response.will_close:
        conn.close()
    else:
        conns[key] = conn
    return response.status, data


def _connections() -> dict:
    """This thread's open connections (a forked process starts with none of its parent's)."""
    if getattr(_local, "pid", None) != os.getpid():
        _local.pid, _local.conns = os.getpid(), {}
    return _local.conns


def _open(scheme: str, host: str, port: int | None, connect_timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=connect_timeout,
                                                                       context=_ssl_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
    try:
        conn.connect()
    except OSError as exc:
        conn.close()
        raise NotSent(f"cannot connect to {host}: {exc}") from exc
    return conn


def _closed_by_server(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive socket that is readable was closed (or written to) by the server."""
    if conn.sock is None:
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))


def _ssl_context():
    with _ssl_lock:
        if not _ssl:
            _ssl.append(httpx.create_ssl_context())
        return _ssl[0]
