"""Prometheus metrics.

Request counts and latencies are per process (prometheus-client). Ingest and job counters
are kept in Redis so that every web and worker process adds to one total, and queue depths
are read at scrape time.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REQUESTS = Counter("coexhub_http_requests", "HTTP requests", ["method", "endpoint", "status"],
                   registry=None)
LATENCY = Histogram("coexhub_http_request_seconds", "HTTP request latency", ["endpoint"], registry=None,
                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
log = logging.getLogger(__name__)
SHARED = {"ingest": ("coexhub_ingest", "Webhooks received", ["provider", "result"]),
          "jobs": ("coexhub_jobs", "Jobs run", ["job", "outcome"])}


def count(redis, prefix: str, family: str, pipeline=None, amount: int = 1, **labels: str) -> None:
    """Add to a shared counter (``family`` is a key of ``SHARED``)."""
    field = ",".join(f"{k}={labels[k]}" for k in SHARED[family][2])
    (pipeline or redis).hincrby(f"{prefix}:metrics:{family}", field, amount)


def count_job(rt, job: str, outcome: str) -> None:
    """Count one run of a job by outcome, best effort: a Redis failure is logged, never raised
    (the job's own result is already written)."""
    try:
        count(rt.redis, rt.settings.key_prefix, "jobs", job=job, outcome=outcome)
    except Exception as exc:  # metrics are best effort
        log.warning("could not count %s: %s", job, exc)


class SharedCollector:
    def __init__(self, runtime):
        self.rt = runtime

    def collect(self):
        for family, (name, doc, labels) in SHARED.items():
            metric = CounterMetricFamily(name, doc, labels=labels)
            for field, value in self.rt.redis.hgetall(self.rt.key("metrics", family)).items():
                pairs = dict(p.split("=", 1) for p in field.decode().split(","))
                metric.add_metric([pairs.get(label, "") for label in labels], int(value))
            yield metric
        depth = GaugeMetricFamily("coexhub_queue_depth", "Jobs waiting per queue", labels=["queue"])
        for queue, n in self.rt.queues.depths().items():
            depth.add_metric([queue], n)
        yield depth


def registry_for(runtime) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(REQUESTS)
    registry.register(LATENCY)
    registry.register(SharedCollector(runtime))
    return registry


def observe(method: str, endpoint: str, status: int, started: float) -> None:
    key = (method, endpoint, status)
    found = _CHILDREN.get(key)
    if found is None:  # routes × methods × statuses: a bounded set
        found = _CHILDREN[key] = (REQUESTS.labels(method, endpoint, str(status)), LATENCY.labels(endpoint))
    found[0].inc()
    found[1].observe(time.perf_counter() - started)


_CHILDREN: dict[tuple[str, str, int], tuple] = {}


__all__ = ["count", "registry_for", "observe", "generate_latest"]
