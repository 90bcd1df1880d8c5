"""Structured logs: a line per request with its request id, webhook rejections with their reason,
send decisions, the request id inside the jobs a request causes, JSON lines, and no secrets."""
import io
import json
import logging
import subprocess
import sys

import pytest

from hub.core import logs
from hub.testing import payloads as p
from hub.testing import process_env

CUSTOMER = "14155552671"


@pytest.fixture
def log_output():
    """Everything the hub logs during the test, formatted by our formatter (plain or JSON)."""
    streams = {}

    def attach(fmt: str = "plain") -> io.StringIO:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logs.formatter(fmt))
        handler.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(handler)
        streams[handler] = stream
        return stream

    yield attach
    for handler in streams:
        logging.getLogger().removeHandler(handler)


def records(caplog, message: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == message]


def test_each_request_logs_method_route_status_duration_workspace_and_request_id(client, workspace, caplog):
    caplog.set_level(logging.INFO)
    given = client.get("/api/v1/contacts", headers={**workspace.headers, "X-Request-Id": "req-from-proxy-1"})
    made = client.get("/api/v1/contacts", headers=workspace.headers)
    assert given.headers["X-Request-Id"] == "req-from-proxy-1"
    generated = made.headers["X-Request-Id"]
    assert generated and generated != "req-from-proxy-1"
    lines = records(caplog, "request")
    assert len(lines) == 2
    for line, rid in zip(lines, ("req-from-proxy-1", generated)):
        assert (line["method"], line["route"], line["status"]) == ("GET", "/api/v1/contacts", 200)
        assert line["workspace_id"] == workspace.id and line["request_id"] == rid
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    bad = client.get("/api/v1/contacts", headers={"X-Request-Id": "not a valid id"})
    assert bad.status_code == 401 and bad.headers["X-Request-Id"] != "not a valid id"
    assert records(caplog, "request")[-1]["status"] == 401
    refused = client.post("/api/v1/messages", data='{"to": "+14155552671"}', headers={  # no Content-Type
        **workspace.headers, "X-Request-Id": "req-refused-early"})
    assert refused.status_code == 415 and refused.headers["X-Request-Id"] == "req-refused-early"
    assert records(caplog, "request")[-1]["request_id"] == "req-refused-early"


def test_rejected_webhooks_say_why_and_never_log_the_signature(client, coexhub_runtime, caplog, log_output):
    caplog.set_level(logging.INFO)
    text = log_output("plain")
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    forged = "sha256=" + "ab" * 32
    assert client.post("/webhooks/whatsapp", data=body, headers={"X-Hub-Signature-256": forged}).status_code == 401
    bad_json = b"{not json"  # signed: kept as a rejected event (200), and logged with its reason
    kept = client.post("/webhooks/whatsapp", data=bad_json, headers=p.sign(bad_json, "test-app-secret"))
    assert kept.status_code == 200 and kept.json["rejected"]
    assert any("kept as rejected" in r.getMessage() for r in caplog.records)
    huge = b"x" * (coexhub_runtime.settings.max_body_bytes + 1)
    assert client.post("/webhooks/whatsapp", data=huge,
                       headers=p.sign(huge, "test-app-secret")).status_code == 413
    assert client.post("/webhooks/shopify/ins_unknown", data=body).status_code == 404
    reasons = [(r["status"], r["reason"]) for r in records(caplog, "webhook rejected")]
    assert reasons == [(401, "bad_signature"), (413, "payload_too_large"), (404, "unknown_installation")]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.getMessage() == "webhook rejected")
    handshake = client.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=guessed-token&hub.challenge=1")
    assert handshake.status_code == 403
    assert records(caplog, "webhook rejected")[-1]["status"] == 403
    output = text.getvalue()
    assert "webhook rejected" in output and "reason=bad_signature" in output
    assert not [s for s in ("ab" * 32, "test-app-secret", "guessed-token", "test-verify-token") if s in output]


def test_send_decisions_are_logged_with_masked_numbers_and_no_secrets(
        client, coexistence, simulator, run_jobs, caplog, log_output):
    caplog.set_level(logging.INFO)
    text = log_output("plain")
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "hi")
    run_jobs()
    sent = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "order_update",
                                                 "params": ["Asha"]}, headers=coexistence.workspace.headers)
    assert sent.status_code == 202, sent.json
    run_jobs()
    simulator.fail_next(1, code=131016)  # "service unavailable": retried later
    retried = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "order_update",
                                                    "params": ["Ben"]}, headers=coexistence.workspace.headers)
    run_jobs()
    simulator.set_error_for("+14155550000", 131026)  # undeliverable: failed for good
    refused = client.post("/api/v1/messages", json={"to": "+14155550000", "template": "order_update",
                                                    "params": ["C"]}, headers=coexistence.workspace.headers)
    run_jobs()

    # logs name sends by their integer id (the API shows it as snd_…); run_jobs may deliver other tests' sends too
    sent_id, retried_id = client.row_id(sent.json["id"]), client.row_id(retried.json["id"])
    mine = {sent_id, retried_id, client.row_id(refused.json["id"])}
    (ok,) = [r for r in records(caplog, "send sent") if r["send_id"] in mine]
    assert ok["send_id"] == sent_id and ok["wamid"].startswith("wamid.")
    assert ok["to"] == logs.mask_phone(CUSTOMER) and CUSTOMER not in ok["to"]
    failures = {r["send_id"]: r for r in records(caplog, "send failed") if r["send_id"] in mine}
    assert failures[retried_id]["meta_code"] == 131016 and failures[retried_id]["action"] == "retry"
    assert [r["send_id"] for r in records(caplog, "send retry scheduled") if r["send_id"] in mine] == [retried_id]
    assert 131026 in {r["meta_code"] for r in failures.values()}
    onboarding = [r.fields for r in caplog.get_records("setup") if r.getMessage().startswith("onboarding step")]
    assert [r["step"] for r in onboarding][:2] == ["code exchange", "subscribe app"]

    output = text.getvalue()
    secrets = [coexistence.workspace.api_key, coexistence.token, client.rt.settings.admin_token,
               "test-app-secret", CUSTOMER, "Asha"]
    assert "send sent" in output and "wamid=wamid." in output
    assert not [s for s in secrets if s in output]


def test_request_id_follows_the_webhook_into_its_job_in_json_lines(client, coexistence, simulator, run_jobs,
                                                                   caplog, log_output):
    caplog.set_level(logging.INFO)
    stream = log_output("json")
    n = simulator.numbers[coexistence.phone_number_id]
    body = json.dumps(p.text_message(coexistence.waba_id, coexistence.phone_number_id, n["display_phone_number"],
                                     CUSTOMER, "hello")).encode()
    response = client.post("/webhooks/whatsapp", data=body,
                           headers={**p.sign(body, "test-app-secret"), "X-Request-Id": "rid-webhook-42"})
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "rid-webhook-42"
    run_jobs()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    request = next(x for x in lines if x["msg"] == "request" and x["route"] == "/webhooks/whatsapp")
    assert request["request_id"] == "rid-webhook-42" and request["status"] == 200
    assert request["workspace_id"] == coexistence.workspace.id
    jobs = [x for x in lines if x["msg"] == "job done" and x["job"] == "hub.core.processing.process_event"]
    assert jobs and all(x["request_id"] == "rid-webhook-42" for x in jobs)
    assert {"ts", "level", "logger"} <= set(jobs[0]) and jobs[0]["ts"].endswith("Z")
    assert logs.current_request_id() is None  # nothing leaks out of the request or the job


def test_a_worker_process_logs_json_lines_with_the_request_id(client, coexistence, simulator, coexhub_runtime):
    n = simulator.numbers[coexistence.phone_number_id]
    body = json.dumps(p.text_message(coexistence.waba_id, coexistence.phone_number_id, n["display_phone_number"],
                                     CUSTOMER, "from a worker")).encode()
    response = client.post("/webhooks/whatsapp", data=body,
                           headers={**p.sign(body, "test-app-secret"), "X-Request-Id": "rid-in-worker-7"})
    assert response.status_code == 200
    env = {**process_env(coexhub_runtime), "COEXHUB_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--simple", "--burst", "--queue", "ingest"],
                          env=env, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    jobs = [x for x in lines if x.get("msg") == "job done"]
    assert any(x["request_id"] == "rid-in-worker-7" and x["job"].endswith("process_event") for x in jobs), done.stderr
    assert coexistence.token not in done.stderr and "test-app-secret" not in done.stderr


def test_mask_phone_and_redaction():
    assert logs.mask_phone("+1 415 555 2671") == "+1415*****71"
    assert logs.redact({"access_token": "EAAG", "api_key": "chk", "signature": "s", "send_id": 3}) == \
        {"access_token": "[redacted]", "api_key": "[redacted]", "signature": "[redacted]", "send_id": 3}
