"""Connect a number: Embedded Signup (Coexistence) or a token pasted by hand.

Coexistence steps: exchange the signup code for a business token, subscribe the app to the
WABA, read the number, **never call /register**, then request the app's contact sync and —
only if the workspace opted in — chat history, each exactly once, keeping the request ids.
"""
from __future__ import annotations

import logging

from sqlalchemy import select, update

from hub.core.logs import event, mask_phone
from hub.core.models import Connection, Send, iso_utc, utcnow
from hub.core.sending import portfolio
from hub.core.sending.templates import upsert_templates
from hub.core.whatsapp.account import resume
from hub.core.whatsapp.graph import Graph, GraphError

COEXISTENCE_MPS, CLOUD_API_MPS = 20, 80
log = logging.getLogger(__name__)


class OnboardingError(Exception):
    def __init__(self, message: str, step: str, graph: GraphError | None = None, *, invalid_code: bool = False):
        super().__init__(message)
        self.step, self.graph = step, graph
        self.invalid_code = invalid_code  # a used, expired or unknown signup code: the caller's problem


def _step(step: str, func, *args):
    try:
        result = func(*args)
    except GraphError as exc:
        event(log, "onboarding step failed", level=logging.WARNING, step=step, meta_code=exc.code, error=str(exc)[:300])
        raise OnboardingError(f"{step} failed: {exc}", step, exc) from exc
    event(log, "onboarding step done", step=step)
    return result


CODE_USED, CODE_EXPIRED = 36009, 36007  # Meta's error_subcode on /oauth/access_token (code 100)


def _exchange_code(graph: Graph, settings, code: str) -> str:
    """The business token for a signup code; a used, expired or unknown code (Meta's code 100)
    is the caller's problem (``invalid_code``), anything else a Graph failure."""
    try:
        token = graph.exchange_code(settings.meta_app_id, settings.meta_app_secret, code)
    except GraphError as exc:
        event(log, "onboarding step failed", level=logging.WARNING, step="code exchange", meta_code=exc.code,
              meta_subcode=exc.subcode, error=str(exc)[:300])
        if exc.code != 100:
            raise OnboardingError(f"code exchange failed: {exc}", "code exchange", exc) from exc
        reason = {CODE_USED: "was already used (each Embedded Signup code works once; to connect the "
                             "number again, finish Embedded Signup again for a new code)",
                  CODE_EXPIRED: "has expired (codes live a few minutes: finish Embedded Signup again)"}
        raise OnboardingError(f"code exchange failed: the signup code "
                              f"{reason.get(exc.subcode, f'was refused by Meta: {exc}')}", "code exchange", exc,
                              invalid_code=True) from exc
    event(log, "onboarding step done", step="code exchange")
    return token


def onboard(session, graph: Graph, settings, workspace_id: str, *, code: str, waba_id: str,
            phone_number_id: str | None = None, history: bool = False) -> Connection:
    """Embedded Signup finish → an active Coexistence connection."""
    token = _exchange_code(graph, settings, code)
    return connect(session, graph, workspace_id, token=token, waba_id=waba_id, phone_number_id=phone_number_id,
                   mode="coexistence", history=history)


def connect(session, graph: Graph, workspace_id: str, *, token: str, waba_id: str,
            phone_number_id: str | None = None, mode: str = "coexistence", history: bool = False,
            messages_per_second: int | None = None) -> Connection:
    phone_number_id = number_of_waba(graph, token, waba_id, phone_number_id)
    _step("subscribe app", graph.subscribe_app, waba_id, token)
    details = _step("read phone number", graph.phone_number, phone_number_id, token)
    conn = session.scalars(select(Connection).where(Connection.phone_number_id == phone_number_id)).first()
    if conn is not None and conn.workspace_id != workspace_id:
        if conn.status != "disconnected":
            event(log, "onboarding refused", level=logging.WARNING, step="conflict", workspace_id=workspace_id,
                  phone_number_id=phone_number_id, reason="number connected to another workspace")
            raise OnboardingError("this number is connected to another workspace (it can move once "
                                  "that workspace disconnects it)", "conflict")
        event(log, "number moves to another workspace", from_workspace_id=conn.workspace_id,
              workspace_id=workspace_id, connection_id=conn.id)
        hand_over(session, conn, workspace_id)
    if conn is None:
        conn = Connection(workspace_id=workspace_id, phone_number_id=phone_number_id, history_status={},
                          quality={})
        session.add(conn)
    conn.waba_id, conn.access_token, conn.mode = waba_id, token, mode
    conn.display_phone_number = "".join(ch for ch in str(details.get("display_phone_number") or "") if ch.isdigit())
    conn.verified_name = details.get("verified_name")
    conn.messages_per_second = messages_per_second or (COEXISTENCE_MPS if mode == "coexistence" else CLOUD_API_MPS)
    resume(conn, "connected again")
    conn.history_opt_in = conn.history_opt_in or history
    session.flush()
    portfolio.refresh(conn, graph)  # the business portfolio and its messaging limit (best effort)
    if mode == "coexistence":
        request_syncs(conn, graph)
    upsert_templates(session, workspace_id, waba_id, _step("list templates", graph.templates, waba_id, token))
    event(log, "number connected", workspace_id=workspace_id, connection_id=conn.id, mode=mode, waba_id=waba_id,
          phone=mask_phone(conn.display_phone_number))
    return conn


def number_of_waba(graph: Graph, token: str, waba_id: str, phone_number_id: str | None) -> str:
    """The number to connect, checked to belong to ``waba_id`` as the token sees it
    (``GET /{waba_id}/phone_numbers``); the WABA's first number when none is named.

    Template, account and quality webhooks are routed by WABA: a number connected under a
    WABA it does not belong to would hand that WABA's events to the wrong workspace."""
    try:
        numbers = graph.phone_numbers(waba_id, token)
    except GraphError as exc:  # Meta refuses a WABA the token may not see: a 4xx, not an outage
        refused = not exc.timeout and exc.http_status is not None and 400 <= exc.http_status < 500 \
            and exc.http_status != 429
        if refused:
            raise OnboardingError(f"the token cannot see WABA {waba_id}: {exc}", "ownership", exc) from exc
        raise OnboardingError(f"list phone numbers failed: {exc}", "list phone numbers", exc) from exc
    ids = [str(n.get("id")) for n in numbers if isinstance(n, dict) and n.get("id")]
    if not ids:
        raise OnboardingError(f"WABA {waba_id} has no phone number this token can see", "ownership")
    if phone_number_id and str(phone_number_id) not in ids:
        raise OnboardingError(f"phone number {phone_number_id} does not belong to WABA {waba_id} "
                              "(it is not among the WABA's numbers this token can see)", "ownership")
    return str(phone_number_id or ids[0])


def request_syncs(conn: Connection, graph: Graph) -> None:
    """Contact sync, then history if opted in: each requested once (Meta allows one of each)."""
    if not conn.contact_sync_request_id:
        conn.contact_sync_request_id = _step("contact sync", graph.request_sync, conn.phone_number_id,
                                             conn.access_token, "smb_app_state_sync") or "requested"
    if conn.history_opt_in and not conn.history_request_id:
        conn.history_request_id = _step("history sync", graph.request_sync, conn.phone_number_id,
                                        conn.access_token, "history") or "requested"
        conn.history_status = {**(conn.history_status or {}), "state": "requested",
                               "requested_at": iso_utc(utcnow())}


def hand_over(session, conn: Connection, workspace_id: str) -> None:
    """A number its workspace disconnected moves to ``workspace_id``: the old workspace keeps its
    messages and contacts; its sends still waiting for this number are cancelled (they must never
    leave from another business), and the one-time syncs may be requested again."""
    session.execute(update(Send).where(Send.connection_id == conn.id, Send.workspace_id == conn.workspace_id,
                                       Send.status.in_(("scheduled", "queued")))
                    .values(status="cancelled", last_error="the number was connected to another workspace",
                            updated_at=utcnow()))
    conn.workspace_id = workspace_id
    conn.contact_sync_request_id = conn.history_request_id = None
    conn.history_opt_in, conn.history_status, conn.quality, conn.last_app_activity_at = False, {}, {}, None
    conn.portfolio_id = conn.messaging_limit = None  # read again for the new owner
