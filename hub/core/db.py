"""Engine, sessions and migrations for SQLite (embedded) and PostgreSQL."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from hub.config import private_file

MIGRATIONS = Path(__file__).with_name("migrations")


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(url).database  # None or ":memory:" for an in-memory database
            if path and path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                for name in (path, f"{path}-wal", f"{path}-shm"):  # created owner-only, or tightened
                    private_file(Path(name), create=name == path)
            self.engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            # no pre-ping (a round trip per checkout on the hot path): connections are recycled,
            # and one that died is invalidated on its first error and replaced
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=20, pool_recycle=1800)
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("select 1"))

    def alembic_config(self):
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["engine"] = self.engine
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (idempotent)."""
        from alembic import command

        command.upgrade(self.alembic_config(), revision)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
