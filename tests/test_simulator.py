"""The Graph API simulator and the webhook payload builders, exercised over real HTTP."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest
from flask import Flask, request

from hub.testing import payloads as p
from hub.testing.simulator import GraphSimulator, seed_demo_state

V = "v25.0"
WABA, PNID, TOKEN, DISPLAY = "102290129340398", "106540352242922", "tok-coex", "15550783881"
CUSTOMER = "16505551234"


class Clock:
    def __init__(self, now: float = 1_750_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sim(clock):
    sim = GraphSimulator(clock=clock, app_secret="s3cret", app_id="app-1", seed=7)
    sim.add_number(PNID, WABA, TOKEN, DISPLAY, coexistence=True)
    sim.add_number("200", "waba-2", "tok-cloud", "15550002222", coexistence=False)
    sim.serve()
    yield sim
    sim.shutdown()


@pytest.fixture
def http(sim):
    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        yield client


def send(http, body, *, pnid=PNID, token=TOKEN, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(f"/{V}/{pnid}/messages", json=body, headers=headers, **kw)


def text(to=CUSTOMER, body="hi"):
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


def template(name="order_update", lang="en_US", params=("a", "b"), to=CUSTOMER):
    comps = [{"type": "body", "parameters": [{"type": "text", "text": t} for t in params]}]
    return {"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": name, "language": {"code": lang}, "components": comps}}


def code(response) -> int:
    return response.json()["error"]["code"]


# --- throughput ----------------------------------------------------------------------------

def test_coexistence_throughput_is_20_per_second_window(sim, http, clock):
    sim.open_window(PNID, CUSTOMER)
    responses = [send(http, text(body=str(i))) for i in range(30)]  # clock frozen: one window
    statuses = [r.status_code for r in responses]
    assert statuses[:20] == [200] * 20
    assert [code(r) for r in responses[20:]] == [130429] * 10
    assert all(r.status_code == 400 for r in responses[20:])
    assert len(sim.requests) == 30 and len(sim.sent(PNID)) == 20
    assert responses[25].json()["error"]["type"] == "OAuthException"
    clock.now += 1.01  # the window slides on
    assert send(http, text()).status_code == 200


def test_default_number_allows_80_per_second(sim, http):
    sim.open_window("200", CUSTOMER)
    results = [send(http, text(), pnid="200", token="tok-cloud").status_code for _ in range(85)]
    assert results.count(200) == 80 and results[:80] == [200] * 80


def test_throughput_with_the_real_clock():
    sim = GraphSimulator()
    sim.add_number(PNID, WABA, TOKEN, DISPLAY)
    sim.open_window(PNID, CUSTOMER)
    sim.serve()
    try:
        with httpx.Client(base_url=sim.base_url, timeout=10) as http:
            started = time.monotonic()
            results = [send(http, text()).status_code for _ in range(30)]
            elapsed = time.monotonic() - started
    finally:
        sim.shutdown()
    assert results[:20] == [200] * 20
    if elapsed < 1.0:  # the whole burst fell in one window: exactly 20 admitted
        assert results.count(200) == 20


# --- the 24-hour window and templates ------------------------------------------------------

def test_window_rule_then_customer_message_opens_it(sim, http, clock):
    sim.hub_url = None
    first = send(http, text())
    assert first.status_code == 400 and code(first) == 131047
    assert first.json()["error"]["error_data"]["messaging_product"] == "whatsapp"
    assert sim.customer_message(PNID, CUSTOMER, "hello?") is None  # no hub: nothing delivered
    ok = send(http, text(to="+" + CUSTOMER))
    assert ok.status_code == 200
    assert ok.json()["contacts"] == [{"input": "+" + CUSTOMER, "wa_id": CUSTOMER}]
    assert ok.json()["messages"][0]["id"].startswith("wamid.")
    assert "message_status" not in ok.json()["messages"][0]
    clock.now += 24 * 3600 + 1
    assert code(send(http, text())) == 131047
    sim.echo(PNID, CUSTOMER, "from the app")  # echoes do not reopen it
    assert code(send(http, text())) == 131047


def test_template_validation(sim, http):
    sim.add_template(WABA, "order_update", body_params=2, buttons=["Track"])
    sim.add_template(WABA, "promo", category="MARKETING", body_params=1)
    assert code(send(http, template(params=("only one",)))) == 132000
    assert code(send(http, template(params=("a", "b", "c")))) == 132000
    missing = send(http, template(name="nope"))
    assert missing.status_code == 404 and code(missing) == 132001
    assert code(send(http, template(lang="pt_BR"))) == 132001
    ok = send(http, template())  # templates need no open window
    assert ok.status_code == 200
    assert ok.json()["messages"][0]["message_status"] == "accepted"
    sim.set_template_status(WABA, "promo", "PAUSED")
    assert code(send(http, template(name="promo", params=("x",)))) == 132015
    sim.set_template_status(WABA, "promo", "DISABLED")
    assert code(send(http, template(name="promo", params=("x",)))) == 132016


def test_invalid_requests_and_mark_as_read(sim, http):
    sim.open_window(PNID, CUSTOMER)
    assert code(send(http, {"to": CUSTOMER, "type": "text", "text": {"body": "x"}})) == 100
    assert code(send(http, {**text(), "type": "sticker_pack"})) == 100
    read = send(http, {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"})
    assert read.status_code == 200 and read.json() == {"success": True}
    assert sim.sent() == []


def test_token_errors_are_190(sim, http):
    sim.open_window(PNID, CUSTOMER)
    for token in ("wrong", None, "tok-cloud"):  # another number's token is no good either
        r = send(http, text(), token=token)
        assert r.status_code == 401 and code(r) == 190
    assert [r["status"] for r in sim.requests] == [401, 401, 401]
    assert sim.sent() == []


# --- onboarding ----------------------------------------------------------------------------

def test_onboarding_calls(sim, http):
    sim.add_signup_code("code-1", "waba-9", "900", "tok-new")
    bad = http.get(f"/{V}/oauth/access_token",
                   params={"client_id": "app-1", "client_secret": "nope", "code": "code-1"})
    assert bad.status_code == 400 and "error" in bad.json()
    args = {"client_id": "app-1", "client_secret": "s3cret", "code": "code-1"}
    got = http.get(f"/{V}/oauth/access_token", params=args)
    assert got.json() == {"access_token": "tok-new", "token_type": "bearer"}
    assert "error" in http.get(f"/{V}/oauth/access_token", params=args).json()  # codes are single-use
    assert "error" in http.get(f"/{V}/oauth/access_token", params={**args, "code": "x"}).json()

    auth = {"Authorization": "Bearer tok-new"}
    numbers = http.get(f"/{V}/waba-9/phone_numbers", headers=auth).json()
    assert [n["id"] for n in numbers["data"]] == ["900"]
    assert http.post(f"/{V}/waba-9/subscribed_apps", headers=auth).json() == {"success": True}
    assert "waba-9" in sim.subscribed
    node = http.get(f"/{V}/900", headers=auth).json()
    assert node["platform_type"] == "CLOUD_API" and node["throughput"] == {"level": "STANDARD"}

    url = f"/{V}/900/smb_app_data"
    for sync_type in ("smb_app_state_sync", "history"):
        first = http.post(url, headers=auth, json={"messaging_product": "whatsapp", "sync_type": sync_type})
        assert first.status_code == 200 and first.json()["request_id"]
        again = http.post(url, headers=auth, json={"messaging_product": "whatsapp", "sync_type": sync_type})
        assert again.status_code == 400 and "error" in again.json()
    assert not [c for c in sim.calls if c[1].endswith("/register")]
    assert http.post(f"/{V}/900/register", headers=auth, json={"pin": "123456"}).json()["success"]
    assert [c for c in sim.calls if c[1] == f"/{V}/900/register"] == [
        ("POST", f"/{V}/900/register", {"pin": "123456"})]
    assert ("POST", f"/{V}/waba-9/subscribed_apps", {}) in sim.calls


def test_templates_are_listed_in_pages(sim, http):
    for i in range(5):
        sim.add_template(WABA, f"t{i}", body_params=i)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = http.get(f"/{V}/{WABA}/message_templates", params={"limit": 2}, headers=auth).json()
    names = [t["name"] for t in page["data"]]
    while "next" in page["paging"]:
        page = http.get(page["paging"]["next"], headers=auth).json()
        names += [t["name"] for t in page["data"]]
    assert names == ["t0", "t1", "t2", "t3", "t4"]
    assert set(page["data"][0]) >= {"name", "language", "status", "category", "id", "components"}


# --- faults ----------------------------------------------------------------------------------

def test_fail_next_5xx_then_recovers(sim, http):
    sim.open_window(PNID, CUSTOMER)
    sim.fail_next(2, code=131016, http_status=500)
    first, second, third = (send(http, text()) for _ in range(3))
    assert (first.status_code, code(first)) == (500, 131016)
    assert (second.status_code, code(second)) == (500, 131016)
    assert third.status_code == 200
    assert [r["status"] for r in sim.requests] == [500, 500, 200]


def test_fail_next_timeout(sim, http):
    sim.open_window(PNID, CUSTOMER)
    sim.fail_next(1, timeout=True, delay=1.5)
    with pytest.raises(httpx.TimeoutException):
        send(http, text(), timeout=0.3)
    assert send(http, text()).status_code == 200  # the next one is served normally


def test_errors_for_a_recipient(sim, http):
    sim.open_window(PNID, CUSTOMER)
    sim.set_error_for("+1 650 555 1234", 131026)
    r = send(http, text())
    assert (r.status_code, code(r)) == (400, 131026)
    sim.set_error_for(CUSTOMER, 368, http_status=403)
    assert (send(http, text()).status_code, code(send(http, text()))) == (403, 368)
    sim.clear_error_for(CUSTOMER)
    assert send(http, text()).status_code == 200


# --- webhook delivery ------------------------------------------------------------------------

@pytest.fixture
def hub():
    """A stand-in hub that checks every signature and keeps the bodies."""
    app, received = Flask("fake-hub"), []

    @app.post("/webhooks/whatsapp")
    def webhook():
        raw = request.get_data()
        want = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", ""), want):
            return "bad signature", 403
        received.append(json.loads(raw))
        return "", 200

    app.received = received
    return app


def test_statuses_and_messages_are_delivered_signed(sim, http, hub):
    sim.hub_client = hub.test_client()
    response = sim.customer_message(PNID, CUSTOMER, "hello", name="Ana")
    assert response.status_code == 200
    wamid = send(http, text()).json()["messages"][0]["id"]
    assert len(sim.pending_statuses) == 3
    assert sim.flush_statuses(shuffle=True) == 3 and sim.pending_statuses == []
    statuses = [b["entry"][0]["changes"][0]["value"]["statuses"][0] for b in hub.received[1:]]
    assert sorted(s["status"] for s in statuses) == ["delivered", "read", "sent"]
    assert {s["id"] for s in statuses} == {wamid}
    inbound = hub.received[0]["entry"][0]["changes"][0]["value"]
    assert inbound["contacts"][0] == {"profile": {"name": "Ana"}, "wa_id": CUSTOMER}
    assert sim.state_sync(PNID, [("add", CUSTOMER, "Ana Lima", "Ana")]).status_code == 200
    assert sim.history(PNID, {CUSTOMER: [(None, True, "hi", 1)]}).status_code == 200
    assert sim.history(PNID, declined=True).status_code == 200
    assert [b["entry"][0]["changes"][0]["field"] for b in hub.received[4:]] == [
        "smb_app_state_sync", "history", "history"]


def test_wsgi_transport_works_too():
    sim = GraphSimulator()
    seed_demo_state(sim)
    with httpx.Client(transport=httpx.WSGITransport(app=sim.app), base_url="http://graph") as client:
        r = client.post(f"/{V}/106540352242922/messages", headers={"Authorization": "Bearer sim-token"},
                        json=template(name="hello_world", params=()))
    assert r.status_code == 200 and sim.sent()[0]["body"]["type"] == "template"
    assert sim.requests[0]["response"] == r.json()


# --- payload builders -------------------------------------------------------------------------

def builders():
    a = (WABA, PNID, DISPLAY)
    wid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
    return {
        "text": p.text_message(*a, CUSTOMER, "Hi ü 👋", user_id="US.13491208655302741918"),
        "bsuid": p.text_message(*a, None, "hidden", user_id="US.13491208655302741918"),
        "image": p.media_message(*a, CUSTOMER, media_id="123", mime_type="image/jpeg", sha256="ab"),
        "location": p.location_message(*a, CUSTOMER, name="Office"),
        "contacts": p.contacts_message(*a, CUSTOMER),
        "list": p.interactive_reply(*a, CUSTOMER, kind="list_reply", reply_id="r1", title="Row"),
        "button": p.template_button_reply(*a, CUSTOMER, payload="STOP", text="Stop"),
        "reaction": p.reaction(*a, CUSTOMER, message_id=wid),
        "unsupported": p.unsupported_message(*a, CUSTOMER),
        "revoke": p.revoke_message(*a, CUSTOMER, original_message_id=wid),
        "sent": p.status(*a, wid, "sent", CUSTOMER),
        "delivered": p.status(*a, wid, "delivered", CUSTOMER),
        "failed": p.status(*a, wid, "failed", CUSTOMER),
        "echo": p.echo(*a, CUSTOMER, "from the phone"),
        "echo_edit": p.echo_edit(*a, CUSTOMER, original_message_id=wid, new_body="fixed"),
        "echo_revoke": p.echo_revoke(*a, CUSTOMER, original_message_id=wid),
        "sync": p.state_sync(*a, [("add", CUSTOMER, "Ana Lima", "Ana"), ("remove", "1555", None, None)]),
        "history": p.history_chunk(*a, phase=1, chunk_order=2, progress=40,
                                   threads={CUSTOMER: [(wid, False, "hey", 1739230955)]}),
        "declined": p.history_declined(*a),
        "removed": p.account_update(WABA, "PARTNER_REMOVED", reason="PRIMARY_INACTIVITY"),
        "template": p.template_status(WABA, "PAUSED", 123456789, "promo", "en_US"),
        "prefs": p.user_preferences(*a, CUSTOMER, "stop"),
        "quality": p.quality_update(WABA, DISPLAY, "FLAGGED", "TIER_10K"),
    }


@pytest.mark.parametrize("name", list(builders()))
def test_builders_sign_and_verify_over_exact_bytes(name):
    env = builders()[name]
    assert env["object"] == "whatsapp_business_account" and env["entry"][0]["changes"]
    body = json.dumps(env, ensure_ascii=False).encode()
    header = p.sign(body, "s3cret")["X-Hub-Signature-256"]
    assert header == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(header, p.sign(body + b" ", "s3cret")["X-Hub-Signature-256"])


def test_builder_shapes_follow_meta():
    b = builders()
    val = lambda name: b[name]["entry"][0]["changes"][0]["value"]
    text_msg = val("text")["messages"][0]
    assert isinstance(text_msg["timestamp"], str) and text_msg["from"] == CUSTOMER
    assert val("text")["contacts"][0]["user_id"].startswith("US.")
    hidden = val("bsuid")
    assert "from" not in hidden["messages"][0] and "wa_id" not in hidden["contacts"][0]
    assert hidden["messages"][0]["from_user_id"] == hidden["contacts"][0]["user_id"]
    assert "emoji" not in val("reaction")["messages"][0]["reaction"]
    assert val("unsupported")["messages"][0]["errors"][0]["code"] == 131051
    assert "caption" not in val("image")["messages"][0]["image"]
    sent, delivered, failed = val("sent")["statuses"][0], val("delivered")["statuses"][0], val("failed")
    assert sent["pricing"] == {"billable": True, "pricing_model": "PMP", "category": "utility",
                               "type": "regular"}
    assert "pricing" not in delivered
    assert "contacts" not in failed and "pricing" not in failed["statuses"][0]
    assert failed["statuses"][0]["errors"][0]["code"]
    assert b["echo"]["entry"][0]["changes"][0]["field"] == "smb_message_echoes"
    assert val("echo")["message_echoes"][0]["from"] == DISPLAY
    assert val("echo_edit")["message_echoes"][0]["type"] == "edit"
    removal = val("sync")["state_sync"][1]
    assert removal["action"] == "remove" and "full_name" not in removal["contact"]
    thread = val("history")["history"][0]["threads"][0]
    assert thread["messages"][0]["history_context"] and val("history")["history"][0]["metadata"] == {
        "phase": 1, "chunk_order": 2, "progress": 40}
    assert val("declined")["history"][0]["errors"][0]["code"] == 2593109
    assert b["removed"]["entry"][0]["id"] != WABA and val("removed")["waba_info"]["waba_id"] == WABA
    assert val("removed")["disconnection_info"]["reason"] == "PRIMARY_INACTIVITY"
    tpl = val("template")
    assert tpl["message_template_id"] == 123456789 and "reason" not in tpl
    prefs = val("prefs")
    assert isinstance(prefs["user_preferences"][0]["timestamp"], int)
    assert prefs["contacts"] == [{"wa_id": CUSTOMER}]
    assert val("quality")["current_limit"] == "TIER_10K"
    merged = p.batch(b["text"], b["sent"], b["removed"])
    assert len(merged["entry"]) == 2 and len(merged["entry"][0]["changes"]) == 2
