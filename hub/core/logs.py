"""Structured logs for every process: plain ``key=value`` text, or JSON lines when
``COEXHUB_LOG_FORMAT=json``; a request id that follows a request into the jobs it causes.

Log a decision with ``event(log, "send refused", send_id=…, reason=…)``: the fields travel on
the record (``record.fields``), the current request id is added, and fields whose names say
secret (token, secret, signature, key, password, authorization) are never written.
"""
from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import random
import re
import sys
import time
from typing import Any

from rq.job import Job

from hub.core.bsuid import is_bsuid
from hub.core.bsuid import mask as mask_bsuid

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("coexhub_request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_SECRET_NAME = re.compile(r"token|secret|signature|password|authorization|api_?key|^key$|body|text", re.IGNORECASE)
_HANDLER_MARK = "_coexhub_handler"
log = logging.getLogger("hub.jobs")


def new_request_id(incoming: str | None = None) -> str:
    """The caller's ``X-Request-Id`` when it is a sane token, else a fresh random id."""
    if incoming and _VALID_ID.match(incoming.strip()):
        return incoming.strip()
    return f"{random.getrandbits(128):032x}"  # an id to follow, not a secret: no system call


def current_request_id() -> str | None:
    return request_id_var.get()


def mask_phone(number: str | None) -> str | None:
    """``+14155552671`` → ``+1415*****71``: enough to tell numbers apart, not to dial one (a
    business-scoped user ID keeps its country code and last four characters)."""
    if not number:
        return number
    if is_bsuid(number):
        return mask_bsuid(number)
    digits = "".join(ch for ch in str(number) if ch.isdigit())
    if len(digits) <= 6:
        return "*" * len(digits)
    return f"+{digits[:4]}{'*' * (len(digits) - 6)}{digits[-2:]}"


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop the values of fields whose names mark them as secrets or message content."""
    return {k: ("[redacted]" if v is not None and _secret_name(k) else v) for k, v in fields.items()}


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def event(logger: logging.Logger, message: str, *, level: int = logging.INFO, exc_info: bool = False,
          **fields: Any) -> None:
    """Log ``message`` with structured ``fields`` (``None`` values are left out)."""
    if not logger.isEnabledFor(level):
        return
    fields = redact({k: v for k, v in fields.items() if v is not None})
    rid = current_request_id()
    if rid and "request_id" not in fields:
        fields["request_id"] = rid
    logger.log(level, message, exc_info=exc_info, stacklevel=2, extra={"fields": fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    rid = current_request_id()
    if rid and "request_id" not in fields:  # plain logger calls made during a request or job
        fields["request_id"] = rid
    return fields


def _plain_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


class PlainFormatter(logging.Formatter):
    """``2026-01-01T12:00:00.123Z INFO hub.http: request method=GET route=/x status=200 …``"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        pairs = " ".join(f"{k}={_plain_value(v)}" for k, v in _fields(record).items())
        if pairs:
            line += " " + pairs
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
                "msg": record.getMessage(), **_fields(record)}
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


_second: tuple[int, str] = (-1, "")  # the last second formatted (every line of a second shares it)


def _timestamp(record: logging.LogRecord) -> str:
    global _second
    seconds = int(record.created)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_second[1]}.{int((record.created - seconds) * 1000):03d}Z"


def formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter ``COEXHUB_LOG_FORMAT`` asks for: ``json`` or plain text (the default)."""
    fmt = (fmt or os.environ.get("COEXHUB_LOG_FORMAT") or "plain").strip().lower()
    return JsonFormatter() if fmt == "json" else PlainFormatter()


def configure(*, verbose: bool = False, fmt: str | None = None, stream=None) -> logging.Handler | None:
    """Send logs to stderr in the configured format. Idempotent; when another handler is on the
    root logger already (a test runner, gunicorn's ``--log-config``) only the levels are set."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("alembic", "httpx", "httpcore", "werkzeug", "rq"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    ours = [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]
    if len(ours) < len(root.handlers):
        return None
    for old in ours:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    return handler


def configure_once() -> None:
    """Configure logging unless it is already (the CLI did, or a test runner, or gunicorn's config)."""
    if not logging.getLogger().handlers:
        configure()


class ContextJob(Job):
    """An RQ job that runs with the request id of the request that enqueued it, and logs its end."""

    def perform(self) -> Any:
        token = request_id_var.set((self.meta or {}).get("request_id"))
        started = time.perf_counter()
        try:
            result = super().perform()
        except Exception:
            event(log, "job raised", level=logging.ERROR, exc_info=True, job=self.func_name, job_id=self.id,
                  duration_ms=round((time.perf_counter() - started) * 1000, 1))
            raise
        else:
            event(log, "job done", job=self.func_name, job_id=self.id,
                  duration_ms=round((time.perf_counter() - started) * 1000, 1),
                  result=result if isinstance(result, (str, int, float)) else None)
            return result
        finally:
            request_id_var.reset(token)


def job_meta() -> dict[str, str] | None:
    """Meta for a job enqueued now: the current request id, if any."""
    rid = current_request_id()
    return {"request_id": rid} if rid else None
