"""The data model, identical on SQLite and PostgreSQL (migrations in ``migrations/``).

Times are naive UTC.  Public ids of user-facing objects are prefixed random strings
(``ws_…``, ``con_…``, ``ins_…``); high-volume rows use integer ids.
"""
from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.core.crypto import EncryptedJSON, EncryptedText

BigId = BigInteger().with_variant(Integer, "sqlite")
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "pk": "pk_%(table_name)s"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def iso_utc(value: dt.datetime | None) -> str | None:
    """ISO 8601 with ``Z``: stored times are naive UTC, times the hub shows always carry their zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id(prefix: str):
    return mapped_column(String(40), primary_key=True, default=lambda: new_id(prefix))


def _workspace_fk():
    return mapped_column(String(40), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[str] = _id("ws")
    name: Mapped[str] = mapped_column(String(200))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class User(Base):
    """A person who signs in to the console (``hub.web``); machines use API keys instead."""
    __tablename__ = "users"
    id: Mapped[str] = _id("usr")
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    instance_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    session_version: Mapped[int] = mapped_column(Integer, default=1)  # bumped to sign every session out
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Membership(Base):
    """A user's role in one workspace: ``owner``, ``admin`` or ``agent``."""
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "workspace_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = _workspace_fk()
    role: Mapped[str] = mapped_column(String(16), default="agent")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Invitation(Base):
    """An owner's invitation to a workspace; only the token's SHA-256 is stored."""
    __tablename__ = "invitations"
    id: Mapped[str] = _id("inv")
    workspace_id: Mapped[str] = _workspace_fk()
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiKey(Base):
    """A workspace API key; only its SHA-256 is stored, the key is shown once."""
    __tablename__ = "api_keys"
    id: Mapped[str] = _id("key")
    workspace_id: Mapped[str] = _workspace_fk()
    name: Mapped[str] = mapped_column(String(200), default="default")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Connection(Base):
    """One WhatsApp phone number connected to the Cloud API (Coexistence or plain)."""
    __tablename__ = "connections"
    id: Mapped[str] = _id("con")
    workspace_id: Mapped[str] = _workspace_fk()
    waba_id: Mapped[str] = mapped_column(String(64), index=True)
    phone_number_id: Mapped[str] = mapped_column(String(64), unique=True)
    display_phone_number: Mapped[str | None] = mapped_column(String(32))
    verified_name: Mapped[str | None] = mapped_column(String(200))
    access_token: Mapped[str] = mapped_column(EncryptedText)
    mode: Mapped[str] = mapped_column(String(16), default="coexistence")
    messages_per_second: Mapped[int] = mapped_column(Integer, default=20)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|paused|disconnected
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    paused_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    history_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_sync_request_id: Mapped[str | None] = mapped_column(String(128))
    history_request_id: Mapped[str | None] = mapped_column(String(128))
    history_status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    quality: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_app_activity_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    inactivity_warned_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # connection.inactivity_warning
    read_receipts: Mapped[str | None] = mapped_column(String(16))  # off|on|agent_replied; None: by mode
    portfolio_id: Mapped[str | None] = mapped_column(String(64))  # the business portfolio (Meta business id)
    messaging_limit: Mapped[int | None] = mapped_column(Integer)  # portfolio tier; -1 unlimited, None unknown
    limit_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


SEARCHED = ("wa_id", "user_id", "username", "profile_name", "full_name")  # what ``?q=`` searches


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("workspace_id", "wa_id"),
                      UniqueConstraint("workspace_id", "user_id"),
                      Index("ix_contacts_list", "workspace_id", "id"),
                      # ?q= substring search: trigram GIN on PostgreSQL (pg_trgm; 0015_datasize)
                      Index("ix_contacts_search", *SEARCHED, postgresql_using="gin",
                            postgresql_ops={c: "gin_trgm_ops" for c in SEARCHED}))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = _workspace_fk()
    wa_id: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(128))  # business-scoped user id (BSUID)
    username: Mapped[str | None] = mapped_column(String(128))  # the user's WhatsApp username, if any
    profile_name: Mapped[str | None] = mapped_column(String(200))
    full_name: Mapped[str | None] = mapped_column(String(200))  # saved in the owner's app
    first_name: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32), default="customer")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    marketing_opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_opted_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    marketing_consent: Mapped[bool | None] = mapped_column(Boolean)
    consent_source: Mapped[str | None] = mapped_column(String(64))
    app_removed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    hold_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    marketing_limited_until: Mapped[dt.datetime | None] = mapped_column(DateTime)  # Meta answered 131049
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ContactWindow(Base):
    """The 24-hour window and the echo-aware hold of one customer on one business number.

    ``Contact.last_inbound_at`` and ``Contact.hold_until`` stay as the latest across numbers.
    """
    __tablename__ = "contact_windows"
    connection_id: Mapped[str] = mapped_column(String(40), ForeignKey("connections.id", ondelete="CASCADE"),
                                               primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="CASCADE"),
                                            primary_key=True, index=True)
    workspace_id: Mapped[str] = _workspace_fk()
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    hold_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("connection_id", "wamid"),
                      Index("ix_messages_thread", "contact_id", "timestamp"),
                      Index("ix_messages_list", "workspace_id", "timestamp", "id"),
                      Index("ix_messages_send", "send_id"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = _workspace_fk()
    connection_id: Mapped[str] = mapped_column(String(40), ForeignKey("connections.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="SET NULL"))
    wamid: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str] = mapped_column(String(8))  # in|out
    origin: Mapped[str] = mapped_column(String(16))  # customer|api|app_echo|history
    type: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    context_wamid: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="received")
    timestamp: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    failed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pricing: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the status webhooks' ``pricing`` object, as columns for spend reports (core/pricing/)
    pricing_billable: Mapped[bool | None] = mapped_column(Boolean)
    pricing_category: Mapped[str | None] = mapped_column(String(40))
    pricing_type: Mapped[str | None] = mapped_column(String(40))
    pricing_model: Mapped[str | None] = mapped_column(String(16))
    pricing_country: Mapped[str | None] = mapped_column(String(2))  # the recipient's region (ISO 3166)
    edited_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    send_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("workspace_id", "waba_id", "name", "language"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = _workspace_fk()
    waba_id: Mapped[str] = mapped_column(String(64))
    meta_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="APPROVED")
    status_reason: Mapped[str | None] = mapped_column(String(200))
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Installation(Base):
    """A connector installed in a workspace; secret config fields live encrypted."""
    __tablename__ = "installations"
    id: Mapped[str] = _id("ins")
    workspace_id: Mapped[str] = _workspace_fk()
    connector: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON, default=dict)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class InboundEvent(Base):
    """A webhook exactly as received; stored before anything else happens to it."""
    __tablename__ = "inbound_events"
    __table_args__ = (UniqueConstraint("provider", "scope", "dedupe_key"),
                      Index("ix_inbound_events_due", "status", "next_attempt_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))  # "whatsapp" or a connector name
    scope: Mapped[str] = mapped_column(String(64))  # installation id, or "meta"
    dedupe_key: Mapped[str] = mapped_column(String(255))
    workspace_id: Mapped[str | None] = mapped_column(String(40), index=True)
    topic: Mapped[str | None] = mapped_column(String(128))
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|processed|unrouted|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class InboundEventWorkspace(Base):
    """A further workspace an inbound event concerns (one Meta delivery can hold several
    workspaces' numbers); ``InboundEvent.workspace_id`` is the first, these are the others."""
    __tablename__ = "inbound_event_workspaces"
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("inbound_events.id", ondelete="CASCADE"),
                                          primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), ForeignKey("workspaces.id", ondelete="CASCADE"),
                                              primary_key=True, index=True)


class Broadcast(Base):
    __tablename__ = "broadcasts"
    id: Mapped[str] = _id("bc")
    workspace_id: Mapped[str] = _workspace_fk()
    connection_id: Mapped[str] = mapped_column(String(40), ForeignKey("connections.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200))
    template_name: Mapped[str] = mapped_column(String(512))
    template_language: Mapped[str] = mapped_column(String(16))
    params: Mapped[list[Any]] = mapped_column(JSON, default=list)
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Send(Base):
    """One message the hub intends to send, and everything that happened to it."""
    __tablename__ = "sends"
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),
                      Index("ix_sends_due", "status", "not_before"),
                      Index("ix_sends_cancel", "workspace_id", "cancel_key"),
                      Index("ix_sends_cancel_group", "workspace_id", "cancel_group"),
                      Index("ix_sends_list", "workspace_id", "id"),
                      Index("ix_sends_status_list", "workspace_id", "status", "id"),
                      Index("ix_sends_contact", "contact_id", "id"),
                      Index("ix_sends_created", "workspace_id", "created_at"),
                      Index("ix_sends_queued", "connection_id", "id", postgresql_where=text("status = 'queued'"),
                            sqlite_where=text("status = 'queued'")))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = _workspace_fk()
    connection_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("connections.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="SET NULL"))
    to: Mapped[str] = mapped_column(String(160))  # a phone number, or a BSUID (hub.core.bsuid)
    kind: Mapped[str] = mapped_column(String(16))  # text|template
    text: Mapped[str | None] = mapped_column(Text)
    template_name: Mapped[str | None] = mapped_column(String(512))
    template_language: Mapped[str | None] = mapped_column(String(16))
    params: Mapped[Any] = mapped_column(JSON, default=list)
    category: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(16), default="api")  # api|connector|automation|broadcast|system
    installation_id: Mapped[str | None] = mapped_column(String(40))
    connection_reason: Mapped[str | None] = mapped_column(String(32))  # why this number (sending/routing.py)
    broadcast_id: Mapped[str | None] = mapped_column(String(40), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    cancel_key: Mapped[str | None] = mapped_column(String(255))
    cancel_group: Mapped[str | None] = mapped_column(String(255))  # ScheduleSend(group=…): cancelled together
    reference: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    not_before: Mapped[dt.datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    hold_reason: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    wamid: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # the worker claim that holds a ``sending`` send
    attempted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # Meta may have it from here on
    reply_to: Mapped[str | None] = mapped_column(String(200))  # the customer message (wamid) answered
    typing: Mapped[bool | None] = mapped_column(Boolean)  # show the typing indicator before the reply


class RateCard(Base):
    """A loaded rate card (``core/pricing/ratecard.py``): the instance's (no workspace) or one
    workspace's override; the newest of each counts."""
    __tablename__ = "rate_cards"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("workspaces.id", ondelete="CASCADE"),
                                                     index=True)
    rates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    markets: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # country (ISO 3166) -> market
    source: Mapped[str | None] = mapped_column(String(200))
    loaded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Subscription(Base):
    """An outbound webhook (signed, Standard Webhooks) or a Zapier REST hook (``kind="zapier"``).

    ``events`` lists event types (``message.received``), prefixes (``message.*``) or ``*``.
    After a secret rotation the old one (``previous_secret``) also signs until
    ``previous_secret_expires_at``. ``failing_since`` is the first failure of the current run
    of failures (cleared by any success): 5 days of it disable the subscription."""
    __tablename__ = "subscriptions"
    id: Mapped[str] = _id("sub")
    workspace_id: Mapped[str] = _workspace_fk()
    kind: Mapped[str] = mapped_column(String(16), default="webhook")  # webhook|zapier
    target_url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(String(500))
    secret: Mapped[str | None] = mapped_column(EncryptedText)
    previous_secret: Mapped[str | None] = mapped_column(EncryptedText)
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    failing_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class OutboundEvent(Base):
    """One event the hub published (``hub.core.events.publish``): kept for replays, samples
    (Zapier perform-list) and audit, whether or not anything subscribed to it."""
    __tablename__ = "outbound_events"
    __table_args__ = (Index("ix_outbound_events_recent", "workspace_id", "type", "created_at"),)
    id: Mapped[str] = _id("evt")
    workspace_id: Mapped[str] = mapped_column(String(40), ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class OutboundDelivery(Base):
    """Outbox: a write-back to a provider or a delivery to a subscription."""
    __tablename__ = "outbound_deliveries"
    __table_args__ = (Index("ix_outbound_due", "status", "next_attempt_at"),
                      Index("ix_outbound_kind_target", "workspace_id", "kind", "target"))  # paylink rows by key
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = _workspace_fk()
    kind: Mapped[str] = mapped_column(String(16))  # writeback|webhook|paylink
    target: Mapped[str] = mapped_column(String(255))  # "module:function" or a subscription id
    installation_id: Mapped[str | None] = mapped_column(String(40))
    event_type: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(40), index=True)  # evt_… of a subscription delivery
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Attribution(Base):
    """Revenue from a paid order credited to the recovery/reminder send that preceded it."""
    __tablename__ = "attributions"
    __table_args__ = (UniqueConstraint("workspace_id", "installation_id", "order_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = _workspace_fk()
    installation_id: Mapped[str | None] = mapped_column(String(40))
    order_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[str] = mapped_column(String(32))  # decimal text: no float rounding
    currency: Mapped[str] = mapped_column(String(8))
    send_id: Mapped[int] = mapped_column(BigId)
    contact_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# --- Inbox (console, issue 13): conversation state and internal notes -------------------------
class Conversation(Base):
    """The console's state of one customer on one business number: open/closed, who handles it,
    how far it was read. Its messages are the ``messages`` of that pair (``hub.core.conversations``
    creates and moves these rows from the messages)."""
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("contact_id", "connection_id"),
                      Index("ix_conversations_recent", "workspace_id", "last_message_at"))
    id: Mapped[str] = _id("cnv")
    workspace_id: Mapped[str] = mapped_column(String(40), ForeignKey("workspaces.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(String(40), ForeignKey("connections.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|closed
    assignee_user_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("users.id", ondelete="SET NULL"))
    last_message_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_message_id: Mapped[int | None] = mapped_column(BigId)
    last_inbound_id: Mapped[int | None] = mapped_column(BigId)  # the customer's latest message
    read_up_to_id: Mapped[int | None] = mapped_column(BigId)  # opened in the console up to this message
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ConversationNote(Base):
    """An internal note on a conversation: seen in the console only, never sent."""
    __tablename__ = "conversation_notes"
    id: Mapped[str] = _id("note")
    conversation_id: Mapped[str] = mapped_column(String(40), ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 index=True)
    workspace_id: Mapped[str] = _workspace_fk()
    author_user_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("users.id", ondelete="SET NULL"))
    author_name: Mapped[str] = mapped_column(String(254), default="")  # kept if the user is deleted
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
