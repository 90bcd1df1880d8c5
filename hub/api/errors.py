"""JSON errors: ``{"error": {"code": "...", "message": "..."}}`` with the right status."""
from __future__ import annotations

import logging

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_body(code: str, message: str, **details) -> dict:
    """The JSON body of an error (also written by ``hub.api.fast_webhooks``, outside Flask)."""
    return {"error": {"code": code, "message": message, **({"details": details} if details else {})}}


def error_response(status: int, code: str, message: str, **details):
    return jsonify(error_body(code, message, **details)), status


def _string_keys(value):
    """Marshmallow keys list items' errors by index (``{3: [...], "_schema": [...]}``); JSON
    with sorted keys cannot mix int and str keys, so every key becomes a string."""
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    return [_string_keys(v) for v in value] if isinstance(value, list) else value


def register(app) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, **exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        from hub.web.errors import for_unmatched

        page = for_unmatched(exc)  # a browser on an unknown console address gets a page; the API keeps JSON
        if page is not None:
            return page
        data = getattr(exc, "data", None) or {}
        if exc.code in (400, 422) and "messages" in data:  # webargs: validation (422) or unreadable JSON (400)
            messages = data["messages"]
            messages = _string_keys(messages.get("json", messages) if isinstance(messages, dict) else messages)
            if exc.code == 400:
                return error_response(400, "bad_request", "the body is not valid JSON", fields=messages)
            return error_response(422, "validation_error", "the request body is not valid", fields=messages)
        codes = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 415: "unsupported_media_type"}
        return error_response(exc.code or 500, codes.get(exc.code, "http_error"), exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        """Catch-all: a defect still answers JSON, never HTML or a traceback (the log has it)."""
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; it has been logged")
