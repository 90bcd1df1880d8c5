"""Zapier actions on the hub (issue 11, item 3): the auth test, sends and contact changes keyed by
phone number, the template dropdown; the refusals are the ones ``POST /api/v1/messages`` gives."""
import secrets


def number() -> str:
    return "1415555" + str(secrets.randbelow(10**4)).zfill(4)


def error(response) -> tuple[int, str]:
    return response.status_code, response.json["error"]["code"]


def test_me_is_the_auth_test(client, workspace):
    me = client.get("/api/v1/me", headers=workspace.headers)
    assert me.status_code == 200
    assert me.json["workspace"] == {"id": workspace.id, "name": "Test shop"}
    assert workspace.api_key.startswith(me.json["api_key"]["prefix"])
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer chk_nope"}).status_code == 401


def test_send_template_and_text_follow_the_messages_route(client, coexistence, simulator, run_jobs):
    h, to = coexistence.workspace.headers, number()
    [choice] = [t for t in client.get("/api/v1/zapier/templates", headers=h).json if t["name"] == "order_update"]
    assert choice["param_count"] == 1 and choice["language"] == "en_US" and "1 parameter" in choice["label"]
    sent = client.post("/api/v1/actions/send-template", headers=h,
                       json={"to": "+" + to, "template_id": choice["id"], "params": ["#1001"]})
    assert sent.status_code == 202, sent.json
    assert sent.json["template_name"] == "order_update" and sent.json["to"] == to
    by_name = client.post("/api/v1/actions/send-template", headers=h,
                          json={"to": "+" + to, "template": "order_update", "language": "en_US", "params": ["#2"]})
    assert by_name.status_code == 202
    # refusals: what the messages route answers, with its reasons
    assert error(client.post("/api/v1/actions/send-template", headers=h,
                             json={"to": "+" + to, "template": "no_such", "params": []})) == (422, "template_unknown")
    assert error(client.post("/api/v1/actions/send-template", headers=h,
                             json={"to": "+" + to, "template_id": choice["id"], "params": []})) == \
        (422, "template_params_invalid")
    outside = client.post("/api/v1/actions/send-text", headers=h, json={"to": "+" + to, "text": "hello?"})
    assert error(outside) == (422, "outside_window") and "24-hour" in outside.json["error"]["message"]
    assert error(client.post("/api/v1/actions/send-text", headers=h, json={"to": "nope", "text": "x"})) == \
        (422, "invalid_phone")
    assert client.post("/api/v1/actions/send-text", headers=h, json={"text": "x"}).status_code == 422
    simulator.customer_message(coexistence.phone_number_id, to, "hi there")
    run_jobs()
    inside = client.post("/api/v1/actions/send-text", headers=h, json={"to": "+" + to, "text": "hello!"})
    assert inside.status_code == 202 and inside.json["kind"] == "text"
    run_jobs()
    assert client.get(f"/api/v1/sends/{inside.json['id']}", headers=h).json["status"] == "sent"


def test_contact_upsert_tags_and_opt_out_refuse_later_sends(client, coexistence, run_jobs):
    h, to = coexistence.workspace.headers, number()
    made = client.post("/api/v1/actions/contact", headers=h,
                       json={"phone": "+" + to, "full_name": "Asha Rao", "add_tags": ["vip", "zap"],
                             "attributes": {"plan": "gold"}})
    assert made.status_code == 200, made.json
    assert made.json["wa_id"] == to and made.json["full_name"] == "Asha Rao" and made.json["tags"] == ["vip", "zap"]
    again = client.post("/api/v1/actions/contact", headers=h, json={"phone": "+" + to, "remove_tags": ["zap"]})
    assert again.json["id"] == made.json["id"] and again.json["tags"] == ["vip"]
    assert again.json["full_name"] == "Asha Rao" and again.json["attributes"] == {"plan": "gold"}
    out = client.post("/api/v1/actions/contact", headers=h, json={"phone": "+" + to, "opted_out": True})
    assert out.json["opted_out"] is True
    refused = client.post("/api/v1/actions/send-template", headers=h,
                          json={"to": "+" + to, "template": "order_update", "params": ["#3"]})
    assert error(refused) == (422, "contact_opted_out")
    back = client.post("/api/v1/actions/contact", headers=h, json={"phone": "+" + to, "opted_out": False})
    assert back.json["opted_out"] is False
    assert client.post("/api/v1/actions/send-template", headers=h,
                       json={"to": "+" + to, "template": "order_update", "params": ["#3"]}).status_code == 202
    assert error(client.post("/api/v1/actions/contact", headers=h, json={"phone": "12"})) == (422, "invalid_phone")
    run_jobs()


def test_another_workspaces_template_is_not_found(client, coexistence):
    other = client.new_workspace()
    [choice] = [t for t in client.get("/api/v1/zapier/templates", headers=coexistence.workspace.headers).json
                if t["name"] == "order_update"]
    assert client.get("/api/v1/zapier/templates", headers=other.headers).json == []
    assert client.post("/api/v1/actions/send-template", headers=other.headers,
                       json={"to": "+" + number(), "template_id": choice["id"]}).status_code == 404
