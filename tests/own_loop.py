"""``run``: a coroutine on a fresh event loop in a thread of its own. The browser tests' sync
Playwright keeps a loop running on the main thread of its xdist worker for the rest of the
session, and ``asyncio.run`` refuses to start there."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout)
