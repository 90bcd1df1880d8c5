"""``coexhub user …``: console accounts from the command line, and the first instance admin
that ``coexhub init`` creates (``admin@localhost``, its password saved like the admin token)."""
from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

import click

log = logging.getLogger("hub.cli")
PASSWORD_FILE = "admin.password"


def _runtime():
    from hub.cli import runtime

    return runtime()


def generated_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters


def _password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The new password: from stdin (first line), generated, or prompted twice; and whether to print it."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if generate:
        return generated_password(), True
    return click.prompt("Password", hide_input=True, confirmation_prompt=True), False


def password_file(settings) -> Path:
    return settings.data_dir / PASSWORD_FILE


def first_admin(rt, workspace_id: str | None, echo=click.echo) -> None:
    """Create ``admin@localhost`` (instance admin, owner of ``workspace_id``) once, with a generated
    password saved in ``$COEXHUB_DATA_DIR/admin.password`` (printed once instead in production)."""
    from hub.core import users

    path = password_file(rt.settings)
    with rt.db.session() as session:
        user = users.user_by_email(session, users.FIRST_ADMIN)
        if user is not None:
            where = f"password in {path}" if path.exists() else f"`coexhub user passwd {users.FIRST_ADMIN}` sets a new password"
            echo(f"console user {users.FIRST_ADMIN} exists already ({where})")
            return
        password = generated_password()
        user = users.create_user(session, users.FIRST_ADMIN, password, name="Admin", instance_admin=True)
        if workspace_id:
            users.add_member(session, user, workspace_id, "owner")
        if not rt.settings.production:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(password + "\n")
    log.info("console: instance admin %s created", user.id)
    if rt.settings.production:
        echo(f"console user {users.FIRST_ADMIN} (instance admin) — password (shown once): {password}")
    else:
        echo(f"console user {users.FIRST_ADMIN} (instance admin) created; password saved in {path}")


def make_owner_of(rt, workspace_id: str) -> bool:
    """Make ``admin@localhost`` (if it exists) an owner of ``workspace_id`` (the demo's workspace)."""
    from hub.core import users

    with rt.db.session() as session:
        user = users.user_by_email(session, users.FIRST_ADMIN)
        if user is None:
            return False
        users.add_member(session, user, workspace_id, "owner")
    return True


def _workspace(session, wanted: str) -> str:
    """A workspace id from its id or its exact name (a name two workspaces share is refused)."""
    from sqlalchemy import select

    from hub.core.models import Workspace

    if session.get(Workspace, wanted) is not None:
        return wanted
    ids = session.scalars(select(Workspace.id).where(Workspace.name == wanted)).all()
    if len(ids) == 1:
        return ids[0]
    if ids:
        raise click.ClickException(f"{len(ids)} workspaces are named {wanted!r} ({', '.join(ids)}): give the id")
    raise click.ClickException(f"no workspace {wanted}")


def register(cli: click.Group) -> None:
    @cli.group()
    def user() -> None:
        """Console users: create one, set a password."""

    @user.command("create")
    @click.argument("email")
    @click.option("--workspace", "workspace_id", default=None, help="add to this workspace (its ws_… id or exact name)")
    @click.option("--role", type=click.Choice(["owner", "admin", "agent"]), default="owner", show_default=True,
                  help="the role in --workspace")
    @click.option("--name", default="", help="the person's name")
    @click.option("--instance-admin", is_flag=True, help="may create workspaces and sees every workspace")
    @click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
    @click.option("--generate", is_flag=True, help="generate a password and print it once")
    def user_create(email, workspace_id, role, name, instance_admin, password_stdin, generate) -> None:
        """Create a console user (the password is prompted unless --password-stdin or --generate)."""
        from hub.core import users

        password, show = _password(password_stdin, generate)
        rt = _runtime()
        with rt.db.session() as session:
            if workspace_id:
                workspace_id = _workspace(session, workspace_id)
            try:
                created = users.create_user(session, email, password, name=name, instance_admin=instance_admin)
            except users.UserError as exc:
                raise click.ClickException(str(exc)) from exc
            if workspace_id:
                users.add_member(session, created, workspace_id, role)
            user_id, email = created.id, created.email
        log.info("console: user %s created from the CLI%s", user_id, f" ({role} of {workspace_id})" if workspace_id else "")
        where = f", {role} of {workspace_id}" if workspace_id else ""
        click.echo(f"user {user_id} {email} created{' (instance admin)' if instance_admin else ''}{where}")
        if show:
            click.echo(f"password (shown once): {password}")

    @user.command("passwd")
    @click.argument("email")
    @click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
    @click.option("--generate", is_flag=True, help="generate a password and print it once")
    def user_passwd(email, password_stdin, generate) -> None:
        """Set a console user's password (every session of theirs is signed out)."""
        from hub.core import users

        password, show = _password(password_stdin, generate)
        rt = _runtime()
        with rt.db.session() as session:
            found = users.user_by_email(session, email)
            if found is None:
                raise click.ClickException(f"no console user {email}")
            try:
                users.set_password(found, password)
            except users.UserError as exc:
                raise click.ClickException(str(exc)) from exc
            user_id, email = found.id, found.email
        if email == users.FIRST_ADMIN and password_file(rt.settings).exists():
            password_file(rt.settings).unlink()  # it would be stale now
        log.info("console: password of %s set from the CLI; sessions signed out", user_id)
        click.echo(f"password of {email} changed; their sessions are signed out")
        if show:
            click.echo(f"password (shown once): {password}")
