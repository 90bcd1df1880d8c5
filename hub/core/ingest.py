"""Store a verified webhook, then enqueue its processing: the hot path of every provider.

A verified request is always stored. One that cannot be understood (not JSON, nested too
deeply, not the provider's shape) is stored with status ``rejected`` and the reason in
``last_error``: it is listed by ``GET /api/v1/events?status=rejected``, never processed and
never retried, and the provider still gets its 2xx (a retry would bring the same bytes).
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import threading
import weakref
from functools import partial
from typing import Any, Mapping

from sqlalchemy import JSON, update

from hub.core.group_commit import Committer, LoopCommitter
from hub.core.logs import current_request_id
from hub.core.metrics import count
from hub.core.models import InboundEvent, utcnow

log = logging.getLogger(__name__)
KEPT_HEADERS_SKIP = {"authorization", "cookie", "content-length", "host", "connection", "accept-encoding"}
PROCESS_JOB = "hub.core.processing.process_event"  # by name: the web process never imports jobs
REJECTED = "rejected"  # a verified request that cannot be understood: kept, visible, never processed


def process_job(event_id: int, *more: int) -> tuple:
    """The job that processes inbound events in id order (its id, after the first, keeps one
    copy waiting; ``Queues.lost`` knows the later ones are in it)."""
    return ("ingest", PROCESS_JOB, (event_id, *more), f"event-{event_id}")


def _insert(conn, rows: list[dict]) -> dict[tuple[str, str, str], int]:
    """Insert a batch in one transaction; the ids of the rows it inserted, by key."""
    if conn.dialect.name == "postgresql":
        return _insert_postgresql(conn, rows)
    result = conn.execute(_sqlite_insert(), rows)  # one multi-row insert ("insertmanyvalues")
    return {(provider, scope, key): event_id for event_id, provider, scope, key in result.all()}


@functools.cache
def _sqlite_insert():
    from sqlalchemy.dialects.sqlite import insert

    return insert(InboundEvent).on_conflict_do_nothing().returning(
        InboundEvent.id, InboundEvent.provider, InboundEvent.scope, InboundEvent.dedupe_key)


@functools.cache
def _pg_insert(columns: tuple[str, ...]) -> tuple[str, tuple[bool, ...]]:
    """``INSERT … SELECT FROM unnest(one array per column)`` for ``columns`` (their types from the
    model): one short statement whatever the batch size, so it is prepared once; and which of
    the columns are JSON (their values are wrapped for psycopg)."""
    from sqlalchemy.dialects import postgresql

    names, dialect = ", ".join(columns), postgresql.dialect()
    types = [InboundEvent.__table__.c[c].type for c in columns]
    # the types without their lengths: an explicit cast to varchar(n) would cut a long value silently
    arrays = ", ".join(f"%b::{kind.compile(dialect=dialect).split('(')[0]}[]" for kind in types)
    return (f"INSERT INTO inbound_events ({names}) SELECT {names} FROM unnest({arrays})"
            f" WITH ORDINALITY AS batch ({names}, n) ORDER BY n"  # ids in hand-over order
            " ON CONFLICT (provider, scope, dedupe_key) DO NOTHING RETURNING id, provider, scope, dedupe_key",
            tuple(isinstance(kind, JSON) for kind in types))


def _pg_statement(rows: list[dict], dumps) -> tuple[str, list[list]]:
    """The ``unnest`` statement for these rows' columns and its parameters: one list per column."""
    from psycopg.types.json import Json

    columns = tuple(rows[0])  # every row has ``row``'s keys
    statement, json_columns = _pg_insert(columns)
    return statement, [[Json(row[c], dumps) for row in rows] if is_json else [row[c] for row in rows]
                       for c, is_json in zip(columns, json_columns)]


def _insert_postgresql(conn, rows: list[dict]) -> dict[tuple[str, str, str], int]:
    """One ``INSERT … SELECT FROM unnest(arrays)``: one statement (autocommit: one round trip,
    one commit) whose text does not depend on the batch size, so psycopg parses and prepares it
    once (a multi-row ``VALUES`` is a new long statement for every batch size, parsed again each
    time: that was most of a batch's CPU)."""
    import psycopg

    raw = conn.connection.driver_connection
    statement, params = _pg_statement(rows, conn.dialect._json_serializer or json.dumps)
    try:
        with raw.cursor() as cur:
            cur.execute(statement, params, prepare=True)
            return {(provider, scope, key): event_id for event_id, provider, scope, key in cur.fetchall()}
    except psycopg.Error as exc:  # as SQLAlchemy's (the committer tells "away" from "refused" by them)
        if raw.closed or isinstance(exc, psycopg.OperationalError):
            conn.invalidate()
        raise _as_sqlalchemy(statement, exc) from exc


def _as_sqlalchemy(statement: str, exc: Exception) -> Exception:
    import psycopg
    from sqlalchemy.exc import DBAPIError

    return DBAPIError.instance(statement, None, exc, psycopg.Error)


_COMMITTERS_LOCK = threading.Lock()


def committer(rt) -> Committer:
    """This runtime's group committer (one per database and process, kept on ``rt.db``)."""
    found = getattr(rt.db, "group_committer", None)
    if found is None:
        with _COMMITTERS_LOCK:
            found = getattr(rt.db, "group_committer", None)
            if found is None:
                found = rt.db.group_committer = Committer(rt.db.autocommit, _insert, partial(_hand_off, rt))
    return found


def safe_text(value: Any, limit: int) -> str | None:
    """``value`` as text every database stores: no NUL, no lone surrogate, at most ``limit`` chars."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit]


def row(*, provider: str, scope: str, dedupe_key: str, body: bytes, headers: Mapping[str, str],
        topic: str | None = None, workspace_id: str | None = None, status: str = "pending",
        error: str | None = None) -> dict[str, Any]:
    """The ``inbound_events`` row of a verified webhook (``status=REJECTED`` with an ``error``
    keeps a verified request that cannot be processed: visible in the events API, never enqueued)."""
    now = utcnow()
    pending = status == "pending"
    return dict(provider=provider, scope=scope, dedupe_key=safe_text(dedupe_key, 255) or body_hash(body),
                workspace_id=workspace_id, topic=safe_text(topic, 128), body=body, status=status,
                attempts=0, received_at=now, next_attempt_at=now, enqueued_at=now if pending else None,
                last_error=safe_text(error, 2000),
                headers={safe_text(k, 200): safe_text(v, 2000) for k, v in headers.items()
                         if k.lower() not in KEPT_HEADERS_SKIP})


def store(rt, **fields: Any) -> tuple[int | None, bool]:
    """Insert the event (``row``'s fields) unless its dedupe key was seen; enqueue it.
    Returns ``(id, duplicate)``.

    The row is committed (with those of concurrent requests: ``group_commit``) before this
    returns; the job that processes it is enqueued right after, one per batch.
    """
    values = row(**fields)
    return _stored(values, committer(rt).submit(values, current_request_id()))


async def store_async(rt, **fields: Any) -> tuple[int | None, bool]:
    """``store`` for an asyncio task: the same batches, waited on without blocking the loop
    (on PostgreSQL committed by the loop itself: ``loop_committer``). It returns once the row is
    committed; its job is enqueued right after."""
    values = row(**fields)
    found = committer(rt) if rt.db.is_sqlite else loop_committer(rt)
    return _stored(values, await found.submit_async(values, current_request_id()))


def loop_committer(rt) -> LoopCommitter:
    """The running loop's committer for this runtime (PostgreSQL: asynchronous drivers; kept
    on ``rt.db`` by loop, as ``committer`` keeps the thread's)."""
    loop = asyncio.get_running_loop()
    by_loop = getattr(rt.db, "loop_committers", None)
    if by_loop is None:
        with _COMMITTERS_LOCK:
            by_loop = rt.db.__dict__.setdefault("loop_committers", weakref.WeakKeyDictionary())
    found = by_loop.get(loop)
    if found is None:
        backends = _LoopBackends(rt)
        found = by_loop[loop] = LoopCommitter(backends.insert, backends.after, backends.close)
    return found


def waiting(rt) -> int:
    """Rows handed to this runtime's committers whose hand-off is not done (thread and loops)."""
    loops = list(getattr(rt.db, "loop_committers", {}).values())
    return committer(rt).waiting() + sum(found.waiting() for found in loops)


async def stop_loop_committer(rt) -> None:
    """Commit what the running loop's committer holds and close its connections (shutdown)."""
    loop, by_loop = asyncio.get_running_loop(), getattr(rt.db, "loop_committers", {})
    found = by_loop.get(loop)
    if found is not None:
        await found.stop()  # still counted by ``waiting`` meanwhile
        by_loop.pop(loop, None)


def _stored(values: dict[str, Any], event_id: int | None) -> tuple[int | None, bool]:
    if values["status"] != "pending":
        log.warning("stored %s event %s from %s/%s as %s: %s", values["provider"], event_id, values["provider"],
                    values["scope"], values["status"], values["last_error"])
    return event_id, event_id is None


def _hand_off(rt, rows: list[dict], request_ids: list[str | None], ids: list[int | None]) -> None:
    """After a batch's commit: ONE job for its new pending events (in id order) and the
    counters, in one Redis round trip. A failure leaves them to the scheduler."""
    fresh = _fresh(rows, request_ids, ids)
    try:
        pipe = rt.redis.pipeline(transaction=False)
        _hand_off_commands(rt, pipe, fresh, rows, ids)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 -- stored is enough: the scheduler enqueues them (next tick once marked)
        _not_enqueued(rt, fresh, exc)


def _fresh(rows: list[dict], request_ids: list[str | None], ids: list[int | None]) -> list[tuple[int, str | None]]:
    """The new pending events of a batch, with their request ids, in id order."""
    return sorted((event_id, rid) for row, rid, event_id in zip(rows, request_ids, ids)
                  if event_id is not None and row["status"] == "pending")


def _hand_off_commands(rt, pipe, fresh: list[tuple[int, str | None]], rows: list[dict],
                       ids: list[int | None]) -> None:
    """``_hand_off``'s commands, added to ``pipe`` (nothing is sent): the job and the counters."""
    if fresh:
        queue, func, args, job_id = process_job(*(event_id for event_id, _ in fresh))
        rids = [rid for _, rid in fresh]
        rt.queues.enqueue(queue, func, *args, job_id=job_id, pipeline=pipe, request_id=rids[0],
                          kwargs={"request_ids": rids} if len(fresh) > 1 and any(rids) else None)
        if len(fresh) > 1:
            rt.queues.cover(pipe, args, job_id)
    counts: dict[tuple[str, str], int] = {}
    for row, event_id in zip(rows, ids):
        result = "duplicate" if event_id is None else "stored" if row["status"] == "pending" else row["status"]
        counts[row["provider"], result] = counts.get((row["provider"], result), 0) + 1
    for (provider, result), amount in counts.items():
        count(rt.redis, rt.settings.key_prefix, "ingest", pipeline=pipe, amount=amount,
              provider=provider, result=result)


class _LoopBackends:
    """An event loop's own PostgreSQL connection (autocommit) and Redis client, for its
    ``LoopCommitter``: the same statement and the same Redis commands as the thread's."""

    def __init__(self, rt):
        import redis.asyncio

        from hub.core.queue import socket_url

        self.rt, self.pg = rt, None
        self.redis = redis.asyncio.Redis.from_url(rt.settings.redis_url or socket_url(rt.redis))
        self.dumps = rt.db.engine.dialect._json_serializer or json.dumps

    async def insert(self, rows: list[dict]) -> dict[tuple[str, str, str], int]:
        import psycopg

        statement, params = _pg_statement(rows, self.dumps)
        try:
            if self.pg is None or self.pg.closed:
                engine = self.rt.db.engine
                cargs, cparams = engine.dialect.create_connect_args(engine.url)
                self.pg = await psycopg.AsyncConnection.connect(*cargs, autocommit=True, **cparams)
            async with self.pg.cursor() as cur:
                await cur.execute(statement, params, prepare=True)
                return {(provider, scope, key): event_id for event_id, provider, scope, key in await cur.fetchall()}
        except psycopg.Error as exc:
            raise _as_sqlalchemy(statement, exc) from exc

    async def after(self, rows: list[dict], request_ids: list[str | None], ids: list[int | None]) -> None:
        fresh = _fresh(rows, request_ids, ids)
        try:
            if not self.rt.queues["ingest"].redis_server_version:  # RQ asks once per queue: not on the loop
                await asyncio.to_thread(self.rt.queues["ingest"].get_redis_server_version)
            commands = self.rt.redis.pipeline(transaction=False)  # only records the commands
            _hand_off_commands(self.rt, commands, fresh, rows, ids)
            pipe = self.redis.pipeline(transaction=False)
            for args, options in commands.command_stack:
                pipe.execute_command(*args, **options)
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 -- as in ``_hand_off``
            await asyncio.to_thread(_not_enqueued, self.rt, fresh, exc)

    async def close(self) -> None:
        if self.pg is not None:
            pg, self.pg = self.pg, None
            await pg.close()
        await self.redis.aclose()


def _not_enqueued(rt, fresh: list[tuple[int, str | None]], error: Exception) -> None:
    """A batch's hand-off failed: log it, and mark its new events as waiting for the scheduler."""
    event_ids = [event_id for event_id, _ in fresh]
    log.error("could not enqueue inbound events %s; the scheduler will retry", event_ids, exc_info=error)
    if not event_ids:
        return
    try:
        with rt.db.autocommit.connect() as conn:
            conn.execute(update(InboundEvent).where(InboundEvent.id.in_(event_ids)).values(enqueued_at=None))
    except Exception:  # then the scheduler finds their job missing in Redis a few seconds later
        log.warning("inbound events %s: could not mark them as not enqueued", event_ids)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
