"""The counts of a fault run, from the simulator's records and the database: each acked webhook
processed once, each accepted send at the simulator once, pacing per number, what is pending."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import func, select

from hub.core.models import InboundEvent, Message, Send
from hub.testing import sliding_max
from tests.faults.load import Item


@dataclass
class Counts:
    fault: str
    webhooks_acked: int = 0
    processed: int = 0
    lost: int = 0
    webhook_duplicates: int = 0
    sends_accepted: int = 0
    sent_at_sim: int = 0
    send_duplicates: int = 0
    max_per_second: int = 0
    pending_after: int = 0
    load_seconds: float = 0.0
    recovery_seconds: float | None = None
    waited_for_status: int = 0  # sends of unknown fate that waited out UNKNOWN_GRACE (documented)
    not_processed: list = field(default_factory=list)
    not_sent: list = field(default_factory=list)
    duplicated_sends: list = field(default_factory=list)

    COLUMNS = (
        "fault",
        "webhooks_acked",
        "processed",
        "webhook_duplicates",
        "lost",
        "sends_accepted",
        "sent_at_sim",
        "send_duplicates",
        "max_per_second",
        "pending_after",
        "load_seconds",
        "recovery_seconds",
        "waited_for_status",
    )

    def row(self) -> list:
        return [
            getattr(self, c)
            if c != "recovery_seconds" or self.recovery_seconds is None
            else round(self.recovery_seconds, 1)
            for c in self.COLUMNS
        ]


def count(
    db,
    sim,
    webhooks: list[Item],
    sends: list[Item],
    shop_installation: str,
    numbers: list[str],
    since: float,
    since_event: int,
    fault: str,
) -> Counts:
    """Counts for one phase: its webhooks (each acked one processed exactly once), its sends (each
    accepted one at the simulator exactly once) and the pacing of its numbers at the simulator."""
    c = Counts(fault)
    acked = [w for w in webhooks if w.acked]
    c.webhooks_acked = len(acked)
    with db.connect() as conn:
        rows = conn.execute(
            select(InboundEvent.id, InboundEvent.status, InboundEvent.body).where(
                InboundEvent.id > since_event
            )
        ).all()
        by_digest: dict[str, list[str]] = {}
        for _id, status, body in rows:
            by_digest.setdefault(hashlib.sha256(bytes(body)).hexdigest(), []).append(status)
        wamids = [w.wamid for w in acked if w.wamid]
        per_wamid = (
            dict(
                conn.execute(
                    select(Message.wamid, func.count())
                    .where(Message.wamid.in_(wamids))
                    .group_by(Message.wamid)
                ).all()
            )
            if wamids
            else {}
        )
        orders = {w.order_id for w in acked if w.order_id}
        connector_sends = [
            (sid, ref)
            for sid, ref in conn.execute(
                select(Send.id, Send.reference).where(Send.installation_id == shop_installation, Send.id > 0)
            )
        ]
        api_ids = {sid for s in sends if s.acked for sid in s.send_ids}
        wanted = {sid for sid, ref in connector_sends if str((ref or {}).get("order_id")) in orders} | api_ids
        statuses = (
            dict(conn.execute(select(Send.id, Send.status).where(Send.id.in_(wanted))).all())
            if wanted
            else {}
        )
    for w in acked:
        found = by_digest.get(w.digest, [])
        effect_ok = w.wamid is None or per_wamid.get(w.wamid, 0) == 1
        if not found:
            c.lost += 1
        elif found.count("processed") >= 1 and effect_ok:
            c.processed += 1
        else:
            c.not_processed.append((w.kind, found))
        c.webhook_duplicates += max(0, len(found) - 1) + (
            max(0, per_wamid.get(w.wamid, 0) - 1) if w.wamid else 0
        )
    c.webhook_duplicates += sum(max(0, len(s.send_ids) - 1) for s in sends)  # one key, two sends
    c.sends_accepted = len(wanted)
    with sim.lock:
        requests = [r for r in sim.requests if r["time"] >= since]
    at_sim: dict[int, int] = {}
    for r in requests:
        data = (r["body"] or {}).get("biz_opaque_callback_data") or ""
        if r["status"] == 200 and data.startswith("send:"):
            at_sim[int(data[5:])] = at_sim.get(int(data[5:]), 0) + 1
    for sid in wanted:
        n = at_sim.get(sid, 0)
        if n >= 1 and statuses.get(sid) == "sent":
            c.sent_at_sim += 1
        else:
            c.not_sent.append((sid, statuses.get(sid), n))
    if c.not_sent:
        c.not_sent = _describe(db, c.not_sent)
        if n > 1:
            c.send_duplicates += n - 1
            c.duplicated_sends.append((sid, n))
    c.max_per_second = max(
        [sliding_max([r["time"] for r in requests if r["phone_number_id"] == number]) for number in numbers]
        or [0]
    )
    return c


def _describe(db, not_sent: list[tuple]) -> list[dict]:
    """What the database says of sends that did not go out (for the failure message)."""
    table = Send.__table__
    wanted = [
        col
        for col in (
            "id",
            "status",
            "attempts",
            "hold_reason",
            "not_before",
            "updated_at",
            "attempted_at",
            "last_error",
        )
        if col in table.c
    ]
    with db.connect() as conn:
        rows = {
            r["id"]: dict(r)
            for r in conn.execute(
                select(*[table.c[col] for col in wanted]).where(table.c.id.in_([x[0] for x in not_sent]))
            ).mappings()
        }
    return [{**rows.get(sid, {"id": sid}), "at_sim": n} for sid, _status, n in not_sent]


def pending(db, since_event: int = 0, since_send: int = 0) -> int:
    """Work the hub still owes: pending events and queued/sending (or due scheduled) sends, of
    those stored after ``since_event`` / ``since_send`` (0: everywhere)."""
    from hub.core.models import utcnow

    with db.connect() as conn:
        events = conn.execute(
            select(func.count())
            .select_from(InboundEvent)
            .where(InboundEvent.status == "pending", InboundEvent.id > since_event)
        ).scalar()
        sends = conn.execute(
            select(func.count())
            .select_from(Send)
            .where(
                Send.id > since_send,
                Send.status.in_(("queued", "sending"))
                | ((Send.status == "scheduled") & (Send.not_before <= utcnow())),
            )
        ).scalar()
    return int(events) + int(sends)


def unknown_fate(db, since_send: int = 0) -> int:
    """Sends whose worker died after marking the call and before writing its result: the hub
    cannot know whether Meta has them, so they wait for their status webhook up to
    ``UNKNOWN_GRACE`` (docs/delivery.md) before being sent again."""
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Send).where(
            Send.id > since_send, Send.status == "sending", Send.attempted_at.is_not(None))).scalar())


def high_water(db) -> tuple[int, int]:
    """The last inbound event id and send id (a phase counts what comes after)."""
    with db.connect() as conn:
        return (
            conn.execute(select(func.coalesce(func.max(InboundEvent.id), 0))).scalar(),
            conn.execute(select(func.coalesce(func.max(Send.id), 0))).scalar(),
        )
