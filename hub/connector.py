"""Everything a connector author needs, in one import: ``from hub.connector import *``."""
from hub.core.connectors import *  # noqa: F401,F403
from hub.core.connectors import __all__  # noqa: F401
from hub.core.plugins.hookspecs import hookimpl  # noqa: F401
