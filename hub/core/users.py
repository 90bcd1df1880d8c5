"""Console users: accounts, passwords (werkzeug's scrypt hashes), roles per workspace, invitations.

Roles, from most to least: ``owner`` (everything, invites people), ``admin`` (everything in the
workspace but the team), ``agent`` (inbox: conversations, replies, contacts). The instance admin
(``User.instance_admin``) creates workspaces. API keys stay for machines.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from hub.core.models import Invitation, Membership, User, Workspace, utcnow

ROLES = ("owner", "admin", "agent")
MIN_PASSWORD = 10
INVITATION_DAYS = 7
_DUMMY_HASH = generate_password_hash("not a password: equalises timing for unknown emails")


class UserError(ValueError):
    """A request about users that cannot be done; the message says why (shown to the person)."""


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
        raise UserError("enter an email address like name@example.com")
    return email


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
    return password


def create_user(session: Session, email: str, password: str, *, name: str = "",
                instance_admin: bool = False) -> User:
    """A new user (email unique, case-insensitive); raises ``UserError`` if taken or weak."""
    email = normalize_email(email)
    if session.scalars(select(User).where(User.email == email)).first():
        raise UserError(f"{email} already has an account")
    user = User(email=email, name=name.strip()[:200], instance_admin=instance_admin,
                password_hash=generate_password_hash(check_password(password)))
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    """Change the password and sign every existing session of the user out."""
    user.password_hash = generate_password_hash(check_password(password))
    user.session_version = (user.session_version or 1) + 1


def password_matches(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password or "")


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user with this email and password, else None (same work either way)."""
    try:
        email = normalize_email(email)
    except UserError:
        email = ""
    user = session.scalars(select(User).where(User.email == email)).first() if email else None
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or ""):
        return None
    user.last_login_at = utcnow()
    return user


def add_member(session: Session, user: User, workspace_id: str, role: str) -> Membership:
    """Give ``user`` ``role`` in the workspace (changes the role if already a member)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    member = session.scalars(select(Membership).where(Membership.user_id == user.id,
                                                      Membership.workspace_id == workspace_id)).first()
    if member is None:
        member = Membership(user_id=user.id, workspace_id=workspace_id, role=role)
        session.add(member)
    else:
        member.role = role
    session.flush()
    return member


def memberships(session: Session, user_id: str) -> list[tuple[Membership, Workspace]]:
    """The workspaces a user belongs to, by name."""
    rows = session.execute(select(Membership, Workspace).join(Workspace, Workspace.id == Membership.workspace_id)
                           .where(Membership.user_id == user_id).order_by(Workspace.name, Workspace.id))
    return [(m, w) for m, w in rows]


def role_in(session: Session, user_id: str, workspace_id: str) -> str | None:
    return session.scalar(select(Membership.role).where(Membership.user_id == user_id,
                                                        Membership.workspace_id == workspace_id))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite(session: Session, workspace_id: str, email: str, role: str, invited_by: str | None) -> tuple[Invitation, str]:
    """An invitation and its clear token (shown once, as a link); only the token's hash is kept."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    email = normalize_email(email)
    joined = session.scalar(select(Membership.id).join(User, User.id == Membership.user_id)
                            .where(User.email == email, Membership.workspace_id == workspace_id))
    if joined is not None:
        raise UserError(f"{email} is already a member of this workspace")
    token = "inv_" + secrets.token_urlsafe(24)
    invitation = Invitation(workspace_id=workspace_id, email=email, role=role,
                            token_hash=_token_hash(token), invited_by=invited_by,
                            expires_at=utcnow() + dt.timedelta(days=INVITATION_DAYS))
    session.add(invitation)
    session.flush()
    return invitation, token


def open_invitation(session: Session, token: str) -> Invitation:
    """The invitation a token names, if it can still be accepted; else ``UserError``."""
    invitation = session.scalars(select(Invitation).where(Invitation.token_hash == _token_hash(token or ""))).first()
    if invitation is None:
        raise UserError("this invitation link is not valid")
    if invitation.accepted_at is not None:
        raise UserError("this invitation was already used")
    if invitation.expires_at < utcnow():
        raise UserError("this invitation has expired: ask the workspace owner for a new one")
    return invitation


def accept(session: Session, invitation: Invitation, user: User) -> Membership:
    """Join the invited workspace with the invited role (the invitation is spent)."""
    if user.email != invitation.email:
        raise UserError(f"this invitation is for {invitation.email}")
    invitation.accepted_at = utcnow()
    return add_member(session, user, invitation.workspace_id, invitation.role)


# -- the team of a workspace (owner only, checked by the caller) -----------------------------------
FIRST_ADMIN = "admin@localhost"  # the instance admin `coexhub init` creates


def members(session: Session, workspace_id: str) -> list[tuple[Membership, User]]:
    """The people of a workspace, owners first, then by email."""
    rows = session.execute(select(Membership, User).join(User, User.id == Membership.user_id)
                           .where(Membership.workspace_id == workspace_id).order_by(User.email))
    return sorted(((m, u) for m, u in rows), key=lambda row: (ROLES.index(row[0].role), row[1].email))


def pending_invitations(session: Session, workspace_id: str) -> list[Invitation]:
    """Invitations of a workspace not accepted yet (expired ones included: ``expired``)."""
    return list(session.scalars(select(Invitation).where(Invitation.workspace_id == workspace_id,
                                                         Invitation.accepted_at.is_(None))
                                .order_by(Invitation.created_at.desc())))


def expired(invitation: Invitation) -> bool:
    return invitation.expires_at < utcnow()


def _membership(session: Session, workspace_id: str, user_id: str) -> Membership:
    member = session.scalars(select(Membership).where(Membership.workspace_id == workspace_id,
                                                      Membership.user_id == user_id)).first()
    if member is None:
        raise UserError("this person is not a member of this workspace")
    return member


def _keep_an_owner(session: Session, member: Membership) -> None:
    if member.role != "owner":
        return
    owners = session.scalars(select(Membership.id).where(Membership.workspace_id == member.workspace_id,
                                                         Membership.role == "owner").with_for_update()).all()
    if len(owners) <= 1:
        raise UserError("a workspace needs at least one owner: make someone else owner first")


def change_role(session: Session, workspace_id: str, user_id: str, role: str) -> Membership:
    """Set a member's role; the last owner cannot be demoted (``UserError``)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    member = _membership(session, workspace_id, user_id)
    if role != member.role:
        _keep_an_owner(session, member)
        member.role = role
    return member


def remove_member(session: Session, workspace_id: str, user_id: str) -> Membership:
    """Take a person out of a workspace (their account stays); never the last owner."""
    member = _membership(session, workspace_id, user_id)
    _keep_an_owner(session, member)
    session.delete(member)
    session.flush()
    return member


def revoke_invitation(session: Session, workspace_id: str, invitation_id: str) -> Invitation:
    """Delete a pending invitation of this workspace (its link stops working)."""
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.workspace_id != workspace_id or invitation.accepted_at is not None:
        raise UserError("no such pending invitation")
    session.delete(invitation)
    return invitation


def user_by_email(session: Session, email: str) -> User | None:
    try:
        email = normalize_email(email)
    except UserError:
        return None
    return session.scalars(select(User).where(User.email == email)).first()
