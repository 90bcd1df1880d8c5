"""Signed outbound webhooks from ``Emit`` (Standard Webhooks), 410, the SSRF guard."""
import base64
import dataclasses
import hashlib
import hmac
import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hub.core.models import OutboundDelivery, Subscription

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
def receiver():
    got, status = [], {"code": 200}

    @Request.application
    def app(request):
        got.append({"headers": dict(request.headers), "body": request.get_data()})
        return Response("ok", status=status["code"])

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", got, status
    server.shutdown()


@pytest.fixture
def refuse_private(coexhub_runtime):
    """The production default (the test kit allows loopback, where every stand-in lives)."""
    original = coexhub_runtime.settings
    coexhub_runtime.settings = dataclasses.replace(original, outbound_allow_private=False)
    yield
    coexhub_runtime.settings = original


def subscribe(client, workspace, url):
    with client.rt.db.session() as s:
        sub = Subscription(workspace_id=workspace.id, target_url=url, events=["order.confirmed"], secret=SECRET)
        s.add(sub)
        s.flush()
        return sub.id


def order(client, inst, secrets, webhook_id):
    client.deliver("acme", inst["id"], {"id": 77, "phone": "+91 90909 09090"}, secrets,
                   {"X-Acme-Topic": "order.created", "X-Acme-Webhook-Id": webhook_id})


def deliveries(client, workspace):
    with client.rt.db.session() as s:
        return s.scalars(select(OutboundDelivery).where(OutboundDelivery.workspace_id == workspace.id,
                                                        OutboundDelivery.kind == "webhook")).all()


def test_emitted_events_are_delivered_signed(client, workspace, acme_installation, run_jobs, receiver):
    url, got, _ = receiver
    inst, secrets = acme_installation
    subscribe(client, workspace, url)
    order(client, inst, secrets, "emit-1")
    run_jobs(queues=("ingest", "outbound"))
    [request] = got
    h = request["headers"]
    signed = f"{h['Webhook-Id']}.{h['Webhook-Timestamp']}.".encode() + request["body"]
    expected = base64.b64encode(hmac.new(base64.b64decode(SECRET[6:]), signed, hashlib.sha256).digest()).decode()
    assert h["Webhook-Signature"] == f"v1,{expected}"
    assert b'"type":"order.confirmed"' in request["body"] and b'"order_id":"77"' in request["body"]
    assert [d.status for d in deliveries(client, workspace)] == ["delivered"]


def test_410_disables_the_subscription(client, workspace, acme_installation, run_jobs, receiver):
    url, got, status = receiver
    status["code"] = 410
    inst, secrets = acme_installation
    sub_id = subscribe(client, workspace, url)
    order(client, inst, secrets, "emit-410")
    run_jobs(queues=("ingest", "outbound"))
    [row] = deliveries(client, workspace)
    assert row.status == "dead" and row.response_status == 410
    with client.rt.db.session() as s:
        assert s.get(Subscription, sub_id).enabled is False


def test_private_addresses_are_refused_by_default(client, workspace, acme_installation, run_jobs, receiver,
                                                  refuse_private):
    url, got, _ = receiver
    inst, secrets = acme_installation
    subscribe(client, workspace, url)
    order(client, inst, secrets, "emit-ssrf")
    run_jobs(queues=("ingest", "outbound"))
    assert got == []
    [row] = deliveries(client, workspace)
    assert row.status == "dead" and "non-public address" in row.last_error


def test_connector_calls_to_private_addresses_are_refused_by_default(refuse_private):
    from hub.connector import outbound_url
    from hub.core.outbox import PermanentError

    with pytest.raises(PermanentError, match="non-public"):
        outbound_url("http://127.0.0.1:9/admin/api/2026-04/graphql.json")
    with pytest.raises(PermanentError, match="not an http"):
        outbound_url("file:///etc/passwd")
