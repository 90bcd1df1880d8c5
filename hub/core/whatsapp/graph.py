"""A small Graph API client (httpx, pooled, timeouts, pinned version); the send call goes over
``keepalive`` (one kept-alive connection per thread: a fraction of httpx's CPU per call)."""
from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import httpx

from hub.core.whatsapp import keepalive

CONNECT_TIMEOUT = 5.0  # seconds
_clients: dict[tuple[str, float], httpx.Client] = {}
_lock = threading.Lock()


class GraphError(Exception):
    """A Graph API error; branch on ``code`` (Meta's error code), never on the HTTP status."""

    def __init__(self, message: str, *, code: int | None = None, subcode: int | None = None,
                 http_status: int | None = None, details: str | None = None, timeout: bool = False):
        super().__init__(message)
        self.code, self.subcode, self.http_status = code, subcode, http_status
        self.details, self.timeout = details, timeout

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "subcode": self.subcode, "http_status": self.http_status,
                "message": str(self), "details": self.details, "timeout": self.timeout}


class Graph:
    def __init__(self, base_url: str, version: str, *, timeout: float = 10.0, transport=None):
        self.base, self.version, self.timeout = base_url.rstrip("/"), version, timeout
        self.direct = transport is None and keepalive.direct(self.base)  # sends over ``keepalive``
        self._http = httpx.Client(transport=transport, timeout=timeout) if transport is not None else None

    @property
    def http(self) -> httpx.Client:
        """The pooled httpx client of this base URL, made on first use (a worker that only sends
        never makes one: its TLS context alone costs tens of ms of CPU)."""
        if self._http is None:
            with _lock:  # one pooled client per base URL, shared by every job in the process
                key = (self.base, self.timeout)
                if key not in _clients:
                    _clients[key] = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=CONNECT_TIMEOUT),
                                                 limits=httpx.Limits(max_connections=200,
                                                                     max_keepalive_connections=100))
                self._http = _clients[key]
        return self._http

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "Graph":
        return cls(settings.graph_url, settings.graph_version, **kwargs)

    def request(self, method: str, path: str, token: str | None = None, **kwargs) -> dict[str, Any]:
        url = path if path.startswith("http") else f"{self.base}/{self.version}/{path.lstrip('/')}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self.http.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise GraphError(f"timeout calling {path}", timeout=True) from exc
        except httpx.TransportError as exc:
            raise GraphError(f"cannot reach the Graph API: {exc}", timeout=True) from exc
        try:
            data = response.json()
        except ValueError:
            data = {}
        return _answer(response.status_code, data)

    def post_json(self, path: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``request("POST", path, token, json=payload)`` over this thread's kept-alive connection."""
        if not self.direct:
            return self.request("POST", path, token, json=payload)
        url = f"{self.base}/{self.version}/{path.lstrip('/')}"
        try:
            status, body = keepalive.post(url, _json_bytes(payload), {"Authorization": f"Bearer {token}"},
                                          timeout=self.timeout, connect_timeout=CONNECT_TIMEOUT)
        except keepalive.NotSent as exc:
            raise GraphError(f"cannot reach the Graph API: {exc}", timeout=True) from exc
        except TimeoutError as exc:
            raise GraphError(f"timeout calling {path}", timeout=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise GraphError(f"cannot reach the Graph API: {type(exc).__name__}: {exc}", timeout=True) from exc
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        return _answer(status, data if isinstance(data, dict) else {})

    # -- the calls the hub makes -----------------------------------------------------------
    def send_message(self, phone_number_id: str, token: str, payload: dict[str, Any]) -> str:
        data = self.post_json(f"{phone_number_id}/messages", token, payload)
        return data["messages"][0]["id"]

    def exchange_code(self, app_id: str, app_secret: str, code: str) -> str:
        data = self.request("GET", "oauth/access_token",
                            params={"client_id": app_id, "client_secret": app_secret, "code": code})
        return data["access_token"]

    def subscribe_app(self, waba_id: str, token: str) -> None:
        self.request("POST", f"{waba_id}/subscribed_apps", token)

    def phone_numbers(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        """Every number of the WABA the token can see (all pages)."""
        return self._all_pages(f"{waba_id}/phone_numbers", token)

    def phone_number(self, phone_number_id: str, token: str) -> dict[str, Any]:
        return self.request("GET", phone_number_id, token,
                            params={"fields": "display_phone_number,verified_name,quality_rating,"
                                              "platform_type,throughput"})

    def messaging_limit(self, waba_id: str, phone_number_id: str, token: str) -> tuple[str | None, str | None]:
        """The business portfolio owning the WABA (``owner_business_info``) and the portfolio's
        messaging limit (``whatsapp_business_manager_messaging_limit``, e.g. ``TIER_2K``)."""
        owner = self.request("GET", waba_id, token, params={"fields": "owner_business_info"}).get("owner_business_info")
        number = self.request("GET", phone_number_id, token,
                              params={"fields": "whatsapp_business_manager_messaging_limit"})
        portfolio = str(owner["id"]) if isinstance(owner, dict) and owner.get("id") else None
        return portfolio, number.get("whatsapp_business_manager_messaging_limit")

    def request_sync(self, phone_number_id: str, token: str, sync_type: str) -> str | None:
        data = self.request("POST", f"{phone_number_id}/smb_app_data", token,
                            json={"messaging_product": "whatsapp", "sync_type": sync_type})
        return data.get("request_id")

    def templates(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        return self._all_pages(f"{waba_id}/message_templates", token)

    def _all_pages(self, url: str | None, token: str) -> list[dict[str, Any]]:
        """The ``data`` of a Graph edge, following ``paging.next`` to the end."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] | None = {"limit": 100}
        while url:
            data = self.request("GET", url, token, params=params)
            out += data.get("data", [])
            url, params = (data.get("paging") or {}).get("next"), None
        return out


def _answer(status: int, data: dict[str, Any]) -> dict[str, Any]:
    """The answer's data, or its ``GraphError`` (an error body, or an HTTP error status)."""
    if status >= 400 or "error" in data:
        err = data.get("error") or {}
        raise GraphError(err.get("message") or f"HTTP {status}", code=err.get("code"),
                         subcode=err.get("error_subcode"), http_status=status,
                         details=(err.get("error_data") or {}).get("details"))
    return data


def _json_bytes(payload: dict[str, Any]) -> bytes:
    """The request body as httpx's ``json=`` encodes it (compact, UTF-8)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
