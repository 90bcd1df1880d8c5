"""``POST /api/v1/broadcasts?dry_run=true``: what a broadcast would do and cost, creating nothing.

The audience, routes and exclusions are the broadcast's own (``broadcasts._plan``); each
recipient is priced by the rate card for the template's category and the recipient's country
(``core/pricing``), at the in-window price when their customer service window is open on the
number that would send. Recipients under the owner's echo hold are still recipients (they get
the broadcast when the hold ends) and are counted in ``held``. ``preview`` shows the first
recipients with the body text each would read and the first exclusions with who they are
(the console's Broadcasts page draws it before anything is sent). The portfolio tier headroom and
the windows a broadcast would take are added by ``broadcasts.limit_eta`` (``portfolio``).
"""
from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from hub.core.models import Contact, Template, utcnow
from hub.core.pricing import costs, ratecard
from hub.core.sending import checks, windows


def dry_run_report(session, workspace_id: str, template: Template, routes: dict, plan: list[tuple[Contact, list]],
                   excluded: dict[str, int]) -> dict:
    """The dry-run answer: recipients, exclusions by reason, held, per number, estimated cost."""
    now, category = utcnow(), checks.category_of(template)
    rows = windows.preload(session, {(routes[c.id].connection_id, c.id) for c, _ in plan})
    card = ratecard.current(session, workspace_id)
    held, numbers, priced = 0, Counter(), []
    for contact, _ in plan:
        row = rows.get((routes[contact.id].connection_id, contact.id))
        held += windows.held_until(row, "broadcast", now) is not None
        numbers[routes[contact.id].connection_id] += 1
        priced.append((ratecard.country_of(contact.wa_id), category, windows.is_open(row, now)))
    return {"dry_run": True, "template_name": template.name, "template_language": template.language,
            "category": category, "recipients": len(plan), "excluded": excluded,
            "excluded_total": sum(excluded.values()), "held": held,
            "recipients_by_connection": dict(numbers), "estimate": costs.estimate(card, priced)}


PREVIEWED = 10  # recipients and exclusions shown one by one in a dry run's ``preview``


def body_text(template: Template) -> str:
    """The template's body as approved, with its ``{{1}}``/``{{name}}`` placeholders."""
    body = next((c for c in template.components or [] if str(c.get("type", "")).upper() == "BODY"), {})
    return str(body.get("text") or "")


def render(template: Template, params: list) -> str:
    """The body one recipient would read: placeholders replaced by ``params`` in order."""
    from hub.core.sending.templates import PLACEHOLDER, placeholders

    values = dict(zip(placeholders(body_text(template)), (str(p) for p in params)))
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), body_text(template))


def _who(contact: Contact) -> dict:
    from hub.api import ids

    return {"contact_id": ids.encode("ct", contact.id), "wa_id": contact.wa_id,
            "name": contact.profile_name or contact.full_name or contact.first_name}


def preview(session, template: Template, routes: dict, plan: list[tuple[Contact, list]],
            exclusions: list[dict], limit: int = PREVIEWED) -> dict:
    """The first ``limit`` recipients with the text each would get (and the end of the owner's
    hold when one applies), and the first ``limit`` exclusions with who they are."""
    from hub.api import ids

    now, shown = utcnow(), plan[:limit]
    rows = windows.preload(session, {(routes[c.id].connection_id, c.id) for c, _ in shown})
    recipients = []
    for contact, params in shown:
        held = windows.held_until(rows.get((routes[contact.id].connection_id, contact.id)), "broadcast", now)
        recipients.append({**_who(contact), "params": params, "text": render(template, params),
                           "held_until": held.isoformat() + "Z" if held else None})
    wanted = {ids.decode("ct", e["contact_id"]): e["reason"] for e in exclusions[:limit]}
    found = {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_([k for k in wanted if k])))}
    excluded = [{**_who(found[k]), "reason": reason} for k, reason in wanted.items() if k in found]
    return {"body": body_text(template), "recipients": recipients, "excluded": excluded}
