"""Signing in and out, the workspace switcher, and the helpers every console page uses.

The session cookie holds the user id, its ``session_version`` (a password change signs every
session out) and the workspace the person is looking at. ``console_page`` and ``current``
are what page modules use.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from typing import Callable

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from sqlalchemy import select
from werkzeug.exceptions import TooManyRequests

from hub.core import users
from hub.core.models import Membership, User, Workspace
from hub.web import throttle

log = logging.getLogger(__name__)
RANK = {"agent": 1, "admin": 2, "owner": 3}


@dataclasses.dataclass(frozen=True)
class Viewer:
    """Who is looking: the user, the workspace on screen and the role there."""
    user_id: str
    email: str
    name: str
    instance_admin: bool
    workspace_id: str | None
    workspace_name: str | None
    role: str | None
    workspaces: tuple[tuple[str, str, str], ...]  # (id, name, role) of every workspace of the user

    def can(self, role: str) -> bool:
        return RANK.get(self.role or "", 0) >= RANK[role]


def rt():
    return current_app.extensions["coexhub"]


def load_viewer() -> Viewer | None:
    """The signed-in person of this request (cached on ``g``), or None."""
    if "viewer" in g:
        return g.viewer
    viewer = None
    user_id = session.get("uid")
    if user_id:
        with rt().db.session() as s:
            user = s.get(User, user_id)
            if user is not None and user.session_version == session.get("sv"):
                rows = users.memberships(s, user.id)
                workspaces = tuple((w.id, w.name, m.role) for m, w in rows)
                if user.instance_admin:  # sees every workspace, as owner
                    known = {w[0] for w in workspaces}
                    workspaces += tuple((w.id, w.name, "owner") for w in
                                        s.scalars(select(Workspace).order_by(Workspace.name)) if w.id not in known)
                chosen = session.get("wid")
                current = next((w for w in workspaces if w[0] == chosen), workspaces[0] if workspaces else None)
                viewer = Viewer(user.id, user.email, user.name, user.instance_admin,
                                current[0] if current else None, current[1] if current else None,
                                current[2] if current else None, workspaces)
    g.viewer = viewer
    if viewer is not None:
        g.workspace_id = viewer.workspace_id  # the request's log line names it
    return viewer


def console_page(role: str = "agent", *, workspace: bool = True) -> Callable:
    """Decorator for a console view: signed in (else to the login page), a workspace chosen (unless
    ``workspace=False``) and at least ``role`` there (else 403)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            viewer = load_viewer()
            if viewer is None:
                return redirect(url_for("access.login", next=request.full_path.rstrip("?")))
            if workspace and viewer.workspace_id is None:
                return redirect(url_for("access.home"))
            if workspace and not viewer.can(role):
                abort(403)
            return view(*args, **kwargs)
        return wrapper
    return decorate


def current() -> Viewer:
    """The viewer of a ``console_page`` view."""
    viewer = load_viewer()
    assert viewer is not None, "current() outside a console_page view"
    return viewer


def console_blueprint(name: str, import_name: str, **options) -> Blueprint:
    """A blueprint for console pages: its POST forms must carry the session's CSRF token."""
    from hub.web.errors import on_console_error

    blueprint = Blueprint(name, import_name, **options)
    blueprint.before_request(_csrf_on_forms)
    blueprint.register_error_handler(Exception, on_console_error)  # HTML pages, not the API's JSON
    return blueprint


def _csrf_on_forms():
    if request.method == "POST":
        from hub.web import csrf

        csrf.protect()  # 400 "The CSRF token is missing." on a form without it


bp = console_blueprint("access", __name__, template_folder="templates", static_folder="static",
                       static_url_path="/console/static")


# The console's menu, in order: (endpoint, label, least role). A page module that is not there
# (yet) is left out of the menu.
NAV = (("inbox.index", "Inbox", "agent"), ("connectors.index", "Connectors", "admin"),
       ("queue.index", "Queue", "agent"), ("console_broadcasts.index", "Broadcasts", "admin"),
       ("console_analytics.index", "Analytics", "agent"), ("team.index", "Team", "agent"))


def console_nav() -> list[tuple[str, str]]:
    viewer = load_viewer()
    if viewer is None or viewer.workspace_id is None:
        return []
    return [(endpoint, label) for endpoint, label, role in NAV
            if endpoint in current_app.view_functions and viewer.can(role)]


@bp.app_context_processor
def _viewer_in_templates():
    return {"viewer": load_viewer() if request else None, "console_nav": console_nav}


@bp.get("/")
def home():
    viewer = load_viewer()
    if viewer is None:
        return redirect(url_for("access.login"))
    return render_template("console/home.html")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        email, password = request.form.get("email", ""), request.form.get("password", "")
        ip = request.remote_addr or ""
        wait = throttle.retry_after(rt(), email, ip)
        if wait is not None:
            log.warning("console sign-in throttled for %s from %s (%d s left)", users_email_hint(email), ip, wait)
            raise TooManyRequests(f"Too many failed sign-ins for this email or from this address. "
                                  f"Try again in {_minutes(wait)} (after {_clock(wait)} UTC).", retry_after=wait)
        with rt().db.session() as s:
            user = users.authenticate(s, email, password)
            if user is not None:
                session.clear()
                session.permanent = True
                session.update(uid=user.id, sv=user.session_version)
                first = s.scalar(select(Membership.workspace_id).where(Membership.user_id == user.id)
                                 .order_by(Membership.id))
                if first:
                    session["wid"] = first
        if user is None:
            throttle.failed(rt(), email, ip)
            log.warning("console sign-in refused for %s", users_email_hint(email))
            error = "Wrong email or password."
        else:
            throttle.succeeded(rt(), email)
            log.info("console sign-in: user %s", user.id)
            return redirect(same_site_path(request.args.get("next")) or url_for("access.home"))
    return render_template("console/login.html", error=error), (401 if error else 200)


def same_site_path(target: str | None) -> str | None:
    """``target`` if it is a path of this site (``/team?x=1``), else None: no scheme, no host, and
    nothing a browser reads as another host (``//evil``, ``/\\evil``, control characters)."""
    from urllib.parse import urlsplit

    target = target or ""
    if not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def _minutes(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _clock(seconds: int) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)).strftime("%H:%M")


def users_email_hint(email: str) -> str:
    """An email for logs without the full address (``a***@example.com``)."""
    local, _, domain = (email or "").partition("@")
    return f"{local[:1]}***@{domain[:60]}" if domain else "(no email)"


@bp.post("/logout")
def logout():
    session.clear()
    flash("Signed out.")
    return redirect(url_for("access.login"))


@bp.post("/workspace")
def switch_workspace():
    viewer = load_viewer()
    if viewer is None:
        return redirect(url_for("access.login"))
    wanted = request.form.get("workspace_id", "")
    if wanted not in {w[0] for w in viewer.workspaces}:
        abort(404)
    session["wid"] = wanted
    log.info("console: user %s switched to workspace %s", viewer.user_id, wanted)
    return redirect(url_for("access.home"))

