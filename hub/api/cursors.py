"""Keyset (cursor) pages for the listings: a page's cost does not grow with how deep it is.

A list answers a JSON array as before; when the page is full it also sends ``X-Next-Cursor``,
the public id of the page's last item. ``?cursor=<that id>`` returns the items after it in the
list's order (``limit`` still applies). Any item's id works as a cursor, so a client can also
take the last id it shows. ``offset`` still works (its cost grows with the offset); a request
gives one or the other. Rows added while a client pages do not shift later pages: every row
that existed when paging started is returned exactly once.
"""
from __future__ import annotations

from typing import Any, Sequence

from flask import request

from hub.api import ids
from hub.api.errors import ApiError

HEADER = "X-Next-Cursor"


def cursor_arg(prefix: str) -> int | None:
    """The integer id named by ``?cursor=`` (None when absent); 400 when it is not an id of
    this kind or comes with a non-zero ``offset``."""
    token = request.args.get("cursor")
    if not token:
        return None
    if request.args.get("offset", "0") not in ("", "0"):
        raise ApiError(400, "bad_request", "give either cursor or offset, not both")
    value = ids.decode(prefix, token)
    if value is None:
        raise invalid(prefix)
    return value


def invalid(prefix: str) -> ApiError:
    """The error for a cursor that names no usable item."""
    return ApiError(400, "invalid_cursor", f"cursor must be the id of a {ids.KINDS[prefix]} in this list "
                                           "(the X-Next-Cursor header of the previous page)")


def page(rows: Sequence[Any], limit: int, prefix: str) -> tuple[Sequence[Any], int, dict[str, str]]:
    """The view's answer: ``rows``, 200 and ``X-Next-Cursor`` when the page is full."""
    headers = {HEADER: ids.encode(prefix, rows[-1].id)} if rows and len(rows) >= limit else {}
    return rows, 200, headers
