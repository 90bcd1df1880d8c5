"""The embedded stores are private to the user running the hub: data dir 0700, files 0600."""
import os
import stat
from pathlib import Path

from sqlalchemy import text

from hub.config import Settings
from hub.core import queue
from hub.core.db import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_database_wal_and_redis_dump_are_owner_only(tmp_path):
    data_dir = tmp_path / "fresh" / ".coexhub"
    settings = Settings.from_env({}, data_dir=data_dir)
    db = Database(settings.database_url)
    try:
        with db.engine.connect() as conn:  # WAL mode: the -wal and -shm files exist while it is open
            conn.execute(text("create table t (x integer)"))
            conn.execute(text("insert into t values (1)"))
            conn.commit()
            files = {p.name: mode(p) for p in data_dir.iterdir()}
    finally:
        db.dispose()
    assert mode(data_dir) == 0o700
    assert {"hub.db", "hub.db-wal", "hub.db-shm", "secret.key", "admin.token"} <= set(files)
    assert {name: m for name, m in files.items() if m != 0o600} == {}

    conn = queue.connect(settings)
    try:
        conn.set("k", "v")
        conn.save()
        assert mode(data_dir / "redis.db") == 0o600
    finally:
        conn._cleanup()  # stop this embedded server now rather than at exit


def test_files_left_world_readable_by_an_older_version_are_tightened(tmp_path):
    data_dir = tmp_path / "old"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    for name in ("hub.db", "secret.key"):
        (data_dir / name).write_bytes(b"" if name == "hub.db" else b"x" * 44 + b"\n")
        os.chmod(data_dir / name, 0o644)
    settings = Settings.from_env({}, data_dir=data_dir)
    Database(settings.database_url).dispose()
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "hub.db") == 0o600 and mode(data_dir / "secret.key") == 0o600


def test_opening_the_database_again_keeps_this_process_sqlite_locks(tmp_path):
    """Building another ``Database`` on a file this process has open must not drop its locks:
    closing any descriptor of a file drops all of the process's POSIX locks on it (SQLite's
    documented way to corrupt a database; seen here as workers that stopped seeing new rows)."""
    path = tmp_path / "hub.db"

    def my_locks() -> list[list[str]]:
        inode = f":{path.stat().st_ino} "
        return [line.split(":", 1)[1].split() for line in Path("/proc/locks").read_text().splitlines()
                if inode in line and str(os.getpid()) in line.split()]  # without the table's own numbering

    first = Database(f"sqlite:///{path}")
    try:
        with first.engine.connect() as conn:
            conn.execute(text("create table t (x integer)"))
            conn.commit()
            conn.execute(text("select * from t")).all()  # WAL mode: a shared lock on the file while open
            held = my_locks()
            Database(f"sqlite:///{path}").dispose()  # the hub builds another runtime on the same file
            assert held and my_locks() == held
    finally:
        first.dispose()
