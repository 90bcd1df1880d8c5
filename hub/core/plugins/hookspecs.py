"""The hooks a coexhub plugin can implement.

A plugin is any module registered under the ``coexhub`` entry-point group that
implements some of these with ``@hookimpl``. Every argument is passed by keyword.
Built-in connectors are plugins exactly like third-party ones.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("coexhub")
hookimpl = pluggy.HookimplMarker("coexhub")


@hookspec
def coexhub_connectors():
    """Return a list of ``Connector`` subclasses this plugin provides."""


@hookspec
def coexhub_blueprints(app):
    """Return a list of Flask blueprints to mount on ``app`` (e.g. extra routes)."""


@hookspec
def coexhub_cli(cli):
    """Add click commands or groups to the ``coexhub`` command group ``cli``."""


@hookspec
def coexhub_whatsapp_event(event, workspace):
    """React to every normalized WhatsApp domain event of ``workspace``.

    ``event`` is a ``DomainEvent`` (``event.type`` such as ``message.received``,
    ``event.data`` a dict). Return a list of actions (or None) for the hub to execute.
    """
