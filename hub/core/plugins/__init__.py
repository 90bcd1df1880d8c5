"""Plugin system: pluggy hook specifications and the manager that loads entry points."""
from hub.core.plugins.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
