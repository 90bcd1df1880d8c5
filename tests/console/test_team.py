"""People and access through the app: the Team page (invite → accept → role → remove, the last
owner kept), workspaces of the instance admin, the Account page, sign-in throttling, console
error pages, and the ``coexhub user`` commands."""
from __future__ import annotations

import datetime as dt
import re
import secrets
from urllib.parse import urlencode

from sqlalchemy import select

from hub.core import users
from hub.core.models import Invitation, Membership, User, Workspace
from hub.testing import ConsoleUser


def invite(owner, email: str, role: str = "agent") -> str:
    """The invitation link the owner is shown (once)."""
    page = owner.form("/team/invitations", {"email": email, "role": role})
    assert page.status_code == 201, page.get_data(as_text=True)[:800]
    match = re.search(r'id="invite-link" type="text" readonly value="([^"]+)"', page.get_data(as_text=True))
    assert match, "no invitation link on the page"
    return match.group(1)


def accept_as_new_person(client, link: str, name: str = "Ravi", password: str = "a long new password"):
    person = ConsoleUser(client.app, "", password)
    path = link.split("://", 1)[1].split("/", 1)[1]
    form = person.http.get("/" + path)
    assert form.status_code == 200 and "Create my account and join" in form.get_data(as_text=True)
    done = person.form("/" + path, {"name": name, "password": password, "password_again": password})
    return person, done


def member_role(client, workspace_id: str, email: str) -> str | None:
    with client.rt.db.session() as s:
        return s.scalar(select(Membership.role).join(User, User.id == Membership.user_id)
                        .where(User.email == email, Membership.workspace_id == workspace_id))


def user_id(client, email: str) -> str:
    with client.rt.db.session() as s:
        return s.scalar(select(User.id).where(User.email == email))


def test_invite_accept_change_role_and_remove(client, workspace, caplog):
    owner = client.console(workspace, role="owner")
    email = f"ravi-{secrets.token_hex(3)}@example.com"
    link = invite(owner, email, "agent")
    token = link.rsplit("/", 1)[1]
    assert token.startswith("inv_") and token not in caplog.text  # links are never logged
    team = owner.get("/team").get_data(as_text=True)
    assert email in team and "Pending invitations" in team and token not in team  # shown once

    person, done = accept_as_new_person(client, link)
    assert done.status_code == 303 and done.headers["Location"].endswith("/")
    home = person.http.get("/").get_data(as_text=True)
    assert "Test shop" in home and "you joined as agent" in home
    assert member_role(client, workspace.id, email) == "agent"
    assert person.http.get("/" + link.split("/", 3)[3]).status_code == 410  # used: a clear page
    assert "already used" in person.http.get("/" + link.split("/", 3)[3]).get_data(as_text=True)
    assert ConsoleUser(client.app, email, "a long new password").sign_in().status_code == 302

    # an agent sees the team but cannot change it
    assert person.http.get("/team").status_code == 200
    refused = person.form(f"/team/members/{user_id(client, owner.email)}/role", {"role": "agent"})
    assert refused.status_code == 403 and "<html" in refused.get_data(as_text=True)

    uid = user_id(client, email)
    assert owner.form(f"/team/members/{uid}/role", {"role": "admin"}).status_code == 303
    assert member_role(client, workspace.id, email) == "admin"
    assert owner.form(f"/team/members/{uid}/remove").status_code == 303
    assert member_role(client, workspace.id, email) is None
    assert person.http.get("/team").headers["Location"].endswith("/")  # no workspace left: home
    for line in ("invited r***@example.com as agent", "accepted invitation", "set the role of", "removed"):
        assert line in caplog.text


def test_a_person_with_an_account_joins_after_signing_in(client, workspace):
    other = client.new_workspace("Agency client B")
    agent = client.console(other, role="agent")
    owner = client.console(workspace, role="owner")
    link = "/" + invite(owner, agent.email, "admin").split("/", 3)[3]
    anonymous = ConsoleUser(client.app, agent.email, agent.password)
    assert "Sign in to accept" in anonymous.http.get(link).get_data(as_text=True)
    assert agent.form(link).status_code == 303
    assert member_role(client, workspace.id, agent.email) == "admin"
    assert member_role(client, other.id, agent.email) == "agent"
    # someone else signed in cannot use it
    stranger = client.console(workspace, role="agent")
    link2 = "/" + invite(owner, f"x-{secrets.token_hex(3)}@example.com").split("/", 3)[3]
    assert "but this invitation is for" in stranger.http.get(link2).get_data(as_text=True)
    assert stranger.form(link2).status_code == 409


def test_invalid_expired_and_revoked_links_get_a_clear_page(client, workspace):
    owner = client.console(workspace, role="owner")
    visitor = ConsoleUser(client.app, "", "")
    invalid = visitor.http.get("/invite/inv_not-a-real-token")
    assert invalid.status_code == 404 and "not valid" in invalid.get_data(as_text=True)
    link = "/" + invite(owner, "late@example.com").split("/", 3)[3]
    with client.rt.db.session() as s:
        invitation = s.scalars(select(Invitation).where(Invitation.workspace_id == workspace.id)).one()
        invitation.expires_at = users.utcnow() - dt.timedelta(minutes=1)
        invitation_id = invitation.id
    expired = visitor.http.get(link)
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    assert "expired" in owner.get("/team").get_data(as_text=True)
    assert owner.form(f"/team/invitations/{invitation_id}/revoke").status_code == 303
    assert visitor.http.get(link).status_code == 404
    assert "None." in owner.get("/team").get_data(as_text=True)


def test_the_last_owner_can_be_neither_demoted_nor_removed(client, workspace):
    owner = client.console(workspace, role="owner")
    me = user_id(client, owner.email)
    demoted = owner.form(f"/team/members/{me}/role", {"role": "admin"})
    assert demoted.status_code == 422 and "at least one owner" in demoted.get_data(as_text=True)
    removed = owner.form(f"/team/members/{me}/remove")
    assert removed.status_code == 422 and "at least one owner" in removed.get_data(as_text=True)
    assert member_role(client, workspace.id, owner.email) == "owner"
    second = client.console(workspace, role="owner")
    assert owner.form(f"/team/members/{me}/role", {"role": "admin"}).status_code == 303  # another owner exists
    assert member_role(client, workspace.id, owner.email) == "admin"
    assert second.form(f"/team/members/{user_id(client, second.email)}/remove").status_code == 422


def test_bad_invitations_are_refused_with_the_reason(client, workspace):
    owner = client.console(workspace, role="owner")
    for data, reason in (({"email": "not-an-email", "role": "agent"}, "enter an email address"),
                         ({"email": "a@example.com", "role": "king"}, "role must be one of"),
                         ({"email": owner.email, "role": "agent"}, "already a member")):
        page = owner.form("/team/invitations", data)
        assert page.status_code == 422 and reason in page.get_data(as_text=True)
    assert owner.http.post("/team/invitations", data={"email": "a@example.com"}).status_code == 400  # no CSRF
    admin = client.console(workspace, role="admin")
    assert admin.form("/team/invitations", {"email": "b@example.com"}).status_code == 403


def test_the_team_of_another_workspace_is_out_of_reach(client, workspace):
    other = client.new_workspace("Other shop")
    their_owner = client.console(other, role="owner")
    their_invite = invite(their_owner, "theirs@example.com")
    owner = client.console(workspace, role="owner")
    assert their_owner.email not in owner.get("/team").get_data(as_text=True)
    assert "theirs@example.com" not in owner.get("/team").get_data(as_text=True)
    theirs = user_id(client, their_owner.email)
    assert owner.form(f"/team/members/{theirs}/remove").status_code == 422
    assert owner.form(f"/team/members/{theirs}/role", {"role": "agent"}).status_code == 422
    with client.rt.db.session() as s:
        inv_id = s.scalar(select(Invitation.id).where(Invitation.workspace_id == other.id))
    assert owner.form(f"/team/invitations/{inv_id}/revoke").status_code == 404
    assert member_role(client, other.id, their_owner.email) == "owner"
    assert their_invite  # still valid
    assert ConsoleUser(client.app, "", "").http.get("/" + their_invite.split("/", 3)[3]).status_code == 200


def test_an_agency_user_switches_between_client_workspaces(client, workspace):
    other = client.new_workspace("Client two")
    agency = client.console(workspace, role="admin")
    with client.rt.db.session() as s:
        users.add_member(s, users.user_by_email(s, agency.email), other.id, "agent")
    assert "Test shop" in agency.get("/team").get_data(as_text=True)
    assert agency.form("/workspace", {"workspace_id": other.id}).status_code == 302
    page = agency.get("/team").get_data(as_text=True)
    assert "Team of Client two" in page and "Client two (agent)" in page
    assert agency.api("POST", "/api/v1/installations", json={"connector": "acme", "config": {}}).status_code == 403


def test_the_instance_admin_creates_workspaces_and_owns_them(client, workspace):
    owner = client.console(workspace, role="owner")
    assert owner.get("/admin/workspaces").status_code == 403
    admin = client.console(None, instance_admin=True)
    created = admin.form("/admin/workspaces", {"name": "Agency client C"})
    assert created.status_code == 201
    key = re.search(r'value="(chk_[^"]+)"', created.get_data(as_text=True)).group(1)
    with client.rt.db.session() as s:
        ws = s.scalars(select(Workspace).where(Workspace.name == "Agency client C")).one()
    assert member_role(client, ws.id, admin.email) == "owner"
    assert client.get("/api/v1/workspace", headers={"Authorization": f"Bearer {key}"}).json["id"] == ws.id
    assert key not in admin.get("/admin/workspaces").get_data(as_text=True)  # shown once
    assert "Team of Agency client C" in admin.get("/team").get_data(as_text=True)  # on screen now
    assert admin.form("/admin/workspaces", {"name": ""}).status_code == 422


def test_changing_the_password_signs_other_sessions_out(client, workspace):
    me = client.console(workspace, role="agent")
    laptop = ConsoleUser(client.app, me.email, me.password)
    laptop.sign_in()
    assert laptop.get("/team").status_code == 200
    wrong = me.form("/account", {"current_password": "not it at all", "new_password": "another long password",
                                 "new_password_again": "another long password"})
    assert wrong.status_code == 422 and "current password is not right" in wrong.get_data(as_text=True)
    short = me.form("/account", {"current_password": me.password, "new_password": "short",
                                 "new_password_again": "short"})
    assert short.status_code == 422 and "at least 10 characters" in short.get_data(as_text=True)
    assert laptop.get("/team").status_code == 200
    done = me.form("/account", {"current_password": me.password, "new_password": "another long password",
                                "new_password_again": "another long password"})
    assert done.status_code == 303
    assert me.get("/team").status_code == 200  # this session stays
    assert laptop.get("/team").headers["Location"].startswith("/login")  # the old cookie no longer works
    assert laptop.get("/api/v1/contacts").status_code == 401
    assert ConsoleUser(client.app, me.email, "another long password").sign_in().status_code == 302


def _attempt(client, email: str, password: str, ip: str):
    person = ConsoleUser(client.app, email, password)
    person.http.environ_base["REMOTE_ADDR"] = ip
    return person.http.post("/login", data={"email": email, "password": password, "csrf_token": person.csrf_token()})


def test_failed_sign_ins_are_throttled_per_email_and_per_address(client, workspace, caplog):
    from hub.web import throttle

    person = client.console(workspace)
    for i in range(throttle.LIMIT):  # from many addresses: the email's count
        assert _attempt(client, person.email, "wrong password", f"198.51.100.{i + 1}").status_code == 401
    blocked = _attempt(client, person.email, person.password, "198.51.100.200")
    text = blocked.get_data(as_text=True)
    assert blocked.status_code == 429 and "Too many failed sign-ins" in text and "Try again in 15 minutes" in text
    assert 0 < int(blocked.headers["Retry-After"]) <= throttle.WINDOW and "<html" in text
    assert person.email not in caplog.text
    ip = f"203.0.113.{secrets.randbelow(250) + 1}"  # one address trying many emails
    for i in range(throttle.LIMIT):
        assert _attempt(client, f"nobody{i}-{secrets.token_hex(2)}@example.com", "guess guess", ip).status_code == 401
    other = client.console(workspace)
    assert _attempt(client, other.email, other.password, ip).status_code == 429
    assert _attempt(client, other.email, other.password, "192.0.2.7").status_code == 302  # elsewhere: fine


def test_a_right_password_clears_the_count_of_its_email(client, workspace):
    person = client.console(workspace)
    for i in range(3):
        _attempt(client, person.email, "wrong password", "198.18.0.1")
    assert _attempt(client, person.email, person.password, "198.18.0.2").status_code == 302
    from hub.web import throttle

    assert throttle.retry_after(client.rt, person.email, "198.18.0.9") is None


def test_console_errors_are_pages_and_the_api_keeps_json(client, workspace):
    person = client.console(workspace, role="owner")
    csrf = person.http.post("/team/invitations", data={"email": "a@example.com"})
    assert csrf.status_code == 400 and "CSRF check failed" in csrf.get_data(as_text=True)
    assert csrf.mimetype == "text/html"
    missing = person.get("/nothing-here", headers={"Accept": "text/html,application/xhtml+xml"})
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    api = person.get("/api/v1/nothing-here", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json["error"]["code"] == "not_found"
    assert client.get("/nothing-here").json["error"]["code"] == "not_found"  # no Accept: JSON as before
    refused = person.http.post("/api/v1/subscriptions", json={})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "csrf_failed"


def test_cli_creates_users_and_sets_passwords(client, workspace, runner):
    email = f"cli-{secrets.token_hex(3)}@example.com"
    made = runner.invoke(["user", "create", email, "--workspace", workspace.id, "--role", "agent",
                          "--password-stdin"], input="a password from stdin\n")
    assert made.exit_code == 0, made.output
    assert "a password from stdin" not in made.output and member_role(client, workspace.id, email) == "agent"
    person = ConsoleUser(client.app, email, "a password from stdin")
    person.sign_in()
    assert person.get("/team").status_code == 200

    prompted = runner.invoke(["user", "create", "Boss-" + email, "--instance-admin"],
                             input="typed at the prompt\ntyped at the prompt\n")
    assert prompted.exit_code == 0, prompted.output
    with client.rt.db.session() as s:
        assert users.user_by_email(s, "boss-" + email).instance_admin
    again = runner.invoke(["user", "create", email, "--generate"])
    assert again.exit_code != 0 and "already has an account" in again.output
    weak = runner.invoke(["user", "create", "w-" + email, "--password-stdin"], input="short\n")
    assert weak.exit_code != 0 and "at least 10 characters" in weak.output
    unknown = runner.invoke(["user", "create", "u-" + email, "--workspace", "ws_nope", "--generate"])
    assert unknown.exit_code != 0 and "no workspace ws_nope" in unknown.output

    changed = runner.invoke(["user", "passwd", email, "--generate"])
    assert changed.exit_code == 0, changed.output
    new = re.search(r"password \(shown once\): (\S+)", changed.output).group(1)
    assert person.get("/team").headers["Location"].startswith("/login")  # signed out everywhere
    assert ConsoleUser(client.app, email, new).sign_in().status_code == 302
    assert runner.invoke(["user", "passwd", "nobody@example.com", "--generate"]).exit_code != 0


def test_the_development_server_log_shows_no_invitation_token(client):
    import logging

    for line, shown in (('"GET /invite/inv_SECRETtoken-x_1 HTTP/1.1"', "/invite/inv_[redacted]"),
                        ('"GET /login?next=%2Finvite%2Finv_SECRETtoken-x_1 HTTP/1.1"', "%2Finvite%2Finv_[redacted]")):
        record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '%s - - [%s] %s %s %s',
                                   ("127.0.0.1", "now", line, "200", "-"), None)
        for f in logging.getLogger("werkzeug").filters:
            f.filter(record)
        assert "SECRET" not in record.getMessage() and shown in record.getMessage()


def test_sign_in_follows_next_only_to_paths_of_this_site(client, workspace):
    person = client.console(workspace)
    for target, expected in (("/team?tab=1", "/team?tab=1"), ("//evil.example/x", "/"),
                             ("/\\evil.example", "/"), ("https://evil.example/", "/"),
                             ("/%0d%0aSet-Cookie:x", "/%0d%0aSet-Cookie:x"), ("javascript:alert(1)", "/")):
        response = person.http.post("/login?" + urlencode({"next": target}),
                                    data={"email": person.email, "password": person.password,
                                          "csrf_token": person.csrf_token()})
        assert response.status_code == 302 and response.headers["Location"] == expected, (target, response.headers)


def test_sign_in_is_not_throttled_while_redis_is_unreachable(client, caplog):
    import dataclasses
    import socket

    from hub.core.runtime import Runtime
    from hub.web import throttle

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rt = Runtime(dataclasses.replace(client.rt.settings, redis_url=f"redis://127.0.0.1:{port}/0"))
    try:
        throttle.failed(rt, "a@example.com", "192.0.2.1")
        assert throttle.retry_after(rt, "a@example.com", "192.0.2.1") is None
    finally:
        rt.close(stop_redis=False)
    assert "sign-in throttling skipped: Redis unavailable" in caplog.text
