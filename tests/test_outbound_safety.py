"""Outbound safety (``hub.core.safe_http``): refused targets at subscribe time and at delivery,
the checked address pinned (a DNS answer that changes after the check cannot move the
connection), no redirects, bounded answers. ``socket.getaddrinfo``/``create_connection`` are
the operating system's: tests may stand in for DNS there."""
from __future__ import annotations

import dataclasses
import socket
import threading

import httpx
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from hub.core import safe_http
from hub.core.models import OutboundDelivery
from tests.receiver import Receiver

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def refuse_private(coexhub_runtime):
    """The production default (the test kit allows loopback, where the receivers live)."""
    original = coexhub_runtime.settings
    coexhub_runtime.settings = dataclasses.replace(original, outbound_allow_private=False)
    yield
    coexhub_runtime.settings = original


class FakeDNS:
    """Answers for some names, in turn (the last one repeats); the real resolver for the rest."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers, self.asked = answers, []

    def __call__(self, host, port, *args, **kwargs):
        if host in self.answers:
            self.asked.append(host)
            queue = self.answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:9/hook", "non-public address (127.0.0.1)"),
    ("http://10.1.2.3/hook", "non-public address (10.1.2.3)"),
    ("http://169.254.169.254/latest/meta-data/", "non-public address (169.254.169.254)"),
    ("http://[::1]:9/hook", "non-public address (::1)"),
    ("http://[::ffff:127.0.0.1]/hook", "non-public address"),
    ("http://localhost:9/hook", "localhost resolves to a non-public address"),
    ("http://0.0.0.0/hook", "non-public address"),
    ("gopher://example.com/", "not an http(s) URL"),
])
def test_private_targets_are_refused_at_subscribe_time(client, workspace, refuse_private, url, why):
    response = client.post("/api/v1/subscriptions", headers=workspace.headers, json={"url": url, "events": ["*"]})
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "bad_url" and why in response.json["error"]["message"]


def test_a_name_resolving_to_loopback_is_refused(monkeypatch, client, workspace, refuse_private):
    # all the answers must be public: one loopback address among them is enough to refuse
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        if host == "hooks.attacker.test" else REAL_GETADDRINFO(host, port, *a, **k))
    response = client.post("/api/v1/subscriptions", headers=workspace.headers,
                           json={"url": "https://hooks.attacker.test/x", "events": ["*"]})
    assert response.status_code == 400 and "127.0.0.1" in response.json["error"]["message"]


def test_a_private_target_is_refused_again_at_delivery(client, workspace, run_jobs, receiver, refuse_private):
    client.rt.settings = dataclasses.replace(client.rt.settings, outbound_allow_private=True)
    sub = client.post("/api/v1/subscriptions", headers=workspace.headers,
                      json={"url": receiver.url, "events": ["test.event"]}).json  # allowed when created
    client.rt.settings = dataclasses.replace(client.rt.settings, outbound_allow_private=False)
    sent = client.post(f"/api/v1/subscriptions/{sub['id']}/test", headers=workspace.headers).json
    run_jobs(queues=("outbound",))
    with client.rt.db.session() as s:
        row = s.get(OutboundDelivery, sent["delivery_id"])
    assert receiver.got == [] and row.status == "dead" and "non-public address" in row.last_error


def test_dns_rebinding_cannot_move_the_connection(monkeypatch, refuse_private):
    """Checked: a public address. Asked again, DNS would say loopback: the connection still goes
    to the checked address (the OS's connect sees it), and the name is looked up once."""
    dns = FakeDNS({"rebind.attacker.test": ["93.184.216.34", "127.0.0.1"]})
    connects = []

    def create_connection(address, *args, **kwargs):
        connects.append(address)
        raise ConnectionRefusedError("stand-in for the network: nothing is reachable")
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    with pytest.raises(httpx.ConnectError):
        safe_http.post("http://rebind.attacker.test:8080/hook", b"{}", {}, allow_private=False)
    assert connects == [("93.184.216.34", 8080)] and dns.asked == ["rebind.attacker.test"]


def test_the_pinned_address_keeps_the_host_name(monkeypatch, client, workspace, run_jobs, receiver):
    """With private targets allowed (tests), a name checked as loopback that DNS later moves to
    10.255.255.1 is still delivered to the receiver, with its own Host header."""
    dns = FakeDNS({"rebind.example.test": ["127.0.0.1", "10.255.255.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    url = f"http://rebind.example.test:{receiver.port}/hook"
    sub = client.post("/api/v1/subscriptions", headers=workspace.headers, json={"url": url, "events": ["test.event"]})
    assert sub.status_code == 201
    dns.asked.clear()
    dns.answers["rebind.example.test"] = ["127.0.0.1", "10.255.255.1"]  # the delivery's check sees loopback
    client.post(f"/api/v1/subscriptions/{sub.json['id']}/test", headers=workspace.headers)
    run_jobs(queues=("outbound",))
    [request] = receiver.got
    assert request["headers"]["host"] == f"rebind.example.test:{receiver.port}"
    assert dns.asked == ["rebind.example.test"]  # one lookup per delivery: the check's


@pytest.fixture
def odd_server():
    """Answers with a redirect, or a huge body, depending on the path."""
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/redirect":
            return Response("", status=302, headers={"Location": "http://169.254.169.254/"})(environ, start_response)
        def body():
            for _ in range(1024):
                yield b"x" * 65536  # 64 MiB if anyone read it all
        return Response(body(), status=200)(environ, start_response)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_redirects_are_not_followed_and_answers_are_bounded(odd_server):
    status, body = safe_http.post(odd_server + "/redirect", b"{}", {}, allow_private=True)
    assert status == 302
    status, body = safe_http.post(odd_server + "/big", b"{}", {}, allow_private=True)
    assert status == 200 and len(body) == safe_http.MAX_RESPONSE_BYTES


def test_a_redirect_is_a_failed_delivery(client, workspace, run_jobs, odd_server):
    sub = client.post("/api/v1/subscriptions", headers=workspace.headers,
                      json={"url": odd_server + "/redirect", "events": ["test.event"]}).json
    sent = client.post(f"/api/v1/subscriptions/{sub['id']}/test", headers=workspace.headers).json
    run_jobs(queues=("outbound",))
    with client.rt.db.session() as s:
        row = s.get(OutboundDelivery, sent["delivery_id"])
    assert row.status == "pending" and row.response_status == 302 and "redirects are not followed" in row.last_error


def test_connector_calls_get_a_pinned_client(monkeypatch, refuse_private):
    from hub.connector import outbound_client

    with pytest.raises(safe_http.Refused, match="non-public"):
        outbound_client("http://169.254.169.254/latest/meta-data/")
