"""``docker compose -f docker/compose.yaml up`` without a Docker engine: every app service's command
and environment, read from the compose file and the Dockerfile, run as processes against this
machine's PostgreSQL and Redis. The one-shot ``migrate`` must succeed on an empty database; then
web must answer ``/readyz`` (and its healthcheck), and worker + scheduler must process a signed
webhook and a scheduled send."""
import datetime as dt
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet

from hub.testing.plugin import fresh_postgres

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DB_URL, REDIS_URL = os.environ.get("COEXHUB_TEST_DATABASE_URL"), os.environ.get("COEXHUB_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(not (DB_URL and REDIS_URL), reason=(
    "runs the compose services against PostgreSQL and Redis: set COEXHUB_TEST_DATABASE_URL and "
    "COEXHUB_TEST_REDIS_URL (CI does)"))
CUSTOMER = "14155552671"


def load_compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def dockerfile() -> tuple[dict[str, str], list[str]]:
    """The image's ENV and its exec-form CMD."""
    env, cmd = {}, None
    for line in (DOCKER / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.startswith("ENV "):
            env.update(part.split("=", 1) for part in shlex.split(line[4:]))
        elif line.startswith("CMD "):
            cmd = json.loads(line[4:])
    assert cmd, "the Dockerfile has an exec-form CMD"
    return env, cmd


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def app_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items()
            if (svc.get("build") or {}).get("dockerfile") == "docker/Dockerfile"}


class Service:
    """One compose service as a process (its own process group, output collected)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path):
        self.name, self.lines = name, []
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}:\n{self.output}"
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no line matching {pattern!r}:\n{self.output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # what `docker compose down` sends
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(timeout=5)


def poll(fetch, check, timeout: float = 60):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = fetch()
        if check(last):
            return last
        time.sleep(0.25)
    raise AssertionError(f"condition not met in {timeout}s; last: {last}")


@pytest.fixture
def compose_env(tmp_path, graph_simulator):
    """The environment compose gives the app containers, adapted to this machine: the database
    and Redis URLs point at the test servers (a fresh database, a unique key prefix), the data
    directory at a temporary one, gunicorn at a free port with one worker, Meta at the simulator."""
    compose = load_compose()
    image_env, _ = dockerfile()
    services = app_services(compose)
    example = env_file(DOCKER / "coexhub.env.example")
    for svc in services.values():
        assert svc["env_file"] == "coexhub.env", "the documented env file"
    db_url, drop = fresh_postgres(DB_URL)
    prefix = f"coexhub-compose-{secrets.token_hex(4)}"
    filled = {**example, "COEXHUB_SECRET_KEY": Fernet.generate_key().decode(),
              "COEXHUB_ID_KEY": secrets.token_urlsafe(32),
              "COEXHUB_ADMIN_TOKEN": "adm_" + secrets.token_hex(16), "COEXHUB_META_APP_ID": graph_simulator.app_id,
              "COEXHUB_META_APP_SECRET": graph_simulator.app_secret, "COEXHUB_META_VERIFY_TOKEN": "verify-me",
              "COEXHUB_PUBLIC_URL": "http://hub.test", "COEXHUB_LOG_FORMAT": "json",
              "COEXHUB_GRAPH_URL": graph_simulator.base_url}
    assert not [k for k, v in example.items() if not v and k not in filled]
    postgres = compose["services"]["postgres"]["environment"]
    machine = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "HOME": str(tmp_path), "LANG": "C.UTF-8", **({"PYTHONPATH": os.environ["PYTHONPATH"]}
                                                          if os.environ.get("PYTHONPATH") else {})}
    envs = {}
    for name, svc in services.items():
        env = {**image_env, **filled, **{k: str(v) for k, v in svc["environment"].items()}}
        compose_db, compose_redis = urlsplit(env["COEXHUB_DATABASE_URL"]), urlsplit(env["COEXHUB_REDIS_URL"])
        assert (compose_db.hostname, compose_db.username, compose_db.password, compose_db.path.strip("/")) == \
            ("postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
        assert compose_redis.hostname == "redis" and "redis" in compose["services"]
        env.update(COEXHUB_DATABASE_URL=db_url, COEXHUB_REDIS_URL=REDIS_URL, COEXHUB_KEY_PREFIX=prefix,
                   COEXHUB_DATA_DIR=str(tmp_path / "data"), PORT="0", WEB_CONCURRENCY="1", **machine)
        envs[name] = env
    yield compose, envs
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    keys = list(conn.scan_iter(f"{prefix}*", count=1000)) + list(conn.scan_iter(f"rq:*{prefix}*", count=1000))
    if keys:
        conn.delete(*keys)
    drop()


def test_compose_services_migrate_serve_and_process_a_webhook(compose_env, graph_simulator, tmp_path):
    compose, envs = compose_env
    _, image_cmd = dockerfile()
    services = app_services(compose)
    one_shot = {dep for svc in services.values() for dep, cond in (svc.get("depends_on") or {}).items()
                if cond.get("condition") == "service_completed_successfully"}
    assert one_shot == {"migrate"}
    for name in sorted(one_shot):  # compose runs these to completion before the rest starts
        done = subprocess.run(services[name]["command"], env=envs[name], cwd=tmp_path, capture_output=True,
                              text=True, check=False, timeout=180)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
    running = {}
    try:
        for name, svc in services.items():
            if name not in one_shot:
                running[name] = Service(name, svc.get("command") or image_cmd, envs[name], tmp_path)
        port = int(running["web"].wait_for(r"Listening at: http://[\d.]+:(\d+)").group(1))
        base = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base, timeout=30)
        poll(lambda: http.get("/readyz").status_code, lambda status: status == 200, timeout=90)
        check = services["web"]["healthcheck"]["test"]
        assert check[0] == "CMD"
        health = subprocess.run(check[1:], env={**envs["web"], "PORT": str(port)},  # in the container: 8000
                                capture_output=True, text=True, check=False, timeout=60)
        assert health.returncode == 0, health.stderr

        admin = {"Authorization": f"Bearer {envs['web']['COEXHUB_ADMIN_TOKEN']}"}
        created = http.post("/api/v1/workspaces", json={"name": "compose"}, headers=admin)
        assert created.status_code == 201, created.text
        headers = {"Authorization": f"Bearer {created.json()['api_key']}"}
        pnid, waba, token = (str(secrets.randbelow(10**15) + 10**14) for _ in range(3))
        graph_simulator.add_number(pnid, waba, "EAAG" + token, display_phone_number="15550001234")
        graph_simulator.add_signup_code("code-" + token, waba, pnid, "EAAG" + token)
        graph_simulator.add_template(waba, "order_update", body_params=1)
        onboarded = http.post("/api/v1/connections/onboard", json={"code": "code-" + token, "waba_id": waba},
                              headers=headers)
        assert onboarded.status_code == 201, onboarded.text

        graph_simulator.hub_client, graph_simulator.hub_url = None, base
        delivered = graph_simulator.customer_message(pnid, CUSTOMER, "hello from compose")
        assert delivered.status_code == 200, delivered.text
        contacts = poll(lambda: http.get("/api/v1/contacts", headers=headers).json(),
                        lambda rows: rows and rows[0].get("last_inbound_at"))  # the worker processed it
        assert contacts[0]["wa_id"] == CUSTOMER

        later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat()
        queued = http.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "order_update",
                                                     "params": ["Asha"], "send_at": later}, headers=headers)
        assert queued.status_code == 202, queued.text
        send = poll(lambda: http.get(f"/api/v1/sends/{queued.json()['id']}", headers=headers).json(),
                    lambda row: row["status"] in ("sent", "failed", "dead"))  # the scheduler moved it
        assert send["status"] == "sent" and send["wamid"], send
        assert any(r["response"]["messages"][0]["id"] == send["wamid"] for r in graph_simulator.sent(pnid))

        lines = [json.loads(line) for line in running["web"].lines if line.startswith("{")]
        assert any(x.get("msg") == "request" and x.get("route") == "/webhooks/whatsapp" for x in lines)
        running["worker"].wait_for(r'"msg":"job done".*process_event')
    finally:
        graph_simulator.hub_url = None
        for service in running.values():
            service.stop()
    for name, service in running.items():  # SIGTERM is a clean stop for each of them
        assert service.proc.returncode in (0, -signal.SIGTERM), f"{name} exited {service.proc.returncode}:\n" \
                                                                  f"{service.output}"
