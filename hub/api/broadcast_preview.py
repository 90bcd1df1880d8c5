"""``POST /api/v1/broadcasts?dry_run=true``: what a broadcast would do and cost, creating nothing.

The audience, routes and exclusions are the broadcast's own (``broadcasts._plan``); each
recipient is priced by the rate card for the template's category and the recipient's country
(``core/pricing``), at the in-window price when their customer service window is open on the
number that would send. Recipients under the owner's echo hold are still recipients (they get
the broadcast when the hold ends) and are counted in ``held``. The portfolio tier headroom and
the windows a broadcast would take are added by ``broadcasts.limit_eta`` (``portfolio``).
"""
from __future__ import annotations

from collections import Counter

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
