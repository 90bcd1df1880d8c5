"""Payment links in WhatsApp messages, across connectors (``docs/payment-links.md``).

``SendPaymentLink`` is stored first, as an outbox row of kind ``paylink`` (at-least-once,
retried with the outbox's backoff, dead-lettered and replayable like a write-back). Its job,
when the row is due, asks the payment connectors for a link (``coexhub_payment_link``: the
provider the action names, else each installed connector by name, oldest installation first),
keeps the link on the row, and creates the send with the link's URL in the template's URL
button (or as the last body parameter when the template has no URL button).
The send's idempotency key is the action's, else ``paylink:<row id>``: a retried or doubled job
never creates two sends, and the link stored on the row is reused by every later attempt.

The reference given to the provider is ``"<installation id>:<payment_reference>"``: the
asking installation, then the key its connector chose (``order:123``). A payment connector's
``PaymentReceived(reference=…)`` is routed back to that installation — only within the
payment's own workspace — and its connector's ``on_payment`` sees its own key again.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from hub.core.actions import PaymentLink, PaymentReceived, SendPaymentLink, SendTemplate
from hub.core.connectors import Context, _collect
from hub.core.logs import event
from hub.core.metrics import count_job
from hub.core.models import Installation, OutboundDelivery, Send, utcnow
from hub.core.outbox import RETRY_SECONDS, outbox_job
from hub.core.public_errors import public_error
from hub.core.runtime import current
from hub.core.sending.templates import find_template, placeholders

if TYPE_CHECKING:
    from hub.core.execute import Executor

log = logging.getLogger(__name__)
KIND = "paylink"


class Refused(Exception):
    """A payment link that no retry can create (no provider installed, a link the template's
    URL button cannot hold): the row ends ``failed`` with this reason, replayable by a user."""


def reference_for(installation_id: str, key: str) -> str:
    """The reference a provider stores on the link: ``"<installation id>:<connector's key>"``."""
    return f"{installation_id}:{key}"


def split_reference(reference: Any) -> tuple[str, str] | None:
    """``(installation id, connector's key)`` of a reference made by ``reference_for``, or None."""
    installation_id, sep, key = str(reference or "").partition(":")
    return (installation_id, key) if sep and installation_id and key else None


# -- storing the action (in the event's transaction) -------------------------------------------
def store(ex: "Executor", action: SendPaymentLink) -> None:
    """Executor side of ``SendPaymentLink``: one outbox row, due now or at the action's time."""
    problem = _problem(ex, action)
    if problem:
        ex.outcome["skipped"].append(problem)
        event(log, "payment link not stored", workspace_id=ex.workspace_id, reason=problem)
        return
    now = utcnow()
    due = action.due_at(now)
    payload = {"to": action.to, "template": action.template, "language": action.language,
               "params": action.params, "category": action.category, "name": action.name,
               "reference": dict(action.reference or {}), "idempotency_key": action.idempotency_key,
               "cancel_key": action.cancel_key, "group": action.group,
               "amount": str(Decimal(str(action.amount))), "currency": action.currency.strip().upper(),
               "payment_reference": reference_for(ex.installation.id, action.payment_reference),
               "description": action.description,
               "provider": str(action.provider or "").strip().lower() or None,  # "Stripe " names stripe
               "customer": {"phone": action.to, "name": action.name, "email": action.email}}
    key = action.idempotency_key
    existing = ex.session.scalars(select(OutboundDelivery).where(
        OutboundDelivery.workspace_id == ex.workspace_id, OutboundDelivery.kind == KIND,
        OutboundDelivery.target == key)).first() if key else None
    if existing is not None:  # the same message asked again (a redelivered or updated order)
        if existing.status == "pending" and existing.attempts == 0:
            existing.payload, existing.next_attempt_at = payload, due  # rescheduled, like ScheduleSend
            ex.outcome.setdefault("payment_links", []).append(existing.id)
        else:
            ex.outcome["skipped"].append(f"payment link {key} already {existing.status}")
        return
    if key and ex.session.scalars(select(Send.id).where(Send.workspace_id == ex.workspace_id,
                                                        Send.idempotency_key == key)).first():
        ex.outcome["skipped"].append(f"payment link {key} already sent")
        return
    row = OutboundDelivery(workspace_id=ex.workspace_id, kind=KIND, target=key or "", payload=payload,
                           installation_id=ex.installation.id, event_type="payment_link",
                           next_attempt_at=due, enqueued_at=now if due <= now else None)
    ex.session.add(row)
    ex.session.flush()
    if not key:
        row.target = f"paylink:{row.id}"
    if due <= now:
        ex.jobs.append(outbox_job(row))
    ex.outcome["outbox"] += 1
    ex.outcome.setdefault("payment_links", []).append(row.id)
    event(log, "payment link stored", workspace_id=ex.workspace_id, delivery_id=row.id, due=due,
          installation_id=ex.installation.id)


def _problem(ex: "Executor", action: SendPaymentLink) -> str | None:
    if ex.installation is None:
        return "SendPaymentLink needs an installation (the paid link is routed back to it)"
    if not action.payment_reference or not action.to or not action.template:
        return "SendPaymentLink without payment_reference, to or template"
    try:
        amount = Decimal(str(action.amount))
    except (InvalidOperation, ValueError):
        return f"SendPaymentLink amount {action.amount!r} is not a decimal"
    if not amount.is_finite() or amount <= 0:
        return f"SendPaymentLink amount {action.amount!r} is not positive"
    if len((action.currency or "").strip()) != 3:
        return f"SendPaymentLink currency {action.currency!r} is not a 3-letter code"
    return None


def cancel(ex: "Executor", cancel_key: str | None, group: str | None) -> int:
    """Cancel pending (not yet created) payment-link rows with this cancel key or group."""
    rows = ex.session.scalars(select(OutboundDelivery).where(
        OutboundDelivery.workspace_id == ex.workspace_id, OutboundDelivery.kind == KIND,
        OutboundDelivery.status.in_(("pending", "delivering")))).all()
    hits = [row for row in rows if (cancel_key and row.payload.get("cancel_key") == cancel_key)
            or (group and row.payload.get("group") == group)]
    for row in hits:  # a job creating the link right now sees the status and sends nothing
        row.status, row.last_error = "cancelled", "cancelled: " + (cancel_key or "group " + str(group))
        event(log, "payment link cancelled", delivery_id=row.id, workspace_id=ex.workspace_id)
    return len(hits)


# -- the job -------------------------------------------------------------------------------------
def deliver(delivery_id: int) -> str:
    """RQ job: create the link (once) and the send (once) for one ``paylink`` row."""
    rt = current()
    with rt.db.session() as session:
        claimed = session.execute(update(OutboundDelivery).where(
            OutboundDelivery.id == delivery_id, OutboundDelivery.kind == KIND, OutboundDelivery.status == "pending")
            .values(status="delivering", enqueued_at=utcnow(), attempts=OutboundDelivery.attempts + 1)).rowcount
        if not claimed:
            return "skipped"  # another worker has it, or it is finished or cancelled
        row = session.get(OutboundDelivery, delivery_id)
        payload, workspace_id = dict(row.payload), row.workspace_id
    link, error, jobs = payload.get("link"), None, []
    try:
        if not link:
            link = _create_link(rt, workspace_id, payload)
            with rt.db.session() as session:  # kept at once: a later attempt reuses it
                row = session.get(OutboundDelivery, delivery_id)
                row.payload = {**row.payload, "link": link}
        jobs = _send(rt, delivery_id, link)
    except Exception as exc:  # recorded on the row below: retried, dead-lettered or refused
        error = exc
    status = _finish(rt, delivery_id, error)
    from hub.core.processing import enqueue_all  # (processing imports the executor, which imports us)

    enqueue_all(rt, jobs)
    count_job(rt, "paylink", status)
    return status


def providers(rt, workspace_id: str) -> list[str]:
    """Connector names of the workspace's enabled installations, oldest installation first: the
    order in which payment connectors are asked for a link when the store names none."""
    with rt.db.session() as session:
        names = session.scalars(select(Installation.connector).where(
            Installation.workspace_id == workspace_id, Installation.enabled.is_(True))
            .order_by(Installation.created_at, Installation.id)).all()
    return list(dict.fromkeys(names))


def _create_link(rt, workspace_id: str, payload: dict) -> dict:
    ask = dict(workspace_id=workspace_id, amount=payload["amount"], currency=payload["currency"],
               reference=payload["payment_reference"], customer=dict(payload.get("customer") or {}),
               description=payload.get("description") or "")
    # A named provider is asked alone. Without one, each installed connector is asked by name,
    # oldest installation first (deterministic, whatever order the plugins were registered in);
    # then, for a plugin that answers without an installation of its own name, unnamed.
    names = [payload["provider"]] if payload.get("provider") else [*providers(rt, workspace_id), None]
    result = None
    for name in names:
        result = rt.plugins.hook.coexhub_payment_link(**ask, provider=name)
        if result is not None:
            break
    if result is None:
        wanted = f" named {payload['provider']!r}" if payload.get("provider") else ""
        raise Refused(f"no payment connector{wanted} is installed and enabled in this workspace")
    if not isinstance(result, PaymentLink) or not str(result.url).startswith(("https://", "http://")):
        raise RuntimeError(f"coexhub_payment_link returned {type(result).__name__}, not a PaymentLink with a URL")
    event(log, "payment link created", workspace_id=workspace_id, provider=result.provider, link_id=result.link_id)
    return {"url": result.url, "provider": result.provider, "link_id": result.link_id}


def _send(rt, delivery_id: int, link: dict) -> list[tuple]:
    from hub.core.execute import Executor

    with rt.db.session() as session:
        row = session.get(OutboundDelivery, delivery_id)
        if row.status != "delivering":  # cancelled while the link was being created
            return []
        p = row.payload
        installation = session.get(Installation, row.installation_id) if row.installation_id else None
        ex = Executor(session, row.workspace_id, installation=installation)
        route = ex.route(p["to"], p["template"], p["language"])
        waba_id = route.connection.waba_id if route.connection is not None else None
        params = with_link(p.get("params"), link["url"],
                           url_button(session, row.workspace_id, waba_id, p["template"], p["language"]))
        key = p.get("idempotency_key") or f"paylink:{row.id}"
        action = SendTemplate(to=p["to"], template=p["template"], language=p["language"], params=params,
                              category=p.get("category"), idempotency_key=key, name=p.get("name"),
                              reference={**(p.get("reference") or {}), "payment_link": link["link_id"],
                                         "payment_provider": link["provider"]})
        send = ex._send(action, cancel_key=p.get("cancel_key"), group=p.get("group"))
        session.flush()
        row.payload = {**row.payload, "send_id": send.id}
        event(log, "payment link send created", delivery_id=row.id, send_id=send.id, status=send.status)
        return ex.jobs


def url_button(session, workspace_id: str, waba_id: str | None, name: str, language: str) -> tuple[int, str] | None:
    """``(index, fixed URL part)`` of the template's URL button with a ``{{1}}`` suffix, if it has one."""
    template = find_template(session, workspace_id, waba_id, name, language) if waba_id else None
    for component in (template.components or []) if template is not None else []:
        if str(component.get("type", "")).upper() != "BUTTONS":
            continue
        for index, button in enumerate(component.get("buttons") or []):
            url = str(button.get("url") or "")
            if str(button.get("type", "")).upper() == "URL" and placeholders(url):
                return index, url[:url.index("{{")]
    return None


def with_link(params: Any, url: str, button: tuple[int, str] | None) -> Any:
    """``params`` with the link added: as the URL button's suffix, else as the last body parameter."""
    spec = dict(params) if isinstance(params, dict) else {"body": list(params or [])}
    if button is None:
        spec["body"] = [*(spec.get("body") or []), url]
        return spec["body"] if not isinstance(params, dict) else spec
    index, fixed = button
    if not url.startswith(fixed):
        raise Refused(f"the payment link {url} does not start with the template's button URL {fixed}{{{{1}}}}: "
                      "set the button's URL to the payment provider's link prefix")
    others = [b for b in spec.get("buttons") or [] if int(b.get("index", -1)) != index]
    spec["buttons"] = [*others, {"index": index, "sub_type": "url", "params": [url[len(fixed):]]}]
    return spec


def _finish(rt, delivery_id: int, error: Exception | None) -> str:
    with rt.db.session() as session:
        row = session.get(OutboundDelivery, delivery_id)
        row.enqueued_at = None
        if row.status == "cancelled":
            pass
        elif error is None:
            row.status, row.delivered_at, row.last_error = "delivered", utcnow(), None
        else:
            row.last_error = str(error)[:500] if isinstance(error, Refused) else public_error(error, row.payload)
            if isinstance(error, Refused):
                row.status = "failed"
                event(log, "payment link refused", level=logging.WARNING, delivery_id=row.id, reason=row.last_error)
            elif row.attempts > len(RETRY_SECONDS):
                row.status = "dead"
                event(log, "payment link dead", level=logging.ERROR, delivery_id=row.id, attempts=row.attempts,
                      error=row.last_error[:300])
            else:
                row.status = "pending"
                row.next_attempt_at = utcnow() + dt.timedelta(seconds=RETRY_SECONDS[row.attempts - 1])
                event(log, "payment link retry scheduled", level=logging.WARNING, delivery_id=row.id,
                      attempts=row.attempts, retry_at=row.next_attempt_at, error=row.last_error[:300])
        return row.status


# -- a paid link (in the payment webhook's transaction) -------------------------------------------
def received(ex: "Executor", payment: PaymentReceived) -> None:
    """Hand ``payment`` to the installation that asked for the link and run what it returns."""
    parsed = split_reference(payment.reference)
    installation = ex.session.get(Installation, parsed[0]) if parsed else None
    if installation is None or installation.workspace_id != ex.workspace_id:  # never another workspace's
        ex.outcome["skipped"].append(f"payment {payment.payment_id}: reference {str(payment.reference)[:80]!r} "
                                     "is no payment link of this workspace")
        event(log, "payment not routed", workspace_id=ex.workspace_id, payment_id=payment.payment_id)
        return
    connector = current().plugins.connector(installation.connector)
    if connector is None or not installation.enabled:
        ex.outcome["skipped"].append(f"payment {payment.payment_id}: installation {installation.id} is disabled "
                                     "or its connector is not installed")
        return
    ctx = Context(workspace_id=installation.workspace_id, installation_id=installation.id,
                  config={**(installation.config or {}), **(installation.secrets or {})},
                  state=dict(installation.state or {}))
    phone = payment.phone or _phone_for(ex, installation.id, payment.reference)
    actions = _collect([connector.on_payment(dataclasses.replace(payment, reference=parsed[1], phone=phone), ctx)])
    nested = [a for a in actions if isinstance(a, PaymentReceived)]
    actions = [a for a in actions if not isinstance(a, PaymentReceived)]
    sub = type(ex)(ex.session, ex.workspace_id, installation=installation, origin=ex.origin)
    outcome = sub.run(actions)
    ex.jobs += sub.jobs
    for name in ("sends", "skipped"):
        ex.outcome[name] += outcome[name]
    for name in ("cancelled", "outbox"):
        ex.outcome[name] += outcome[name]
    ex.outcome["skipped"] += ctx.notes + ["PaymentReceived from on_payment ignored"] * len(nested)
    if ctx.state != (installation.state or {}):
        installation.state = dict(ctx.state)
    ex.outcome.setdefault("payments", []).append({"installation_id": installation.id, "reference": parsed[1],
                                                  "provider": payment.provider, "payment_id": payment.payment_id})
    event(log, "payment link paid", workspace_id=ex.workspace_id, installation_id=installation.id,
          provider=payment.provider, payment_id=payment.payment_id, actions=len(actions))


def _phone_for(ex: "Executor", installation_id: str, reference: str, recent: int = 500) -> str | None:
    """Who the link with this reference was sent to (for revenue attribution), from the
    installation's recent payment-link rows."""
    rows = ex.session.scalars(select(OutboundDelivery).where(
        OutboundDelivery.workspace_id == ex.workspace_id, OutboundDelivery.kind == KIND,
        OutboundDelivery.installation_id == installation_id).order_by(OutboundDelivery.id.desc()).limit(recent))
    return next((row.payload.get("to") for row in rows if row.payload.get("payment_reference") == reference), None)
