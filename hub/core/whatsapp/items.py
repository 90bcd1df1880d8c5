"""One bad item never sinks its event: each change and each item runs in its own savepoint.

An item that is not an object, or whose processing raises a data error, is rolled back alone,
logged, and recorded in the event's ``outcome["skipped"]`` (where and why); the rest of the
envelope is saved. Database faults (a lost connection, a lock timeout, a deadlock) are not
the item's fault: they propagate, so the whole event is retried.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.exc import InterfaceError, InternalError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hub.core.db import OPTIMISTIC

log = logging.getLogger(__name__)
MAX_RECORDED = 50  # skipped items listed in an outcome (all are counted and logged)
TRANSIENT = (OperationalError, InterfaceError, InternalError, PoolTimeout)


def text(value: Any) -> str | None:
    """``value`` as an id or keyword: strings as they are, integers as digits, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def obj(value: Any) -> dict:
    """``value`` when it is an object, else an empty one (for optional nested parts)."""
    return value if isinstance(value, dict) else {}


def digits(value: Any) -> str:
    """The digits of an id or phone number (an ordering key that ignores formatting)."""
    return "".join(ch for ch in text(value) or "" if ch.isdigit())


def digest(item: Any) -> str:
    """A stable hash of a JSON item (the identity of an item that carries no id)."""
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()[:40]


def reason_of(exc: BaseException) -> str:
    """Why an item failed, without SQL or parameters (outcomes are shown through the API)."""
    if isinstance(exc, StatementError):
        return f"database rejected it: {type(exc.orig).__name__}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class Run:
    """Whether an isolated block was kept (``ok``) or rolled back."""
    ok = True


class Items:
    """Isolates and records the items of one event; ``domain`` and ``jobs`` are the event's
    domain events and follow-up jobs, trimmed back when an item that added to them fails."""

    def __init__(self, session, domain: list | None = None, jobs: list | None = None):
        self.session = session
        self.domain = domain if domain is not None else []
        self.jobs = jobs if jobs is not None else []
        self.skipped: list[dict[str, str]] = []
        self.count = 0

    def skip(self, at: str, reason: str, *, exc_info: bool = False) -> None:
        """Record that the item at ``at`` (a path such as ``entry[0].changes[1]``) was skipped."""
        self.count += 1
        log.warning("skipped %s of a WhatsApp webhook: %s", at, reason, exc_info=exc_info)
        if len(self.skipped) < MAX_RECORDED:
            self.skipped.append({"at": at, "reason": reason})

    def each(self, container: dict, key: str, at: str,
             order: Callable[[dict], str] | None = None) -> Iterator[tuple[str, dict]]:
        """``(path, item)`` for each object in ``container[key]``; anything else is skipped.

        ``order`` (a key such as the contact's number) sorts the items stably: jobs running at
        once then lock the same rows in the same order (no deadlock), while the items of one
        contact keep the order Meta gave them."""
        items = container.get(key)
        path = f"{at}.{key}" if at else key
        if items is None:
            return
        if not isinstance(items, list):
            self.skip(path, f"{key} is not a list")
            return
        good = []
        for i, item in enumerate(items):
            if isinstance(item, dict):
                good.append((f"{path}[{i}]", item))
            else:
                self.skip(f"{path}[{i}]", f"not an object ({type(item).__name__})")
        if order is not None:
            good.sort(key=lambda pair: order(pair[1]))
        yield from good

    @contextlib.contextmanager
    def isolated(self, at: str) -> Iterator[Run]:
        """Run the block in a savepoint; a data error rolls back only this item and is recorded
        (the yielded :class:`Run` then says ``ok=False``). In an optimistic pass
        (``hub.core.db.savepoint``) the block runs as it is: an error ends the pass, and the
        event is processed again with savepoints, where it is isolated and recorded."""
        marks, run = (len(self.domain), len(self.jobs)), Run()
        if self.session.info.get(OPTIMISTIC):  # no savepoint: an error fails the whole pass (see db.savepoint)
            yield run
            return
        try:
            with self.session.begin_nested():
                yield run
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 (any data error of this one item: recorded, not raised)
            run.ok = False
            del self.domain[marks[0]:]
            del self.jobs[marks[1]:]
            self.skip(at, reason_of(exc), exc_info=True)

    def outcome(self) -> dict[str, Any]:
        """What goes into the event's outcome: the skipped items (at most 50) and their count,
        when there are any."""
        return {"skipped": self.skipped, "skipped_count": self.count} if self.count else {}
