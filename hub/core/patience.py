"""Hold on through a short database outage instead of dropping what a job has in hand."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger(__name__)
DB_AWAY = (OperationalError, InterfaceError)  # what an unreachable (or locked) database raises
T = TypeVar("T")


def patiently(what: str, work: Callable[[], T], patience: float = 60.0) -> T:
    """Run ``work``; while the database is unreachable, retry it with backoff for ``patience``
    seconds, then let the error through. ``work`` must be safe to repeat (one transaction)."""
    deadline, delay = time.monotonic() + patience, 0.2
    while True:
        try:
            return work()
        except DB_AWAY as exc:
            if time.monotonic() + delay > deadline:
                log.error("%s: database unavailable for %.0fs; giving up (%s)", what, patience, exc.orig)
                raise
            log.warning("%s: database unavailable (%s); retrying in %.1fs", what, exc.orig, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
