"""Read receipts policy per connection, end to end through the API, the send pipeline and the Graph
API simulator (which records every mark-as-read call, so tests can assert none happened)."""
import secrets
import time

from hub.testing import payloads as p


def customer() -> str:
    return "1628" + str(200 + secrets.randbelow(800)) + str(secrets.randbelow(10**4)).zfill(4)  # a valid exchange


def inbound(client, conn, simulator, run_jobs, to, *texts):
    """The customer writes ``texts`` (one second apart); returns the hub's messages, oldest first."""
    wamids = []
    for i, text in enumerate(texts):
        wamids.append(p.new_wamid())
        simulator.customer_message(conn.phone_number_id, to, text, wamid=wamids[-1], timestamp=time.time() - 60 + i)
    run_jobs()
    [contact] = client.get(f"/api/v1/contacts?q={to}", headers=conn.workspace.headers).json
    thread = client.get(f"/api/v1/contacts/{contact['id']}/messages?limit=500", headers=conn.workspace.headers).json
    by_wamid = {m["wamid"]: m for m in thread}
    return [by_wamid[w] for w in wamids]


def reads_of(simulator, conn):
    return simulator.read_marks(conn.phone_number_id)


def patch(client, conn, **body):
    return client.patch(f"/api/v1/connections/{conn.id}", json=body, headers=conn.workspace.headers)


def reply(client, conn, to, **body):
    return client.post("/api/v1/messages", json={"to": "+" + to, "text": "On it!", **body},
                       headers=conn.workspace.headers)


def test_coexistence_numbers_never_mark_read_by_default(client, coexistence, simulator, run_jobs):
    h, to = coexistence.workspace.headers, customer()
    assert client.get(f"/api/v1/connections/{coexistence.id}", headers=h).json["read_receipts"] == "off"
    [message] = inbound(client, coexistence, simulator, run_jobs, to, "Is my order on its way?")
    refused = client.post(f"/api/v1/messages/{message['id']}/read", headers=h)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "read_receipts_off"
    assert "Business app" in refused.json["error"]["message"]
    typing = reply(client, coexistence, to, reply_to=message["wamid"], typing=True)
    assert typing.status_code == 422 and typing.json["error"]["code"] == "read_receipts_off"
    r = reply(client, coexistence, to, reply_to=message["wamid"])
    assert r.status_code == 202 and r.json["reply_to"] == message["wamid"]
    assert r.json["connection_reason"] == "reply_to"
    run_jobs()
    [sent] = [b for b in coexistence.sent() if b["to"] == to]
    assert sent["context"] == {"message_id": message["wamid"]}  # a reply in the chat...
    assert reads_of(simulator, coexistence) == []  # ...and the owner's chat stays unread
    wamid = client.get(f"/api/v1/sends/{r.json['id']}", headers=h).json["wamid"]
    [ours] = [m for m in client.get("/api/v1/messages?limit=500", headers=h).json if m["wamid"] == wamid]
    assert ours["context_wamid"] == message["wamid"]
    [after] = [m for m in client.get("/api/v1/messages?limit=500", headers=h).json if m["id"] == message["id"]]
    assert after["read_at"] is None


def test_policy_is_validated_and_changed_through_patch(client, coexistence):
    for bad in ("sometimes", "", 3, True):
        r = patch(client, coexistence, read_receipts=bad)
        assert r.status_code == 422, bad
    assert patch(client, coexistence, read_receipts="agent_replied").json["read_receipts"] == "agent_replied"
    assert patch(client, coexistence, read_receipts="on").json["read_receipts"] == "on"
    assert patch(client, coexistence, read_receipts=None).json["read_receipts"] == "off"  # the default again


def test_agent_replied_marks_read_up_to_the_replied_message_with_typing(client, coexistence, simulator, run_jobs):
    h, to = coexistence.workspace.headers, customer()
    assert patch(client, coexistence, read_receipts="agent_replied").status_code == 200
    first, second, later = inbound(client, coexistence, simulator, run_jobs, to, "Hello", "Where is #1001?", "?")
    refused = client.post(f"/api/v1/messages/{second['id']}/read", headers=h)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "read_receipts_agent_replied"
    assert reads_of(simulator, coexistence) == []
    r = reply(client, coexistence, to, reply_to=second["wamid"], typing=True)
    assert r.status_code == 202, r.json
    run_jobs()
    assert reads_of(simulator, coexistence) == [{"messaging_product": "whatsapp", "status": "read",
                                                 "message_id": second["wamid"], "typing_indicator": {"type": "text"}}]
    order = [r["body"].get("status") or r["body"].get("type") for r in simulator.requests
             if r["phone_number_id"] == coexistence.phone_number_id and
             (r["body"].get("to") == to or r["body"].get("message_id") == second["wamid"])]
    assert order == ["read", "text"]  # the read receipt (and typing) just before the reply
    thread = {m["id"]: m for m in client.get("/api/v1/messages?limit=500", headers=h).json}
    assert thread[first["id"]]["read_at"] and thread[second["id"]]["read_at"]
    assert thread[later["id"]]["read_at"] is None  # written after the one replied to
    connector_like = reply(client, coexistence, to, text="no reply_to")  # a plain send marks nothing
    assert connector_like.status_code == 202
    run_jobs()
    assert len(reads_of(simulator, coexistence)) == 1


def test_on_allows_marking_read_on_request(client, coexistence, simulator, run_jobs):
    h, to = coexistence.workspace.headers, customer()
    assert patch(client, coexistence, read_receipts="on").status_code == 200
    [message] = inbound(client, coexistence, simulator, run_jobs, to, "Thanks!")
    typing = client.post(f"/api/v1/messages/{message['id']}/read", json={"typing": True}, headers=h)
    assert typing.status_code == 422 and typing.json["error"]["code"] == "typing_needs_reply"
    r = client.post(f"/api/v1/messages/{message['id']}/read", headers=h)
    assert r.status_code == 200 and r.json["read_at"]
    assert reads_of(simulator, coexistence) == [{"messaging_product": "whatsapp", "status": "read",
                                                 "message_id": message["wamid"]}]
    sent = reply(client, coexistence, to).json  # our own message cannot be marked read
    run_jobs()
    wamid = client.get(f"/api/v1/sends/{sent['id']}", headers=h).json["wamid"]
    out = [m for m in client.get("/api/v1/messages?limit=500", headers=h).json if m["wamid"] == wamid]
    assert client.post(f"/api/v1/messages/{out[0]['id']}/read", headers=h).json["error"]["code"] == "not_inbound"
    other = client.new_workspace("Read receipts stranger")
    assert client.post(f"/api/v1/messages/{message['id']}/read", headers=other.headers).status_code == 404


def test_reply_to_is_checked_at_request_time(client, coexistence, simulator, run_jobs):
    to, stranger = customer(), customer()
    [message] = inbound(client, coexistence, simulator, run_jobs, to, "Hi")
    cases = {"unknown_reply_to": reply(client, coexistence, to, reply_to="wamid.nope"),
             "reply_to_other_contact": reply(client, coexistence, stranger, reply_to=message["wamid"])}
    for code, r in cases.items():
        assert r.status_code == 422 and r.json["error"]["code"] == code, r.json
    no_reply = reply(client, coexistence, to, typing=True)
    assert no_reply.status_code == 422 and "reply_to" in str(no_reply.json)
    assert reads_of(simulator, coexistence) == []


def test_plain_cloud_api_numbers_default_to_on(client, workspace, simulator, run_jobs):
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14)
    token, to = "EAAG" + secrets.token_hex(12), customer()
    simulator.add_number(pnid, waba, token, coexistence=False)
    r = client.post("/api/v1/connections", json={"access_token": token, "waba_id": waba, "mode": "cloud_api"},
                    headers=workspace.headers)
    assert r.status_code == 201 and r.json["read_receipts"] == "on", r.json
    simulator.customer_message(pnid, to, "hello")
    run_jobs()
    [message] = [m for m in client.get("/api/v1/messages", headers=workspace.headers).json if m["direction"] == "in"]
    assert client.post(f"/api/v1/messages/{message['id']}/read", headers=workspace.headers).status_code == 200
    assert [b["message_id"] for b in simulator.read_marks(pnid)] == [message["wamid"]]
