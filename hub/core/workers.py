"""``coexhub worker``: RQ workers that outlive a Redis outage and fork cheaply.

- **Reconnect.** RQ's work loop quits on most Redis errors; ``serve`` then waits for Redis with
  a logged, capped backoff and starts a fresh worker (a new name: a Redis that restarted empty
  has forgotten the old one). Only a stop signal, or an empty queue in burst mode, ends it.
- **Liveness.** A ``Heartbeat`` thread keeps a short-lived key per worker, so the scheduler
  tells a killed worker's started jobs from a slow one's within seconds (``Queues.lost``).
- **Ready before the first job.** ``prepare`` loads the plugins, imports every job's module
  and freezes the heap once (``Runtime.settle``). In fork mode each work horse inherits them,
  and drops the parent's pooled database connections without closing them
  (``engine.dispose(close=False)``).
- **Queue order.** Queues are served round robin starting from ``send`` (``QUEUE_NAMES``).
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import redis
from rq import SimpleWorker, Worker
from rq.utils import now as rq_now
from rq.worker import DequeueStrategy

from hub.core.logs import ContextJob
from hub.core.queue import Heartbeat
from hub.core.runtime import Runtime

log = logging.getLogger(__name__)
JOB_MODULES = ("hub.core.processing", "hub.core.sending.pipeline", "hub.core.outbox", "hub.core.polling",
               "hub.core.whatsapp.process")
MAX_BACKOFF = 5.0  # seconds between attempts to reach Redis again: recovery within seconds


class _StopAware:
    """Remembers that a stop signal came (RQ returns from ``work`` the same way on errors)."""
    stop_requested = False
    max_connection_wait_time = MAX_BACKOFF  # RQ's own retry while idle (its default grows to 60 s)

    def request_stop(self, signum, frame):
        self.stop_requested = True
        return super().request_stop(signum, frame)


class _FewerRoundTrips:
    """RQ's per-job bookkeeping without its repeats: the worker's heartbeat (three Redis round
    trips, twice around every dequeue) is sent at most every ``HEARTBEAT_EVERY`` seconds, and a
    state the worker already reported is not reported again. RQ's worker key lives for minutes
    (``worker_ttl`` + 60 s), and the hub's own liveness is ``Heartbeat``, so neither is lost.
    Heartbeats RQ sends in a pipeline or with a job's timeout are untouched."""
    HEARTBEAT_EVERY = 5.0

    def heartbeat(self, timeout=None, pipeline=None):
        if timeout is None and pipeline is None and self.last_heartbeat is not None \
                and (rq_now() - self.last_heartbeat).total_seconds() < self.HEARTBEAT_EVERY:
            return
        super().heartbeat(timeout, pipeline)

    def set_state(self, state, pipeline=None):
        if pipeline is None and state == getattr(self, "_state", None):
            return
        super().set_state(state, pipeline)


class HubWorker(_StopAware, _FewerRoundTrips, Worker):
    """Forks a work horse per job (isolation), on a parent made ready by ``prepare``."""


class HubSimpleWorker(_StopAware, _FewerRoundTrips, SimpleWorker):
    """Runs jobs in the worker process itself."""


def prepare(rt: Runtime, *, fork: bool) -> None:
    """Do once, before the first job, what jobs would otherwise do on first use: import the
    jobs' modules, load the plugins and settle the heap (``Runtime.settle``). A forked work
    horse inherits all of it, but must not share the parent's database connections."""
    started = time.monotonic()
    for name in JOB_MODULES:
        importlib.import_module(name)
    rt.settle()
    if fork:
        os.register_at_fork(after_in_child=lambda: rt.db.engine.dispose(close=False))
    log.info("runtime and %d connectors ready in %.2fs", len(rt.plugins.connectors),
             time.monotonic() - started)


def serve(rt: Runtime, queue_names: list[str] | None = None, *, fork: bool = False, burst: bool = False,
          stopped: Callable[[], bool] = lambda: False) -> None:
    """Run a worker on ``queue_names`` (default: all, in priority order) until stopped,
    reconnecting whenever Redis goes away."""
    prepare(rt, fork=fork)
    cls = HubWorker if fork else HubSimpleWorker
    heartbeat = Heartbeat(rt.redis, rt.settings.key_prefix)
    heartbeat.start()
    try:
        while not stopped():
            worker = None
            try:
                queues = [rt.queues[q] for q in queue_names] if queue_names else rt.queues.all()
                worker = cls(queues, connection=rt.redis, job_class=ContextJob)
                heartbeat.worker_name = worker.name
                heartbeat.beat()
                worker.work(burst=burst, with_scheduler=False, logging_level="WARNING",
                            dequeue_strategy=DequeueStrategy.ROUND_ROBIN)
            except redis.RedisError as exc:
                log.warning("worker lost Redis: %s", exc)
            if worker is not None and worker.stop_requested:
                return
            if _redis_up(rt):
                if burst:
                    return
                log.warning("worker loop ended unexpectedly; restarting it")
            if not _wait_for_redis(rt, stopped):
                return
    finally:
        heartbeat.stop()


def _redis_up(rt: Runtime) -> bool:
    try:
        return bool(rt.redis.ping())
    except redis.RedisError:
        return False


def _wait_for_redis(rt: Runtime, stopped: Callable[[], bool]) -> bool:
    """Back off until Redis answers; False when a stop signal came meanwhile."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        delay, since = 0.5, time.monotonic()
        stop.wait(0.5)  # never a tight loop, whatever ended the last one
        while not stop.is_set() and not stopped():
            if _redis_up(rt):
                log.warning("Redis reachable (after %.1fs): worker starting again", time.monotonic() - since)
                return True
            log.warning("Redis unreachable; worker retrying in %.1fs", delay)
            stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF)
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
