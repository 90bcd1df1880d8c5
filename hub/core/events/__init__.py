"""Outward events: the catalogue (``catalogue``) and the single fan-out point (``publish``).

Public names (stable; the Zapier connector builds on them):
``EventType``, ``EVENT_TYPES``, ``catalogue(plugins)``, ``matches(patterns, type)``,
``publish(session, workspace_id, type, data) -> list[OutboundDelivery]``,
``record(...) -> (OutboundEvent, deliveries)``, ``envelope(OutboundEvent) -> dict``.
"""
from hub.core.events.catalogue import EVENT_TYPES, EventType, catalogue, connector_events, matches
from hub.core.events.publish import envelope, publish, record

__all__ = ["EVENT_TYPES", "EventType", "catalogue", "connector_events", "matches", "publish", "record", "envelope"]
