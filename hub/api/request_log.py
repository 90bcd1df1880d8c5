"""The one log line (and the metrics) of every HTTP request, for Flask and ``hub.api.fast_webhooks``."""
from __future__ import annotations

import logging
import time

from hub.core import logs
from hub.core.metrics import observe

QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}  # probes and scrapes: logged at DEBUG
http_log = logging.getLogger("hub.http")


def finished(method: str, route: str, path: str, status: int, started: float, *, workspace_id: str | None,
             error_code: str | None, content_length: int | None) -> None:
    """Count and log a request answered with ``status`` (``started``: ``time.perf_counter()``);
    a refused webhook gets a second line saying why (``error_code``)."""
    observe(method, route, status, started)
    fields = {"method": method, "route": route, "status": status,
              "duration_ms": round((time.perf_counter() - started) * 1000, 1), "workspace_id": workspace_id}
    level = logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO
    logs.event(http_log, "request", level=level, **fields)
    if path.startswith("/webhooks/") and status >= 400:
        logs.event(http_log, "webhook rejected", level=logging.WARNING, path=path, status=status,
                   reason=error_code, bytes=content_length, workspace_id=workspace_id)
