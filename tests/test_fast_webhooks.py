"""The webhook POST routes served on the event loop (``hub.asgi``): through a live uvicorn
server, the same answers, errors, log lines and guarantees as the Flask views."""
from __future__ import annotations

import io
import json
import logging
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
import uvicorn
from sqlalchemy import select

from hub.api.fast_webhooks import WebhookApp
from hub.core import ingest, installations, logs
from hub.core.models import InboundEvent, Installation
from hub.testing import payloads as p
from hub.testing import sign
from tests import acme
from tests.test_group_commit import order, wait_for, writes_held

META_SECRET = "test-app-secret"


@pytest.fixture
def live_asgi(app):
    server = uvicorn.Server(uvicorn.Config(WebhookApp(app), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(30)


def http(base: str, path: str, body: bytes | None = None, headers: dict | None = None,
         method: str = "POST") -> tuple[int, dict, dict | str]:
    """``(status, headers, JSON body or text)`` of a real HTTP request."""
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, got, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, got, raw = exc.code, dict(exc.headers), exc.read()
    is_json = got.get("content-type", got.get("Content-Type", "")).startswith("application/json")
    return status, got, json.loads(raw) if is_json else raw.decode()


def too_large(base: str, path: str, length: int) -> tuple[int, dict]:
    """POST announcing ``length`` bytes and sending few: the answer comes before the body."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\nxxxx".encode())
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < int(
                reply.lower().partition(b"content-length: ")[2].split(b"\r\n")[0] or 0):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def records(caplog, message: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == message]


def envelope(coexistence) -> bytes:
    env = p.text_message(coexistence.waba_id, coexistence.phone_number_id, coexistence.display,
                         "919876543210", f"hello {secrets.token_hex(4)}")  # bodies dedupe on their hash
    return json.dumps(env).encode()


def test_meta_webhook_is_committed_deduped_processed_and_logged(client, coexistence, live_asgi, run_jobs, caplog):
    caplog.set_level(logging.INFO)
    body = envelope(coexistence)
    headers = {"Content-Type": "application/json", "X-Request-Id": "req-fast-1", **p.sign(body, META_SECRET)}
    status, got, answer = http(live_asgi, "/webhooks/whatsapp", body, headers)
    assert status == 200 and got["x-request-id"] == "req-fast-1"
    assert answer["ok"] is True and answer["duplicate"] is False and answer["event_id"].startswith("evt_")
    with client.rt.db.session() as s:  # committed before the answer left
        [event] = s.scalars(select(InboundEvent).where(InboundEvent.body == body)).all()
    assert event.status == "pending" and event.workspace_id == coexistence.workspace.id
    again = http(live_asgi, "/webhooks/whatsapp", body, headers)
    assert again[0] == 200 and again[2]["duplicate"] is True and again[2]["event_id"] is None
    flask_again = client.http.post("/webhooks/whatsapp", data=body, headers=headers)
    assert sorted(flask_again.json) == sorted(again[2])  # the same answer as the Flask view's
    run_jobs(queues=("ingest",))
    with client.rt.db.session() as s:
        assert s.get(InboundEvent, event.id).status == "processed"
    [line] = [r for r in records(caplog, "request") if r.get("request_id") == "req-fast-1"
              and r["status"] == 200 and r["route"] == "/webhooks/whatsapp"][:1]
    assert line["method"] == "POST" and line["workspace_id"] == coexistence.workspace.id and "duration_ms" in line


@pytest.fixture
def log_text():
    """Everything logged during the test, as our plain formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("plain"))
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


def test_refusals_have_the_flask_views_status_and_json(client, coexhub_runtime, acme_installation, live_asgi,
                                                       caplog, log_text):
    caplog.set_level(logging.INFO)
    text = log_text
    inst, secrets_ = acme_installation
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    huge = b"x" * (coexhub_runtime.settings.max_body_bytes + 1)
    signed_order = json.dumps(order(1)).encode()
    cases = [  # (path, body, headers, expected status, expected error code)
        ("/webhooks/whatsapp", body, {"X-Hub-Signature-256": "sha256=" + "ab" * 32}, 401, "bad_signature"),
        ("/webhooks/whatsapp", body, {}, 401, "bad_signature"),
        ("/webhooks/shopify/ins_unknown", body, {}, 404, "unknown_installation"),
        ("/webhooks/nosuch/ins_unknown", body, {}, 404, "unknown_connector"),
        (f"/webhooks/acme/{inst['id']}", signed_order, {"X-Acme-Webhook-Id": "x", **sign(acme.Acme, signed_order,
                                                        {**secrets_, "webhook_secret": "wrong"})}, 401, "bad_signature"),
    ]
    for path, data, headers, expected, code in cases:
        status, got, answer = http(live_asgi, path, data, {"Content-Type": "application/json", **headers})
        flask = client.http.post(path, data=data, headers={"Content-Type": "application/json", **headers})
        assert (status, answer) == (flask.status_code, flask.json), path
        assert status == expected and answer["error"]["code"] == code and got["x-request-id"], path
    for path in ("/webhooks/whatsapp", f"/webhooks/acme/{inst['id']}"):  # refused on its Content-Length
        status, answer = too_large(live_asgi, path, len(huge))
        flask = client.http.post(path, data=huge, headers={"Content-Type": "application/json"})
        assert (status, answer) == (flask.status_code, flask.json) and status == 413, path
        cases.append((path, huge, {}, 413, "payload_too_large"))
    reasons = [(r["status"], r["reason"]) for r in records(caplog, "webhook rejected")]
    assert reasons == [(s, c) for *_, s, c in cases for _ in (0, 1)]  # one per server, same fields
    output = text.getvalue()
    assert "reason=bad_signature" in output
    assert not [s for s in ("ab" * 32, META_SECRET, "acme-secret") if s in output]


def test_a_disabled_installation_is_404_and_its_webhooks_are_not_stored(client, acme_installation, live_asgi):
    inst, secrets_ = acme_installation
    with client.rt.db.session() as s:
        s.get(Installation, inst["id"]).enabled = False
    installations.forget(inst["id"])  # as the API does when it changes an installation
    body = json.dumps(order(2)).encode()
    status, _, answer = http(live_asgi, f"/webhooks/acme/{inst['id']}", body, {
        "Content-Type": "application/json", "X-Acme-Topic": "order.created", "X-Acme-Webhook-Id": "off-1",
        **sign(acme.Acme, body, secrets_)})
    assert status == 404 and answer["error"]["code"] == "installation_disabled"
    with client.rt.db.session() as s:
        assert not s.scalars(select(InboundEvent).where(InboundEvent.scope == inst["id"])).all()


def test_concurrent_webhooks_are_answered_only_after_their_batch_is_committed(
        client, workspace, acme_installation, connection, live_asgi, run_jobs):
    inst, secrets_ = acme_installation
    rt = client.rt
    answers: dict[int, dict] = {}
    errors: list[BaseException] = []

    def post(n: int, webhook_id: str) -> dict:
        body = json.dumps(order(n)).encode()
        status, _, answer = http(live_asgi, f"/webhooks/acme/{inst['id']}", body, {
            "Content-Type": "application/json", "X-Acme-Topic": "order.created", "X-Acme-Webhook-Id": webhook_id,
            **sign(acme.Acme, body, secrets_)})
        assert status == 200, answer
        return answer

    def send(i: int) -> None:  # 2k and 2k+1 deliver the same webhook: one is a duplicate
        try:
            answers[i] = post(i // 2, f"fast-{i // 2}")
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    with writes_held(rt, lambda: post(999, "fast-warm")):
        for t in threads:
            t.start()
        wait_for(lambda: ingest.waiting(rt) == 8, "every request to reach the committer")
        assert not answers and not errors  # nothing answered while its rows cannot be committed
    for t in threads:
        t.join(60)
    assert not errors, errors
    for k in range(4):  # each webhook id: stored by exactly one of its two requests
        assert sorted([answers[2 * k]["duplicate"], answers[2 * k + 1]["duplicate"]]) == [False, True]
    with rt.db.session() as s:
        events = s.scalars(select(InboundEvent).where(InboundEvent.scope == inst["id"])).all()
    assert sorted(e.dedupe_key for e in events) == sorted([*(f"fast-{k}" for k in range(4)), "fast-warm"])
    run_jobs(queues=("ingest",))
    with rt.db.session() as s:
        assert {e.status for e in s.scalars(select(InboundEvent).where(InboundEvent.scope == inst["id"]))} == {
            "processed"}


def test_other_requests_go_to_the_flask_app(client, live_asgi):
    assert http(live_asgi, "/healthz", method="GET")[0] == 200
    status, _, challenge = http(live_asgi, "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token="
                                "test-verify-token&hub.challenge=77", method="GET")
    assert (status, challenge) == (200, "77")
    status, got, answer = http(live_asgi, "/api/v1/contacts", method="GET")
    assert status == 401 and answer["error"]["code"] and got["x-request-id"]
