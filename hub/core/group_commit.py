"""Group commit for ingest: concurrent requests share one multi-row insert and one commit.

Each web process has one committer thread per database. A request thread hands its row to
it and waits for the batch its row joined; the committer takes everything queued so far,
runs ONE ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (autocommit: durable when it returns),
calls ``after`` with the batch (the Redis hand-off: one job for the batch), then wakes the
batch's waiters (each learns its id, or ``None`` for a duplicate). A thread waits with
``submit``: when it returns, its row is committed and its job enqueued, as with one insert
per request. An asyncio task waits with ``submit_async``, and the tasks of one event loop in a
batch are woken by ONE call into their loop (no thread wake-up per request) as soon as the
batch is committed: they answer while the hand-off runs. An answered event is durable, and
one whose hand-off a crash cuts short is enqueued by the scheduler, as when Redis refuses it.
While a batch is being committed and handed off the next one fills up, so batches grow with
the load and a lone request waits for one round trip, as before.

A batch the database refuses for one row's sake (a ``DataError`` or similar, not a lost
connection) is retried row by row, so only that request fails. The thread exits after
``IDLE_SECONDS`` without work and is started again on demand (also after a fork).

``LoopCommitter`` does the same on an event loop, with asynchronous drivers: one task per loop
commits the batches of that loop's requests, so no thread has to win the GIL back from the
loop after each round trip (the web worker's webhook routes on PostgreSQL, ``ingest.store_async``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
IDLE_SECONDS = 30.0


class _Batch:
    __slots__ = ("done", "error", "extras", "ids", "loops", "refused", "rows")

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.extras: list[Any] = []  # per row, for ``after`` (e.g. the request id)
        self.ids: list[int | None] | None = None
        self.error: BaseException | None = None  # the whole batch failed (the database is away)
        self.refused: dict[int, BaseException] = {}  # rows the database refused, by index
        self.done = threading.Event()
        self.loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}  # the waiting tasks' futures

    def add(self, row: dict[str, Any], extra: Any, future: asyncio.Future | None = None) -> int:
        """Hand ``row`` over (``future``: a waiting task's, registered before the batch can
        finish); returns its index in the batch."""
        self.rows.append(row)
        self.extras.append(extra)
        if future is not None:
            self.loops.setdefault(future.get_loop(), []).append(future)
        return len(self.rows) - 1

    def result(self, index: int) -> int | None:
        """Row ``index``'s id (``None``: a duplicate), or the error that kept it out."""
        error = self.error or self.refused.get(index)
        if error is not None:
            raise error
        return self.ids[index]

    def finish(self) -> None:
        """Wake the threads and event loops waiting on this batch."""
        self.done.set()
        self.wake_tasks()

    def wake_tasks(self) -> None:
        """Wake the event loops' tasks waiting on this batch (only once)."""
        loops, self.loops = self.loops, {}
        for loop, futures in loops.items():
            if loop is _running_loop():  # a ``LoopCommitter``'s own loop
                _resolve(futures)
                continue
            try:
                loop.call_soon_threadsafe(_resolve, futures)  # one wake-up per loop and batch
            except RuntimeError:  # that loop is closed: nobody is left to wake
                pass


Key = tuple[str, str, str]


class Committer:
    """Inserts rows handed over by many threads in batches; see the module docstring.

    ``insert(conn, rows)`` runs the statement and returns ``{(provider, scope, dedupe_key): id}``
    for the rows it inserted; ``after(rows, extras, ids)`` runs after the commit, before the
    waiters are woken (its failure is logged, never theirs)."""

    def __init__(self, engine, insert: Callable[[Any, list[dict]], dict[Key, int]],
                 after: Callable[[list[dict], list[Any], list[int | None]], None]):
        self.engine, self.insert, self.after = engine, insert, after
        self.cond = threading.Condition()
        self.open = _Batch()
        self.busy = 0  # rows of the batch being committed or handed off now
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def waiting(self) -> int:
        """Rows handed over and not handed off yet (the batch being committed or handed off, and
        the next)."""
        with self.cond:
            return self.busy + len(self.open.rows)

    def submit(self, row: dict[str, Any], extra: Any = None) -> int | None:
        """Store ``row`` with the next batch; its id once committed, ``None`` if a duplicate."""
        batch, index = self._hand_over(row, extra)
        batch.done.wait()
        return batch.result(index)

    async def submit_async(self, row: dict[str, Any], extra: Any = None) -> int | None:
        """``submit`` for a task of a running event loop: waits without blocking the loop."""
        future = asyncio.get_running_loop().create_future()
        batch, index = self._hand_over(row, extra, future)
        await future
        return batch.result(index)

    def _hand_over(self, row: dict[str, Any], extra: Any,
                   future: asyncio.Future | None = None) -> tuple[_Batch, int]:
        with self.cond:
            batch = self.open  # at most one row per waiting request: batches stay small
            index = batch.add(row, extra, future)
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="coexhub-group-commit", daemon=True)
                self.thread.start()
            self.cond.notify()
        return batch, index

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.open.rows:
                    if not self.cond.wait(IDLE_SECONDS) and not self.open.rows:
                        if self.thread is threading.current_thread():
                            self.thread = None
                        return
                batch, self.open = self.open, _Batch()
                self.busy = len(batch.rows)
            try:
                self._commit(batch)
                batch.wake_tasks()  # committed, so durable: tasks answer while the hand-off runs
                if batch.error is None:
                    self._after(batch)
            finally:
                self.busy = 0
                batch.finish()

    def _after(self, batch: _Batch) -> None:
        try:
            self.after(batch.rows, batch.extras, batch.ids)
        except Exception:  # the rows are committed; ``after`` leaves what it could not do to recovery
            log.exception("after-commit hand-off of %d inbound events failed", len(batch.rows))

    def _commit(self, batch: _Batch) -> None:
        steps = _commit_steps(batch)
        rows = _step(steps)
        while rows is not None:
            try:
                with self.engine.connect() as conn:
                    ids = self.insert(conn, rows)
            except Exception as exc:  # noqa: BLE001 -- ``_commit_steps`` decides what it means
                rows = _step(steps, error=exc)
            else:
                rows = _step(steps, ids)


class LoopCommitter:
    """``Committer`` for the tasks of one event loop, committing on that loop: ``insert(rows)``
    and ``after(rows, extras, ids)`` are coroutines (``insert`` raises SQLAlchemy's exceptions,
    as ``Committer``'s does). One task takes the batches in turn, as the thread does. It ends
    after ``IDLE_SECONDS`` without work, or at ``stop()``, and awaits ``closed()`` then."""

    def __init__(self, insert: Callable[[list[dict]], Awaitable[dict[Key, int]]],
                 after: Callable[[list[dict], list[Any], list[int | None]], Awaitable[None]],
                 closed: Callable[[], Awaitable[None]]):
        self.insert, self.after, self.closed = insert, after, closed
        self.open = _Batch()
        self.busy = 0  # rows of the batch being committed or handed off now
        self.task: asyncio.Task | None = None
        self.work: asyncio.Future | None = None  # set when a row arrives for an idle task
        self.stopping = False

    def waiting(self) -> int:
        return self.busy + len(self.open.rows)

    async def submit_async(self, row: dict[str, Any], extra: Any = None) -> int | None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batch = self.open
        index = batch.add(row, extra, future)
        if self.task is None:
            self.task = loop.create_task(self._run(), name="coexhub-group-commit")
        self._wake()
        await future
        return batch.result(index)

    async def stop(self) -> None:
        """Commit and hand off what was handed over so far, then close (the loop's shutdown)."""
        self.stopping = True
        self._wake()
        if self.task is not None:
            await self.task
        else:
            await self.closed()

    def _wake(self) -> None:
        if self.work is not None and not self.work.done():
            self.work.set_result(None)

    async def _run(self) -> None:
        while self.open.rows or not self.stopping:
            if not self.open.rows:
                self.work = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait_for(self.work, IDLE_SECONDS)
                except TimeoutError:
                    if not self.open.rows:
                        break
                continue
            batch, self.open = self.open, _Batch()
            self.busy = len(batch.rows)
            try:
                await self._commit(batch)
                batch.wake_tasks()  # as the thread does
                if batch.error is None:
                    await self.after(batch.rows, batch.extras, batch.ids)
            except Exception:  # as in ``Committer._after``
                log.exception("after-commit hand-off of %d inbound events failed", len(batch.rows))
            finally:
                self.busy = 0
                batch.finish()
        await self.closed()
        self.task = None
        if self.open.rows:  # handed over while the connections were closing: start again
            self.task = asyncio.get_running_loop().create_task(self._run(), name="coexhub-group-commit")

    async def _commit(self, batch: _Batch) -> None:
        steps = _commit_steps(batch)
        rows = _step(steps)
        while rows is not None:
            try:
                ids = await self.insert(rows)
            except Exception as exc:  # noqa: BLE001 -- ``_commit_steps`` decides what it means
                rows = _step(steps, error=exc)
            else:
                rows = _step(steps, ids)


def _commit_steps(batch: _Batch) -> Generator[list[dict], dict[Key, int], None]:
    """A batch's commit, for both committers: yields the rows to insert next and is sent the ids
    the insert returned, or thrown its error. Each key's first row is inserted (later copies in
    the batch are duplicates). A database that is away fails every row; a batch the database
    refuses for one row's sake is inserted row by row, so only that row fails."""
    first: dict[Key, int] = {}
    unique = [i for i, row in enumerate(batch.rows) if first.setdefault(_key(row), i) == i]
    try:
        ids = yield [batch.rows[i] for i in unique]
    except (OperationalError, InterfaceError) as exc:  # the database is away: every row fails
        batch.error = exc
        return
    except DBAPIError:  # one row the database refuses: find it, store the others
        log.warning("a batch of %d inbound events was refused; inserting them one by one", len(unique))
        ids = {}
        for i in unique:
            try:
                ids.update((yield [batch.rows[i]]))
            except Exception as exc:  # that request fails (500); the provider retries
                log.exception("inbound event row refused by the database")
                batch.refused[i] = exc
    except Exception as exc:  # noqa: BLE001 -- handed to every waiter, raised in its request
        batch.error = exc
        return
    for i, row in enumerate(batch.rows):  # a later copy of a refused row fails with it
        if first[_key(row)] in batch.refused:
            batch.refused[i] = batch.refused[first[_key(row)]]
    batch.ids = [ids.get(_key(row)) if first[_key(row)] == i else None for i, row in enumerate(batch.rows)]


def _step(steps: Generator, result: Any = None, error: BaseException | None = None) -> list[dict] | None:
    """Advance ``_commit_steps``: the rows to insert next, or ``None`` once the batch is settled."""
    try:
        return steps.throw(error) if error is not None else steps.send(result)
    except StopIteration:
        return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(futures: list[asyncio.Future]) -> None:
    for future in futures:
        if not future.done():  # a cancelled waiter
            future.set_result(None)


def _key(row: dict[str, Any]) -> Key:
    return row["provider"], row["scope"], row["dedupe_key"]
