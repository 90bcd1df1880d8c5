"""WhatsApp connections: onboard (Embedded Signup), connect by token, sync, pause/resume, disconnect."""
from __future__ import annotations

import logging

from flask import g
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from hub.api import owned, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.schema_fields import UtcDateTime
from hub.core.models import Connection, Workspace, utcnow
from hub.core.sending import portfolio
from hub.core.sending.templates import upsert_templates
from hub.core.whatsapp import reads
from hub.core.whatsapp.account import pause, resume
from hub.core.whatsapp.graph import Graph, GraphError
from hub.core.whatsapp.onboarding import OnboardingError, connect, onboard, request_syncs

log = logging.getLogger(__name__)
bp = workspace_blueprint("connections", "WhatsApp numbers connected to the workspace")
META_ID = validate.Regexp(r"^[0-9]{1,32}$", error="must be a Meta id (digits)")
TOKEN = validate.Regexp(r"^[!-~]{1,4096}$", error="must be printable ASCII without spaces")


class OnboardIn(Schema):
    code = fields.String(required=True, metadata={"description": "the Embedded Signup code"})
    waba_id = fields.String(required=True, validate=META_ID)
    phone_number_id = fields.String(load_default=None, validate=META_ID)
    history = fields.Boolean(load_default=None, metadata={"description": "import chat history (default: workspace setting)"})


class ConnectIn(Schema):
    access_token = fields.String(required=True, validate=TOKEN)
    waba_id = fields.String(required=True, validate=META_ID)
    phone_number_id = fields.String(load_default=None, validate=META_ID)
    mode = fields.String(load_default="coexistence", validate=validate.OneOf(["coexistence", "cloud_api"]))
    history = fields.Boolean(load_default=False)
    messages_per_second = fields.Integer(load_default=None, validate=validate.Range(1, 1000))


class ConnectionPatch(Schema):
    messages_per_second = fields.Integer(validate=validate.Range(1, 1000))
    history_opt_in = fields.Boolean()
    status = fields.String(validate=validate.OneOf(["active", "paused"]))
    read_receipts = fields.String(allow_none=True, validate=validate.OneOf(reads.POLICIES), metadata={
        "description": "off: never mark the customer's messages read (default for Coexistence numbers: it marks "
                       "the owner's chat read in the Business app too); agent_replied: only when an agent replies "
                       "through the API (POST /messages with reply_to); on: also on request "
                       "(POST /messages/{id}/read); null: back to the default"})


class ConnectionOut(Schema):
    id = fields.String()
    waba_id = fields.String()
    phone_number_id = fields.String()
    display_phone_number = fields.String(allow_none=True)
    verified_name = fields.String(allow_none=True)
    mode = fields.String()
    messages_per_second = fields.Integer()
    status = fields.String()
    pause_reason = fields.String(allow_none=True)
    paused_at = UtcDateTime(allow_none=True)
    history_opt_in = fields.Boolean()
    contact_sync_request_id = fields.String(allow_none=True)
    history_request_id = fields.String(allow_none=True)
    history_status = fields.Dict()
    quality = fields.Dict()
    last_app_activity_at = UtcDateTime(allow_none=True)
    read_receipts = fields.Function(reads.policy, metadata={
        "description": "the read receipts policy in force: off, on or agent_replied"})
    app_inactivity_warning = fields.Method("inactivity", metadata={
        "description": "Meta may disconnect a Coexistence number whose Business app was not opened for 14 days; "
                       "set when the hub has seen no app activity (echoes, contact syncs) for 10 days"})
    portfolio_id = fields.String(allow_none=True, metadata={"description": "the Meta business portfolio of the number"})
    messaging_limit = fields.Function(lambda c: portfolio.tier_name(c.messaging_limit), metadata={
        "description": "the portfolio's messaging limit (unique users reached by business-initiated messages per "
                       "rolling 24 h, shared by its numbers): TIER_250, TIER_2K, TIER_10K, TIER_100K, "
                       "TIER_UNLIMITED; null while unknown (not governed)"})
    limit_updated_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime()

    def inactivity(self, conn) -> str | None:
        if conn.mode != "coexistence" or conn.status != "active":
            return None
        seen = conn.last_app_activity_at or conn.created_at
        idle = (utcnow() - seen).days if seen else 0
        return (f"no WhatsApp Business app activity seen for {idle} days: open the app on the phone "
                "before day 14 or Meta may disconnect the number") if idle >= 10 else None


def _graph() -> Graph:
    return Graph.from_settings(runtime().settings)


def _onboarding_error(exc: OnboardingError):
    """409 for a number another workspace uses, 422 for a number outside the WABA or a
    used/expired/unknown signup code, 502 when the Graph API failed."""
    status, code = (409, "onboarding_failed") if exc.step == "conflict" else \
        (422, "onboarding_failed") if exc.step == "ownership" else \
        (422, "invalid_signup_code") if exc.invalid_code else (502, "onboarding_failed")
    return ApiError(status, code, str(exc), step=exc.step, graph_error=exc.graph.as_dict() if exc.graph else None)


@bp.route("/connections", methods=["GET"])
@bp.response(200, ConnectionOut(many=True))
def list_connections():
    with runtime().db.session() as session:
        return session.scalars(select(Connection).where(Connection.workspace_id == g.workspace_id)
                               .order_by(Connection.created_at)).all()


@bp.route("/connections/onboard", methods=["POST"])
@bp.arguments(OnboardIn)
@bp.response(201, ConnectionOut)
def onboard_connection(body):
    rt = runtime()
    if not (rt.settings.meta_app_id and rt.settings.meta_app_secret):
        raise ApiError(409, "meta_app_not_configured", "set COEXHUB_META_APP_ID and COEXHUB_META_APP_SECRET")
    with rt.db.session() as session:
        history = body["history"]
        if history is None:
            history = bool((session.get(Workspace, g.workspace_id).settings or {}).get("history_import"))
        try:
            return onboard(session, _graph(), rt.settings, g.workspace_id, code=body["code"],
                           waba_id=body["waba_id"], phone_number_id=body["phone_number_id"], history=history)
        except OnboardingError as exc:
            raise _onboarding_error(exc) from exc


@bp.route("/connections", methods=["POST"])
@bp.arguments(ConnectIn)
@bp.response(201, ConnectionOut)
def create_connection(body):
    with runtime().db.session() as session:
        try:
            return connect(session, _graph(), g.workspace_id, token=body["access_token"], waba_id=body["waba_id"],
                           phone_number_id=body["phone_number_id"], mode=body["mode"], history=body["history"],
                           messages_per_second=body["messages_per_second"])
        except OnboardingError as exc:
            raise _onboarding_error(exc) from exc


@bp.route("/connections/<connection_id>", methods=["GET"])
@bp.response(200, ConnectionOut)
def get_connection(connection_id):
    with runtime().db.session() as session:
        return owned(session, Connection, connection_id)


@bp.route("/connections/<connection_id>", methods=["PATCH"])
@bp.arguments(ConnectionPatch)
@bp.response(200, ConnectionOut)
def update_connection(body, connection_id):
    """Change pacing, history opt-in or the read receipts policy; ``status: active`` resumes a paused
    connection and its queue."""
    with runtime().db.session() as session:
        conn = owned(session, Connection, connection_id)
        for key in ("messages_per_second", "history_opt_in", "read_receipts"):
            if key in body:
                setattr(conn, key, body[key])
        if "read_receipts" in body:
            log.info("connection %s: read receipts policy now %s", conn.id, reads.policy(conn))
        if body.get("status") == "active":
            resume(conn, "resumed through the API")
        elif body.get("status") == "paused":
            pause(conn, "paused through the API")
        return conn


@bp.route("/connections/<connection_id>/sync", methods=["POST"])
@bp.response(200, ConnectionOut)
def sync_connection(connection_id):
    """Request contact sync and (if opted in) history — once each — and refresh templates."""
    with runtime().db.session() as session:
        conn = owned(session, Connection, connection_id)
        graph = _graph()
        try:
            if conn.mode == "coexistence":
                request_syncs(conn, graph)
            upsert_templates(session, conn.workspace_id, conn.waba_id, graph.templates(conn.waba_id, conn.access_token))
        except (OnboardingError, GraphError) as exc:
            raise ApiError(502, "sync_failed", str(exc)) from exc
        return conn


@bp.route("/connections/<connection_id>/refresh-limits", methods=["POST"])
@bp.response(200, ConnectionOut)
def refresh_limits(connection_id):
    """Read the number's business portfolio and the portfolio's messaging limit from Meta again."""
    with runtime().db.session() as session:
        conn = owned(session, Connection, connection_id)
        try:
            found = _graph().messaging_limit(conn.waba_id, conn.phone_number_id, conn.access_token)
        except GraphError as exc:
            raise ApiError(502, "refresh_failed", f"could not read the messaging limit: {exc}") from exc
        portfolio.apply_limit(conn, found[1], portfolio_id=found[0], source="refresh")
        return conn


@bp.route("/connections/<connection_id>", methods=["DELETE"])
@bp.response(200, ConnectionOut)
def disconnect(connection_id):
    """Stop using the number (its messages, contacts and queued sends are kept)."""
    with runtime().db.session() as session:
        conn = owned(session, Connection, connection_id)
        conn.status, conn.pause_reason = "disconnected", "disconnected through the API"
        return conn
