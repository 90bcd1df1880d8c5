"""Papercuts of the first run: the wrong token says which one is needed; every time the API
shows carries its zone (ISO 8601 with ``Z``), and times sent with an offset are read as such."""
import datetime as dt
import re

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
CUSTOMER = "14155552671"


def test_the_admin_token_on_a_workspace_route_says_a_workspace_key_is_needed(client, workspace):
    r = client.get("/api/v1/contacts", headers=client.admin_headers)
    assert r.status_code == 403
    assert "admin token" in r.json["error"]["message"] and "workspace API key" in r.json["error"]["message"]
    r = client.get("/api/v1/contacts", headers={"Authorization": "Bearer chk_revoked_or_made_up"})
    assert r.status_code == 401 and "workspace API key" in r.json["error"]["message"]
    r = client.post("/api/v1/workspaces", json={"name": "x"}, headers=workspace.headers)
    assert r.status_code == 403 and "admin token" in r.json["error"]["message"]


def _times(value, path="$"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _times(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _times(item, f"{path}[{i}]")
    elif isinstance(value, str) and ISO.match(value):
        yield path, value


def test_every_time_in_api_responses_carries_its_zone(client, coexistence, simulator, run_jobs):
    headers = coexistence.workspace.headers
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "hi")
    run_jobs()
    later = (dt.datetime.now(dt.timezone(dt.timedelta(hours=5, minutes=30))) + dt.timedelta(hours=2))
    scheduled = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "order_update",
                                                      "params": ["A"], "send_at": later.isoformat()}, headers=headers)
    assert scheduled.status_code == 202, scheduled.json
    client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "text": "hello"}, headers=headers)
    run_jobs()
    simulator.flush_statuses()
    run_jobs()
    contact_id = client.get("/api/v1/contacts", headers=headers).json[0]["id"]
    broadcast = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["x"],
                                                        "audience": {"contact_ids": [contact_id]}}, headers=headers)
    assert broadcast.status_code == 202, broadcast.json
    installed = client.install(coexistence.workspace, "acme", {"webhook_secret": "s3cret", "template": "t1"})
    found = [(where, value) for response in (broadcast.json, installed) for where, value in _times(response)]
    for path in ("/api/v1/workspace", "/api/v1/workspace/keys", "/api/v1/connections", "/api/v1/contacts",
                 f"/api/v1/contacts/{contact_id}", f"/api/v1/contacts/{contact_id}/messages", "/api/v1/sends",
                 "/api/v1/events", "/api/v1/templates", "/api/v1/broadcasts", "/api/v1/installations"):
        r = client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.json)
        found += [(path + where, value) for where, value in _times(r.json)]
    admin_list = client.get("/api/v1/workspaces", headers=client.admin_headers).json
    found += [("/api/v1/workspaces" + where, value) for where, value in _times(admin_list)]
    assert len(found) >= 15, found
    assert {"created_at"} <= {where.rsplit(".", 1)[-1] for where, _ in found}
    assert not [(where, v) for where, v in found if not re.search(r"(Z|[+-]\d{2}:\d{2})$", v)]
    got = dt.datetime.fromisoformat(client.get(f"/api/v1/sends/{scheduled.json['id']}", headers=headers)
                                    .json["not_before"])
    assert abs((got - later).total_seconds()) < 1  # the offset was honoured, not dropped
