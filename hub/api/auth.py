"""Bearer API keys (one workspace each) and the instance admin token."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import current_app, g, request
from sqlalchemy import select

from hub.api.errors import ApiError
from hub.core.models import ApiKey, utcnow


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(session, workspace_id: str, name: str = "default") -> str:
    """Create an API key; the clear key is returned once and never stored."""
    key = "chk_" + secrets.token_urlsafe(32)
    session.add(ApiKey(workspace_id=workspace_id, name=name, prefix=key[:10], key_hash=hash_key(key)))
    return key


def bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <api key>'")
    return token.strip()


def is_admin(token: str) -> bool:
    admin = current_app.extensions["coexhub"].settings.admin_token
    return bool(admin) and hmac.compare_digest(token.encode(), admin.encode())


def require_admin() -> None:
    if not is_admin(bearer()):
        raise ApiError(403, "forbidden", "this route needs the instance admin token (COEXHUB_ADMIN_TOKEN, "
                                         "saved in $COEXHUB_DATA_DIR/admin.token in development), "
                                         "not a workspace API key")


# What a console agent may change through the API (blueprint names); reading is open to every role,
# other changes need an admin or owner of the workspace.
AGENT_WRITES = frozenset({"sending", "contacts", "reads", "conversations"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def console_workspace() -> str | None:
    """The workspace of a console session calling the API (cookie + ``X-CSRFToken`` on changes),
    after the role check; None when the request carries no console session."""
    from flask import session

    if "uid" not in session or request.headers.get("Authorization"):
        return None
    from hub.web.access import load_viewer

    viewer = load_viewer()
    if viewer is None or viewer.workspace_id is None:
        raise ApiError(401, "unauthorized", "the console session has ended: sign in again")
    if request.method not in SAFE_METHODS:
        from flask_wtf.csrf import validate_csrf
        from wtforms.validators import ValidationError

        try:
            validate_csrf(request.headers.get("X-CSRFToken"))
        except ValidationError as exc:  # missing or wrong token
            raise ApiError(403, "csrf_failed", f"CSRF check failed: {exc}") from exc
        if not viewer.can("admin") and request.blueprint not in AGENT_WRITES:
            raise ApiError(403, "forbidden", f"an agent cannot change this; ask an admin of {viewer.workspace_name}")
    g.user_id = viewer.user_id
    return viewer.workspace_id


def require_workspace() -> str:
    """Authenticate the request's API key (or a console session: ``console_workspace``); sets and
    returns ``g.workspace_id``."""
    from_console = console_workspace()
    if from_console is not None:
        g.workspace_id = from_console
        return from_console
    token = bearer()
    rt = current_app.extensions["coexhub"]
    with rt.db.session() as session:
        key = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(token),
                                                   ApiKey.revoked_at.is_(None))).first()
        if key is None:
            if is_admin(token):
                raise ApiError(403, "forbidden",
                               "this is the instance admin token, which only manages workspaces "
                               "(POST/GET /api/v1/workspaces); this route needs a workspace API key "
                               "(Authorization: Bearer chk_…, returned when the workspace was created)")
            raise ApiError(401, "unauthorized", "unknown or revoked API key: this route needs a workspace API key "
                                                "(Authorization: Bearer chk_…)")
        if key.last_used_at is None or (utcnow() - key.last_used_at).total_seconds() > 60:
            key.last_used_at = utcnow()
        g.workspace_id = key.workspace_id
    return g.workspace_id
