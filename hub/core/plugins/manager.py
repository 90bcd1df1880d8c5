"""Load plugins from the ``coexhub`` entry-point group, honouring ``COEXHUB_PLUGINS``."""
from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Iterable

import pluggy

from hub.core.plugins import hookspecs

if TYPE_CHECKING:
    from hub.core.connectors import Connector

log = logging.getLogger(__name__)
GROUP = "coexhub"


class Plugins:
    """The plugin manager plus the registry of connectors it yields."""

    def __init__(self, only: Iterable[str] | None = None, extra: Iterable[object] = ()):
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        wanted = set(only) if only is not None else None
        for ep in entry_points(group=GROUP):
            if wanted is not None and ep.name not in wanted:
                continue
            if self.pm.get_plugin(ep.name) is None:
                self.pm.register(ep.load(), name=ep.name)
        for plugin in extra:  # a test may name a module its entry point registered already
            if not self.pm.is_registered(plugin):
                self.pm.register(plugin)
        self.pm.check_pending()
        self.connectors: dict[str, type[Connector]] = {}
        for batch in self.pm.hook.coexhub_connectors():
            for cls in batch or ():
                if cls.name in self.connectors and self.connectors[cls.name] is not cls:
                    raise RuntimeError(f"two plugins provide a connector named {cls.name!r}")
                self.connectors[cls.name] = cls
        log.info("plugins loaded: %s", ", ".join(self.names()) or "none")

    @property
    def hook(self):
        return self.pm.hook

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin() if name)

    def connector(self, name: str) -> "Connector | None":
        cls = self.connectors.get(name)
        return cls() if cls else None
