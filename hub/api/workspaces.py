"""Workspaces (admin token) and the current workspace's API keys."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from hub.api import runtime, workspace_blueprint
from hub.api.auth import new_key, require_admin
from hub.core.models import Workspace

admin = Blueprint("workspaces", __name__, url_prefix="/api/v1", description="Workspaces (admin token)")
admin.before_request(require_admin)
own = workspace_blueprint("workspace", "The workspace of the API key")


class WorkspaceIn(Schema):
    name = fields.String(required=True)
    settings = fields.Dict(load_default=dict)


class WorkspaceOut(Schema):
    id = fields.String()
    name = fields.String()
    settings = fields.Dict()
    created_at = fields.DateTime()
    api_key = fields.String(metadata={"description": "shown once, at creation"})


class KeyIn(Schema):
    name = fields.String(load_default="default")


class KeyOut(Schema):
    api_key = fields.String()
    name = fields.String()


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


@own.route("/workspace/keys", methods=["POST"])
@own.arguments(KeyIn)
@own.response(201, KeyOut)
def add_key(body):
    with runtime().db.session() as session:
        return {"api_key": new_key(session, g.workspace_id, body["name"]), "name": body["name"]}
