"""What connector handlers return. The core executes them in the event's transaction."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class SendTemplate:
    """Send an approved template now."""
    to: str
    template: str
    language: str = "en_US"
    params: list[Any] = field(default_factory=list)
    category: str | None = None  # marketing|utility|authentication (from the template if None)
    idempotency_key: str | None = None
    reference: dict[str, Any] = field(default_factory=dict)  # e.g. {"order_id": "…"}
    name: str | None = None  # the contact's name, if the provider knows it


@dataclass
class SendText:
    """Send free-form text (only inside the 24-hour customer service window)."""
    to: str
    text: str
    idempotency_key: str | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    name: str | None = None


@dataclass
class ScheduleSend(SendTemplate):
    """Send a template later: ``after`` (seconds or a timedelta from now) or ``at`` (an aware
    datetime; naive ones are taken as UTC). An existing scheduled send with the same
    ``cancel_key`` is moved instead of duplicated; ``group`` names a set of sends (every reminder
    of one booking) that one ``CancelScheduled(group=…)`` cancels together."""
    after: dt.timedelta | int = 0
    cancel_key: str | None = None
    at: dt.datetime | None = None
    group: str | None = None

    def due_at(self, now: dt.datetime) -> dt.datetime:
        """When the send is due, as naive UTC (the database's convention)."""
        if self.at is not None:
            at = self.at
            return at.astimezone(dt.timezone.utc).replace(tzinfo=None) if at.tzinfo else at
        delay = self.after if isinstance(self.after, dt.timedelta) else dt.timedelta(seconds=self.after)
        return now + delay


@dataclass
class CancelScheduled:
    """Cancel every not-yet-sent send of the workspace with this ``cancel_key``, or in this
    ``group`` (give one of them, or both)."""
    cancel_key: str | None = None
    group: str | None = None


@dataclass
class UpsertContact:
    wa_id: str
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    marketing_consent: bool | None = None


class WriteBack:
    """Call ``func(ctx, **kwargs)`` in a ``writeback`` job (retried) — e.g. tag an order."""

    def __init__(self, func: Callable[..., Any] | str, **kwargs: Any):
        self.target = func if isinstance(func, str) else f"{func.__module__}:{func.__qualname__}"
        self.kwargs = kwargs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WriteBack) and (self.target, self.kwargs) == (other.target, other.kwargs)

    def __repr__(self) -> str:
        return f"WriteBack({self.target}, **{self.kwargs!r})"


@dataclass
class Emit:
    """Publish an event to the workspace's subscriptions (outbound webhooks, Zapier)."""
    event: str
    data: dict[str, Any]


@dataclass
class DisableInstallation:
    """Turn the installation off (e.g. the store uninstalled the app); its webhooks then 404."""
    reason: str


@dataclass
class RecordRevenue:
    """A paid order: attributed to the latest ``attributable`` send to ``to`` in the window."""
    to: str
    order_id: str
    amount: str
    currency: str


@dataclass
class PolledEvent:
    """What ``Connector.poll`` returns: stored and processed exactly like a pushed webhook."""
    topic: str
    payload: Any
    dedupe_key: str


@dataclass
class PaymentLink:
    """What ``coexhub_payment_link`` returns: a hosted page where the buyer pays."""
    url: str
    provider: str  # the payment connector's name (stripe, razorpay…)
    link_id: str   # the provider's id of the link / checkout session


@dataclass
class SendPaymentLink(SendTemplate):
    """Send ``template`` with a payment link in it, from whichever payment connector the workspace
    has installed (``coexhub_payment_link``); the link's URL becomes the last parameter (the URL
    button's). ``payment_reference`` travels with the link and comes back in ``PaymentReceived``.
    Created in a retried job (it calls the provider); nothing is sent when no provider is installed.

    Scheduled like ``ScheduleSend``: with ``after``/``at`` the link is created (and the message
    sent) when it comes due, so a buyer never gets an expired link; ``cancel_key``/``group``
    cancel it (``CancelScheduled``) until then. ``docs/payment-links.md`` has the whole flow."""
    amount: str = "0"        # decimal string in the currency's major unit ("499.00")
    currency: str = ""
    payment_reference: str = ""
    description: str = ""
    provider: str | None = None  # a payment connector's name, to choose one when several are installed
    email: str | None = None     # the buyer's email, passed on to the provider (receipts, prefill)
    after: dt.timedelta | int = 0
    at: dt.datetime | None = None
    cancel_key: str | None = None
    group: str | None = None

    due_at = ScheduleSend.due_at


@dataclass
class PaymentReceived:
    """A payment connector saw a link the hub created get paid: the core hands it to the
    connector that asked for the link (``Connector.on_payment``), e.g. to tag the order and
    cancel a cash-on-delivery confirmation."""
    reference: str
    amount: str
    currency: str
    provider: str
    payment_id: str
    phone: str | None = None  # the payer's WhatsApp number; the hub fills it from the link's message if None


@dataclass
class Skip:
    """Record why nothing was done (no phone, invalid phone, no consent…)."""
    reason: str


Action = (SendTemplate | SendText | ScheduleSend | SendPaymentLink | CancelScheduled | UpsertContact | WriteBack
          | Emit | DisableInstallation | RecordRevenue | PaymentReceived | Skip)
ACTION_TYPES = (SendTemplate, SendText, CancelScheduled, UpsertContact, WriteBack, Emit, DisableInstallation,
                RecordRevenue, PaymentReceived, Skip)
