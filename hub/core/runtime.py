"""The process-wide runtime: settings, database, Redis, queues and plugins.

The web app builds one in ``create_app``; workers and the scheduler build one from the
environment on first use. Jobs reach it through ``current()``.
"""
from __future__ import annotations

import gc
import threading
from functools import cached_property

from sqlalchemy.orm import configure_mappers

from hub.config import Settings
from hub.core import crypto
from hub.core.db import Database
from hub.core.embedded import stop_embedded
from hub.core.plugins.manager import Plugins
from hub.core.queue import Queues, connect

_current: "Runtime | None" = None
_lock = threading.Lock()


class Runtime:
    def __init__(self, settings: Settings, *, plugins: Plugins | None = None, redis=None):
        self.settings = settings
        crypto.configure(settings.secret_keys)
        self.db = Database(settings.database_url)
        self._redis = redis
        self._plugins = plugins

    @cached_property
    def redis(self):
        return self._redis if self._redis is not None else connect(self.settings)

    @cached_property
    def queues(self) -> Queues:
        return Queues(self.redis, self.settings.key_prefix)

    @cached_property
    def plugins(self) -> Plugins:
        return self._plugins or Plugins(self.settings.plugins)

    def settle(self) -> None:
        """Once a long-running process is ready to serve: load now what it would load on first
        use (every plugin, the models' mappers), then move every object alive into the garbage
        collector's permanent generation (``gc.freeze``). A full collection then walks only the
        objects made since, not the code and libraries loaded at start: in a web worker those
        walks took 94–133 ms each, and no request was answered meanwhile (docs/benchmarks.md).
        Frozen objects are still freed by reference counting; only a cycle among them is never
        collected."""
        self.plugins.connectors  # noqa: B018  (loads every plugin now)
        configure_mappers()  # SQLAlchemy configures the models lazily, on first use: here
        gc.collect()
        gc.freeze()

    def key(self, *parts: object) -> str:
        """A Redis key namespaced by ``COEXHUB_KEY_PREFIX``."""
        return ":".join([self.settings.key_prefix, *map(str, parts)])

    def close(self, *, stop_redis: bool = True, force: bool = False) -> None:
        """Release the database; stop the embedded Redis this process started (unless another
        process still uses it, or ``force``)."""
        self.db.dispose()
        if stop_redis and self._redis is None and "redis" in self.__dict__:
            stop_embedded(self.redis, force=force)


def current() -> Runtime:
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(Settings.from_env())
        return _current


def installed() -> Runtime | None:
    """The runtime jobs in this process use, if one was made yet."""
    return _current


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the one jobs in this process use."""
    global _current
    _current = runtime
    return runtime
