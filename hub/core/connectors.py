"""The connector contract: one declarative class per external system.

    class Shop(Connector):
        name = "shop"
        config_schema = ShopConfig                      # marshmallow; secret fields encrypted
        verify = HmacHeader("X-Shop-Hmac", key="webhook_secret", encoding="base64")
        event_id = Header("X-Shop-Webhook-Id")          # dedupe key
        topic = Header("X-Shop-Topic")

        @on_webhook("orders/create")
        def order(self, payload, ctx):
            return [SendTemplate(to=ctx.phone(payload, "phone"), template=ctx.config["template"])]

Handlers are pure: they receive the parsed payload and a ``Context`` and return actions
(``hub.core.actions``); the core stores and executes them.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import phonenumbers
from marshmallow import Schema, fields, validate

from hub.core.actions import (ACTION_TYPES, Action, CancelScheduled, DisableInstallation, Emit, PaymentLink,
    PaymentReceived, PolledEvent, RecordRevenue, ScheduleSend, SendPaymentLink, SendTemplate, SendText, Skip,
    UpsertContact, WriteBack)
from hub.core.verifiers import (
    BodyHash,
    Extractor,
    Fields,
    Header,
    HmacHeader,
    IncomingRequest,
    JsonField,
    NoVerification,
    Rejected,
    SharedToken,
    TimestampedHmac,
    Verifier,
    dig,
    parse_form,
)

__all__ = ["Connector", "Context", "on_webhook", "on_whatsapp", "secret", "config_json_schema",
           "HmacHeader", "TimestampedHmac", "SharedToken", "NoVerification", "Verifier", "Rejected", "Header",
           "JsonField", "Fields", "BodyHash", "Extractor", "IncomingRequest", "SendTemplate", "SendText",
           "ScheduleSend", "CancelScheduled", "UpsertContact", "WriteBack", "Emit", "Skip", "Action", "dig",
           "DisableInstallation", "RecordRevenue", "PolledEvent", "normalize_phone", "outbound_url", "outbound_client",
           "SendPaymentLink", "PaymentLink", "PaymentReceived", "installed"]


def on_webhook(*topics: str):
    """Mark a method as the handler of these provider topics (``"*"`` matches any)."""
    def mark(func):
        func._coexhub_topics = topics
        return func
    return mark


def on_whatsapp(*events: str, button: str | None = None):
    """Mark a method as a handler of WhatsApp domain events (``message.received``…).

    ``button`` limits it to quick-reply/interactive replies whose payload or id starts with it.
    """
    def mark(func):
        func._coexhub_events = (events, button)
        return func
    return mark


def secret(field_obj: fields.Field) -> fields.Field:
    """Mark a marshmallow field as secret: encrypted at rest and never returned by the API."""
    field_obj.metadata["secret"] = True
    return field_obj


class EmptyConfig(Schema):
    pass


class Connector:
    """Base class of every connector; subclasses are mostly declarations."""
    name: ClassVar[str]
    title: ClassVar[str] = ""
    config_schema: ClassVar[type[Schema]] = EmptyConfig
    verify: ClassVar[Verifier] = NoVerification()
    event_id: ClassVar[Extractor] = BodyHash()
    topic: ClassVar[Extractor | None] = None
    body_format: ClassVar[str] = "json"  # json|form
    poll_every: ClassVar[int | None] = None  # seconds between ``poll`` calls, for providers that drop webhooks
    _webhook_handlers: ClassVar[dict[str, list[str]]]
    _whatsapp_handlers: ClassVar[list[tuple[tuple[str, ...], str | None, str]]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._webhook_handlers, cls._whatsapp_handlers = {}, []
        for attr in dir(cls):
            func = getattr(cls, attr, None)
            for topic in getattr(func, "_coexhub_topics", ()):
                cls._webhook_handlers.setdefault(topic, []).append(attr)
            if hasattr(func, "_coexhub_events"):
                events, button = func._coexhub_events
                cls._whatsapp_handlers.append((events, button, attr))

    # -- ingest-time hooks (must stay cheap) ---------------------------------------------
    def is_ping(self, request: IncomingRequest) -> bool:
        """True for a provider's unsigned setup ping, which is acknowledged and not stored."""
        return False

    def parse(self, body: bytes) -> Any:
        """Decode the body (JSON by default); raise ``ValueError`` when it cannot be read."""
        return parse_form(body) if self.body_format == "form" else json.loads(body)

    def read(self, request: IncomingRequest) -> Any:
        """``parse`` of a request's body at ingest. JSON is decoded once per request: the default
        parser's result is ``request.json``, which ``JsonField`` extractors read too."""
        if self.body_format == "json" and type(self).parse is Connector.parse:
            return request.json
        return self.parse(request.body)

    def secret_fields(self) -> set[str]:
        return {n for n, f in self.config_schema().fields.items() if f.metadata.get("secret")}

    def poll(self, ctx: "Context") -> list[PolledEvent]:
        """Fetch what webhooks may have missed (runs in a worker; the one place for I/O).

        Keep a cursor in ``ctx.state``; it is saved after the call. Each ``PolledEvent`` is
        deduplicated against pushed webhooks by its ``dedupe_key``.
        """
        return []

    # -- processing ----------------------------------------------------------------------
    def handle_webhook(self, topic: str | None, payload: Any, ctx: "Context") -> list[Action]:
        names = self._webhook_handlers.get(topic or "", []) or self._webhook_handlers.get("*", [])
        if not names:
            return [Skip(f"no handler for topic {topic!r}")]
        return _collect(getattr(self, n)(payload, ctx) for n in names)

    def on_payment(self, payment: PaymentReceived, ctx: "Context") -> list[Action]:
        """A payment link this connector asked for (``SendPaymentLink``) was paid; ``ctx`` is the
        installation that asked. Return actions (tag the order, cancel a COD confirmation)."""
        return []

    def handle_whatsapp(self, event: Any, ctx: "Context") -> list[Action]:
        out = []
        for events, button, attr in self._whatsapp_handlers:
            if event.type in events and (button is None or (event.button or "").startswith(button)):
                out.append(getattr(self, attr)(event, ctx))
        return _collect(out)


def _collect(results: Iterable[Any]) -> list[Action]:
    actions: list[Action] = []
    for result in results:
        for action in result or ():
            if not isinstance(action, ACTION_TYPES):
                raise TypeError(f"handler returned {action!r}, which is not an action")
            actions.append(action)
    return actions


@dataclass
class Context:
    """What a handler may know: the installation's config (secrets included) and helpers.

    ``now`` is an aware UTC datetime (a naive one given to the constructor is taken as UTC), so
    ``ScheduleSend(at=ctx.now + …)`` and comparisons with a provider's ISO 8601 times just work.
    ``state`` is the installation's JSON state (saved after ``poll``); ``notes`` collects why a
    phone was not found (``phone``).
    """
    workspace_id: str
    installation_id: str | None
    config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.now = self.now.replace(tzinfo=dt.timezone.utc) if self.now.tzinfo is None \
            else self.now.astimezone(dt.timezone.utc)

    def phone(self, payload: Any, *paths: str, country: str | None = None) -> str | None:
        """The first valid phone at ``paths`` as WhatsApp digits (E.164 without ``+``), or None.

        National numbers use ``country`` (an ISO code or a path in the payload), then the
        installation's ``default_country``. Why nothing was found is kept in ``notes``.
        """
        region = (dig(payload, country) if country and "." in country else country) or None
        region = region or self.config.get("default_country") or self.config.get("country")
        return self.first_phone([dig(payload, path) for path in paths], region)

    def first_phone(self, values: list[Any], region: str | None, missing: str = "no phone number") -> str | None:
        """The first of ``values`` that is a valid phone (national ones in ``region``) as WhatsApp
        digits, or None; then ``notes`` says "invalid phone number", or ``missing`` when none was given."""
        seen = False
        for raw in values:
            if not isinstance(raw, (str, int)) or not str(raw).strip():
                continue
            seen = True
            number = normalize_phone(str(raw), region)
            if number:
                return number
        self.notes.append("invalid phone number" if seen else missing)
        return None


def installed(workspace_id: str, connector: str) -> list[Context]:
    """A ``Context`` per enabled installation of ``connector`` in the workspace, oldest first —
    for hooks that run in a worker without one (``coexhub_payment_link``)."""
    from sqlalchemy import select

    from hub.core.models import Installation
    from hub.core.runtime import current

    with current().db.session() as session:
        rows = session.scalars(select(Installation).where(
            Installation.workspace_id == workspace_id, Installation.connector == connector,
            Installation.enabled.is_(True)).order_by(Installation.created_at, Installation.id)).all()
        return [Context(workspace_id=workspace_id, installation_id=row.id,
                        config={**(row.config or {}), **(row.secrets or {})}, state=dict(row.state or {}))
                for row in rows]


def outbound_client(url: str, **kwargs: Any):
    """An ``httpx.Client`` for calls to ``url``'s host, pinned to the address checked now (no
    second DNS lookup, no redirects); raises ``Refused`` as ``outbound_url`` would."""
    from hub.core import safe_http
    from hub.core.runtime import current

    return safe_http.client(url, current().settings.outbound_allow_private, **kwargs)


def outbound_url(url: str) -> str:
    """``url`` if a connector may call it: http(s) and, unless ``COEXHUB_OUTBOUND_ALLOW_PRIVATE``
    is set, not resolving to a loopback/private/reserved address (installations are user input).
    Prefer ``outbound_client``: an ``httpx`` client of your own resolves the name again."""
    from hub.core.outbox import check_public
    from hub.core.runtime import current

    check_public(url, current().settings.outbound_allow_private)
    return url


def normalize_phone(raw: str, region: str | None = None) -> str | None:
    """E.164 digits without ``+`` for a valid number, else None."""
    raw = raw.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, None if raw.startswith("+") else (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        if raw.isdigit() and len(raw) > 8:  # bare international digits, as WhatsApp writes them
            return normalize_phone("+" + raw)
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


_JSON_TYPES: dict[type, dict[str, Any]] = {
    fields.String: {"type": "string"}, fields.Integer: {"type": "integer"},
    fields.Float: {"type": "number"}, fields.Decimal: {"type": "number"},
    fields.Boolean: {"type": "boolean"}, fields.List: {"type": "array"},
    fields.Dict: {"type": "object"}, fields.Url: {"type": "string", "format": "uri"},
    fields.Email: {"type": "string", "format": "email"},
}


def config_json_schema(schema_cls: type[Schema]) -> dict[str, Any]:
    """A JSON Schema of a connector's config; secret fields carry ``writeOnly`` and ``x-secret``.

    Lists keep their element type (``items``), dicts their value type (``additionalProperties``),
    nested schemas their properties; ``Range`` bounds become ``minimum``/``maximum`` and ``OneOf``
    an ``enum``.
    """
    props: dict[str, Any] = {}
    required = []
    for name, f in schema_cls().fields.items():
        spec = _field_schema(f)
        if f.load_default is not None and not callable(f.load_default) and \
                type(f.load_default).__name__ != "_Missing":
            spec["default"] = f.load_default
        if f.metadata.get("secret"):
            spec.update({"writeOnly": True, "x-secret": True})
        if f.required:
            required.append(name)
        props[name] = spec
    return {"type": "object", "properties": props, "required": required}


def _field_schema(f: fields.Field) -> dict[str, Any]:
    """The JSON Schema of one marshmallow field (without default and secret marks)."""
    if isinstance(f, fields.Nested) and isinstance(f.schema, Schema):
        spec = config_json_schema(type(f.schema))
        spec = {"type": "array", "items": spec} if f.many else spec
    else:
        spec = next((dict(_JSON_TYPES[t]) for t in type(f).__mro__ if t in _JSON_TYPES), {"type": "string"})
    if isinstance(f, fields.List):
        spec["items"] = _field_schema(f.inner)
    elif isinstance(f, fields.Dict) and f.value_field is not None:
        spec["additionalProperties"] = _field_schema(f.value_field)
    if f.metadata.get("description"):
        spec["description"] = f.metadata["description"]
    for rule in f.validators:  # bounds are part of the contract (a UI, a fuzzer)
        if isinstance(rule, validate.Range):
            spec.update({k: v for k, v in (("minimum", rule.min), ("maximum", rule.max)) if v is not None})
        elif isinstance(rule, validate.OneOf):
            spec["enum"] = list(rule.choices)
        elif isinstance(rule, validate.Length) and spec.get("type") == "array":
            spec.update({k: v for k, v in (("minItems", rule.min), ("maxItems", rule.max)) if v is not None})
    return spec
