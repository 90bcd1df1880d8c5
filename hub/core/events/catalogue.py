"""The catalogue of events the hub publishes outward (webhook subscriptions, Zapier hooks).

Each ``EventType`` has a name, a description, a marshmallow schema of its ``data`` and an
example. Connectors add their own through a class attribute::

    class Shop(Connector):
        events = {"order.paid_via_link": (OrderPaidSchema, {"order_id": "77", ...}, "An order was paid")}

``catalogue(plugins)`` merges both; ``docs/events.md`` is generated from it (``coexhub
events-doc``), and ``GET /api/v1/event-types`` serves it. Every delivered event is the envelope
``{"id": "evt_…", "type", "timestamp", "workspace_id", "data"}``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

from hub.core.events import schemas as s


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    schema: type[Schema]
    example: dict[str, Any]
    source: str = "core"  # "core" or the connector's name

    def json_schema(self) -> dict[str, Any]:
        return s.json_schema(self.schema)

    def errors(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validation errors of ``data`` against the schema ({} when it conforms)."""
        return _instance(self.schema).validate(data)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source,
                "schema": self.json_schema(), "example": self.example}


@functools.lru_cache(maxsize=None)
def _instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: building one per published event cost more than validating."""
    return schema()


CONTACT = {"id": "ct_q3vbd5wbm4qgoyd7l2m5y2uxxe", "wa_id": "919876543210", "user_id": None, "name": "Asha"}
CONN = "con_5f2c1a9e0b7d4c33"
MESSAGE = {"connection_id": CONN, "wamid": "wamid.HBgMOTE5ODc2NTQzMjEwFQIAEhggQ0E0",
           "type": "text", "direction": "in", "origin": "customer", "body": {"text": {"body": "Is my order shipped?"}},
           "timestamp": "2026-11-30T09:12:44Z", "context_wamid": None, "contact": CONTACT}
STATUS = {"connection_id": CONN, "wamid": "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSQjQ5", "status": "delivered",
          "message_status": "delivered", "timestamp": "2026-11-30T09:13:02Z",
          "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"}, "error": None,
          "biz_opaque_callback_data": None, "contact_id": "ct_q3vbd5wbm4qgoyd7l2m5y2uxxe",
          "send_id": "snd_k7rjq2xw5f4hd3ubnm6a2yzc4e"}
SEND = {"send_id": "snd_k7rjq2xw5f4hd3ubnm6a2yzc4e", "connection_id": CONN, "to": "919876543210", "kind": "template",
        "template": "order_update", "origin": "connector", "attempts": 1, "error_code": 131026,
        "error": "Message undeliverable", "reference": {"order_id": "1042"}}
CONNECTION = {"connection_id": CONN, "phone_number_id": "106540352242922", "display_phone_number": "+91 98765 00000",
              "status": "paused", "reason": "spam rate limit: number paused"}

_CORE = [
    EventType("message.received", "A customer sent a message to a connected number.", s.MessageData, MESSAGE),
    EventType("message.echoed", "The owner replied from the WhatsApp Business app on the phone (Coexistence echo), "
              "or edited/deleted such a message.", s.EchoData,
              {**MESSAGE, "action": "message", "direction": "out", "origin": "app_echo",
               "wamid": "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSRUNITw", "body": {"text": {"body": "Yes, it left today"}},
               "original_wamid": None, "change": None}),
    EventType("message.status", "Meta reported a status (sent, delivered, read, failed) of an outgoing message.",
              s.StatusData, STATUS),
    EventType("message.failed", "An outgoing message failed after Meta accepted it (a failed status).",
              s.StatusData, {**STATUS, "status": "failed", "message_status": "failed", "pricing": None,
                             "error": {"code": 131026, "title": "Message undeliverable"}}),
    EventType("contact.created", "The hub saw a person for the first time (wrote in, synced, added by API).",
              s.ContactData, {"contact": CONTACT, "source": "customer"}),
    EventType("contact.synced", "The owner's phone contacts changed (Coexistence contact sync).",
              s.ContactSyncData, {"connection_id": CONN, "action": "add", "contact": {**CONTACT, "name": "Asha Rao"},
                                  "full_name": "Asha Rao", "first_name": "Asha"}),
    EventType("contact.opted_out", "A contact opted out (STOP keyword, WhatsApp preference, API, Meta error 131050).",
              s.OptData, {"contact": CONTACT, "scope": "all", "source": "keyword", "connection_id": CONN}),
    EventType("contact.opted_in", "A contact opted back in (START keyword, WhatsApp preference, API).",
              s.OptData, {"contact": CONTACT, "scope": "all", "source": "keyword", "connection_id": CONN}),
    EventType("button.clicked", "A customer tapped a quick-reply or interactive button.", s.ButtonData,
              {"connection_id": CONN, "wamid": "wamid.HBgMOTE5ODc2NTQzMjEwFQIAEhggQlRO", "payload": "CONFIRM_COD",
               "text": "Confirm order", "context_wamid": "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSQjQ5",
               "contact": CONTACT}),
    EventType("send.failed", "A send the hub was asked to make failed for good (refused, or Meta said no).",
              s.SendData, SEND),
    EventType("send.dead", "A send gave up after its retries (Meta or the network kept failing).",
              s.SendData, {**SEND, "attempts": 6, "error_code": None, "error": "HTTP 503 from Graph"}),
    EventType("connection.paused", "A number stopped sending (Meta's spam limit, account restriction, the API).",
              s.ConnectionData, CONNECTION),
    EventType("connection.resumed", "A paused number sends again.", s.ConnectionData,
              {**CONNECTION, "status": "active", "reason": "resumed through the API"}),
    EventType("connection.inactivity_warning", "No WhatsApp Business app activity for 10 days: Meta may disconnect "
              "a Coexistence number after 14.", s.InactivityData,
              {**CONNECTION, "status": "active", "reason": None, "last_app_activity_at": "2026-11-20T08:00:00Z",
               "days_idle": 10, "message": "open the WhatsApp Business app on the phone before day 14"}),
    EventType("subscription.disabled", "A webhook subscription was disabled (its endpoint answered 410, or failed "
              "every delivery for 5 days).", s.SubscriptionDisabledData,
              {"subscription_id": "sub_0a1b2c3d4e5f6a7b", "url": "https://example.com/hooks/whatsapp",
               "reason": "every delivery failed for 5 days"}),
    EventType("test.event", "Sent by POST /api/v1/subscriptions/{id}/test.", s.TestData,
              {"message": "Hello from coexhub", "subscription_id": "sub_0a1b2c3d4e5f6a7b"}),
]
EVENT_TYPES: dict[str, EventType] = {e.name: e for e in _CORE}


def connector_events(cls) -> list[EventType]:
    """The events a connector class declares (``events = {name: (schema, example, description)}``)."""
    out = []
    for name, spec in (getattr(cls, "events", None) or {}).items():
        schema, example, *rest = spec
        out.append(EventType(name, rest[0] if rest else "", schema, example, source=getattr(cls, "name", "?")))
    return out


def catalogue(plugins=None) -> dict[str, EventType]:
    """Core events plus those of every loaded connector (``plugins``: the plugin manager)."""
    out = dict(EVENT_TYPES)
    for cls in _connector_classes(plugins):
        for event_type in connector_events(cls):
            out.setdefault(event_type.name, event_type)
    return out


def _connector_classes(plugins) -> list[type]:
    if plugins is None:
        return []
    found = getattr(plugins, "connectors", None)
    if callable(found):
        found = found()
    if isinstance(found, dict):
        found = found.values()
    return sorted({type(c) if not isinstance(c, type) else c for c in (found or ())}, key=lambda c: c.name)


def matches(patterns: list[str], event_type: str) -> bool:
    """A subscription's event list matches ``event_type``: exact, ``*``, or a prefix ``message.*``."""
    return any(p == "*" or p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1]))
               for p in patterns or ())
