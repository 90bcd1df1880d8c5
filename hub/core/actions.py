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
    """Send a template later; an existing scheduled send with the same ``cancel_key`` is moved."""
    after: dt.timedelta | int = 0  # seconds or timedelta from now
    cancel_key: str | None = None

    def due_at(self, now: dt.datetime) -> dt.datetime:
        delay = self.after if isinstance(self.after, dt.timedelta) else dt.timedelta(seconds=self.after)
        return now + delay


@dataclass
class CancelScheduled:
    """Cancel every not-yet-sent send with this ``cancel_key`` in the workspace."""
    cancel_key: str


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
class Skip:
    """Record why nothing was done (no phone, invalid phone, no consent…)."""
    reason: str


Action = (SendTemplate | SendText | ScheduleSend | CancelScheduled | UpsertContact | WriteBack | Emit
          | DisableInstallation | RecordRevenue | Skip)
ACTION_TYPES = (SendTemplate, SendText, CancelScheduled, UpsertContact, WriteBack, Emit, DisableInstallation,
                RecordRevenue, Skip)
