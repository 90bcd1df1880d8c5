"""coexhub: a WhatsApp Coexistence connector hub.

Plugin authors import from here::

    from hub import connector, hookimpl
    from hub.connector import Connector, HmacHeader, Header, on_webhook, SendTemplate
"""
from hub.core.plugins.hookspecs import hookimpl


def create_app(*args, **kwargs):
    """Build the Flask app (see ``hub.app.create_app``)."""
    from hub.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app", "hookimpl"]
