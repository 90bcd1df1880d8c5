"""Error text a workspace may read through the API: what failed, never whose data.

Exceptions carry SQL statements with their parameters (SQLAlchemy), constraint details
(PostgreSQL's ``DETAIL: Key (...)=(...)``) and values from the payload being processed
(``KeyError('14155552671')``). One Meta delivery can hold several workspaces' customers, so
the text stored in ``last_error`` is the exception's class and the first line of its message,
with SQL and payload values cut out; the full error with its traceback goes to the log.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

MAX_CHARS = 300
MAX_VALUES = 20_000  # payload nodes looked at (cost on the failure path); beyond: phone/e-mail patterns only
REDACTED = "…"
_SQL_TAIL = re.compile(r"\s*(\[SQL:|\[parameters:|\(Background on this error).*", re.DOTALL)
_DRIVER = re.compile(r"^\([\w.]+\)\s*")  # "(sqlite3.IntegrityError) " in SQLAlchemy's text
_PHONE = re.compile(r"\+?\d[\d\s()-]{5,}\d")  # with 7 or more digits: phone numbers, wa_ids
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def public_error(exc: BaseException, payload: Any = None) -> str:
    """``"<ExceptionClass>: <message>"`` without SQL, SQL parameters or values found in ``payload``.

    ``payload`` is the body being processed (bytes, JSON text or parsed data); its string and
    number values are cut from the message, object keys are kept (``KeyError: 'text'``)."""
    name = type(exc).__name__
    orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError: the driver's own message
    message = str(orig) if isinstance(orig, BaseException) else _str(exc)
    message = _SQL_TAIL.sub("", _DRIVER.sub("", message.strip())).strip()
    message = message.splitlines()[0].strip()[:2 * MAX_CHARS] if message else ""
    message = redact(message, payload_values(payload)) if message else ""
    text = f"{name}: {message}" if message else name
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + REDACTED


def redact(message: str, values: Iterable[str] = ()) -> str:
    """``message`` with each of ``values`` (longest first) and anything shaped like a phone
    number or an e-mail address replaced by ``…``."""
    for value in sorted({v for v in values if v in message}, key=len, reverse=True):
        message = message.replace(value, REDACTED)
    message = _PHONE.sub(lambda m: REDACTED if sum(c.isdigit() for c in m.group()) >= 7 else m.group(), message)
    return _EMAIL.sub(REDACTED, message)


def payload_values(payload: Any) -> set[str]:
    """The string and number leaves of a payload (≥ 3 characters), minus words used as keys."""
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            text = payload.decode("utf-8", "replace") if isinstance(payload, (bytes, bytearray)) else payload
            return {t for t in re.split(r"[\s&=;,]+", text) if len(t) >= 3}
    values: set[str] = set()
    keys: set[str] = set()
    stack, seen = [payload], 0
    while stack and seen < MAX_VALUES:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            keys.update(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, (str, int, float)) and not isinstance(item, bool):
            text = str(item)
            if len(text) >= 3:
                values.add(text)
    return values - keys


def _str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not break the error path
        return ""
