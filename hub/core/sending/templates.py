"""Check template sends against the synced template before Meta sees them, and build the
``template`` object of the Graph payload.

``params`` is either a list (the body's parameters, in order) or a dict with ``header``,
``body`` and ``buttons`` (``[{"index": 0, "sub_type": "url", "params": ["abc"]}]``).
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from hub.core.models import Template

PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


class TemplateProblem(ValueError):
    """A template send Meta would refuse; ``code`` names the kind of problem for API errors."""

    def __init__(self, message: str, code: str = "template_params_invalid"):
        super().__init__(message)
        self.code = code


def params_problem(params: Any) -> str | None:
    """Why ``params`` has the wrong shape (see the module docstring), or None."""
    scalar_or_dict = (str, int, float, dict)
    if isinstance(params, list):
        return None if all(isinstance(p, scalar_or_dict) for p in params) else "params must be texts, numbers or objects"
    if not isinstance(params, dict):
        return "params must be a list or an object with header, body and buttons"
    if set(params) - {"header", "body", "buttons"}:
        return f"unknown params keys: {sorted(set(params) - {'header', 'body', 'buttons'})}"
    for part in ("header", "body"):
        if not isinstance(params.get(part, []), list):
            return f"params.{part} must be a list"
    for button in params.get("buttons", []) if isinstance(params.get("buttons", []), list) else [None]:
        if not isinstance(button, dict) or not str(button.get("index", "")).isdigit() \
                or not isinstance(button.get("params", []), list):
            return "each of params.buttons needs an integer index and a params list"
    return None


def find_template(session, workspace_id: str, waba_id: str, name: str | None, language: str | None):
    return session.scalars(select(Template).where(
        Template.workspace_id == workspace_id, Template.waba_id == waba_id, Template.name == name,
        Template.language == language)).first()


def placeholders(text: str | None) -> list[str]:
    seen: list[str] = []
    for name in PLACEHOLDER.findall(text or ""):
        if name not in seen:
            seen.append(name)
    return seen


def _component(template: Template, kind: str) -> dict[str, Any]:
    return next((c for c in template.components or [] if str(c.get("type", "")).upper() == kind), {})


def _text_params(values: list[Any], where: str, expected: list[str]) -> list[dict[str, Any]]:
    if len(values) != len(expected):
        raise TemplateProblem(f"{where} expects {len(expected)} parameter(s), got {len(values)}")
    out = []
    for name, value in zip(expected, values):
        if isinstance(value, dict):  # already a Graph parameter (currency, date_time, media…)
            out.append(value)
            continue
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value).strip() == "":
            raise TemplateProblem(f"{where} parameter {name!r} must be non-empty text, got {value!r}")
        param = {"type": "text", "text": str(value)}
        if not name.isdigit():
            param["parameter_name"] = name
        out.append(param)
    return out


def build_template(template: Template | None, name: str | None, language: str | None, params: Any) -> dict:
    if template is None:
        raise TemplateProblem(f"template {name!r} ({language}) is not known for this number's WhatsApp Business "
                              "Account: sync templates first (POST /api/v1/templates/sync)", "template_unknown")
    if template.status != "APPROVED":
        raise TemplateProblem(f"template {name!r} ({language}) is {template.status}, not APPROVED",
                              "template_not_approved")
    problem = params_problem(params if params is not None else [])
    if problem:
        raise TemplateProblem(problem)
    spec = params if isinstance(params, dict) else {"body": list(params or [])}
    components = []
    header = _component(template, "HEADER")
    if header.get("format", "TEXT").upper() == "TEXT":
        header_params = _text_params(list(spec.get("header") or []), "header", placeholders(header.get("text")))
        if header_params:
            components.append({"type": "header", "parameters": header_params})
    elif header:
        media = spec.get("header") or []
        if not media or not isinstance(media[0], dict):
            raise TemplateProblem(f"header needs a {header['format'].lower()} parameter")
        components.append({"type": "header", "parameters": media[:1]})
    body = _text_params(list(spec.get("body") or []), "body", placeholders(_component(template, "BODY").get("text")))
    if body:
        components.append({"type": "body", "parameters": body})
    buttons = (_component(template, "BUTTONS").get("buttons")) or []
    given = {int(b.get("index", 0)): b for b in spec.get("buttons") or []}
    for index, button in enumerate(buttons):
        needs = placeholders(button.get("url")) if button.get("type") == "URL" else []
        if needs and index not in given:
            raise TemplateProblem(f"button {index} needs a URL parameter")
        if index in given:
            sub_type = given[index].get("sub_type") or ("url" if button.get("type") == "URL" else "quick_reply")
            values = given[index].get("params") or []
            kind = "payload" if sub_type == "quick_reply" else "text"
            components.append({"type": "button", "sub_type": sub_type, "index": str(index),
                               "parameters": [{"type": kind, kind: str(v)} for v in values]})
    return {"name": template.name, "language": {"code": template.language}, "components": components}


def upsert_templates(session, workspace_id: str, waba_id: str, graph_templates: list[dict]) -> int:
    """Store templates as the Graph API lists them; returns how many."""
    for item in graph_templates:
        template = session.scalars(select(Template).where(
            Template.workspace_id == workspace_id, Template.waba_id == waba_id, Template.name == item.get("name"),
            Template.language == item.get("language"))).first()
        if template is None:
            template = Template(workspace_id=workspace_id, waba_id=waba_id, name=item.get("name"),
                                language=item.get("language"))
            session.add(template)
        template.meta_id = str(item.get("id") or "") or None
        template.category, template.status = item.get("category"), item.get("status") or "APPROVED"
        template.components = item.get("components") or []
    return len(graph_templates)
