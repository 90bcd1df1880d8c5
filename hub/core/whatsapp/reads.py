"""Read receipts and the typing indicator, under each connection's policy.

Marking a customer's message read (``{"status": "read", "message_id": …}`` on the number's
``/messages`` edge) shows the customer blue ticks and marks the earlier messages of the chat
read too; the optional ``typing_indicator`` shows "typing…" until the reply or 25 seconds. On a
Coexistence number the chat is the owner's chat in the WhatsApp Business app as well, so the hub
never marks it read unless the connection's ``read_receipts`` policy says so:

* ``off`` (default for Coexistence numbers): never.
* ``agent_replied``: only when an agent replies through the API (``POST /messages`` with
  ``reply_to``): the replied-to message, and so the customer's messages before it, just before
  the reply goes out.
* ``on`` (default for plain Cloud API numbers): on a reply too, and on request
  (``POST /messages/{id}/read``).

The typing indicator only goes with a reply (``typing: true`` with ``reply_to``), and needs a
policy that allows marking read, since Meta sends it with the read receipt.
"""
from __future__ import annotations

import logging

from sqlalchemy import select, update

from hub.core.logs import event
from hub.core.models import Connection, Message, utcnow
from hub.core.whatsapp.graph import Graph, GraphError

log = logging.getLogger(__name__)
POLICIES = ("off", "on", "agent_replied")


class ReadRefused(Exception):
    """The policy forbids it: a stable ``code`` and a message for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def policy(conn: Connection) -> str:
    """The connection's policy; unset means ``off`` for Coexistence numbers, ``on`` otherwise."""
    return conn.read_receipts or ("off" if conn.mode == "coexistence" else "on")


def check(conn: Connection, *, reply: bool) -> None:
    """Raise ReadRefused unless the policy allows marking read now (``reply``: with an API reply)."""
    current = policy(conn)
    if current == "off":
        why = (", the default for Coexistence numbers: it would mark the chat read in the owner's WhatsApp "
               "Business app too") if conn.mode == "coexistence" else ""
        raise ReadRefused("read_receipts_off", (
            f"connection {conn.id} never marks messages read (read_receipts: off{why}); "
            'PATCH /api/v1/connections/{id} {"read_receipts": "agent_replied"} or "on" changes it'))
    if current == "agent_replied" and not reply:
        raise ReadRefused("read_receipts_agent_replied", (
            f"connection {conn.id} marks messages read only when an agent replies (read_receipts: agent_replied): "
            "send the reply with POST /api/v1/messages {\"reply_to\": wamid}"))


def payload(wamid: str, typing: bool = False) -> dict:
    """The Graph body of a read receipt (with the typing indicator when ``typing``)."""
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
    if typing:
        body["typing_indicator"] = {"type": "text"}
    return body


def mark_read(session, graph: Graph, conn: Connection, message: Message, *, typing: bool = False,
              reason: str = "request") -> int:
    """Send the read receipt for ``message`` (Graph errors propagate) and stamp ``read_at`` on it
    and the customer's earlier unread messages on this number; returns how many were stamped."""
    graph.request("POST", f"{conn.phone_number_id}/messages", conn.access_token, json=payload(message.wamid, typing))
    stamped = stamp_read(session, conn.id, message)
    event(log, "messages marked read", connection_id=conn.id, wamid=message.wamid, messages=stamped,
          typing=typing, reason=reason, policy=policy(conn))
    return stamped


def stamp_read(session, connection_id: str, message: Message) -> int:
    """``read_at`` on ``message`` and the same customer's earlier inbound messages on this number."""
    same_chat = Message.contact_id == message.contact_id if message.contact_id is not None \
        else Message.id == message.id
    result = session.execute(update(Message).where(
        Message.connection_id == connection_id, Message.direction == "in", same_chat,
        Message.timestamp <= message.timestamp, Message.read_at.is_(None)).values(read_at=utcnow()),
        execution_options={"synchronize_session": False})
    return result.rowcount or 0


def before_reply(send, conn: Connection) -> dict | None:
    """The read receipt to send just before an API reply goes out, or None (not a reply, not an
    agent's reply through the API, or the policy is ``off``)."""
    if not send.reply_to or send.origin != "api" or policy(conn) == "off":
        return None
    return payload(send.reply_to, bool(send.typing))


def mark_before_reply(rt, graph: Graph, connection_id: str, number: str, token: str, body: dict) -> bool:
    """Send the reply's read receipt (a failure is logged; the reply still goes) and stamp ``read_at``."""
    try:
        graph.request("POST", f"{number}/messages", token, json=body)
    except GraphError as exc:
        log.warning("read receipt before the reply to %s not sent: %s", body.get("message_id"), exc)
        return False
    with rt.db.session() as session:
        message = session.scalars(select(Message).where(Message.connection_id == connection_id,
                                                        Message.wamid == body["message_id"])).first()
        stamped = stamp_read(session, connection_id, message) if message is not None else 0
    event(log, "messages marked read", connection_id=connection_id, wamid=body["message_id"], messages=stamped,
          typing="typing_indicator" in body, reason="agent_replied")
    return True
