"""Checks every request passes before a view runs, so odd input is a 4xx and never a 500.

- a NUL character in the path or a query argument (no database stores it) → 400;
- on ``/api/`` routes, a non-empty body must be JSON: another ``Content-Type`` → 415 saying
  which to send, invalid JSON → 400 with the parser's reason, JSON nested deeper than
  ``MAX_JSON_DEPTH`` → 400, and strings with a lone surrogate or a NUL, non-finite numbers
  or integers beyond 64 bits → 422 naming the field.
"""
from __future__ import annotations

import json
import math
from typing import Any

from flask import request

from hub.api.errors import ApiError

MAX_JSON_DEPTH = 32
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INT_LIMIT = 2**63


def check_request() -> None:
    """``before_request`` hook of the app (raises ``ApiError``; returns None to go on)."""
    if "\x00" in request.path or any("\x00" in key or "\x00" in value
                                     for key, value in request.args.items(multi=True)):
        raise ApiError(400, "bad_request", "the URL contains a NUL character")
    if request.method not in BODY_METHODS or not request.path.startswith("/api/"):
        return
    body = request.get_data(cache=True)
    if not body.strip():
        return
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       "send the body as JSON with the header 'Content-Type: application/json'"
                       f" (this request says {request.mimetype or 'nothing'!r})")
    try:
        data = json.loads(body)
    except RecursionError as exc:
        raise ApiError(400, "bad_request", f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, ints of thousands of digits
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {_reason(exc)}") from exc
    problem = json_problem(data)
    if problem:
        where, what, status = problem
        if status == 400:
            raise ApiError(400, "bad_request", what)
        raise ApiError(422, "validation_error", "the request body is not valid", fields={where: [what]})


def json_problem(data: Any) -> tuple[str, str, int] | None:
    """``(path, reason, status)`` of the first value no endpoint can take, or None (iterative walk)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return path or "$", f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels", 400
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and _bad_text(key):
                    return f"{path}.{_printable(key)}".lstrip("."), _bad_text(key), 422
                stack.append((item, f"{path}.{_printable(key)}".lstrip(".") if isinstance(key, str)
                              else f"{path}[{key}]", depth + 1))
        elif isinstance(value, str) and _bad_text(value):
            return path or "$", _bad_text(value), 422
        elif isinstance(value, float) and not math.isfinite(value):
            return path or "$", "numbers must be finite", 422
        elif isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value < INT_LIMIT:
            return path or "$", "integers must fit in 64 bits", 422
    return None


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "text must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (it holds a lone surrogate)"
    return None


def _printable(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")[:60]


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)[:200]
