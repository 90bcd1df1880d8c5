"""The rules a send must pass before Meta sees it, written once.

The send pipeline (``pipeline.prepare``) applies them to every send when it is delivered; the
API applies the ones it can know at request time (``check_request``) and answers 422 with the
problem's ``code`` and ``message`` instead of queueing a send that is bound to fail. What only
delivery can tell (a paused number, the echo-aware hold, pacing, Meta's own answer) stays
asynchronous.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from hub.core import bsuid
from hub.core.models import Connection, Contact, ContactWindow, Template, utcnow
from hub.core.sending import marketing, windows
from hub.core.sending.templates import TemplateProblem, build_template, find_template


class SendProblem(Exception):
    """Why a send cannot go out: a stable ``code`` and a message for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def connection_problem(conn: Connection | None) -> SendProblem | None:
    if conn is None:
        return SendProblem("no_connection", "no WhatsApp connection in this workspace: connect a number first "
                                            "(POST /api/v1/connections/onboard)")
    return None


def opt_out_problem(contact: Contact | None, origin: str) -> SendProblem | None:
    """Opted-out contacts get nothing but the hub's own confirmations (origin ``system``)."""
    if contact is not None and contact.opted_out and origin != "system":
        return SendProblem("contact_opted_out", "contact opted out")
    return None


def marketing_problem(contact: Contact | None, category: str | None) -> SendProblem | None:
    if contact is not None and category == "marketing" and contact.marketing_opted_out:
        return SendProblem("contact_opted_out_of_marketing", "contact opted out of marketing messages")
    return None


def bsuid_problem(to: str | None, category: str | None) -> SendProblem | None:
    """Meta does not take authentication templates to a BSUID (error 131062): refused here first."""
    if category == bsuid.AUTH_CATEGORY and bsuid.is_bsuid(to):
        return SendProblem("authentication_needs_phone", bsuid.AUTH_MESSAGE)
    return None


def category_of(template: Template | None) -> str | None:
    """The template's category in lower case (``marketing``, ``utility``…), if known."""
    return template.category.lower() if template is not None and template.category else None


def template_components(template: Template | None, name: str | None, language: str | None,
                        params: Any) -> dict:
    """The Graph ``template`` object, or a SendProblem: unknown, not approved, wrong parameters."""
    try:
        return build_template(template, name, language, params)
    except TemplateProblem as problem:
        raise SendProblem(problem.code, str(problem)) from problem


def window_problem(row: ContactWindow | None, now: dt.datetime | None = None) -> SendProblem | None:
    """Free-form text only inside 24 hours of the customer's last message to this number."""
    if windows.is_open(row, now):
        return None
    return SendProblem("outside_window", "outside the 24-hour customer service window of this number "
                                         "(the customer has not written to it in 24 hours): send a template")


def check_request(session: Session, *, workspace_id: str, conn: Connection | None, contact: Contact | None,
                  kind: str, origin: str, template: str | None = None, language: str | None = None,
                  params: Any = None, scheduled: bool = False, to: str | None = None) -> None:
    """Raise the first SendProblem a send would meet that is knowable now (see the module
    docstring). A scheduled text is not judged by today's window: the customer may write first."""
    for problem in (connection_problem(conn), opt_out_problem(contact, origin)):
        if problem:
            raise problem
    if kind == "template":
        found = find_template(session, workspace_id, conn.waba_id, template, language)
        problem = marketing_problem(contact, category_of(found)) or bsuid_problem(to, category_of(found))
        if problem:
            raise problem
        frequency = marketing.problem(session, workspace_id, contact, category_of(found))
        if frequency:
            raise SendProblem(frequency.code, frequency.message)
        template_components(found, template, language, params)
    elif not scheduled:
        problem = window_problem(windows.window(session, conn.id, contact.id if contact else None), utcnow())
        if problem:
            raise problem
