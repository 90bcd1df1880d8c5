"""Test kit for the hub and for connector authors (fixtures live in ``hub.testing.plugin``)."""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

from rq import SimpleWorker


@dataclass
class Workspace:
    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Connected:
    """A connection created through the API, with the simulator-side facts tests need."""
    connection: dict
    phone_number_id: str
    waba_id: str
    display: str
    token: str
    workspace: Workspace
    client: Any = field(default=None, repr=False, compare=False)
    simulator: Any = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.connection["id"]

    def add_template(self, name: str, *, category: str = "UTILITY", body_params: int = 0,
                     language: str = "en_US", buttons: list | None = None, status: str = "APPROVED") -> dict:
        """Create a template on the simulator's WABA and sync the workspace's templates through
        ``POST /api/v1/templates/sync``; returns the hub's view of the new template."""
        self.simulator.add_template(self.waba_id, name, language=language, category=category.upper(),
                                    body_params=body_params, buttons=buttons, status=status)
        response = self.client.post("/api/v1/templates/sync", headers=self.workspace.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return next(t for t in response.json if t["name"] == name and t["language"] == language)

    def sent(self, template: str | None = None) -> list[dict]:
        """Request bodies the simulator received for this number (optionally one template's)."""
        return [r["body"] for r in self.simulator.sent(self.phone_number_id)
                if template is None or r["body"].get("template", {}).get("name") == template]


class HubClient:
    """Flask's test client plus helpers that speak the hub's API."""

    def __init__(self, app):
        self.app, self.http = app, app.test_client()
        self.rt = app.extensions["coexhub"]

    def __getattr__(self, name):  # get/post/patch/delete… of the Flask test client
        return getattr(self.http, name)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rt.settings.admin_token}"}

    def public_id(self, prefix: str, value: int) -> str:
        """The id the API shows for row ``value`` of a kind (``"snd"``, ``"ct"``…: ``hub.api.ids``)."""
        from hub.api import ids

        return ids.codec(self.rt.settings).encode(prefix, value)

    def row_id(self, public_id: str) -> int:
        """The database's integer behind an id the API showed (any kind); fails if it is not one."""
        from hub.api import ids

        value = ids.codec(self.rt.settings).decode_any(public_id)
        assert value is not None, f"{public_id!r} is not a public id of this hub"
        return value

    def new_workspace(self, name: str = "Test shop", **settings) -> Workspace:
        response = self.http.post("/api/v1/workspaces", json={"name": name, "settings": settings},
                                  headers=self.admin_headers)
        assert response.status_code == 201, response.json
        return Workspace(response.json["id"], response.json["api_key"])

    def console(self, workspace: Workspace | None = None, role: str = "owner", *, email: str | None = None,
                password: str = "correct horse battery", instance_admin: bool = False) -> "ConsoleUser":
        """A person signed in to the web console: a new user with ``role`` in ``workspace``
        (its own cookie jar). ``.get``/``.post`` fetch pages; ``.api(method, url, json=…)`` calls
        the JSON API with the session cookie and CSRF header, as the console's pages do."""
        import secrets as _secrets

        from hub.core import users

        email = email or f"user-{_secrets.token_hex(4)}@example.com"
        with self.rt.db.session() as s:
            user = users.create_user(s, email, password, name=email.split("@")[0], instance_admin=instance_admin)
            if workspace is not None:
                users.add_member(s, user, workspace.id, role)
        person = ConsoleUser(self.app, email, password)
        person.sign_in()
        return person

    def install(self, workspace: Workspace, connector: str, config: dict[str, Any], **extra) -> dict:
        response = self.http.post("/api/v1/installations", headers=workspace.headers,
                                  json={"connector": connector, "config": config, **extra})
        assert response.status_code == 201, response.json
        return response.json

    def deliver(self, connector: str, installation_id: str, payload: Any, secrets: dict[str, Any],
                headers: dict[str, str] | None = None, **sign_options):
        """POST ``payload`` to the connector's webhook URL, signed the way the provider signs."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        signed = sign(self.rt.plugins.connectors[connector], body, secrets, **sign_options)
        return self.http.post(f"/webhooks/{connector}/{installation_id}", data=body,
                              headers={"Content-Type": "application/json", **signed, **(headers or {})})


class ConsoleUser:
    """A browser-like session on the console (see ``HubClient.console``)."""

    def __init__(self, app, email: str, password: str):
        self.app, self.email, self.password = app, email, password
        self.http = app.test_client()

    def __getattr__(self, name):  # get/post… of its own test client (its own cookies)
        return getattr(self.http, name)

    def csrf_token(self) -> str:
        import re

        page = self.http.get("/login").get_data(as_text=True)
        match = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def sign_in(self):
        response = self.http.post("/login", data={"email": self.email, "password": self.password,
                                                  "csrf_token": self.csrf_token()})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return response

    def form(self, url: str, data: dict[str, Any] | None = None, **kwargs):
        """POST a console form with the CSRF token, as the browser would."""
        return self.http.post(url, data={"csrf_token": self.csrf_token(), **(data or {})}, **kwargs)

    def api(self, method: str, url: str, **kwargs):
        """Call ``/api/v1`` the way the console's JS does: session cookie + ``X-CSRFToken``."""
        headers = {"X-CSRFToken": self.csrf_token(), **kwargs.pop("headers", {})}
        return self.http.open(url, method=method.upper(), headers=headers, **kwargs)


def sign(connector_cls, body: bytes, secrets: dict[str, Any], **options) -> dict[str, str]:
    """Headers that make ``body`` pass ``connector_cls.verify`` (any connector)."""
    return connector_cls.verify.sign(body, secrets, **options)


def process_env(rt) -> dict[str, str]:
    """Environment for a ``coexhub`` subprocess (worker, scheduler) sharing ``rt``'s stores."""
    import os

    from hub.core.queue import socket_url

    settings = rt.settings
    return {**os.environ, "COEXHUB_DATA_DIR": str(settings.data_dir), "COEXHUB_DATABASE_URL": settings.database_url,
            "COEXHUB_REDIS_URL": settings.redis_url or socket_url(rt.redis) or "",
            "COEXHUB_SECRET_KEY": ",".join(settings.secret_keys), "COEXHUB_ID_KEY": settings.id_key,
            "COEXHUB_ADMIN_TOKEN": settings.admin_token,
            "COEXHUB_KEY_PREFIX": settings.key_prefix, "COEXHUB_GRAPH_URL": settings.graph_url,
            "COEXHUB_META_APP_SECRET": settings.meta_app_secret, "COEXHUB_META_APP_ID": settings.meta_app_id}


def naive_utc(when: dt.datetime) -> dt.datetime:
    """``when`` as naive UTC, the database's convention (naive values are taken as UTC already)."""
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None) if when.tzinfo else when


def run_scheduler(rt, workspace_id: str, now: dt.datetime | dt.timedelta | None = None, *,
                  jobs: bool = True) -> int:
    """One scheduler pass for one workspace, as if the clock read ``now``: its scheduled sends due
    by then are queued (and, with ``jobs``, delivered by running the queued jobs in-process).
    ``now``: a datetime (aware, or naive UTC), a timedelta from the real now, or None (now).
    Returns how many sends came due. Other workspaces' sends are left alone."""
    from hub.core.models import utcnow
    from hub.core.scheduler import move_due_sends
    from hub.core.sending.pipeline import delivery_job

    if now is None or isinstance(now, dt.timedelta):
        now = utcnow() + (now or dt.timedelta())
    with rt.db.session() as session:
        due = move_due_sends(session, naive_utc(now), workspace_id)
    for queue, func, args, job_id in dict.fromkeys(delivery_job(send_id) for send_id in due):
        rt.queues.enqueue(queue, func, *args, job_id=job_id)
    if jobs:
        drain(rt)
    return len(due)


def sends(rt, workspace_id: str, status: str | None = None, **where: Any) -> list:
    """The workspace's ``Send`` rows, oldest first, optionally with ``status`` (and other column
    values: ``template_name=``, ``to=``, ``cancel_group=``…)."""
    from sqlalchemy import select

    from hub.core.models import Send

    if status is not None:
        where["status"] = status
    with rt.db.session() as session:
        query = select(Send).filter_by(workspace_id=workspace_id, **where).order_by(Send.id)
        return session.scalars(query).all()


def sliding_max(times: list[float], window: float = 1.0) -> int:
    """The most events in any ``window``-second interval (for pacing checks)."""
    times, best, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def drain(rt, *, queues: tuple[str, ...] | None = None, max_rounds: int = 50) -> int:
    """Run queued jobs in this process until the queues (default: all) are empty (first waiting
    for this process's webhooks still being handed off to Redis: a 200 can leave before that)."""
    from hub.core import ingest
    from hub.core.logs import ContextJob

    deadline = time.monotonic() + 30
    while ingest.waiting(rt) and time.monotonic() < deadline:
        time.sleep(0.005)
    ran = 0
    wanted = [rt.queues[name] for name in queues] if queues else rt.queues.all()
    for _ in range(max_rounds):
        queues = [q for q in wanted if q.count]
        if not queues:
            return ran
        before = sum(q.count for q in queues)
        SimpleWorker(queues, connection=rt.redis, job_class=ContextJob).work(burst=True, with_scheduler=False,
                                                       logging_level="WARNING")
        ran += before
    raise RuntimeError("jobs keep enqueueing jobs; gave up after max_rounds")


__all__ = ["Connected", "HubClient", "Workspace", "drain", "naive_utc", "process_env", "run_scheduler", "sends",
           "sign", "sliding_max"]
