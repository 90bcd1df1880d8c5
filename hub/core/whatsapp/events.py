"""Domain events: what the hub tells plugins about WhatsApp."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = ("message.received", "message.echoed", "message.status", "contact.synced", "history.chunk",
               "account.updated", "template.status", "contact.opted_out", "contact.user_id_changed")


@dataclass
class DomainEvent:
    type: str
    workspace_id: str
    connection_id: str | None
    data: dict[str, Any] = field(default_factory=dict)
    contact_id: int | None = None
    button: str | None = None  # quick-reply payload / interactive reply id, when there is one

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "workspace_id": self.workspace_id, "connection_id": self.connection_id,
                "contact_id": self.contact_id, "button": self.button, "data": self.data}
