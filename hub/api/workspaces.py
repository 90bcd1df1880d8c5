"""Workspaces (admin token) and the current workspace's API keys."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from hub.api import owned, runtime, workspace_blueprint
from hub.api.auth import new_key, require_admin
from hub.api.schema_fields import UtcDateTime
from hub.core.models import ApiKey, Workspace, utcnow

admin = Blueprint("workspaces", __name__, url_prefix="/api/v1", description="Workspaces (admin token)")
admin.before_request(require_admin)
own = workspace_blueprint("workspace", "The workspace of the API key")


class MarketingCap(Schema):
    max = fields.Integer(required=True, validate=validate.Range(0, 1000))
    days = fields.Float(required=True, validate=validate.Range(min=0, max=366, min_inclusive=False))


class WorkspaceSettings(Schema):
    """What a workspace can tune (every key optional)."""
    echo_hold_minutes = fields.Float(validate=validate.Range(0, 7 * 24 * 60), metadata={
        "description": "how long the owner's reply from the phone holds automated sends (default 30)"})
    opt_out_keywords = fields.List(fields.String(validate=validate.Length(1, 40)), metadata={
        "description": "default STOP, UNSUBSCRIBE, STOP ALL, CANCEL, PARAR, ALTO, DETENER"})
    opt_in_keywords = fields.List(fields.String(validate=validate.Length(1, 40)))
    opt_out_reply = fields.String(validate=validate.Length(1, 1024))
    opt_in_reply = fields.String(validate=validate.Length(1, 1024))
    history_import = fields.Boolean(metadata={"description": "request chat history when onboarding"})
    require_marketing_consent = fields.Boolean()
    marketing_cap = fields.Nested(MarketingCap, allow_none=True, metadata={
        "description": "at most `max` marketing templates per contact in `days` rolling days (default: none, "
                       "Meta's own per-user limit still applies); null removes it"})
    marketing_limit_cooldown_hours = fields.Float(validate=validate.Range(0, 24 * 366), metadata={
        "description": "after Meta's 131049 (per-user marketing limit) no marketing to that contact for this "
                       "long (default 24)"})
    attribution_window_days = fields.Float(validate=validate.Range(0, 366))
    prices = fields.Dict(keys=fields.String(validate=validate.Length(1, 40)),
                         values=fields.Float(validate=validate.Range(0, 1_000_000)), metadata={
        "description": "price per billable message by pricing category, for the spend estimate"})


class WorkspaceIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    settings = fields.Nested(WorkspaceSettings, load_default=dict)


class WorkspacePatch(Schema):
    name = fields.String(validate=validate.Length(1, 200))
    settings = fields.Nested(WorkspaceSettings, metadata={"description": "merged into the current settings"})


class WorkspaceOut(Schema):
    id = fields.String()
    name = fields.String()
    settings = fields.Dict()
    created_at = UtcDateTime()
    api_key = fields.String(metadata={"description": "shown once, at creation"})


class KeyIn(Schema):
    name = fields.String(load_default="default")


class KeyOut(Schema):
    api_key = fields.String()
    name = fields.String()


class KeyInfo(Schema):
    id = fields.String()
    name = fields.String()
    prefix = fields.String(metadata={"description": "the key's first characters, to recognise it"})
    created_at = UtcDateTime()
    last_used_at = UtcDateTime(allow_none=True)
    revoked_at = UtcDateTime(allow_none=True)


def create_workspace(session, name: str, settings: dict | None = None) -> tuple[Workspace, str]:
    workspace = Workspace(name=name, settings=settings or {})
    session.add(workspace)
    session.flush()
    return workspace, new_key(session, workspace.id)


@admin.route("/workspaces", methods=["POST"])
@admin.arguments(WorkspaceIn)
@admin.response(201, WorkspaceOut)
def create(body):
    with runtime().db.session() as session:
        workspace, key = create_workspace(session, body["name"], body["settings"])
        return {"id": workspace.id, "name": workspace.name, "settings": workspace.settings,
                "created_at": workspace.created_at, "api_key": key}


@admin.route("/workspaces", methods=["GET"])
@admin.response(200, WorkspaceOut(many=True))
def list_all():
    with runtime().db.session() as session:
        return session.scalars(select(Workspace).order_by(Workspace.created_at)).all()


@own.route("/workspace", methods=["GET"])
@own.response(200, WorkspaceOut)
def current():
    with runtime().db.session() as session:
        return session.get(Workspace, g.workspace_id)


@own.route("/workspace", methods=["PATCH"])
@own.arguments(WorkspacePatch)
@own.response(200, WorkspaceOut)
def update(body):
    with runtime().db.session() as session:
        workspace = session.get(Workspace, g.workspace_id)
        workspace.name = body.get("name", workspace.name)
        if "settings" in body:
            workspace.settings = {**(workspace.settings or {}), **body["settings"]}
        return workspace


@own.route("/workspace/keys", methods=["POST"])
@own.arguments(KeyIn)
@own.response(201, KeyOut)
def add_key(body):
    with runtime().db.session() as session:
        return {"api_key": new_key(session, g.workspace_id, body["name"]), "name": body["name"]}


@own.route("/workspace/keys", methods=["GET"])
@own.response(200, KeyInfo(many=True))
def list_keys():
    with runtime().db.session() as session:
        return session.scalars(select(ApiKey).where(ApiKey.workspace_id == g.workspace_id)
                               .order_by(ApiKey.created_at)).all()


@own.route("/workspace/keys/<key_id>", methods=["DELETE"])
@own.response(200, KeyInfo)
def revoke_key(key_id):
    """Revoke a key (the one making this request included, if you ask)."""
    with runtime().db.session() as session:
        key = owned(session, ApiKey, key_id)
        key.revoked_at = key.revoked_at or utcnow()
        return key
