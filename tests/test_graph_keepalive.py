"""The send call's kept-alive HTTP path (``hub.core.whatsapp.keepalive``) against the served Graph
API simulator: every answer is the one for its own request, even after a timed-out call left a
late answer on the way; a connection that cannot be opened means Meta cannot have the send; a
proxied Graph URL keeps going through httpx."""
import secrets
import socket

import pytest

from hub.core.sending.dispatch import may_have_reached_meta
from hub.core.whatsapp import keepalive
from hub.core.whatsapp.graph import Graph, GraphError

VERSION = "v21.0"


@pytest.fixture
def number(graph_simulator) -> tuple[str, str]:
    pnid, waba, token = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14), \
        "EAAG" + secrets.token_hex(12)
    graph_simulator.add_number(pnid, waba, token)
    graph_simulator.add_template(waba, "order_update")
    return pnid, token


def template(to: str) -> dict:
    """A template send (no 24-hour window needed)."""
    return {"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": "order_update", "language": {"code": "en_US"}}}


def answers(sim, pnid: str) -> dict[str, str]:
    """Recipient -> the wamid the simulator answered, for this test's number only."""
    return {r["body"]["to"]: r["response"]["messages"][0]["id"] for r in list(sim.requests)
            if r["phone_number_id"] == pnid and r["status"] == 200}


def test_each_send_on_a_kept_alive_connection_gets_its_own_answer(graph_simulator, number):
    pnid, token = number
    graph = Graph(graph_simulator.base_url, VERSION)
    assert graph.direct
    got = {to: graph.send_message(pnid, token, template(to)) for to in (f"1415555{i:04d}" for i in range(5))}
    assert got == answers(graph_simulator, pnid)
    with pytest.raises(GraphError) as refused:  # Meta's errors are classified as before
        graph.send_message(pnid, "EAAG-wrong-token", template("14155550042"))
    assert refused.value.code == 190 and not refused.value.timeout


def test_a_late_answer_is_never_taken_for_the_next_sends(graph_simulator, number):
    pnid, token = number
    graph = Graph(graph_simulator.base_url, VERSION, timeout=0.3)
    graph_simulator.fail_next(1, timeout=True, delay=1.0)  # Meta takes it, but answers after the timeout
    with pytest.raises(GraphError) as slow:
        graph.send_message(pnid, token, template("14155551001"))
    assert may_have_reached_meta(slow.value)  # its fate is unknown: it waits for its status webhook
    wamid = graph.send_message(pnid, token, template("14155551002"))  # a new connection, its own answer
    assert answers(graph_simulator, pnid)["14155551002"] == wamid


def test_a_connection_that_cannot_be_opened_never_reached_meta(number):
    pnid, token = number
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GraphError) as refused:
        Graph(f"http://127.0.0.1:{port}", VERSION).send_message(pnid, token, template("14155551003"))
    assert refused.value.timeout and not may_have_reached_meta(refused.value)


def test_a_proxied_graph_url_goes_through_httpx(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert not keepalive.direct("https://graph.facebook.com")
    assert not Graph("https://graph.facebook.com", VERSION).direct
    monkeypatch.setenv("NO_PROXY", "graph.facebook.com")
    assert keepalive.direct("https://graph.facebook.com")
