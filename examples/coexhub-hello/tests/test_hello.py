"""The example's own tests: the conformance suite, and one greeting end to end against the
Graph API simulator (fixtures from coexhub's test kit, ``hub.testing.plugin``)."""
from hub.testing.conformance import ConnectorConformance

SECRETS = {"token": "hello-shared-token-123"}


class TestHelloConformance(ConnectorConformance):
    connector = "hello"
    config = {"token": "hello-conformance-token"}
    sample = {"id": "evt_1", "type": "greet", "phone": "+1 415 555 2671"}


def test_a_greet_webhook_sends_the_template(client, coexistence, run_jobs, sends):
    coexistence.add_template("hello_world")
    inst = client.install(coexistence.workspace, "hello", {**SECRETS})
    response = client.deliver("hello", inst["id"], {"id": "evt_2", "type": "greet", "phone": "+1 415 555 2671"},
                              SECRETS)
    assert response.status_code == 200, response.json
    run_jobs()
    assert [s.to for s in sends(status="sent")] == ["14155552671"]
    assert [body["to"] for body in coexistence.sent("hello_world")] == ["14155552671"]


def test_a_wrong_token_is_401(client, workspace):
    inst = client.install(workspace, "hello", {**SECRETS})
    response = client.deliver("hello", inst["id"], {"id": "evt_3", "type": "greet"}, {"token": "not-the-token"})
    assert response.status_code == 401
