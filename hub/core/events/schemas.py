"""Marshmallow schemas of the outward events' ``data`` (the catalogue in ``catalogue.py``).

They are the one source of the JSON schemas served by ``GET /api/v1/event-types`` and written
to ``docs/events.md``; ``publish`` validates each event's data against them.
"""
from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate


def _s(description: str, **kw) -> fields.String:
    return fields.String(metadata={"description": description}, **kw)


class Open(Schema):
    """Data may carry more keys than documented (new fields are added, never removed)."""
    class Meta:
        unknown = INCLUDE


class ContactRef(Open):
    id = _s("the hub's contact id (ct_…, as the API shows it)", required=True)
    wa_id = _s("WhatsApp id: E.164 digits without +; null for a hidden number (business-scoped id only)",
               allow_none=True)
    user_id = _s("business-scoped user id, when Meta sent one", allow_none=True)
    name = _s("profile name, or the name saved in the owner's app", allow_none=True)


class MessageData(Open):
    connection_id = _s("the business number (con_…) the message is on", required=True)
    wamid = _s("WhatsApp message id", required=True)
    type = _s("text, image, interactive, button, reaction, …", required=True)
    direction = _s("in or out", required=True, validate=validate.OneOf(["in", "out"]))
    origin = _s("customer, app_echo (owner's phone), api, history", required=True)
    body = fields.Dict(metadata={"description": "the message content, as Meta sent it (per type)"})
    timestamp = _s("when WhatsApp says it was sent (ISO 8601 UTC)", required=True)
    context_wamid = _s("the message it replies to", allow_none=True)
    contact = fields.Nested(ContactRef, allow_none=True)


class EchoData(MessageData):
    action = _s("message (the owner wrote from the phone), edit or revoke", required=True,
                validate=validate.OneOf(["message", "edit", "revoke"]))
    original_wamid = _s("edit/revoke: the message changed", allow_none=True)
    change = fields.Dict(allow_none=True, metadata={"description": "edit/revoke: Meta's change object"})
    type = _s("message type (absent for edit/revoke)")
    direction = _s("out")
    origin = _s("app_echo")
    timestamp = _s("when the owner sent it (ISO 8601 UTC)")


class StatusData(Open):
    connection_id = _s("the business number (con_…)", required=True)
    wamid = _s("the outgoing message's id", required=True)
    status = _s("sent, delivered, read or failed (as Meta reported it)", required=True)
    message_status = _s("the message's status after this one (statuses never move backwards)")
    timestamp = _s("when Meta says it happened (ISO 8601 UTC)", allow_none=True)
    pricing = fields.Dict(allow_none=True, metadata={"description": "Meta's pricing object"})
    error = fields.Dict(allow_none=True, metadata={"description": "Meta's error (code, title, message) on failure"})
    biz_opaque_callback_data = _s("the tracking data given at send time", allow_none=True)
    contact_id = _s("the hub's contact id (ct_…)", allow_none=True)
    send_id = _s("the hub's send (snd_…), when the hub sent it", allow_none=True)


class ContactData(Open):
    contact = fields.Nested(ContactRef, required=True)
    source = _s("customer (wrote in), app_sync, api, connector, …")


class ContactSyncData(Open):
    connection_id = _s("the business number whose app synced it", required=True)
    action = _s("add (also an edit) or remove", required=True)
    contact = fields.Nested(ContactRef, required=True)
    full_name = _s("the name saved in the owner's phone", allow_none=True)
    first_name = _s("first name saved in the owner's phone", allow_none=True)


class OptData(Open):
    contact = fields.Nested(ContactRef, required=True)
    scope = _s("all, or marketing (only marketing templates)", required=True,
               validate=validate.OneOf(["all", "marketing"]))
    source = _s("keyword (STOP/START), whatsapp (the user's preference in WhatsApp), api, meta_error", required=True)
    connection_id = _s("the number it happened on", allow_none=True)


class ButtonData(Open):
    connection_id = _s("the business number (con_…)", required=True)
    wamid = _s("the reply message's id", required=True)
    payload = _s("quick-reply payload or interactive reply id", required=True)
    text = _s("the button's title as the customer saw it", allow_none=True)
    context_wamid = _s("the message whose button was clicked", allow_none=True)
    contact = fields.Nested(ContactRef, allow_none=True)


class SendData(Open):
    send_id = _s("the hub's send id (snd_…, as the API shows it)", required=True)
    connection_id = _s("the number it was (to be) sent from", allow_none=True)
    to = _s("recipient wa_id", required=True)
    kind = _s("text or template", required=True)
    template = _s("template name", allow_none=True)
    origin = _s("api, connector, automation, broadcast, system")
    attempts = fields.Integer()
    error_code = fields.Integer(allow_none=True, metadata={"description": "Meta's error code, when Meta answered"})
    error = _s("why", allow_none=True)
    reference = fields.Dict(metadata={"description": "what the sender attached (order id, …)"})


class ConnectionData(Open):
    connection_id = _s("con_…", required=True)
    phone_number_id = _s("Meta's phone number id", required=True)
    display_phone_number = _s("the number as shown", allow_none=True)
    status = _s("active or paused", required=True)
    reason = _s("why it was paused or resumed", allow_none=True)


class InactivityData(ConnectionData):
    last_app_activity_at = _s("the last sign of the WhatsApp Business app (ISO 8601 UTC)", allow_none=True)
    days_idle = fields.Integer(required=True)
    message = _s("what to do", required=True)


class SubscriptionDisabledData(Open):
    subscription_id = _s("sub_…", required=True)
    url = _s("its endpoint", required=True)
    reason = _s("410 Gone, or failing for 5 days", required=True)


class TestData(Open):
    message = _s("a greeting", required=True)
    subscription_id = _s("the subscription asked to test", allow_none=True)


JSON_TYPES: list[tuple[type, dict[str, Any]]] = [
    (fields.Integer, {"type": "integer"}), (fields.Float, {"type": "number"}),
    (fields.Decimal, {"type": "number"}), (fields.Boolean, {"type": "boolean"}),
    (fields.Dict, {"type": "object"}), (fields.Url, {"type": "string", "format": "uri"}),
    (fields.String, {"type": "string"}),
]


def json_schema(schema: type[Schema] | Schema) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12 subset) of a marshmallow schema: types, required,
    nullability, enums, nested objects, lists and field descriptions."""
    inst = schema() if isinstance(schema, type) else schema
    props, required = {}, []
    for name, f in inst.fields.items():
        props[f.data_key or name] = _field(f)
        if f.required:
            required.append(f.data_key or name)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    doc = (type(inst).__doc__ or "").strip()
    if doc and type(inst).__doc__ != Open.__doc__:
        out["description"] = doc
    return out


def _field(f: fields.Field) -> dict[str, Any]:
    if isinstance(f, fields.Nested):
        spec = json_schema(f.schema)
    elif isinstance(f, fields.List):
        spec = {"type": "array", "items": _field(f.inner)}
    else:
        spec = next((dict(v) for t, v in JSON_TYPES if isinstance(f, t)), {})
    for rule in f.validators:
        if isinstance(rule, validate.OneOf):
            spec["enum"] = list(rule.choices)
    if f.metadata.get("description"):
        spec["description"] = f.metadata["description"]
    if f.allow_none and "type" in spec:
        spec["type"] = [spec["type"], "null"]
    return spec
