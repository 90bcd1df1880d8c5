"""Zapier (and Make, n8n…): REST-hook triggers on the hub's event catalogue and actions keyed
by phone number, all with the workspace API key. The Zapier app itself is in ``app/``
(Node); integrator guide: ``docs/connectors/zapier.md``.

A plugin without a connector class: it only adds routes (``coexhub_blueprints``).
"""
from __future__ import annotations

from hub.connector import hookimpl


@hookimpl
def coexhub_blueprints(app):
    from connectors.zapier import actions, hooks

    return [actions.bp, hooks.bp]
