"""Available connectors and their installations in a workspace."""
from __future__ import annotations

from flask import g
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import select

from hub.api import owned, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.schema_fields import UtcDateTime
from hub.core import installations
from hub.core.connectors import config_json_schema
from hub.core.models import Connection, Installation

bp = workspace_blueprint("installations", "Connectors and their installations")


class ConnectorOut(Schema):
    name = fields.String()
    title = fields.String()
    config_schema = fields.Dict()
    topics = fields.List(fields.String())


class InstallationIn(Schema):
    connector = fields.String(required=True)
    name = fields.String(load_default=None)
    config = fields.Dict(load_default=dict)


class InstallationPatch(Schema):
    name = fields.String()
    config = fields.Dict()
    enabled = fields.Boolean()


class InstallationOut(Schema):
    id = fields.String()
    connector = fields.String()
    name = fields.String(allow_none=True)
    config = fields.Dict(metadata={"description": "non-secret settings"})
    secrets_set = fields.List(fields.String(), metadata={"description": "names of secret fields that are set"})
    enabled = fields.Boolean()
    disabled_reason = fields.String(allow_none=True)
    webhook_url = fields.String()
    created_at = UtcDateTime()
    warnings = fields.List(fields.String(), metadata={
        "description": "what will stop this installation's messages from going out (e.g. no WhatsApp number)"})


def present(inst: Installation, warnings: list[str] | None = None) -> dict:
    base = runtime().settings.public_url
    return {"id": inst.id, "connector": inst.connector, "name": inst.name, "config": inst.config,
            "warnings": warnings or [],
            "secrets_set": sorted(k for k, v in (inst.secrets or {}).items() if v not in (None, "")),
            "enabled": inst.enabled, "disabled_reason": inst.disabled_reason, "created_at": inst.created_at,
            "webhook_url": f"{base}/webhooks/{inst.connector}/{inst.id}"}


def _connector(name: str):
    connector = runtime().plugins.connector(name)
    if connector is None:
        raise ApiError(404, "unknown_connector", f"no connector named {name!r} is installed")
    return connector


def validate_config(connector, config: dict) -> tuple[dict, dict]:
    """Validate against the connector's schema; split into (public, secret) JSON-ready dicts."""
    schema = connector.config_schema()
    try:
        data = schema.dump(schema.load(config))
    except ValidationError as exc:
        raise ApiError(422, "invalid_config", "the connector config is not valid", fields=exc.messages) from exc
    secret_names = connector.secret_fields()
    return ({k: v for k, v in data.items() if k not in secret_names},
            {k: v for k, v in data.items() if k in secret_names})


def sending_warnings(session, inst: Installation) -> list[str]:
    """What keeps this installation's messages from going out, in words (its numbers)."""
    conns = session.scalars(select(Connection).where(Connection.workspace_id == inst.workspace_id)).all()
    if not conns:
        return [("this workspace has no WhatsApp number yet: the connector's messages will fail until one is "
                 "connected (POST /api/v1/connections/onboard)")]
    pinned = (inst.config or {}).get("connection_id")
    if pinned and pinned not in {c.id for c in conns}:
        return [(f"connection_id {pinned!r} is not a number of this workspace: messages go out from the number "
                 "the customer last wrote to, else the workspace's oldest")]
    if not any(c.status == "active" for c in conns):
        return ["no WhatsApp number of this workspace is active: messages wait until one is"]
    return []


@bp.route("/connectors", methods=["GET"])
@bp.response(200, ConnectorOut(many=True))
def connectors():
    return [{"name": cls.name, "title": cls.title or cls.name.title(),
             "config_schema": config_json_schema(cls.config_schema),
             "topics": sorted(t for t in cls._webhook_handlers if t != "*")}
            for cls in sorted(runtime().plugins.connectors.values(), key=lambda c: c.name)]


@bp.route("/installations", methods=["POST"])
@bp.arguments(InstallationIn)
@bp.response(201, InstallationOut)
def create(body):
    public, secret = validate_config(_connector(body["connector"]), body["config"])
    with runtime().db.session() as session:
        inst = Installation(workspace_id=g.workspace_id, connector=body["connector"], name=body["name"],
                            config=public, secrets=secret, state={})
        session.add(inst)
        session.flush()
        return present(inst, sending_warnings(session, inst))


@bp.route("/installations", methods=["GET"])
@bp.response(200, InstallationOut(many=True))
def list_installations():
    with runtime().db.session() as session:
        rows = session.scalars(select(Installation).where(Installation.workspace_id == g.workspace_id)
                               .order_by(Installation.created_at)).all()
        return [present(i, sending_warnings(session, i)) for i in rows]


@bp.route("/installations/<installation_id>", methods=["GET"])
@bp.response(200, InstallationOut)
def get(installation_id):
    with runtime().db.session() as session:
        inst = owned(session, Installation, installation_id)
        return present(inst, sending_warnings(session, inst))


@bp.route("/installations/<installation_id>", methods=["PATCH"])
@bp.arguments(InstallationPatch)
@bp.response(200, InstallationOut)
def update(body, installation_id):
    with runtime().db.session() as session:
        inst = owned(session, Installation, installation_id)
        if "config" in body:  # secrets not repeated in the patch are kept
            merged = {**(inst.config or {}), **(inst.secrets or {}), **body["config"]}
            inst.config, inst.secrets = validate_config(_connector(inst.connector), merged)
        if "name" in body:
            inst.name = body["name"]
        if "enabled" in body:
            inst.enabled = body["enabled"]
            inst.disabled_reason = None if body["enabled"] else "disabled through the API"
        session.flush()
        installations.forget(installation_id)
        return present(inst, sending_warnings(session, inst))


@bp.route("/installations/<installation_id>", methods=["DELETE"])
@bp.response(204)
def delete(installation_id):
    with runtime().db.session() as session:
        session.delete(owned(session, Installation, installation_id))
    installations.forget(installation_id)
