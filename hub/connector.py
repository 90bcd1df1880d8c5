"""Everything a connector author needs, in one import: ``from hub.connector import *``
(the reference is docs/sdk.md)."""
from hub.core.connectors import *  # noqa: F401,F403
from hub.core.connectors import __all__ as _core_names
from hub.core.plugins.hookspecs import hookimpl  # noqa: F401

__all__ = [*_core_names, "hookimpl"]
