"""The newcomer's path, run as a newcomer runs it: `coexhub init` + `coexhub demo` twice, and
every shell block of docs/getting-started.md against a live `coexhub up` on free ports."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

DOC = Path(__file__).resolve().parent.parent / "docs" / "getting-started.md"
SKIP_MARK = "<!-- docs-test: skip"


@pytest.fixture
def fresh(tmp_path, coexhub_runtime):
    """Environment of a fresh clone: an empty data dir (dev keys generated there) and an empty
    database — SQLite there, or a new PostgreSQL database on the test server — and the test's
    Redis under a key prefix of its own. Yields (env, database_url)."""
    from hub.core.queue import socket_url

    env = {k: v for k, v in os.environ.items() if not k.startswith("COEXHUB_")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    data_dir, dropper = tmp_path / ".coexhub", None
    url = f"sqlite:///{data_dir / 'hub.db'}"
    if os.environ.get("COEXHUB_TEST_DATABASE_URL"):
        from hub.testing.plugin import _fresh_postgres

        url, dropper = _fresh_postgres(os.environ["COEXHUB_TEST_DATABASE_URL"])
    settings = coexhub_runtime.settings
    env.update(COEXHUB_DATA_DIR=str(data_dir), COEXHUB_DATABASE_URL=url,
               COEXHUB_REDIS_URL=settings.redis_url or socket_url(coexhub_runtime.redis),
               COEXHUB_KEY_PREFIX=f"first-run-{secrets.token_hex(4)}")
    yield env, url
    if dropper:
        dropper()


def coexhub(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=Path(env["COEXHUB_DATA_DIR"]).parent)


def rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_init_and_demo_twice_in_a_row_succeed_with_one_demo_workspace(fresh):
    env, url = fresh
    first_init = coexhub(env, "init")
    assert first_init.returncode == 0, first_init.stderr
    first_demo = coexhub(env, "demo")
    assert first_demo.returncode == 0, first_demo.stdout + first_demo.stderr
    [(default_id,)] = rows(url, "select id from workspaces where name = 'Default'")
    [(demo_id,)] = rows(url, "select id from workspaces where name = 'Demo shop'")
    # each printed key says which workspace it belongs to
    assert re.search(rf"workspace {default_id} \('Default'\) — API key \(shown once\): chk_", first_init.stdout)
    assert re.search(rf"workspace {demo_id} \('Demo shop'\) — API key \(shown once\): chk_", first_demo.stdout)

    second_init, second_demo = coexhub(env, "init"), coexhub(env, "demo")
    assert second_init.returncode == 0 and second_demo.returncode == 0, second_demo.stdout + second_demo.stderr
    assert "none created" in second_init.stdout and "chk_" not in second_init.stdout
    assert f"demo skipped: it ran before. Workspace {demo_id}" in second_demo.stdout
    assert "chk_" not in second_demo.stdout
    assert sorted(rows(url, "select name from workspaces")) == [("Default",), ("Demo shop",)]
    assert rows(url, "select workspace_id, status from connections") == [(demo_id, "active")]


def blocks(markdown: str) -> list[str]:
    """The ```sh blocks of ``markdown``, without those marked ``<!-- docs-test: skip ... -->``."""
    out, skip = [], False
    for match in re.finditer(r"(?ms)^(<!-- docs-test: skip[^\n]*\n)?```sh\n(.*?)^```", markdown):
        skip = bool(match.group(1))
        if not skip:
            out.append(match.group(2))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "coexhub up exited early"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready after {timeout}s")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM `coexhub up` (it stops its children), then make sure its whole group is gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # only what this test started: up and its children
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("curl") and shutil.which("bash")),
                    reason="the documented steps use bash, curl and jq")
def test_the_getting_started_steps_work_as_documented(fresh, tmp_path):
    env, url = fresh
    steps = blocks(DOC.read_text())
    assert len(steps) >= 8 and not any("make run" in step for step in steps)
    assert "docs/getting-started.md" in (DOC.parent.parent / "README.md").read_text()
    for command in ("init", "demo"):  # what `make run` does before `coexhub up`
        done = coexhub(env, command)
        assert done.returncode == 0, done.stdout + done.stderr
    port, sim_port = free_port(), free_port()
    while sim_port == port:
        sim_port = free_port()
    with open(tmp_path / "up.log", "w") as log:
        up = subprocess.Popen([sys.executable, "-m", "hub.cli", "up", "--port", str(port), "--simulator-port",
                               str(sim_port), "--workers", "1"], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", up)
        wait_until_ready(f"http://127.0.0.1:{sim_port}/_sim", up)
        script = "set -euo pipefail\n" + "\n".join(f"echo \"--- step {i} $(date +%T.%N)\"\n{step}" for i, step in enumerate(steps))
        docs_env = {**env, "HUB": f"http://127.0.0.1:{port}", "COEXHUB_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}"}
        try:
            ran = subprocess.run(["bash", "-c", script], env=docs_env, cwd=tmp_path, capture_output=True,
                                 text=True, timeout=240, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the documented steps hung:\n{exc.stdout}\n{exc.stderr}\n"
                                 f"{(tmp_path / 'up.log').read_text()[-3000:]}") from exc
        assert ran.returncode == 0, ran.stdout + ran.stderr + (tmp_path / "up.log").read_text()[-3000:]
        out = ran.stdout
        assert "api\tread\tYes! Shall I keep one in size M for you?" in out, out
        assert re.search(r"read: delivered at 20\d\d-\S+, read at 20\d\d-\S+", out), out
        assert "app_echo\tsent\tKept one for you, Asha. See you Saturday!" in out, out
        assert "+14155550100\tAsha Rao\t" in out and "+919820012345\tRavi Kumar\tapp_sync" in out, out
        assert '"code":131026' in out.replace(" ", ""), out
    finally:
        stop_group(up)
    with pytest.raises(ProcessLookupError):  # nothing left running
        os.killpg(up.pid, 0)
    [(workspace_id,)] = rows(url, "select id from workspaces where name = 'My shop'")
    thread = rows(url, "select m.origin, m.status from messages m join contacts c on c.id = m.contact_id "
                       f"where m.workspace_id = '{workspace_id}' and c.wa_id = '14155550100' order by m.id")
    assert thread == [("customer", "received"), ("api", "read"), ("app_echo", "sent")]
    assert len(rows(url, "select id from workspaces")) == 3  # Default, Demo shop, My shop
