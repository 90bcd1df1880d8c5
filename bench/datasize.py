"""Cost with data size (issue 14, target 5): the same operations at 10 K and at 1 M stored messages.

One run on PostgreSQL + Redis (a scratch database and key prefix, both removed at the end):
migrate, create a workspace and four connections, seed 10 K messages / 1 K contacts with bulk
``INSERT … SELECT generate_series`` (many contacts with a few messages, a few with thousands;
sends with mixed statuses, an API message per sent send), measure, grow to 1 M / 100 K, measure
again, print each operation's cost at both sizes and the ratio.

Operations go through the real Flask app (test client, workspace API key): a contact's thread
(first page and a deep page by cursor), contact search (name, phone fragment, no match), the
workspace's messages, ``/sends`` (first page, a deep page by cursor, a status filter), the
analytics summary, and ingest (signed Meta webhooks through ``POST /webhooks/whatsapp``, then
the processing jobs in this process). The figure is the median of ``--repeat`` calls.

Traffic is constant over time: the 10 K messages fall in the last 30 days and growth adds older
history (the summary's default window holds the same volume at both sizes). Rows are inserted
in time order, as the hub writes them, so the heap is clustered by time as in a real database. ``--explain FILE``
writes ``EXPLAIN (ANALYZE, BUFFERS)`` of every query each operation sends at the largest size.

    flock /tmp/bench.lock python bench/datasize.py [--messages 1000000] [--explain plans.md]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

APP_SECRET = "datasize-app-secret-" + secrets.token_hex(4)
WABA_ID, PHONES = "102290129340398", [f"10654035224{n:04d}" for n in range(4)]
FIRST = ("Priya Aarav Meera Rohan Ananya Vikram Kavya Arjun Isha Kabir Sara Dev Nisha Aditya Riya Karan Zoya "
         "Neel Tara Omar Lina Yusuf Maya Ishaan Diya Leo Ana Ravi Sana Farah").split()
LAST = "Sharma Patel Iyer Khan Gupta Rao Das Mehta Nair Bose Singh Reddy Joshi Kapoor Fernandes".split()
DAY = 86_400


def seed(conn, ws: str, conns: list[str], *, contacts: tuple[int, int], messages: int, sends: int,
         days: tuple[float, float], tag: str) -> None:
    """Add contacts ``contacts[0]..contacts[1]-1`` and ``messages`` messages (``sends`` sends, an
    API message for each sent one) dated between ``days`` ago; messages pick contacts with a
    cubic skew over every seeded contact (contact 0 gets ~2 %, most get a handful)."""
    lo, hi = contacts
    conn.execute(text("""
        INSERT INTO contacts (workspace_id, wa_id, username, profile_name, full_name, first_name, source, tags,
                              attributes, opted_out, marketing_opted_out, created_at, updated_at)
        SELECT :ws, '9198' || lpad(i::text, 8, '0'), CASE WHEN i % 10 = 0 THEN 'user' || i END,
               f || ' ' || l, CASE WHEN i % 3 = 0 THEN f || ' ' || l || ' (shop)' END, f, 'customer',
               CASE WHEN i % 20 = 0 THEN '["vip"]' ELSE '[]' END::json, '{}'::json, i % 50 = 0, false,
               now() at time zone 'utc' - make_interval(secs => :d1 + random() * (:d0 - :d1)),
               now() at time zone 'utc'
        FROM (SELECT i, (CAST(:first AS text[]))[1 + (i * 7) % cardinality(CAST(:first AS text[]))] AS f,
                     (CAST(:last AS text[]))[1 + (i * 13) % cardinality(CAST(:last AS text[]))] AS l
              FROM generate_series(:lo, :hi - 1) i) s
    """), {"ws": ws, "lo": lo, "hi": hi, "first": list(FIRST), "last": list(LAST), "d0": days[0] * DAY,
           "d1": days[1] * DAY})
    conn.execute(text("DROP TABLE IF EXISTS ci"))
    conn.execute(text("""CREATE TEMP TABLE ci AS SELECT (row_number() OVER (ORDER BY id) - 1)::int AS i, id, wa_id
                         FROM contacts WHERE workspace_id = :ws AND wa_id LIKE '9198%'"""), {"ws": ws})
    conn.execute(text("ALTER TABLE ci ADD PRIMARY KEY (i)"))
    picked = """(SELECT g, random() AS r, floor(:n * power(random(), 3))::int AS k,
                        now() at time zone 'utc' - make_interval(secs => :d1 + random() * (:d0 - :d1)) AS ts
                 FROM generate_series(1, :m) g) s JOIN ci ON ci.i = s.k"""
    args = {"ws": ws, "conns": conns, "n": hi, "d0": days[0] * DAY, "d1": days[1] * DAY, "tag": tag}
    conn.execute(text(f"""
        INSERT INTO sends (workspace_id, connection_id, contact_id, "to", kind, text, params, origin, reference,
                           status, attempts, error_code, wamid, not_before, created_at, updated_at, sent_at)
        SELECT :ws, (CAST(:conns AS text[]))[1 + g % cardinality(CAST(:conns AS text[]))], x.id, x.wa_id, 'text',
               'Your order shipped',
               '[]'::json, CASE WHEN g % 4 = 0 THEN 'broadcast' WHEN g % 4 = 1 THEN 'connector' ELSE 'api' END,
               '{{}}'::json, st, CASE WHEN st IN ('sent', 'failed', 'dead') THEN 1 ELSE 0 END,
               CASE WHEN st IN ('failed', 'dead') THEN 131026 END,
               CASE WHEN st = 'sent' THEN 'wamid.seedsend.' || :tag || '.' || g END,
               CASE WHEN st = 'scheduled' THEN ts + interval '3650 days' END, ts, ts,
               CASE WHEN st = 'sent' THEN ts END
        FROM (SELECT *, CASE WHEN r < .85 THEN 'sent' WHEN r < .90 THEN 'failed' WHEN r < .91 THEN 'dead'
                             WHEN r < .95 THEN 'cancelled' WHEN r < .98 THEN 'scheduled' ELSE 'queued' END AS st
              FROM {picked}) x ORDER BY ts
    """), {**args, "m": sends})
    conn.execute(text("""
        INSERT INTO messages (workspace_id, connection_id, contact_id, wamid, direction, origin, type, body,
                              status, timestamp, created_at, send_id, pricing, pricing_billable, pricing_category,
                              pricing_type, pricing_model, sent_at)
        SELECT s.workspace_id, s.connection_id, s.contact_id, s.wamid, 'out', 'api', 'text',
               json_build_object('text', json_build_object('body', s.text)),
               (ARRAY['sent', 'delivered', 'delivered', 'read', 'read', 'read', 'failed'])[1 + s.id % 7],
               s.created_at, s.created_at, s.id,
               '{"billable": true, "category": "utility", "pricing_model": "PMP", "type": "regular"}'::json,
               true, 'utility', 'regular', 'PMP', s.created_at
        FROM sends s WHERE s.workspace_id = :ws AND s.wamid LIKE 'wamid.seedsend.' || :tag || '.%' ORDER BY s.id
    """), {"ws": ws, "tag": tag})
    api = conn.execute(text("SELECT count(*) FROM messages WHERE workspace_id = :ws AND wamid LIKE "
                            "'wamid.seedsend.' || :tag || '.%'"), {"ws": ws, "tag": tag}).scalar()
    conn.execute(text(f"""
        INSERT INTO messages (workspace_id, connection_id, contact_id, wamid, direction, origin, type, body,
                              status, timestamp, created_at)
        SELECT :ws, (CAST(:conns AS text[]))[1 + g % cardinality(CAST(:conns AS text[]))], ci.id,
               'wamid.seed.' || :tag || '.' || g,
               CASE WHEN r < .6 OR (r >= .85 AND g % 2 = 0) THEN 'in' ELSE 'out' END,
               CASE WHEN r < .6 THEN 'customer' WHEN r < .85 THEN 'app_echo' ELSE 'history' END, 'text',
               json_build_object('text', json_build_object('body', 'message ' || g)),
               CASE WHEN r < .6 OR (r >= .85 AND g % 2 = 0) THEN 'received' ELSE 'delivered' END, ts, ts
        FROM {picked} ORDER BY ts
    """), {**args, "m": max(messages - api, 0)})
    conn.execute(text("DROP TABLE ci"))


def counts(conn, ws: str) -> dict[str, int]:
    return {t: conn.execute(text(f"SELECT count(*) FROM {t} WHERE workspace_id = :ws"), {"ws": ws}).scalar()
            for t in ("messages", "contacts", "sends")}


class Bench:
    """The hub (one app, test client) on a scratch PostgreSQL database and Redis prefix."""

    def __init__(self, server_url: str, redis_url: str, tmp: Path):
        from hub.app import create_app
        from hub.config import Settings
        from hub.core.runtime import Runtime

        self.db_name = f"coexhub_datasize_{secrets.token_hex(4)}"
        self.admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        self.prefix = f"coexhub-datasize-{secrets.token_hex(4)}"
        settings = Settings.from_env({
            "COEXHUB_ENV": "development", "COEXHUB_DATA_DIR": str(tmp),
            "COEXHUB_DATABASE_URL": make_url(server_url).set(database=self.db_name).render_as_string(False),
            "COEXHUB_REDIS_URL": redis_url, "COEXHUB_KEY_PREFIX": self.prefix,
            "COEXHUB_SECRET_KEY": Fernet.generate_key().decode(),
            "COEXHUB_ADMIN_TOKEN": "adm_ds_" + secrets.token_hex(8),
            "COEXHUB_META_APP_ID": "1234567890", "COEXHUB_META_APP_SECRET": APP_SECRET,
            "COEXHUB_META_VERIFY_TOKEN": "datasize", "COEXHUB_PUBLIC_URL": "http://127.0.0.1"})
        self.rt = Runtime(settings)
        self.rt.db.migrate()
        self.app = create_app(runtime=self.rt)
        self.client = self.app.test_client()
        resp = self.client.post("/api/v1/workspaces", json={"name": "datasize"},
                                headers={"Authorization": f"Bearer {settings.admin_token}"})
        assert resp.status_code == 201, resp.get_data(as_text=True)
        self.ws = resp.get_json()["id"]
        self.headers = {"Authorization": f"Bearer {resp.get_json()['api_key']}"}
        from hub.core.models import Connection

        with self.rt.db.session() as session:
            rows = [Connection(workspace_id=self.ws, waba_id=WABA_ID, phone_number_id=p,
                               display_phone_number=f"1555000{i:04d}", access_token="datasize-token")
                    for i, p in enumerate(PHONES)]
            session.add_all(rows)
            session.flush()
            self.conns = [c.id for c in rows]
        self.captured: list[tuple[str, object]] | None = None
        event.listen(self.rt.db.engine, "before_cursor_execute", self._capture)

    def _capture(self, _conn, _cursor, statement, parameters, _context, _many) -> None:
        if self.captured is not None:
            self.captured.append((statement, parameters))

    def get(self, url: str):
        resp = self.client.get(url, headers=self.headers)
        assert resp.status_code == 200, (url, resp.status_code, resp.get_data(as_text=True)[:300])
        return resp

    def timed(self, urls: dict[str, str], repeat: int) -> dict[str, tuple[float, float, float]]:
        """(median, fastest, median CPU of this process) milliseconds of ``repeat`` GETs of each url,
        after two warm-up rounds; the urls take turns (round robin), so a burst of load on the shared
        machine hits them alike."""
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
        for round_ in range(repeat + 2):
            for name, url in urls.items():
                t0, c0 = time.perf_counter(), time.process_time()
                self.get(url)
                if round_ >= 2:
                    samples[name].append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000))
        return {name: (statistics.median(w for w, _ in v), min(w for w, _ in v), statistics.median(c for _, c in v))
                for name, v in samples.items()}

    def blocks(self) -> int:
        """Shared buffers the database has touched so far (hit + read), once every backend has
        flushed its statistics (idle ones do within 10 s)."""
        time.sleep(11)
        with self.rt.db.engine.connect() as c:
            c.execute(text("SELECT pg_stat_clear_snapshot()"))
            return c.execute(text("SELECT blks_hit + blks_read FROM pg_stat_database "
                                  "WHERE datname = current_database()")).scalar()

    def sql(self, query: str, **params):
        with self.rt.db.engine.begin() as c:
            return c.execute(text(query), {"ws": self.ws, **params}).all()

    def token(self, prefix: str, value: int) -> str:
        from hub.api import ids

        with self.app.test_request_context():
            return ids.encode(prefix, value)

    def explain(self, url: str) -> tuple[list[str], float]:
        """``EXPLAIN (ANALYZE, BUFFERS)`` of each query the GET sends (the API key check left out),
        and the database's planning + execution milliseconds summed over them."""
        self.captured = []
        try:
            self.get(url)
        finally:
            captured, self.captured = self.captured, None
        plans, spent = [], 0.0
        raw = self.rt.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, params in captured:
                if not re.match(r"\s*SELECT", statement) or re.search(r"FROM (api_keys|workspaces)\b", statement):
                    continue
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
                spent += sum(float(ms) for ms in re.findall(r"(?:Planning|Execution) Time: ([0-9.]+) ms", plan))
                plans.append(f"{' '.join(statement.split())}\n\n{plan}")
            raw.rollback()
        finally:
            raw.close()
        return plans, spent

    def ingest(self, n: int, tag: str, known: int) -> tuple[float, float]:
        """Seconds and CPU seconds of this process for ``n`` signed Meta messages (half from seeded
        contacts, half from new ones) through ``POST /webhooks/whatsapp``, then their processing
        jobs, in this process."""
        from hub.testing import drain

        now = int(time.time())
        bodies = []
        for i in range(n):
            wa = f"9198{(i * 7919) % known:08d}" if i % 2 else f"9177{tag.replace('r', '')}{i:06d}"
            envelope = {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{
                "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONES[i % len(PHONES)]},
                    "contacts": [{"profile": {"name": "Kerry"}, "wa_id": wa}],
                    "messages": [{"from": wa, "id": f"wamid.ingest.{tag}.{i}", "timestamp": str(now),
                                  "type": "text", "text": {"body": "hi"}}]}}]}]}
            body = json.dumps(envelope, separators=(",", ":")).encode()
            sig = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            bodies.append((body, {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}))
        t0, c0 = time.perf_counter(), time.process_time()
        for body, headers in bodies:
            resp = self.client.post("/webhooks/whatsapp", data=body, headers=headers)
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        drain(self.rt)
        return time.perf_counter() - t0, time.process_time() - c0

    def close(self) -> None:
        self.rt.close()
        try:
            keys = list(self.rt.redis.scan_iter(f"{self.prefix}*"))
            if keys:
                self.rt.redis.delete(*keys)
        except Exception as exc:  # noqa: BLE001
            print(f"cleanup: redis keys under {self.prefix} left ({exc})", flush=True)
        self.rt.db.engine.dispose()
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        self.admin.dispose()


def operations(b: Bench) -> dict[str, str]:
    """The measured GETs at the current size. Every page is full at both sizes (same rows to
    serialise): deep cursors point one page before a list's end; the typical contact has 10
    messages (the mean)."""
    heavy = b.sql("SELECT contact_id, count(*) FROM messages WHERE workspace_id = :ws AND contact_id IS NOT NULL "
                  "GROUP BY contact_id ORDER BY 2 DESC LIMIT 1")[0]
    typical = b.sql("SELECT contact_id FROM messages WHERE workspace_id = :ws AND contact_id IS NOT NULL "
                    "GROUP BY contact_id ORDER BY abs(count(*) - 10), contact_id LIMIT 1")[0][0]
    wa = b.sql("SELECT wa_id FROM contacts WHERE id = :c", c=typical)[0][0]
    deep_thread = b.sql("SELECT id FROM messages WHERE contact_id = :c ORDER BY timestamp, id OFFSET :k LIMIT 1",
                        c=heavy[0], k=max(heavy[1] - 101, 0))[0][0]
    n_sends = b.sql("SELECT count(*) FROM sends WHERE workspace_id = :ws")[0][0]
    deep_send = b.sql("SELECT id FROM sends WHERE workspace_id = :ws ORDER BY id DESC OFFSET :k LIMIT 1",
                      k=max(n_sends - 51, 0))[0][0]
    n_msgs = b.sql("SELECT count(*) FROM messages WHERE workspace_id = :ws")[0][0]
    deep_msg = b.sql("SELECT id FROM messages WHERE workspace_id = :ws ORDER BY timestamp DESC, id DESC "
                     "OFFSET :k LIMIT 1", k=max(n_msgs - 51, 0))[0][0]
    ct = b.token("ct", heavy[0])
    return {
        "thread, busiest contact, first page": f"/api/v1/contacts/{ct}/messages",
        "thread, busiest contact, last page (cursor)":
            f"/api/v1/contacts/{ct}/messages?cursor={b.token('msg', deep_thread)}",
        "thread, typical contact (10 messages)": f"/api/v1/contacts/{b.token('ct', typical)}/messages",
        "contacts ?q= name (many match)": "/api/v1/contacts?q=Priya&limit=20",
        "contacts ?q= phone fragment (one match)": f"/api/v1/contacts?q={wa[3:]}",
        "contacts ?q= no match": "/api/v1/contacts?q=zqxv",
        "contacts ?tag=vip": "/api/v1/contacts?tag=vip&limit=20",
        "/messages first page": "/api/v1/messages",
        "/messages last page (cursor)": f"/api/v1/messages?cursor={b.token('msg', deep_msg)}",
        "/sends first page": "/api/v1/sends",
        "/sends last page (cursor)": f"/api/v1/sends?cursor={b.token('snd', deep_send)}",
        "/sends ?status=failed": "/api/v1/sends?status=failed",
        "analytics summary (30 days)": "/api/v1/analytics/summary",
        "/sends last page (offset, for comparison)": f"/api/v1/sends?offset={max(n_sends - 50, 0)}",
        "analytics summary (366 days, for comparison)": "/api/v1/analytics/summary?days=366",
    }


INGEST = "ingest (webhooks/s; CPU and buffers per webhook)"
ROUNDS = 5


def measure(b: Bench, repeat: int, ingest_n: int, tag: str, known: int) -> tuple[dict, dict[str, list[str]]]:
    """Each operation's (median ms, fastest ms, median CPU ms of this process, database ms: the
    least of three EXPLAIN ANALYZE runs) and its plans; ingest's (median webhooks/s, best
    webhooks/s, CPU ms per webhook, database buffers per webhook) over ``ROUNDS`` rounds."""
    urls = operations(b)
    out, plans = {}, {}
    for name, (median, fastest, cpu) in b.timed(urls, repeat).items():
        runs = [b.explain(urls[name]) for _ in range(3)]
        plans[name] = runs[-1][0]
        out[name] = (median, fastest, cpu, min(spent for _, spent in runs))
    per_round = ingest_n // ROUNDS
    before = b.blocks()
    rounds = [b.ingest(per_round, f"{tag}r{r}", known) for r in range(ROUNDS)]
    touched = b.blocks() - before
    stored = b.sql("SELECT count(*) FROM messages WHERE workspace_id = :ws AND wamid LIKE :p",
                   p=f"wamid.ingest.{tag}r%")[0][0]
    assert stored == per_round * ROUNDS, f"ingest stored {stored} of {per_round * ROUNDS} messages"
    rates = [per_round / wall for wall, _ in rounds]
    out[INGEST] = (statistics.median(rates), max(rates), 1000 * sum(c for _, c in rounds) / stored, touched / stored)
    return out, plans


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", default=os.environ.get("COEXHUB_BENCH_DATABASE_URL",
                                                         "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("COEXHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--messages", type=int, default=1_000_000, help="the large size (small: 1 %%)")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--ingest", type=int, default=300, help="webhooks per ingest measurement")
    ap.add_argument("--explain", type=Path, help="write the plans at the large size to this file")
    args = ap.parse_args(argv)
    small, large = args.messages // 100, args.messages
    contacts_small, contacts_large = small // 10, large // 10
    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(args.database, args.redis, Path(tmp))
        logging.getLogger("hub").setLevel(logging.WARNING)  # no per-request log lines (same at both sizes)
        try:
            results, loads, sizes = [], [], []
            steps = [(contacts_small, small, (30, 0)), (contacts_large, large, (30 + 30 * (large / small - 1), 30))]
            have_contacts = 0
            for step, (n_contacts, n_messages, days) in enumerate(steps):
                t0 = time.perf_counter()
                with b.rt.db.engine.connect() as c:
                    now = counts(c, b.ws)
                with b.rt.db.engine.begin() as c:
                    seed(c, b.ws, b.conns, contacts=(have_contacts, n_contacts),
                         messages=n_messages - now["messages"], sends=(n_messages - now["messages"]) // 5,
                         days=days, tag=f"s{step}")
                with b.rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(text("VACUUM ANALYZE contacts, messages, sends"))
                have_contacts = n_contacts
                with b.rt.db.engine.connect() as c:
                    sizes.append(counts(c, b.ws))
                print(f"seeded {sizes[-1]} in {time.perf_counter() - t0:.1f}s", flush=True)
                loads.append(os.getloadavg())
                measured, plans = measure(b, args.repeat, args.ingest, f"{step}", n_contacts)
                results.append(measured)
                loads[-1] = (*loads[-1], *os.getloadavg())
                print(json.dumps(measured), flush=True)
            if args.explain:
                sections = [f"### {name}\n\n" + "\n\n".join(f"```\n{p}\n```" for p in plan)
                            for name, plan in plans.items() if "comparison" not in name]
                args.explain.write_text("\n\n".join(sections) + "\n")
                print(f"plans written to {args.explain}", flush=True)
        finally:
            b.close()
    print(f"\nms (ingest: webhooks/s, CPU ms and database buffers per webhook); {small:,} → {large:,} messages\n\n"
          "| operation | median | | ratio | fastest | | ratio | CPU (hub process) | | ratio | database | | ratio |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in results[0]:
        cells = []
        for i, (a, z) in enumerate(zip(results[0][name], results[1][name])):
            ratio = a / z if name == INGEST and i < 2 else z / a
            shown = f"**{ratio:.2f}×**" if ratio > 1.5 else f"{ratio:.2f}×"
            cells.append(f"{a:.1f} | {z:.1f} | {shown}")
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\nsizes: {sizes}\nload average (1/5/15 min, before and after each step): "
          f"{[tuple(round(x, 2) for x in load) for load in loads]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
