"""Calendly: booking confirmation, reminders before the meeting, cancellation notice, no-show follow-up.

Setup for sellers: ``docs/connectors/calendly.md``. Calendly sends no reminders to us, so the hub
schedules its own at ``start_time − offset`` (one group per booking, so one ``CancelScheduled``
cancels them all); a reschedule is an ``invitee.canceled`` with ``rescheduled: true`` followed by
an ``invitee.created`` carrying ``old_invitee``. Calendly has no event id: deliveries are
deduplicated on ``event`` + the invitee's ``uri``. The webhook subscription is created with
``coexhub calendly subscribe`` or ``POST /api/v1/installations/<id>/calendly/subscribe``.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from marshmallow import Schema, fields, validate

from connectors import names, template_fields, template_for, text, truthy
from connectors.calendly.when import format_when, parse_start
from hub.connector import (
    CancelScheduled,
    Connector,
    Fields,
    JsonField,
    ScheduleSend,
    SendTemplate,
    Skip,
    TimestampedHmac,
    UpsertContact,
    dig,
    hookimpl,
    on_webhook,
    secret,
)

API_BASE = "https://api.calendly.com"
# Calendly's docs suggest refusing signatures older than 3 minutes (a replayed delivery).
SIGNATURE_TOLERANCE = 180
MAX_OFFSET = 30 * 24 * 60  # a reminder more than 30 days ahead is no reminder
DEFAULT_OFFSETS = [1440, 60]
PHONE_QUESTION = re.compile(r"phone|whats\s*app|mobile|cell|tel[eé]fono|telefone|celular|número|numero",
                            re.IGNORECASE)
KNOWN_CANCELED = 500  # invitee ids remembered as canceled (an invitee.created delivered after its cancel)
EVENTS = ("invitee.created", "invitee.canceled", "invitee_no_show.created")

CalendlyConfig = Schema.from_dict({
    "signing_key": secret(fields.String(required=True, metadata={
        "description": "the webhook subscription's signing key (any long random string; "
                       "`coexhub calendly subscribe` sends it to Calendly)"})),
    "personal_access_token": secret(fields.String(load_default=None, allow_none=True, metadata={
        "description": "Calendly personal access token (Integrations → API & Webhooks), to create the subscription"})),
    "language": fields.String(load_default="en_US", metadata={"description": "default template language"}),
    "locale": fields.String(load_default=None, allow_none=True, metadata={
        "description": "how dates and times are written (Babel locale); default: language"}),
    "default_country": fields.String(load_default=None, allow_none=True, metadata={
        "description": "for phone numbers typed without +code (ISO code, e.g. US, IN)"}),
    "timezone": fields.String(load_default="UTC", metadata={
        "description": "time zone for the message when the invitee's is missing or unknown (IANA name)"}),
    **template_fields("confirmation", "booking_confirmation", "{{1}} name, {{2}} event name, {{3}} date and time"),
    **template_fields("reminder", "booking_reminder", "{{1}} name, {{2}} event name, {{3}} date and time"),
    **template_fields("cancellation", "booking_cancelled", "{{1}} name, {{2}} event name, {{3}} date and time"),
    **template_fields("no_show", None, "optional no-show follow-up: {{1}} name, {{2}} event name, "
                                       "{{3}} booking link"),
    "reminder_offsets": fields.List(
        fields.Integer(validate=validate.Range(1, MAX_OFFSET)), load_default=DEFAULT_OFFSETS,
        validate=validate.Length(max=5),
        metadata={"description": "minutes before the start a reminder goes out (default 24 h and 1 h; "
                                 "at most 5; [] turns reminders off)"}),
    "booking_url": fields.String(load_default=None, allow_none=True, metadata={
        "description": "your Calendly booking page, for the no-show follow-up (default: the invitee's "
                       "reschedule link)"}),
    "subscription_scope": fields.String(load_default="user", validate=validate.OneOf(("user", "organization")),
                                        metadata={"description": "webhook subscription scope: your own "
                                                                 "bookings (user) or the organization's"}),
    "api_base": fields.String(load_default=API_BASE, metadata={
        "description": "Calendly API base URL (change only for tests)"}),
    "connection_id": fields.String(load_default=None, allow_none=True),
}, name="CalendlyConfig")


# -- payload helpers (every field optional, any type) ----------------------------------------
def invitee_id(uri: Any) -> str:
    """The invitee's id: the last segment of its ``uri`` (the whole value if it has none)."""
    value = text(uri)
    return value.rstrip("/").rsplit("/", 1)[-1] if value else ""


def booking_group(ctx, uri: Any) -> str:
    """The group of every scheduled send of one booking (one invitee of one event)."""
    return f"calendly:{ctx.installation_id}:{invitee_id(uri)}"


def find_phone(ctx, payload: Any) -> str | None:
    """WhatsApp digits from ``text_reminder_number``, else from an answer to a phone/WhatsApp
    question in ``questions_and_answers``; why none was found goes to ``ctx.notes``."""
    region = ctx.config.get("default_country") or None
    candidates = [dig(payload, "text_reminder_number")]
    answers = dig(payload, "questions_and_answers")
    for item in answers if isinstance(answers, list) else []:
        if isinstance(item, dict) and PHONE_QUESTION.search(text(item.get("question"))):
            candidates.append(item.get("answer"))
    return ctx.first_phone([raw for raw in candidates if not isinstance(raw, bool)], region,
                           missing="no phone number (text_reminder_number or a phone answer)")


def _names(payload: Any) -> tuple[str, str | None]:
    """(first name for the greeting, full name for the contact)."""
    full = text(dig(payload, "name")) or " ".join(
        p for p in (text(dig(payload, "first_name")), text(dig(payload, "last_name"))) if p)
    first, full_name = names(full)
    return text(dig(payload, "first_name")) or first, full_name


def _offsets(ctx) -> list[int]:
    raw = ctx.config.get("reminder_offsets")
    raw = DEFAULT_OFFSETS if raw is None else raw
    values = {v for v in (raw if isinstance(raw, list) else []) if isinstance(v, int) and not isinstance(v, bool)}
    return sorted((v for v in values if 0 < v <= MAX_OFFSET), reverse=True)


class Booking:
    """What the messages need from an invitee payload."""

    def __init__(self, ctx, payload: Any):
        self.uri = text(dig(payload, "uri"))
        self.group = booking_group(ctx, self.uri)
        self.event_name = text(dig(payload, "scheduled_event.name"), "your meeting")
        self.event_uri = text(dig(payload, "scheduled_event.uri")) or text(dig(payload, "event"))
        self.start = parse_start(dig(payload, "scheduled_event.start_time"))
        self.first, self.full = _names(payload)
        locale = ctx.config.get("locale") or ctx.config.get("language")
        self.when = format_when(self.start, dig(payload, "timezone"), ctx.config.get("timezone"), locale) \
            if self.start else "-"

    def params(self) -> list[str]:
        return [self.first, self.event_name, self.when]

    def reference(self, kind: str, **extra) -> dict:
        return {"invitee": self.uri, "event": self.event_uri, "kind": kind, **extra}


class Calendly(Connector):
    name = "calendly"
    title = "Calendly"
    config_schema = CalendlyConfig
    verify = TimestampedHmac("Calendly-Webhook-Signature", key="signing_key", tolerance=SIGNATURE_TOLERANCE)
    event_id = Fields(JsonField("event"), JsonField("payload.uri"))
    topic = JsonField("event")

    def parse(self, body: bytes) -> Any:
        """The webhook's ``payload`` (the invitee); ``event`` is the topic."""
        data = super().parse(body)
        return data.get("payload") if isinstance(data, dict) else None

    @on_webhook("invitee.created")
    def created(self, payload, ctx):
        booking = Booking(ctx, payload)
        if not booking.uri:
            return [Skip("invitee without uri")]
        actions: list = []
        old = text(dig(payload, "old_invitee"))
        if old:  # a reschedule: the old booking's reminders go, silently (its invitee.canceled may come later)
            actions.append(CancelScheduled(group=booking_group(ctx, old)))
        if invitee_id(booking.uri) in (ctx.state.get("canceled") or []) or \
                text(dig(payload, "status")).lower() == "canceled":
            return [*actions, Skip("invitee already canceled")]
        if booking.start is None:
            return [*actions, Skip("scheduled_event.start_time missing or not a time")]
        now = ctx.now  # aware UTC
        if booking.start <= now:
            return [*actions, Skip("the meeting has already started")]
        to = find_phone(ctx, payload)
        if not to:
            return actions  # ctx.notes says why
        actions.append(UpsertContact(wa_id=to, name=booking.full))
        template, language = template_for(ctx, "confirmation")
        if template:
            actions.append(SendTemplate(
                to=to, template=template, language=language, params=booking.params(), name=booking.full,
                idempotency_key=f"{booking.group}:confirmation",
                reference=booking.reference("confirmation", rescheduled_from=old or None)))
        else:
            actions.append(Skip("confirmations are off"))
        template, language = template_for(ctx, "reminder")
        if not template:
            return [*actions, Skip("reminders are off")]
        for offset in _offsets(ctx):
            at = booking.start - dt.timedelta(minutes=offset)
            if at <= now:
                actions.append(Skip(f"reminder {offset} min before the start: already past"))
                continue
            actions.append(ScheduleSend(
                to=to, template=template, language=language, params=booking.params(), name=booking.full,
                at=at, group=booking.group, cancel_key=f"{booking.group}:reminder:{offset}",
                reference=booking.reference("reminder", minutes_before=offset)))
        return actions

    @on_webhook("invitee.canceled")
    def canceled(self, payload, ctx):
        booking = Booking(ctx, payload)
        if not booking.uri:
            return [Skip("invitee without uri")]
        self._remember_canceled(ctx, booking.uri)
        actions: list = [CancelScheduled(group=booking.group)]
        if truthy(dig(payload, "rescheduled")):
            return [*actions, Skip("rescheduled: no cancellation notice (the new booking gets its confirmation)")]
        template, language = template_for(ctx, "cancellation")
        if not template:
            return [*actions, Skip("cancellation notices are off")]
        to = find_phone(ctx, payload)
        if not to:
            return actions
        reason = text(dig(payload, "cancellation.canceler_type")) or None
        return [*actions, SendTemplate(
            to=to, template=template, language=language, params=booking.params(), name=booking.full,
            idempotency_key=f"{booking.group}:cancellation",
            reference=booking.reference("cancellation", canceled_by=reason))]

    @on_webhook("invitee_no_show.created")
    def no_show(self, payload, ctx):
        template, language = template_for(ctx, "no_show")
        if not template:
            return [Skip("no-show follow-ups are off")]
        booking = Booking(ctx, payload)
        if not booking.uri:
            return [Skip("invitee without uri")]
        to = find_phone(ctx, payload)
        if not to:
            return []
        link = text(ctx.config.get("booking_url")) or text(dig(payload, "reschedule_url")) or "-"
        return [SendTemplate(
            to=to, template=template, language=language, params=[booking.first, booking.event_name, link],
            name=booking.full, idempotency_key=f"{booking.group}:no_show", reference=booking.reference("no_show"))]

    @staticmethod
    def _remember_canceled(ctx, uri: str) -> None:
        known = [v for v in (ctx.state.get("canceled") or []) if isinstance(v, str)]
        if invitee_id(uri) not in known:
            ctx.state = {**ctx.state, "canceled": [*known, invitee_id(uri)][-KNOWN_CANCELED:]}


@hookimpl
def coexhub_connectors():
    return [Calendly]


@hookimpl
def coexhub_cli(cli):
    from connectors.calendly.commands import calendly

    cli.add_command(calendly)


@hookimpl
def coexhub_blueprints(app):
    from connectors.calendly.routes import bp

    return [bp]
