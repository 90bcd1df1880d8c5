"""Mark a customer's message read, when the connection's read receipts policy allows it."""
from __future__ import annotations

import logging

from flask import request

from hub.api import owned, runtime, workspace_blueprint
from hub.api.contacts import MessageOut
from hub.api.errors import ApiError
from hub.core.models import Connection, Message
from hub.core.whatsapp import reads
from hub.core.whatsapp.graph import Graph, GraphError

log = logging.getLogger(__name__)
bp = workspace_blueprint("reads", "Read receipts (per-connection policy)")


@bp.route("/messages/<pid(msg):message_id>/read", methods=["POST"])
@bp.response(200, MessageOut)
def mark_read(message_id):
    """Mark a customer's message (and their earlier ones on that number) read: blue ticks for the
    customer, and on a Coexistence number a read chat in the owner's Business app. Only when the
    number's ``read_receipts`` policy is ``on``: 409 ``read_receipts_off`` /
    ``read_receipts_agent_replied`` otherwise. The typing indicator goes only with a reply
    (``POST /messages`` with ``reply_to`` and ``typing``): 422 here."""
    body = request.get_json(silent=True)
    if isinstance(body, dict) and body.get("typing"):
        raise ApiError(422, "typing_needs_reply", "the typing indicator is shown only with a reply: "
                                                  "POST /api/v1/messages with reply_to and typing: true")
    rt = runtime()
    with rt.db.session() as session:
        message = owned(session, Message, message_id)
        if message.direction != "in":
            raise ApiError(422, "not_inbound", "only a customer's message can be marked read")
        conn = session.get(Connection, message.connection_id)
        try:
            reads.check(conn, reply=False)
        except reads.ReadRefused as refused:
            log.info("mark read of message %s refused by the policy of %s: %s", message.id, conn.id, refused.code)
            raise ApiError(409, refused.code, refused.message, read_receipts=reads.policy(conn)) from refused
        try:
            reads.mark_read(session, Graph.from_settings(rt.settings), conn, message)
        except GraphError as exc:
            raise ApiError(502, "graph_error", f"Meta refused the read receipt: {exc}",
                           graph_error=exc.as_dict()) from exc
        session.refresh(message)
        return message
