"""``coexhub demo``: a full Coexistence flow against the bundled Graph API simulator.

It creates a workspace, connects the simulator's demo number (Coexistence), then
plays what a real number sees — a customer message, the owner's reply from the phone app,
the app's contact sync, an API template send with its sent/delivered/read statuses — and
prints what the hub now holds. Everything runs in this process on the configured stores.
Safe to run again: once the demo number is connected, later runs say so and change nothing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import click

from hub.config import Settings
from hub.core.models import utcnow
from hub.core.scheduler import tick
from hub.testing import drain, sign
from hub.testing.simulator import GraphSimulator, seed_demo_state

DEV_META = {"meta_app_id": "1234567890", "meta_app_secret": "coexhub-dev-app-secret",
            "meta_verify_token": "coexhub-dev-verify-token"}
CUSTOMER = "14155552671"
DEMO_WORKSPACE = "Demo shop"


def with_simulator(settings: Settings, graph_url: str) -> Settings:
    """Settings that talk to a local simulator (only when no Meta app is configured)."""
    if settings.meta_app_secret:
        return settings
    return dataclasses.replace(settings, graph_url=graph_url, **DEV_META)


def dev_env(graph_url: str) -> dict[str, str]:
    return {"COEXHUB_GRAPH_URL": graph_url, **{f"COEXHUB_{k.upper()}": v for k, v in DEV_META.items()}}


def run_demo(rt, echo=click.echo) -> dict:
    secret = rt.settings.meta_app_secret or DEV_META["meta_app_secret"]
    sim = GraphSimulator(app_secret=secret, app_id=rt.settings.meta_app_id or DEV_META["meta_app_id"])
    demo = seed_demo_state(sim)
    sim.add_template(demo["waba_id"], "abandoned_cart", category="MARKETING", body_params=3)
    original = rt.settings
    rt.settings = dataclasses.replace(with_simulator(rt.settings, ""), graph_url=sim.serve())  # never real Meta
    try:
        return _play(rt, sim, demo, echo)
    finally:
        sim.shutdown()
        rt.settings = original


def _demo_connection(rt, phone_number_id: str):
    """The connection of the demo number with its workspace, if an earlier demo made it."""
    from sqlalchemy import select

    from hub.core.models import Connection, Workspace

    with rt.db.session() as session:
        conn = session.scalars(select(Connection).where(Connection.phone_number_id == phone_number_id)).first()
        if conn is None:
            return None
        workspace = session.get(Workspace, conn.workspace_id)
        return {"connection_id": conn.id, "workspace_id": workspace.id, "workspace_name": workspace.name,
                "display": conn.display_phone_number, "status": conn.status}


def _create_demo_workspace(rt, demo) -> tuple[str, str, dict]:
    """Workspace + connected demo number in one transaction: a failure leaves no workspace behind."""
    from hub.api.workspaces import create_workspace
    from hub.core.whatsapp.graph import Graph
    from hub.core.whatsapp.onboarding import OnboardingError, connect

    with rt.db.session() as session:
        workspace, key = create_workspace(session, DEMO_WORKSPACE)
        try:
            conn = connect(session, Graph.from_settings(rt.settings), workspace.id, token=demo["token"],
                           waba_id=demo["waba_id"], phone_number_id=demo["phone_number_id"])
        except OnboardingError as exc:  # the session rolls back: no workspace is left behind
            raise click.ClickException(f"connecting the demo number failed: {exc}") from exc
        facts = {"display_phone_number": conn.display_phone_number, "mode": conn.mode,
                 "messages_per_second": conn.messages_per_second,
                 "contact_sync_request_id": conn.contact_sync_request_id}
        return workspace.id, key, facts


def _play(rt, sim, demo, echo) -> dict:
    from hub.app import create_app

    earlier = _demo_connection(rt, demo["phone_number_id"])
    if earlier is not None:
        echo(f"demo skipped: it ran before. Workspace {earlier['workspace_id']} ({earlier['workspace_name']!r}) "
             f"holds the demo number +{earlier['display']} ({earlier['status']}); its API key was printed "
             f"the first time. `make clean` (or deleting {rt.settings.data_dir}) starts over.")
        return {"skipped": True, "workspace_id": earlier["workspace_id"], "api_key": None}
    app = create_app(runtime=rt)
    client = app.test_client()
    sim.hub_client = client
    workspace_id, key, conn = _create_demo_workspace(rt, demo)
    h = {"Authorization": f"Bearer {key}"}
    echo(f"workspace {workspace_id} ({DEMO_WORKSPACE!r}) created")
    echo(f"workspace {workspace_id} ({DEMO_WORKSPACE!r}) — API key (shown once): {key}")
    from hub.user_cli import make_owner_of

    if make_owner_of(rt, workspace_id):
        echo(f"console: admin@localhost is an owner of {DEMO_WORKSPACE!r}")
    echo(f"connected +{conn['display_phone_number']} ({conn['mode']}, {conn['messages_per_second']} msg/s); "
         f"contact sync requested: {conn['contact_sync_request_id']}")
    pn = demo["phone_number_id"]
    sim.customer_message(pn, CUSTOMER, "Hi! Is the blue kurta still in stock?", name="Asha Rao")
    sim.echo(pn, CUSTOMER, "Yes it is, Asha! Shall I keep one for you?")
    sim.state_sync(pn, [("add", "+" + CUSTOMER, "Asha Rao (VIP)", "Asha"), ("add", "+919820012345", "Ravi K", "Ravi")])
    drain(rt)
    sent = client.post("/api/v1/messages", headers=h, json={
        "to": "+" + CUSTOMER, "template": "order_update", "params": ["Asha", "#1001"],
        "idempotency_key": "demo-order-1001"}).json
    drain(rt)
    sim.flush_statuses()
    drain(rt)
    contacts = client.get("/api/v1/contacts", headers=h).json
    asha = next(c for c in contacts if c["wa_id"] == CUSTOMER)
    thread = client.get(f"/api/v1/contacts/{asha['id']}/messages", headers=h).json
    send = client.get(f"/api/v1/sends/{sent['id']}", headers=h).json
    summary = client.get("/api/v1/analytics/summary", headers=h).json
    echo("\ncontacts:")
    for c in contacts:
        echo(f"  +{c['wa_id']}  {c['full_name'] or c['profile_name']}  (source {c['source']}, "
             f"profile name {c['profile_name']!r})")
    echo(f"\nthread with {asha['full_name']}:")
    for m in thread:
        text = (m["body"].get("text") or {}).get("body") or m["body"].get("template", {}).get("name") or m["type"]
        echo(f"  {m['direction']:>3} {m['origin']:<9} {m['status']:<9} {text}")
    echo(f"\nsend {send['id']}: {send['status']} ({send['template_name']}) wamid {send['wamid'][:24]}…")
    echo(f"echo-aware hold on Asha until {asha['hold_until']} (the owner replied from the phone)")
    echo(f"analytics: {summary['rates']}, by origin {summary['messages_by_origin']}")
    recovery = _abandoned_checkout(rt, client, h, echo) if "shopify" in rt.plugins.connectors else None
    return {"workspace_id": workspace_id, "api_key": key, "contacts": contacts, "thread": thread, "send": send,
            "recovery": recovery}


def _abandoned_checkout(rt, client, h: dict, echo) -> dict:
    """A Shopify store linked to the workspace; a buyer leaves a checkout; an hour later the
    recovery template goes out (the scheduler's clock is moved forward instead of waiting)."""
    secrets = {"webhook_secret": "demo-shopify-secret"}
    inst = client.post("/api/v1/installations", headers=h, json={"connector": "shopify", "config": {
        "shop": "demo-shop.myshopify.com", **secrets, "default_country": "IN"}}).json
    checkout = {"id": 29000000000001, "token": "demo-checkout-token", "completed_at": None, "currency": "INR",
                "total_price": "1299.00", "phone": None, "buyer_accepts_marketing": True,
                "abandoned_checkout_url": "https://demo-shop.myshopify.com/cart/c/demo-checkout-token",
                "customer": {"first_name": "Ravi", "last_name": "K", "phone": None},
                "shipping_address": {"phone": "098200 12345", "country_code": "IN"}}
    body = json.dumps(checkout).encode()
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": "checkouts/create",
               "X-Shopify-Webhook-Id": "demo-webhook-1",
               **sign(rt.plugins.connectors["shopify"], body, secrets)}
    client.post(f"/webhooks/shopify/{inst['id']}", data=body, headers=headers)
    drain(rt)
    [scheduled] = client.get("/api/v1/sends?status=scheduled", headers=h).json
    echo(f"\nShopify store linked; webhook URL {inst['webhook_url']}")
    echo(f"abandoned checkout → recovery send {scheduled['id']} scheduled for {scheduled['not_before']}")
    tick(rt, now=utcnow() + dt.timedelta(minutes=61))
    drain(rt)
    sent = client.get(f"/api/v1/sends/{scheduled['id']}", headers=h).json
    echo(f"an hour later: recovery send {sent['status']} ({sent['template_name']}: {sent['params']})")
    return sent
