"""Broadcasts: one template to an audience (tags or contact ids), paced by the governor."""
from __future__ import annotations

import datetime as dt
import logging
import re

from flask import g, jsonify, request
from marshmallow import Schema, ValidationError, fields, validates_schema
from sqlalchemy import func, or_, select

from hub.api import ids, owned, runtime, workspace_blueprint
from hub.api.broadcast_preview import dry_run_report, preview
from hub.api.errors import ApiError
from hub.api.schema_fields import UtcDateTime
from hub.core.logs import event
from hub.core.models import Broadcast, Connection, Contact, Send, Template, Workspace, utcnow
from hub.core.processing import enqueue_all
from hub.core.sending import checks, portfolio, routing
from hub.core.sending import marketing as frequency
from hub.core.sending.pipeline import delivery_job
from hub.core.sending.sends import create_send, sending_connection
from hub.core.sending.templates import find_template

log = logging.getLogger(__name__)
bp = workspace_blueprint("broadcasts", "Template broadcasts with progress")


class AudienceIn(Schema):
    tags = fields.List(fields.String(), load_default=list)
    contact_ids = fields.List(ids.PublicId("ct"), load_default=list)


class BroadcastIn(Schema):
    name = fields.String(load_default=None)
    connection_id = fields.String(load_default=None)
    template = fields.String(required=True)
    language = fields.String(load_default="en_US")
    params = fields.List(fields.String(), load_default=list,
                         metadata={"description": "body parameters; '{first_name}', '{name}', '{wa_id}' and "
                                                  "'{attributes.KEY}' are filled per recipient, "
                                                  "'{first_name|there}' with a default when the contact has no value "
                                                  "(recipients left with an empty parameter are excluded and counted)"})
    audience = fields.Nested(AudienceIn, required=True)

    @validates_schema
    def some_audience(self, data, **_):
        if not data["audience"]["tags"] and not data["audience"]["contact_ids"]:
            raise ValidationError("the audience needs tags or contact_ids", "audience")
        unknown = [f for p in data.get("params", []) for f in unknown_fields(p)]
        if unknown:
            raise ValidationError(f"unknown fields {unknown}: use {{name}}, {{first_name}}, {{wa_id}} or "
                                  "{attributes.KEY}, optionally with a default: {first_name|there}", "params")


class BroadcastOut(Schema):
    id = fields.String()
    name = fields.String(allow_none=True)
    connection_id = fields.String()
    template_name = fields.String()
    template_language = fields.String()
    status = fields.String()
    created_at = UtcDateTime()
    recipients = fields.Integer()
    excluded = fields.Dict(metadata={"description": "how many contacts of the audience were left out, by reason"})
    exclusions = fields.List(fields.Dict(), metadata={
        "description": "who was left out and why ({contact_id, reason}; the first 500)"})
    progress = fields.Dict()
    eta_seconds = fields.Float(metadata={"description": "pacing, plus 24 h for each further window of the "
                                                         "portfolio messaging limit the rest needs"})
    portfolio = fields.Dict(metadata={"description": "the portfolio messaging limit: limit, used (recipients "
                                                     "in the rolling 24 h), headroom, windows (further 24 h "
                                                     "windows the remaining business-initiated sends need)"})


MAX_LISTED = 500  # exclusions listed one by one on a broadcast (the counts cover them all)
FIELD = re.compile(r"\{(name|first_name|wa_id|attributes\.[\w-]+)(?:\|([^{}|]*))?\}")
ANY_FIELD = re.compile(r"\{[^{}]*\}")


def unknown_fields(param: str) -> list[str]:
    return [m for m in ANY_FIELD.findall(param) if not FIELD.fullmatch(m)]


def fill(param: str, contact: Contact) -> str:
    """Replace ``{name}``, ``{first_name}``, ``{wa_id}`` and ``{attributes.KEY}`` for one contact;
    ``{field|default}`` gives the default when the contact has no value."""
    values = {"name": contact.profile_name or contact.full_name or contact.first_name or "",
              "first_name": contact.first_name or (contact.full_name or contact.profile_name or "").split(" ")[0],
              "wa_id": contact.wa_id or ""}

    def value(match: re.Match) -> str:
        field, default = match.group(1), match.group(2) or ""
        if field.startswith("attributes."):
            found = (contact.attributes or {}).get(field.split(".", 1)[1])
            return default if found is None or str(found).strip() == "" else str(found)
        return values[field].strip() or default
    return FIELD.sub(value, param)


def present(session, bc: Broadcast) -> dict:
    counts = dict(session.execute(select(Send.status, func.count()).where(Send.broadcast_id == bc.id)
                                  .group_by(Send.status)).all())
    conn = session.get(Connection, bc.connection_id)
    remaining = counts.get("queued", 0) + counts.get("scheduled", 0) + counts.get("sending", 0)
    total = sum(counts.values())
    return {"id": bc.id, "name": bc.name, "connection_id": bc.connection_id, "template_name": bc.template_name,
            "template_language": bc.template_language, "created_at": bc.created_at,
            "status": "done" if total and not remaining else ("empty" if not total else "sending"),
            "recipients": total, "excluded": (bc.audience or {}).get("excluded", {}),
            "exclusions": (bc.audience or {}).get("exclusions", []), "progress": counts,
            **limit_eta(conn, _category(session, conn, bc), remaining)}


def _category(session, conn: Connection, bc: Broadcast) -> str | None:
    found = session.scalars(select(Template.category).where(
        Template.workspace_id == bc.workspace_id, Template.waba_id == conn.waba_id,
        Template.name == bc.template_name, Template.language == bc.template_language)).first()
    return found.lower() if found else None


def limit_eta(conn: Connection, category: str | None, remaining: int) -> dict:
    """``eta_seconds`` (pacing, plus 24 h per further window of the portfolio messaging limit;
    every remaining recipient counted as business-initiated, an upper bound) and ``portfolio``."""
    pacing = remaining / max(conn.messages_per_second * 0.98, 1)
    try:
        used = portfolio.Reach(runtime().redis, runtime().settings.key_prefix).used(conn)
    except Exception as exc:  # Redis away: the ETA is pacing only
        log.warning("portfolio usage unreadable: %s", exc)
        used = 0
    plan = portfolio.plan(conn, used, remaining, category)
    return {"eta_seconds": round(pacing + plan["windows"] * portfolio.WINDOW.total_seconds(), 1), "portfolio": plan}


@bp.route("/broadcasts", methods=["POST"])
@bp.arguments(BroadcastIn)
@bp.response(202, BroadcastOut)
@bp.doc(parameters=[{"in": "query", "name": "dry_run", "schema": {"type": "boolean"},
                     "description": "true: answer 200 with the recipients, exclusions and estimated cost; "
                                    "create nothing"}])
def create_broadcast(body):
    """Send a template to an audience. Without ``connection_id`` each recipient gets it from the
    number they last wrote to (when its account has the template), else from the workspace's
    oldest active number; ``connection_id`` sends them all from one number. With
    ``?dry_run=true`` nothing is created: the answer (200) counts recipients and exclusions and
    estimates the cost by category and country from the rate card; its ``preview`` lists the
    first recipients with the text each would read and the first exclusions with names."""
    rt = runtime()
    dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
    with rt.db.session() as session:
        conn, template, routes, plan, excluded, exclusions = _plan(session, body)
        if dry_run:
            return jsonify({**dry_run_report(session, g.workspace_id, template, routes, plan, excluded),
                            "exclusions": exclusions,
                            "preview": preview(session, template, routes, plan, exclusions),
                            **limit_eta(conn, checks.category_of(template), len(plan))})
        bc = Broadcast(workspace_id=g.workspace_id, connection_id=conn.id, name=body["name"],
                       template_name=template.name, template_language=template.language, params=body["params"],
                       audience={**body["audience"]})
        session.add(bc)
        session.flush()
        jobs = []
        for contact, params in plan:
            route = routes[contact.id]
            send, created = create_send(
                session, workspace_id=g.workspace_id, connection=route.connection, to=contact.wa_id or contact.user_id, kind="template",
                origin="broadcast", template=template.name, language=template.language,
                params=params, category=(template.category or "").lower(),
                broadcast_id=bc.id, idempotency_key=f"broadcast:{bc.id}:{contact.id}",
                connection_reason=route.reason)
            if created:
                session.flush()
                jobs.append(delivery_job(send.id))
        bc.audience = {**body["audience"], "excluded": excluded, "exclusions": exclusions}
        event(log, "broadcast created", broadcast_id=bc.id, workspace_id=g.workspace_id, template=template.name,
              recipients=len(plan), **{f"excluded_{k}": v for k, v in excluded.items() if v})
        result = present(session, bc)
    enqueue_all(rt, jobs)
    return result


def _plan(session, body: dict):
    """The number, template, routes, the recipients with their parameters and the exclusions
    counted by reason: what a broadcast (or its dry run) would send."""
    conn = owned(session, Connection, body["connection_id"]) if body["connection_id"] \
        else sending_connection(session, g.workspace_id)
    template = find_template(session, g.workspace_id, conn.waba_id, body["template"], body["language"]) \
        if conn is not None else None
    _check(conn, template, body)
    marketing = (template.category or "").upper() == "MARKETING"
    settings = session.get(Workspace, g.workspace_id).settings or {}
    need_consent = bool(settings.get("require_marketing_consent"))
    audience = body["audience"]
    query = select(Contact).where(Contact.workspace_id == g.workspace_id,
                                  or_(Contact.wa_id.is_not(None), Contact.user_id.is_not(None)))
    candidates = session.scalars(query).all()
    chosen = [c for c in candidates if c.id in audience["contact_ids"]
              or set(audience["tags"]) & set(c.tags or [])]
    excluded = {"opted_out": 0, "marketing_opted_out": 0, "no_marketing_consent": 0, "marketing_limited": 0,
                "marketing_cap": 0, "missing_value": 0}
    now, cap = utcnow(), frequency.cap_of(settings) if marketing else None
    recent = frequency.recent_counts(session, [c.id for c in chosen], now - dt.timedelta(days=cap[1])) \
        if cap else {}
    routes = {c.id: routing.requested(conn) for c in chosen} if body["connection_id"] else \
        routing.choose_many(session, g.workspace_id, [c.id for c in chosen], template=template.name,
                            language=template.language)
    plan, exclusions = [], []
    for contact in chosen:
        params = [fill(p, contact) for p in body["params"]]
        reason = ("opted_out" if checks.opt_out_problem(contact, "broadcast") else
                  "marketing_opted_out" if checks.marketing_problem(contact, checks.category_of(template)) else
                  "no_marketing_consent" if marketing and (contact.marketing_consent is False or
                                                           (need_consent and not contact.marketing_consent))
                  else "marketing_limited" if marketing and frequency.limited_problem(contact, now)
                  else "marketing_cap" if marketing and cap and recent.get(contact.id, 0) >= cap[0]
                  else "missing_value" if any(not p.strip() for p in params)
                  else "authentication_needs_phone" if checks.bsuid_problem(contact.wa_id or contact.user_id,
                                                                             checks.category_of(template))
                  else None)
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1  # authentication_needs_phone: only when it happens
            if len(exclusions) < MAX_LISTED:
                exclusions.append({"contact_id": ids.encode("ct", contact.id), "reason": reason})
        else:
            plan.append((contact, params))
    return conn, template, routes, plan, excluded, exclusions


def _check(conn: Connection | None, template, body: dict) -> None:
    """422 for what is wrong with every recipient alike: no number, the template, its parameters."""
    try:
        problem = checks.connection_problem(conn)
        if problem:
            raise problem
        checks.template_components(template, body["template"], body["language"], body["params"])
    except checks.SendProblem as problem:
        raise ApiError(422, problem.code, problem.message) from problem


@bp.route("/broadcasts/<broadcast_id>", methods=["GET"])
@bp.response(200, BroadcastOut)
def get_broadcast(broadcast_id):
    with runtime().db.session() as session:
        return present(session, owned(session, Broadcast, broadcast_id))


@bp.route("/broadcasts", methods=["GET"])
@bp.response(200, BroadcastOut(many=True))
def list_broadcasts():
    with runtime().db.session() as session:
        rows = session.scalars(select(Broadcast).where(Broadcast.workspace_id == g.workspace_id)
                               .order_by(Broadcast.created_at.desc()).limit(100)).all()
        return [present(session, bc) for bc in rows]
