"""Console: connectors — what is installed, what can be, the install form generated from each
connector's config JSON Schema, the webhook URL and setup steps, enable/disable and each
installation's recent inbound events with a replay button.

Pages read through the ORM (always the viewer's workspace); every change goes through
``/api/v1/installations`` and ``/api/v1/events`` from ``data-api`` forms. Secret fields are
write-only: the pages never hold a stored secret, only whether it is set.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import re
from pathlib import Path
from typing import Any

from flask import abort, render_template
from sqlalchemy import func, select

from hub.api import ids
from hub.api.events import REPLAYABLE, public_text
from hub.api.installations import present, sending_warnings
from hub.core.connectors import config_json_schema
from hub.core.models import InboundEvent, Installation
from hub.web.access import console_blueprint, console_page, current, rt

log = logging.getLogger(__name__)
bp = console_blueprint("connectors", __name__)
RECENT_EVENTS = 25
DOCS = Path(__file__).resolve().parents[2] / "docs" / "connectors"  # the built-in connectors' guides
STEP = re.compile(r"^## (\d+)\.\s+(.+)$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Field:
    """One input of the generated config form."""
    name: str
    label: str
    kind: str  # text|password|url|email|number|checkbox|select|list|json
    required: bool
    default: Any
    description: str | None
    choices: tuple = ()
    number_step: str = "1"
    secret: bool = False

    @property
    def input_id(self) -> str:
        return f"cfg-{self.name}"


def form_fields(schema: dict[str, Any]) -> list[Field]:
    """The form inputs for a connector config JSON Schema (``config_json_schema``): strings,
    integers, numbers, booleans, enums, lists and objects; ``x-secret`` fields are password inputs."""
    out = []
    for name, spec in schema.get("properties", {}).items():
        kind, step = "text", "1"
        typ = spec.get("type")
        if spec.get("enum"):
            kind = "select"
        elif spec.get("x-secret"):
            kind = "password"
        elif typ in ("integer", "number"):
            kind, step = "number", ("1" if typ == "integer" else "any")
        elif typ == "boolean":
            kind = "checkbox"
        elif typ == "array" and (spec.get("items") or {}).get("type", "string") in ("string", "integer", "number"):
            kind = "list"
        elif typ in ("array", "object"):
            kind = "json"
        elif spec.get("format") in ("uri", "email"):
            kind = "url" if spec["format"] == "uri" else "email"
        out.append(Field(name=name, label=label(name), kind=kind,
                         required=name in schema.get("required", []), default=spec.get("default"),
                         description=spec.get("description"), choices=tuple(spec.get("enum") or ()),
                         number_step=step, secret=bool(spec.get("x-secret"))))
    return out


ACRONYMS = {"api": "API", "url": "URL", "id": "ID", "cod": "COD", "utm": "UTM", "sms": "SMS", "hmac": "HMAC"}


def label(name: str) -> str:
    """A field name as a label: ``api_token`` → "API token"."""
    words = [ACRONYMS.get(w, w) for w in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]]) if words else name


def _markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)  # raw HTML is escaped


@functools.lru_cache(maxsize=64)
def setup_steps(name: str) -> tuple[tuple[str, str], ...]:
    """The seller's setup steps of connector ``name`` as (title, HTML): the connector class's
    ``setup_steps`` (markdown strings, first line the title) when it has them, else the numbered
    sections of its guide (docs/connectors/<name>.md or a SETUP.md/README.md next to its module),
    without the "Install the connector" one the form replaces."""
    cls = rt().plugins.connectors.get(name)
    declared = getattr(cls, "setup_steps", None)
    if declared:
        return tuple((s.strip().splitlines()[0].lstrip("# "), _markdown("\n".join(s.strip().splitlines()[1:])))
                     for s in declared)
    guide = _guide(cls, name)
    if guide is None:
        return ()
    steps = []
    for mark in STEP.finditer(guide):
        end = guide.find("\n## ", mark.end())  # the next section, numbered or not
        end = len(guide) if end == -1 else end
        title = mark.group(2).strip()
        if "install the connector" in title.lower():
            continue
        steps.append((title, _markdown(guide[mark.end():end])))
    return tuple(steps)


def _guide(cls, name: str) -> str | None:
    import sys

    candidates = [DOCS / f"{name}.md"]
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    if module is not None and getattr(module, "__file__", None):
        here = Path(module.__file__).resolve().parent
        candidates += [here / "SETUP.md", here / "README.md"]
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return None


def describe(cls) -> dict[str, Any]:
    """An available connector as the pages show it."""
    schema = config_json_schema(cls.config_schema)
    import sys

    doc = cls.__doc__ or getattr(sys.modules.get(cls.__module__), "__doc__", None) or ""
    doc = " ".join(doc.strip().split("\n\n")[0].replace("``", "").split())
    doc = doc if len(doc) <= 220 else doc[:219].rsplit(" ", 1)[0] + "…"
    return {"name": cls.name, "title": cls.title or cls.name.title(), "description": doc,
            "topics": sorted(t for t in cls._webhook_handlers if t != "*"), "schema": schema,
            "fields": form_fields(schema)}


def _available() -> list[dict[str, Any]]:
    return [describe(cls) for cls in sorted(rt().plugins.connectors.values(), key=lambda c: c.name)]


def _installation(session, installation_id: str) -> Installation:
    inst = session.get(Installation, installation_id)
    if inst is None or inst.workspace_id != current().workspace_id:
        abort(404)
    return inst


def event_view(event: InboundEvent) -> dict[str, Any]:
    """An inbound event's outcome in words: processed / retrying / rejected / dead / unrouted."""
    outcome = event.outcome if isinstance(event.outcome, dict) else {}
    status = event.status
    if status == "pending" and event.attempts:
        status = "failed"  # waiting for its next attempt
    sends = outcome.get("sends") if isinstance(outcome.get("sends"), list) else []
    skipped = [str(s) for s in outcome.get("skipped") or [] if s] if isinstance(outcome.get("skipped"), list) else []
    return {"id": ids.encode("evt", event.id), "topic": event.topic or "—", "status": status,
            "tone": {"processed": "ok", "pending": "", "failed": "warn"}.get(status, "bad"),
            "attempts": event.attempts, "error": public_text(event.last_error),
            "sends": len(sends), "skipped": skipped[:3], "received_at": event.received_at,
            "replayable": event.status in REPLAYABLE}


@bp.get("/connectors")
@console_page(role="admin")
def index():
    viewer = current()
    with rt().db.session() as s:
        rows = s.scalars(select(Installation).where(Installation.workspace_id == viewer.workspace_id)
                         .order_by(Installation.created_at)).all()
        problems = dict(s.execute(
            select(InboundEvent.scope, func.count()).where(
                InboundEvent.workspace_id == viewer.workspace_id,
                InboundEvent.scope.in_([r.id for r in rows] or [""]),
                InboundEvent.status.in_(("dead", "rejected", "unrouted"))).group_by(InboundEvent.scope)).all())
        installed = [{**present(r, sending_warnings(s, r)), "problems": problems.get(r.id, 0)} for r in rows]
    available = _available()
    titles = {c["name"]: c["title"] for c in available}
    return render_template("console/connectors/index.html", installed=installed, available=available,
                           titles=titles)


@bp.get("/connectors/new/<name>")
@console_page(role="admin")
def new(name: str):
    cls = rt().plugins.connector(name)
    if cls is None:
        abort(404)
    return render_template("console/connectors/install.html", connector=describe(type(cls)),
                           steps=setup_steps(name))


@bp.get("/connectors/<installation_id>")
@console_page(role="admin")
def show(installation_id: str):
    with rt().db.session() as s:
        inst = _installation(s, installation_id)
        view = present(inst, sending_warnings(s, inst))
        events = s.scalars(select(InboundEvent).where(
            InboundEvent.workspace_id == inst.workspace_id, InboundEvent.scope == inst.id)
            .order_by(InboundEvent.id.desc()).limit(RECENT_EVENTS)).all()
        events = [event_view(e) for e in events]
    cls = rt().plugins.connectors.get(view["connector"])
    connector = describe(cls) if cls is not None else None
    return render_template("console/connectors/show.html", inst=view, connector=connector, events=events,
                           steps=setup_steps(view["connector"]) if cls is not None else ())
