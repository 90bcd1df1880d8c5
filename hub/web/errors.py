"""Console error pages: HTML for 400 (CSRF), 403, 404, 429 and 500 on console routes, while the
JSON API keeps its ``{"error": …}`` shape (``hub.api.errors``)."""
from __future__ import annotations

import logging

from flask import Response, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)
TITLES = {400: "Bad request", 403: "Not allowed", 404: "Page not found", 405: "Not allowed here",
          410: "No longer available", 429: "Too many attempts", 500: "Something went wrong"}
MESSAGES = {403: "Your role in this workspace does not give access to this page. Ask an owner of the workspace.",
            404: "There is nothing at this address, or it belongs to another workspace.",
            500: "An internal error happened; it has been logged. Try again, or tell the hub's operator."}
CSRF_MESSAGE = ("This form had expired or did not come from this console (CSRF check failed). "
                "Go back, reload the page and send it again.")
NOT_CONSOLE = ("/api/", "/webhooks/", "/healthz", "/readyz", "/metrics", "/_sim")


def page(exc: HTTPException) -> Response:
    """The console's HTML page for an HTTP error (``Retry-After`` kept on a 429)."""
    code = exc.code or 500
    if isinstance(exc, CSRFError):
        message = CSRF_MESSAGE
    elif code in MESSAGES and (exc.description or "") == type(exc).description:  # werkzeug's generic text
        message = MESSAGES[code]
    else:
        message = exc.description or MESSAGES.get(code, "")
    response = make_response(render_template("console/error.html", code=code, title=TITLES.get(code, exc.name),
                                             message=message), code)
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        response.headers["Retry-After"] = str(int(retry if isinstance(retry, (int, float)) else 1))
    return response


def on_console_error(exc: Exception) -> Response:
    """Error handler of every console blueprint (``hub.web.access.console_blueprint``)."""
    if isinstance(exc, HTTPException):
        return page(exc)
    log.exception("unhandled error on console page %s %s", request.method, request.path)
    return page(InternalServerError())


def for_unmatched(exc: HTTPException) -> Response | None:
    """An HTML page for a browser asking for an address no route matches outside the API; None
    (JSON) for everything else."""
    if request.url_rule is not None or request.path.startswith(NOT_CONSOLE):
        return None
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) != "text/html":
        return None
    return page(exc)
