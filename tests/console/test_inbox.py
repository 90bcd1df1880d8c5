"""The inbox through the real app: conversations, threads, reply box, assignment, notes, the live
stream and workspace isolation (Graph API simulator, real DB and Redis)."""
from __future__ import annotations

import re
import secrets

from sqlalchemy import select

from hub.core.models import User


def customer() -> str:
    return "1628" + str(200 + secrets.randbelow(800)) + str(secrets.randbelow(10**4)).zfill(4)


def conversation_of(person, to: str) -> dict:
    found = person.api("GET", f"/api/v1/conversations?status=all&q={to}")
    assert found.status_code == 200, found.json
    [conv] = found.json
    return conv


def user_id(client, person) -> str:
    with client.rt.db.session() as s:
        return s.scalar(select(User.id).where(User.email == person.email))


def page(person, url: str) -> str:
    response = person.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def thread_of(person, conv: dict) -> str:
    """The thread part of a conversation's page (the list before it has previews too)."""
    return page(person, f"/inbox/c/{conv['id']}").split('id="thread"', 1)[1]


def test_a_thread_shows_customer_api_and_phone_app_messages_with_ticks(client, coexistence, simulator, run_jobs):
    to, h = customer(), coexistence.workspace.headers
    simulator.customer_message(coexistence.phone_number_id, to, "Is my order shipped?", name="Asha Rao")
    run_jobs()
    sent = client.post("/api/v1/messages", json={"to": "+" + to, "text": "Yes, it left today."}, headers=h)
    assert sent.status_code == 202, sent.json
    run_jobs()
    simulator.flush_statuses()
    run_jobs()
    simulator.echo(coexistence.phone_number_id, to, "Call me if it is late - Priya")
    run_jobs()

    agent = client.console(coexistence.workspace, role="agent")
    listing = page(agent, "/inbox")
    assert "Asha Rao" in listing and "Phone app: " in listing and "Unread" in listing
    conv = conversation_of(agent, to)
    assert [c["id"] for c in agent.api("GET", "/api/v1/conversations?q=asha").json] == [conv["id"]]
    assert "Asha Rao" in page(agent, "/inbox?show=all&q=ASHA") and "Asha Rao" not in page(agent, "/inbox?q=nobody")
    assert conv["status"] == "open" and conv["unread"] and conv["connection_id"] == coexistence.id
    thread = thread_of(agent, conv)
    for text in ("Is my order shipped?", "Yes, it left today.", "Call me if it is late - Priya"):
        assert text in thread
    echo = thread[thread.index("Call me if it is late"):]
    assert "Sent from the WhatsApp Business app" in thread[thread.rindex('<li class="bubble', 0,
                                                                            thread.index("Call me if it")):]
    api_bubble = thread[thread.rindex('<li class="bubble', 0, thread.index("Yes, it left today.")):]
    assert "API" in api_bubble[:300] and 'tick-read' in api_bubble[:1500] and "read</span>" in api_bubble[:1500]
    assert "tick-sent" in echo[:800]  # the phone app's own send: sent
    assert "24-hour window open until" in thread and 'id="reply-text"' in thread
    assert conversation_of(agent, to)["unread"] is False  # opened in the console


def test_media_is_shown_by_type_caption_and_id(client, coexistence, simulator, run_jobs):
    from hub.testing import payloads as p

    to = customer()
    simulator.deliver(p.media_message(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, to,
                                      kind="document", media_id="998877", mime_type="application/pdf",
                                      filename="invoice-42.pdf", caption="my invoice"))
    run_jobs()
    agent = client.console(coexistence.workspace, role="agent")
    conv = conversation_of(agent, to)
    thread = thread_of(agent, conv)
    assert "Document" in thread and "invoice-42.pdf" in thread and "media id 998877" in thread
    assert "my invoice" in thread and "Document: my invoice" in page(agent, "/inbox")
    for link, caption in (("https://cdn.example.com/kurta.jpg", "the blue one"), ("javascript:alert(1)", "nope")):
        simulator.deliver(p._echo(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, to,
                                  "image", {"link": link, "caption": caption}))
    run_jobs()
    thread = thread_of(agent, conv)
    assert '<img src="https://cdn.example.com/kurta.jpg" alt="the blue one"' in thread
    assert "javascript:" not in thread and "nope" in thread


def test_assign_close_note_and_a_customer_message_reopens(client, coexistence, simulator, run_jobs):
    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Hello?")
    run_jobs()
    agent = client.console(coexistence.workspace, role="agent")
    me = user_id(client, agent)
    conv = conversation_of(agent, to)
    url = f"/api/v1/conversations/{conv['id']}"

    assigned = agent.api("PATCH", url, json={"assignee_user_id": me})
    assert assigned.status_code == 200 and assigned.json["assignee_user_id"] == me
    assert [c["id"] for c in agent.api("GET", "/api/v1/conversations?status=mine").json] == [conv["id"]]
    assert agent.api("GET", "/api/v1/conversations?status=unassigned").json == []
    stranger = client.console(client.new_workspace("Elsewhere"), role="owner")
    refused = agent.api("PATCH", url, json={"assignee_user_id": user_id(client, stranger)})
    assert refused.status_code == 422 and refused.json["error"]["code"] == "not_a_member"
    assert agent.api("PATCH", url, json={"status": "pending"}).status_code == 422

    closed = agent.api("PATCH", url, json={"status": "closed"})
    assert closed.status_code == 200 and closed.json["status"] == "closed" and closed.json["closed_at"]
    assert agent.api("GET", "/api/v1/conversations").json == []  # default: open ones
    note = agent.api("POST", f"{url}/notes", json={"text": "VIP: refund approved by Sam"})
    assert note.status_code == 201 and note.json["author_user_id"] == me
    assert agent.api("POST", f"{url}/notes", json={"text": ""}).status_code == 422
    thread = page(agent, f"/inbox/c/{conv['id']}")
    assert "VIP: refund approved by Sam" in thread and "Reopen" in thread
    assert "VIP: refund approved by Sam" not in str(coexistence.sent())  # internal: never sent

    simulator.customer_message(coexistence.phone_number_id, to, "Still there?")
    run_jobs()
    reopened = agent.api("GET", url).json
    assert reopened["status"] == "open" and reopened["unread"] and reopened["assignee_user_id"] == me
    assert agent.api("PATCH", url, json={"assignee_user_id": None}).json["assignee_user_id"] is None


def test_a_reply_inside_the_window_sends_free_text_from_the_number_written_to(client, coexistence, simulator,
                                                                               run_jobs):
    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Do you have size M?")
    run_jobs()
    agent = client.console(coexistence.workspace, role="agent")
    conv = conversation_of(agent, to)
    thread = page(agent, f"/inbox/c/{conv['id']}")
    form = re.search(r'<form data-api="POST /api/v1/messages"[^>]*class="reply-text">(.*?)</form>', thread, re.S)
    assert form, "no free-text reply form inside the window"
    fields = dict(re.findall(r'name="(contact_id|connection_id)" value="([^"]+)"', form.group(1)))
    assert fields["connection_id"] == coexistence.id
    reply = agent.api("POST", "/api/v1/messages", json={**fields, "text": "Yes, size M is in stock."})
    assert reply.status_code == 202, reply.json
    assert reply.json["connection_id"] == coexistence.id
    assert "Yes, size M is in stock." in page(agent, f"/inbox/c/{conv['id']}")  # queued, shown at once
    run_jobs()
    assert any(b.get("text", {}).get("body") == "Yes, size M is in stock." for b in coexistence.sent())
    simulator.flush_statuses()
    run_jobs()
    assert "tick-read" in thread_of(agent, conv).split("Yes, size M is in stock.")[1][:600]


def test_outside_the_window_only_templates_are_offered_and_free_text_gets_422(client, coexistence, simulator,
                                                                                run_jobs):
    to = customer()
    simulator.echo(coexistence.phone_number_id, to, "Hi from the shop phone")  # no customer message: no window
    run_jobs()
    agent = client.console(coexistence.workspace, role="agent")
    conv = conversation_of(agent, to)
    thread = page(agent, f"/inbox/c/{conv['id']}")
    assert "24-hour window closed" in thread and 'id="reply-text"' not in thread
    assert "Send order_update" in thread and 'name="params[]"' in thread
    fields = dict(re.findall(r'name="(contact_id|connection_id)" value="([^"]+)"', thread))
    refused = agent.api("POST", "/api/v1/messages", json={**fields, "text": "Free text now?"})
    assert refused.status_code == 422 and "window" in refused.json["error"]["message"]
    sent = agent.api("POST", "/api/v1/messages", json={**fields, "template": "order_update", "language": "en_US",
                                                        "params": ["#1042"]})
    assert sent.status_code == 202, sent.json
    run_jobs()
    assert coexistence.sent("order_update")
    later = page(agent, f"/inbox/c/{conv['id']}")
    assert "order_update" in later and "#1042" in later


def test_the_hold_shows_with_resume_and_consent_history(client, coexistence, simulator, run_jobs):
    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "STOP")
    run_jobs()
    simulator.echo(coexistence.phone_number_id, to, "Sorry to see you go")
    run_jobs()
    agent = client.console(coexistence.workspace, role="agent")
    conv = conversation_of(agent, to)
    thread = page(agent, f"/inbox/c/{conv['id']}")
    assert "Human took over" in thread and "Resume automations" in thread
    assert "Opted out" in thread and "via" in thread  # the opt-out event, from the STOP keyword
    release = re.search(r'data-api="POST (/api/v1/contacts/ct_[a-z2-7]+/release\?connection_id=[^"]+)"', thread)
    assert release and agent.api("POST", release.group(1)).status_code == 200
    assert "Human took over" not in page(agent, f"/inbox/c/{conv['id']}")


def test_the_stream_yields_a_new_message_event(client, coexistence, simulator, run_jobs):
    agent = client.console(coexistence.workspace, role="agent")
    response = agent.get("/inbox/stream", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    assert b"retry:" in next(chunks)  # the stream's cursor is now set: only newer rows follow
    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Live hello")
    run_jobs()
    frame = next(chunks).decode()
    assert "event: message" in frame and '"direction":"in"' in frame and re.search(r"^id: m\d+\.t\d+$", frame, re.M)
    response.close()
    assert next(chunks, None) is None  # the client went away: the generator is closed, no more polling


def test_a_reconnecting_stream_resumes_from_its_last_event_id(client, coexistence, simulator, run_jobs):
    from hub.web import inbox_stream

    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Sent while the browser reconnected")
    run_jobs()
    agent = client.console(coexistence.workspace, role="agent")
    response = agent.get("/inbox/stream", headers={"Last-Event-ID": "m0.t0"}, buffered=False)
    chunks = iter(response.response)
    next(chunks)
    assert "event: message" in next(chunks).decode()  # older than the stream, newer than its cursor
    response.close()
    assert inbox_stream.parse_cursor("m12.t1700000000000")[0] == 12
    assert inbox_stream.parse_cursor("garbage") is None and inbox_stream.parse_cursor("m1.t" + "9" * 15) is None
    ended = "".join(inbox_stream.events(client.rt.db, coexistence.workspace.id, None, max_seconds=0))
    assert ended.startswith("retry:") and re.search(r"id: m\d+\.t\d+\nevent: bye", ended)  # capped: reconnects


def test_another_workspaces_conversation_does_not_exist(client, coexistence, simulator, run_jobs):
    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Private")
    run_jobs()
    owner = client.console(coexistence.workspace, role="owner")
    conv = conversation_of(owner, to)
    other = client.console(client.new_workspace("Other shop"), role="owner")
    assert other.get(f"/inbox/c/{conv['id']}").status_code == 404
    assert other.get(f"/inbox/c/{conv['id']}/messages").status_code == 404
    assert other.api("GET", f"/api/v1/conversations/{conv['id']}").status_code == 404
    assert other.api("PATCH", f"/api/v1/conversations/{conv['id']}", json={"status": "closed"}).status_code == 404
    assert other.api("POST", f"/api/v1/conversations/{conv['id']}/notes", json={"text": "x"}).status_code == 404
    assert "Private" not in page(other, "/inbox") and other.api("GET", "/api/v1/conversations?status=all").json == []


def test_the_inbox_needs_a_sign_in(client):
    assert client.get("/inbox").headers["Location"].startswith("/login")
    assert client.get("/inbox/stream").headers["Location"].startswith("/login")


def test_a_failed_send_shows_its_reason(client, coexistence, simulator, run_jobs):
    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Ping")
    run_jobs()
    simulator.fail_delivery_to(to, 131026)
    agent = client.console(coexistence.workspace, role="agent")
    conv = conversation_of(agent, to)
    fields = dict(re.findall(r'name="(contact_id|connection_id)" value="([^"]+)"', thread_of(agent, conv)))
    assert agent.api("POST", "/api/v1/messages", json={**fields, "text": "Pong"}).status_code == 202
    run_jobs()
    simulator.flush_statuses()
    run_jobs()
    bubble = thread_of(agent, conv).split("Pong", 1)[1][:900]
    assert "tick-failed" in bubble and "failed</span>" in bubble and "131026" in bubble


def test_a_connector_send_is_named_by_its_installation(client, coexistence, simulator, run_jobs):
    from hub.core.models import Contact, Installation, Message, Send, utcnow

    to = customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Where is my parcel?")
    run_jobs()
    with client.rt.db.session() as s:  # what a connector's action leaves behind once sent
        contact = s.scalars(select(Contact).where(Contact.wa_id == to)).one()
        install = Installation(workspace_id=coexistence.workspace.id, connector="shopify", name="Kurta House store")
        s.add(install)
        s.flush()
        send = Send(workspace_id=coexistence.workspace.id, connection_id=coexistence.id, contact_id=contact.id,
                    to=to, kind="template", template_name="order_update", template_language="en_US",
                    params=["#77"], origin="connector", installation_id=install.id, status="sent", wamid="wamid.c1")
        s.add(send)
        s.flush()
        s.add(Message(workspace_id=coexistence.workspace.id, connection_id=coexistence.id, contact_id=contact.id,
                      wamid="wamid.c1", direction="out", origin="api", type="template", status="delivered",
                      body={"template": {"name": "order_update", "language": {"code": "en_US"}, "components": [
                          {"type": "body", "parameters": [{"type": "text", "text": "#77"}]}]}},
                      timestamp=utcnow(), send_id=send.id))
    agent = client.console(coexistence.workspace, role="agent")
    bubble = thread_of(agent, conversation_of(agent, to)).split("Connector Kurta House store", 1)[1][:700]
    assert "order_update" in bubble and "#77" in bubble and "tick-delivered" in bubble
