"""Engine, sessions and migrations for SQLite (embedded) and PostgreSQL.

On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite recipe:
the driver's own transaction handling is switched off and the ``begin`` event emits ours), so
a transaction takes the single write lock when it starts, waits for it up to the busy timeout,
and can never fail halfway with ``database is locked`` trying to upgrade a read lock. Write
transactions therefore run one after another on SQLite: read-modify-write code is safe there
without row locks (PostgreSQL uses ``SELECT … FOR UPDATE`` through :func:`lock`).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from hub.config import private_file

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_SECONDS = 60  # how long a SQLite transaction waits for the write lock


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
            self.engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS,
                                                           "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
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
        """One round trip; no transaction, so it never waits for SQLite's write lock."""
        with self.autocommit.connect() as conn:
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
    dbapi_conn.isolation_level = None  # pysqlite must not BEGIN (deferred) by itself: see _sqlite_begin
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    """Start each transaction holding the write lock (waiting up to the busy timeout for it).

    A deferred ``BEGIN`` takes a read snapshot first and fails at once with ``database is
    locked`` when it later writes after another writer committed (the busy handler is not
    called then). The ``AUTOCOMMIT`` engine (one-statement ingest) opens no transaction."""
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT" or \
            conn.default_isolation_level == "AUTOCOMMIT":
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE")


OPTIMISTIC = "coexhub_optimistic"  # ``session.info`` flag: savepoints are left out (see ``savepoint``)


class NeedsSavepoints(Exception):
    """An optimistic pass hit an error where a savepoint would have caught it: run it again
    with savepoints (``savepoint``)."""


@contextlib.contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """``session.begin_nested()``: the block's writes are flushed in a savepoint, so an error
    (a lost insert race, one bad item) rolls back only the block and the caller goes on.

    In an *optimistic* transaction (``session.info[OPTIMISTIC]``, set by a caller that can run
    its whole transaction again) the block is only flushed: an error in it is raised as
    ``NeedsSavepoints`` (no ``except IntegrityError`` below catches it), the caller rolls back
    and runs again with savepoints. Errors are rare and a savepoint costs two round trips, so
    most transactions save them all."""
    if not session.info.get(OPTIMISTIC):
        with session.begin_nested():
            yield
        return
    try:
        yield
        session.flush()
    except Exception as exc:
        raise NeedsSavepoints(f"{type(exc).__name__} in an optimistic pass") from exc


def dialect_insert(dialect: str):
    """The dialect's ``insert`` construct (it has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update``): PostgreSQL's, else SQLite's."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def lock(query, session: Session):
    """``query`` locking its rows on PostgreSQL (``FOR NO KEY UPDATE``: rows read to be changed
    stay consistent under concurrent jobs, while inserts that only reference them are not
    blocked) and loading fresh values over the session's cached objects. On SQLite
    transactions already run one at a time (``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(key_share=True)
    return query.execution_options(populate_existing=True)
