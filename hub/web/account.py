"""The Account page (change your own password: every other session of yours is signed out) and
the instance admin's Workspaces page (create a workspace: you become its owner, its API key is
shown once)."""
from __future__ import annotations

import logging

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import func, select

from hub.core import users
from hub.core.models import Membership, User, Workspace
from hub.web.access import console_blueprint, console_page, current, rt

log = logging.getLogger(__name__)
bp = console_blueprint("account", __name__)
instance = console_blueprint("instance", __name__)


@bp.route("/account", methods=["GET", "POST"])
@console_page(workspace=False)
def index():
    viewer = current()
    if request.method == "GET":
        return render_template("console/account/index.html")
    new = request.form.get("new_password", "")
    with rt().db.session() as s:
        user = s.get(User, viewer.user_id)
        try:
            if not users.password_matches(user, request.form.get("current_password", "")):
                raise users.UserError("the current password is not right")
            if new != request.form.get("new_password_again", ""):
                raise users.UserError("the two new passwords differ")
            users.set_password(user, new)
        except users.UserError as exc:
            log.info("account: password change refused for %s (%s)", viewer.user_id, exc)
            return render_template("console/account/index.html", error=str(exc)), 422
        session["sv"] = user.session_version  # this session stays; every other one is signed out
    log.info("account: %s changed their password; other sessions signed out", viewer.user_id)
    flash("Password changed. Your other sessions are signed out.")
    return redirect(url_for("account.index"), 303)


def _instance_admin():
    if not current().instance_admin:
        abort(403)


def _workspaces_page(status: int = 200, **extra):
    with rt().db.session() as s:
        counts = dict(s.execute(select(Membership.workspace_id, func.count()).group_by(Membership.workspace_id)).all())
        rows = [{"id": w.id, "name": w.name, "created_at": w.created_at, "people": counts.get(w.id, 0)}
                for w in s.scalars(select(Workspace).order_by(Workspace.created_at))]
    return render_template("console/account/workspaces.html", workspaces=rows, **extra), status


@instance.get("/admin/workspaces")
@console_page(workspace=False)
def workspaces():
    _instance_admin()
    return _workspaces_page()


@instance.post("/admin/workspaces")
@console_page(workspace=False)
def create_workspace():
    from hub.api.workspaces import create_workspace as create

    _instance_admin()
    viewer = current()
    name = request.form.get("name", "").strip()
    if not name or len(name) > 200:
        return _workspaces_page(422, error="enter a name of 1 to 200 characters", name=name)
    with rt().db.session() as s:
        workspace, key = create(s, name)
        users.add_member(s, s.get(User, viewer.user_id), workspace.id, "owner")
        created = {"id": workspace.id, "name": workspace.name, "api_key": key}
    log.info("instance: %s created workspace %s and owns it", viewer.user_id, created["id"])
    session["wid"] = created["id"]  # the new workspace is the one on screen now
    g.pop("viewer", None)  # this very page shows it in the header already
    return _workspaces_page(201, created=created)
