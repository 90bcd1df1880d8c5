"""The Team page: members and their roles, invitations by link (the hub sends no email), and
the page where an invited person accepts. Only owners change the team; the last owner of a
workspace can be neither demoted nor removed. Every change is logged (ids, never tokens)."""
from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, session, url_for

from hub.core import users
from hub.core.models import User, Workspace
from hub.web.access import console_blueprint, console_page, current, load_viewer, rt, users_email_hint

log = logging.getLogger(__name__)
bp = console_blueprint("team", __name__)


def _page(status: int = 200, **extra):
    viewer = current()
    with rt().db.session() as s:
        people = [{"user_id": u.id, "email": u.email, "name": u.name, "role": m.role, "since": m.created_at,
                   "last_login_at": u.last_login_at} for m, u in users.members(s, viewer.workspace_id)]
        invitations = [{"id": i.id, "email": i.email, "role": i.role, "expires_at": i.expires_at,
                        "expired": users.expired(i)} for i in users.pending_invitations(s, viewer.workspace_id)]
    owners = sum(1 for p in people if p["role"] == "owner")
    return render_template("console/team/index.html", people=people, invitations=invitations, owners=owners,
                           roles=users.ROLES, **extra), status


@bp.get("/team")
@console_page("agent")
def index():
    return _page()


@bp.post("/team/invitations")
@console_page("owner")
def invite():
    viewer = current()
    email, role = request.form.get("email", ""), request.form.get("role", "agent")
    try:
        with rt().db.session() as s:
            invitation, token = users.invite(s, viewer.workspace_id, email, role, viewer.user_id)
            created = {"email": invitation.email, "role": invitation.role, "expires_at": invitation.expires_at,
                       "link": url_for("team.accept", token=token, _external=True)}
            invitation_id = invitation.id
    except users.UserError as exc:
        return _page(422, invite_error=str(exc), invite_form={"email": email, "role": role})
    log.info("team: %s invited %s as %s to workspace %s (invitation %s)", viewer.user_id,
             users_email_hint(created["email"]), role, viewer.workspace_id, invitation_id)
    return _page(201, created=created)


@bp.post("/team/invitations/<invitation_id>/revoke")
@console_page("owner")
def revoke(invitation_id: str):
    viewer = current()
    try:
        with rt().db.session() as s:
            invitation = users.revoke_invitation(s, viewer.workspace_id, invitation_id)
            email = invitation.email
    except users.UserError as exc:
        return _page(404, team_error=str(exc))
    log.info("team: %s revoked invitation %s in workspace %s", viewer.user_id, invitation_id, viewer.workspace_id)
    flash(f"Invitation for {email} revoked: its link no longer works.")
    return redirect(url_for("team.index"), 303)


@bp.post("/team/members/<user_id>/role")
@console_page("owner")
def change_role(user_id: str):
    viewer = current()
    role = request.form.get("role", "")
    try:
        with rt().db.session() as s:
            member = users.change_role(s, viewer.workspace_id, user_id, role)
            email = s.get(User, member.user_id).email
    except users.UserError as exc:
        return _page(422, team_error=str(exc))
    log.info("team: %s set the role of %s to %s in workspace %s", viewer.user_id, user_id, role, viewer.workspace_id)
    flash(f"{email} is now {role}.")
    return redirect(url_for("team.index"), 303)


@bp.post("/team/members/<user_id>/remove")
@console_page("owner")
def remove(user_id: str):
    viewer = current()
    try:
        with rt().db.session() as s:
            email = s.get(User, users.remove_member(s, viewer.workspace_id, user_id).user_id).email
    except users.UserError as exc:
        return _page(422, team_error=str(exc))
    log.info("team: %s removed %s from workspace %s", viewer.user_id, user_id, viewer.workspace_id)
    flash(f"{email} was removed from {viewer.workspace_name}.")
    if user_id == viewer.user_id:
        session.pop("wid", None)
        return redirect(url_for("access.home"), 303)
    return redirect(url_for("team.index"), 303)


# -- accepting an invitation: no sign-in needed (a new person creates an account here) -------------
@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept(token: str):
    viewer = load_viewer()
    with rt().db.session() as s:
        try:
            invitation = users.open_invitation(s, token)
        except users.UserError as exc:
            status = 404 if "not valid" in str(exc) else 410
            log.info("team: invitation link refused (%s)", exc)
            return render_template("console/team/invite_closed.html", reason=str(exc)), status
        workspace = s.get(Workspace, invitation.workspace_id)
        known = users.user_by_email(s, invitation.email)
        view = {"email": invitation.email, "role": invitation.role, "workspace": workspace.name,
                "mode": ("join" if viewer and viewer.email == invitation.email else
                         "other" if viewer else "sign_in" if known else "create")}
        if request.method == "GET":
            return render_template("console/team/accept.html", invitation=view)
        if view["mode"] == "join":
            user = s.get(User, viewer.user_id)
        elif view["mode"] == "create":
            name = request.form.get("name", "").strip()
            password = request.form.get("password", "")
            try:
                if not name:
                    raise users.UserError("enter your name")
                if password != request.form.get("password_again", ""):
                    raise users.UserError("the two passwords differ")
                user = users.create_user(s, invitation.email, password, name=name)
            except users.UserError as exc:
                return render_template("console/team/accept.html", invitation=view, error=str(exc),
                                       name=name), 422
        else:
            return render_template("console/team/accept.html", invitation=view), 409
        users.accept(s, invitation, user)
        user_id, version, workspace_id = user.id, user.session_version, invitation.workspace_id
        log.info("team: %s accepted invitation %s (%s, workspace %s)", user_id, invitation.id, invitation.role,
                 workspace_id)
    if view["mode"] == "create":
        session.clear()  # a fresh session for the new account (no fixation)
        session.permanent = True
        session.update(uid=user_id, sv=version)
    session["wid"] = workspace_id
    flash(f"Welcome to {view['workspace']}: you joined as {view['role']}.")
    return redirect(url_for("access.home"), 303)
