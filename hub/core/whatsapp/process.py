"""Process one stored Meta envelope: route each change, normalize it, tell the plugins.

Unknown fields and changes for numbers no workspace has connected are kept (the event row
stays, marked ``unrouted`` when nothing in it was routable) and counted, never dropped. Each
change and each item in it runs in its own savepoint: a malformed one is skipped and listed in
the event's ``outcome["skipped"]`` with the reason, and the rest of the envelope is saved.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable

from sqlalchemy import select

from hub.core import contacts, tenancy
from hub.core.connectors import Context
from hub.core.events import emit
from hub.core.execute import Executor
from hub.core.metrics import count
from hub.core.models import Connection, InboundEvent, Installation, Workspace
from hub.core.sending.pipeline import jobs_for
from hub.core.sending.sends import claim_token, create_send
from hub.core.whatsapp import account, messages, sync
from hub.core.whatsapp.events import DomainEvent
from hub.core.whatsapp.items import Items

log = logging.getLogger(__name__)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
BY_NUMBER = {"smb_message_echoes": messages.echoes, "smb_app_state_sync": sync.state_sync,
             "history": sync.history, "user_preferences": account.user_preferences}
BY_WABA = {"account_update", "message_template_status_update", "phone_number_quality_update",
           "message_template_quality_update", "template_category_update", "business_capability_update"}


def process_whatsapp(rt, session, event: InboundEvent):
    envelope = load(event.body)
    if not isinstance(envelope, dict):
        log.warning("inbound event %s is not a WhatsApp envelope; kept, not processed", event.id)
        return "unrouted", {"reason": "the body is not a JSON object", "changes": 0}, []
    domain: list[DomainEvent] = []
    jobs: list[tuple[str, str, tuple]] = []
    items = Items(session, domain, jobs)
    outcome = {"changes": 0, "unrouted": 0, "ignored_fields": [], "events": 0, "sends": []}
    workspaces: dict[str, None] = {}
    # each workspace's row, read once per event (the session's identity map holds rows weakly)
    workspace: Callable[[str], Workspace | None] = functools.cache(functools.partial(session.get, Workspace))
    for entry_at, entry in items.each(envelope, "entry", ""):
        for at, change in items.each(entry, "changes", entry_at):
            outcome["changes"] += 1
            conns = _route(session, entry, change, at, items)
            if conns is None:  # skipped: recorded in the outcome
                continue
            if not conns:
                outcome["unrouted"] += 1
                count(rt.redis, rt.settings.key_prefix, "ingest", provider="whatsapp", result="unrouted")
                continue
            workspaces.update(dict.fromkeys(c.workspace_id for c in conns))
            with items.isolated(at):
                _apply(session, change["field"], change.get("value") or {}, conns, outcome, items,
                       f"{at}.value", workspace)
    tenancy.link(session, event, workspaces)  # listed under every workspace it concerns
    for n, item in enumerate(list(domain)):  # outward events (subscriptions), each isolated
        with items.isolated(f"events[{n}] ({item.type}) published"):
            emit.whatsapp(session, item)
    for n, item in enumerate(list(domain)):  # a plugin failing on one event does not sink the others
        sends: list[int] = []
        with items.isolated(f"events[{n}] ({item.type}) in plugins") as run:
            for executor, actions in plugin_actions(rt, session, item, workspace(item.workspace_id)):
                executor.run(actions)
                jobs += executor.jobs
                sends += executor.outcome["sends"]
        if run.ok:
            outcome["sends"] += sends
    outcome["events"] = len(domain)
    outcome.update(items.outcome())
    status = "unrouted" if outcome["changes"] and outcome["unrouted"] == outcome["changes"] else "processed"
    return status, outcome, jobs


def load(body: bytes):
    """The parsed envelope (None when it is not JSON). Lone UTF-16 surrogates (``"\\ud800"``),
    which no database column can store, become U+FFFD; everything else is kept as sent."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if b"\\ud" in body or b"\\uD" in body:
        try:
            envelope = _clean(envelope)
        except RecursionError:
            return None
    return envelope


def _clean(value):
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _route(session, entry: dict, change: dict, at: str, items: Items) -> list[Connection] | None:
    """The connections a change is for (``hub.core.tenancy``); None when the change is
    malformed (then it is recorded as skipped)."""
    field, value = change.get("field"), change.get("value")
    if not isinstance(field, str):
        items.skip(at, "field is not a string")
        return None
    if value is not None and not isinstance(value, dict):
        items.skip(at, "value is not an object")
        return None
    if value and value.get("metadata") is not None and not isinstance(value["metadata"], dict):
        items.skip(at, "value.metadata is not an object")
        return None
    return tenancy.change_connections(session, entry, field, value or {})


def _apply(session, field: str, value: dict, conns: list[Connection], outcome: dict, items: Items,
           at: str, workspace: Callable[[str], Workspace | None]) -> None:
    """Normalize one routed change into rows and domain events."""
    domain, jobs = items.domain, items.jobs
    if field in BY_WABA:
        if field == "account_update":
            account.account_update(session, conns, value, domain)
        elif field == "message_template_status_update":
            account.template_status(session, conns, conns[0].waba_id, value, domain)
        elif field == "phone_number_quality_update":
            account.quality_update(session, conns, value, domain)
        elif field == "business_capability_update":
            account.capability_update(session, conns, value, domain)
        else:
            outcome["ignored_fields"].append(field)
        return
    conn = conns[0]
    if field == "messages":
        opt_out = OptOut(session, conn, jobs, domain, workspace(conn.workspace_id))
        messages.customer_messages(session, conn, value, domain, opt_out, items, at)
        messages.statuses(session, conn, value, domain, items, at)
        for error in value["errors"] if isinstance(value.get("errors"), list) else ():
            log.warning("Meta reported a system error for %s: %s", conn.phone_number_id, error)
    elif field in BY_NUMBER:
        BY_NUMBER[field](session, conn, value, domain, items, at)
    else:
        outcome["ignored_fields"].append(field)


class OptOut:
    """STOP/START keywords (workspace setting ``opt_out_keywords`` / ``opt_in_keywords``)."""

    def __init__(self, session, conn: Connection, jobs: list, domain: list[DomainEvent],
                 workspace: Workspace | None):
        self.session, self.conn, self.jobs, self.domain = session, conn, jobs, domain
        settings = (workspace.settings if workspace is not None else None) or {}
        self.stop = {k.casefold() for k in settings.get("opt_out_keywords", messages.DEFAULT_STOP)}
        self.start = {k.casefold() for k in settings.get("opt_in_keywords", messages.DEFAULT_START)}
        self.settings = settings

    def __call__(self, contact, text: str | None) -> None:
        word = " ".join((text or "").split()).strip(" .!").casefold()
        if word in self.stop and not contact.opted_out:
            contacts.opt_out(contact, source="keyword", connection_id=self.conn.id)
            self._confirm(contact, self.settings.get("opt_out_reply",
                                                     "You will no longer receive messages from us. Reply START to resubscribe."))
            self.domain.append(DomainEvent("contact.opted_out", self.conn.workspace_id, self.conn.id,
                                           {"wa_id": contact.wa_id, "user_id": contact.user_id, "scope": "all",
                                            "source": "keyword"},
                                           contact_id=contact.id))
        elif word in self.start and contact.opted_out:
            contacts.opt_in(contact, source="keyword", connection_id=self.conn.id)
            self._confirm(contact, self.settings.get("opt_in_reply", "You are subscribed again."))

    def _confirm(self, contact, text: str) -> None:
        to = contact.wa_id or contact.user_id  # a BSUID-only user is answered by BSUID
        if not to:
            return
        self.session.flush()
        send, created = create_send(self.session, workspace_id=self.conn.workspace_id, connection=self.conn,
                                    to=to, kind="text", origin="system", text=text,
                                    claim_token=claim_token(self.session))
        if created:
            self.session.flush()
            self.jobs += jobs_for(send)


def plugin_actions(rt, session, item: DomainEvent,
                   workspace: Workspace | None) -> list[tuple[Executor, list]]:
    """Actions from each enabled installation's ``on_whatsapp`` handlers (run with that
    installation's context) and from the global ``coexhub_whatsapp_event`` hook."""
    out = []
    installs = session.scalars(select(Installation).where(Installation.workspace_id == item.workspace_id,
                                                          Installation.enabled.is_(True))).all()
    for inst in installs:
        connector = rt.plugins.connector(inst.connector)
        if connector is None or not connector._whatsapp_handlers:
            continue
        ctx = Context(workspace_id=inst.workspace_id, installation_id=inst.id,
                      config={**(inst.config or {}), **(inst.secrets or {})}, state=dict(inst.state or {}))
        actions = connector.handle_whatsapp(item, ctx)
        if actions:
            out.append((Executor(session, item.workspace_id, installation=inst), actions))
    hooked = [a for batch in rt.plugins.hook.coexhub_whatsapp_event(event=item, workspace=workspace)
              for a in (batch or ())]
    if hooked:
        out.append((Executor(session, item.workspace_id, origin="automation"), hooked))
    return out
