"""Execute the actions handlers return, inside the event's transaction.

Rows are written in the caller's session; the jobs they need are collected in ``jobs`` and
enqueued by the caller *after* commit (the scheduler re-enqueues them if Redis loses them).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hub.core import contacts, paylinks
from hub.core.actions import (Action, CancelScheduled, DisableInstallation, Emit, PaymentReceived, RecordRevenue,
    ScheduleSend, SendPaymentLink, SendTemplate, SendText, Skip, UpsertContact, WriteBack)
from hub.core.models import Attribution, Contact, Installation, OutboundDelivery, Send, Workspace, utcnow
from hub.core.outbox import outbox_job
from hub.core.sending import routing
from hub.core.sending.pipeline import jobs_for
from hub.core.sending.sends import claim_token, create_send, recipient

PENDING_SEND_STATES = ("scheduled", "queued")


class Executor:
    def __init__(self, session: Session, workspace_id: str, *, installation: Installation | None = None,
                 origin: str = "connector"):
        self.session, self.workspace_id, self.installation = session, workspace_id, installation
        self.origin = origin
        self.jobs: list[tuple[str, str, tuple[Any, ...]]] = []
        self.outcome: dict[str, Any] = {"sends": [], "cancelled": 0, "skipped": [], "outbox": 0}

    def route(self, to: str, template: str | None = None, language: str | None = None,
              contact: Contact | None = None) -> routing.Route:
        """The number a send to ``to`` leaves from: where the customer last wrote, else the
        installation's pinned number, else the workspace's oldest (``routing.choose``)."""
        return routing.choose(self.session, self.workspace_id, to=to, contact=contact,
                              installation=self.installation, template=template, language=language)

    def run(self, actions: list[Action]) -> dict[str, Any]:
        for action in actions:
            getattr(self, "_" + type(action).__name__)(action)
        return self.outcome

    # -- one method per action type --------------------------------------------------------
    def _send(self, action: SendTemplate | SendText, not_before: dt.datetime | None = None,
              cancel_key: str | None = None, group: str | None = None):
        is_text = isinstance(action, SendText)
        contact = recipient(self.session, self.workspace_id, action.to, self.origin, action.name)  # read once
        route = self.route(action.to, None if is_text else action.template, None if is_text else action.language,
                           contact=contact)
        send, created = create_send(
            self.session, workspace_id=self.workspace_id, connection=route.connection, to=action.to,
            kind="text" if is_text else "template", origin=self.origin,
            text=action.text if is_text else None,
            template=None if is_text else action.template, language=None if is_text else action.language,
            params=None if is_text else action.params, category=None if is_text else action.category,
            idempotency_key=action.idempotency_key, cancel_key=cancel_key, cancel_group=group,
            not_before=not_before,
            installation_id=self.installation.id if self.installation else None,
            reference=action.reference, name=action.name, connection_reason=route.reason,
            # a send with a cancel key stays ``queued`` (CancelScheduled may still reach it); the rest
            # are claimed by this transaction and delivered by one ``deliver`` job
            claim_token=None if cancel_key or group else claim_token(self.session), contact=contact)
        if created:
            self.session.flush()
            self.jobs += jobs_for(send)
        self.outcome["sends"].append(send.id)
        return send

    _SendTemplate = _send
    _SendText = _send

    def _ScheduleSend(self, action: ScheduleSend) -> None:
        due = action.due_at(utcnow())
        if action.cancel_key:
            existing = self.session.scalars(select(Send).where(
                Send.workspace_id == self.workspace_id, Send.cancel_key == action.cancel_key,
                Send.status.in_(("scheduled", "queued", "sending", "sent")))).first()
            if existing is not None and existing.status == "scheduled":  # an update reschedules it
                contact = contacts.upsert(self.session, self.workspace_id, **contacts.recipient_keys(action.to),
                                          source=self.origin)
                existing.not_before, existing.params, existing.to = due, action.params, action.to
                existing.contact_id = contact.id if contact else existing.contact_id
                existing.template_name, existing.template_language = action.template, action.language
                existing.cancel_group = action.group
            if existing is not None:  # one send per cancel key: a reminder already out is not repeated
                self.outcome["sends"].append(existing.id)
                return
        self._send(action, not_before=due, cancel_key=action.cancel_key, group=action.group)

    def _CancelScheduled(self, action: CancelScheduled) -> None:
        which = [Send.cancel_key == action.cancel_key] if action.cancel_key else []
        which += [Send.cancel_group == action.group] if action.group else []
        if not which:
            self.outcome["skipped"].append("CancelScheduled without a cancel_key or a group")
            return
        result = self.session.execute(
            update(Send).where(Send.workspace_id == self.workspace_id, or_(*which),
                               Send.status.in_(PENDING_SEND_STATES))
            .values(status="cancelled", updated_at=utcnow(),
                    last_error="cancelled: " + (action.cancel_key or "group " + action.group)))
        self.outcome["cancelled"] += (result.rowcount or 0) + paylinks.cancel(self, action.cancel_key, action.group)

    def _SendPaymentLink(self, action: SendPaymentLink) -> None:
        """Stored as a ``paylink`` outbox row; its job creates the link and the send."""
        paylinks.store(self, action)

    def _PaymentReceived(self, action: PaymentReceived) -> None:
        """A paid link: the asking installation's ``on_payment`` runs in this transaction."""
        paylinks.received(self, action)

    def _UpsertContact(self, action: UpsertContact) -> None:
        contact = contacts.upsert(self.session, self.workspace_id, **contacts.recipient_keys(action.wa_id),
                                  source=self.origin, profile_name=action.name, marketing_consent=action.marketing_consent)
        contacts.add_tags(contact, action.tags)
        if action.attributes:
            contact.attributes = {**(contact.attributes or {}), **action.attributes}

    def _WriteBack(self, action: WriteBack) -> None:
        self._outbox(kind="writeback", target=action.target, payload=action.kwargs)

    def _Emit(self, action: Emit) -> None:
        """A connector's event: published like the hub's own (``hub.core.events.publish``)."""
        from hub.core.events import publish

        rows = publish(self.session, self.workspace_id, action.event, action.data,
                       installation_id=self.installation.id if self.installation else None)
        self.outcome["outbox"] += len(rows)

    def _DisableInstallation(self, action: DisableInstallation) -> None:
        if self.installation is not None:
            self.installation.enabled, self.installation.disabled_reason = False, action.reason[:200]

    def _RecordRevenue(self, action: RecordRevenue) -> None:
        """Credit a paid order to the latest attributable send to the same contact in the window."""
        contact = contacts.find_recipient(self.session, self.workspace_id, action.to)
        if contact is None:
            return
        days = (self.installation.config or {}).get("attribution_window_days") if self.installation else None
        days = days or (self.session.get(Workspace, self.workspace_id).settings or {}).get("attribution_window_days", 7)
        since = utcnow() - dt.timedelta(days=float(days))
        candidates = self.session.scalars(select(Send).where(
            Send.workspace_id == self.workspace_id, Send.contact_id == contact.id, Send.status == "sent",
            Send.sent_at >= since).order_by(Send.sent_at.desc())).all()
        send = next((s for s in candidates if (s.reference or {}).get("attributable")), None)
        if send is None:
            return
        exists = self.session.scalars(select(Attribution.id).where(
            Attribution.workspace_id == self.workspace_id, Attribution.order_id == str(action.order_id),
            Attribution.installation_id == (self.installation.id if self.installation else None))).first()
        if exists is None:
            self.session.add(Attribution(workspace_id=self.workspace_id, order_id=str(action.order_id),
                                         installation_id=self.installation.id if self.installation else None,
                                         amount=str(action.amount), currency=(action.currency or "").upper(),
                                         send_id=send.id, contact_id=contact.id))
            self.outcome["attributed"] = send.id

    def _Skip(self, action: Skip) -> None:
        self.outcome["skipped"].append(action.reason)

    def _outbox(self, *, kind: str, target: str, payload: dict, event_type: str | None = None):
        row = OutboundDelivery(workspace_id=self.workspace_id, kind=kind, target=target, payload=payload,
                               installation_id=self.installation.id if self.installation else None,
                               event_type=event_type, enqueued_at=utcnow())
        self.session.add(row)
        self.session.flush()
        self.jobs.append(outbox_job(row))
        self.outcome["outbox"] += 1
