"""The admin API: workspaces, keys, connectors, installations, isolation, OpenAPI, health."""
from sqlalchemy import text

from hub.core.models import Installation


def test_creating_a_workspace_needs_the_admin_token(client):
    assert client.post("/api/v1/workspaces", json={"name": "x"}).status_code == 401
    r = client.post("/api/v1/workspaces", json={"name": "x"}, headers={"Authorization": "Bearer chk_nope"})
    assert r.status_code == 403 and r.json["error"]["code"] == "forbidden"
    r = client.post("/api/v1/workspaces", json={}, headers=client.admin_headers)
    assert r.status_code == 422 and "name" in r.json["error"]["details"]["fields"]


def test_api_key_is_shown_once_and_stored_hashed(client, workspace):
    me = client.get("/api/v1/workspace", headers=workspace.headers)
    assert me.status_code == 200 and me.json["id"] == workspace.id and "api_key" not in me.json
    with client.rt.db.session() as s:
        stored = s.execute(text("select key_hash from api_keys where workspace_id = :w"),
                           {"w": workspace.id}).scalars().all()
    assert stored and workspace.api_key not in stored
    second = client.post("/api/v1/workspace/keys", json={"name": "ci"}, headers=workspace.headers).json["api_key"]
    assert client.get("/api/v1/workspace", headers={"Authorization": f"Bearer {second}"}).json["id"] == workspace.id


def test_connectors_list_their_config_schema(client, workspace):
    [acme] = [c for c in client.get("/api/v1/connectors", headers=workspace.headers).json if c["name"] == "acme"]
    assert acme["config_schema"]["properties"]["webhook_secret"]["x-secret"] is True
    assert "order.created" in acme["topics"]


def test_installation_lifecycle_never_returns_secrets(client, workspace):
    created = client.install(workspace, "acme", {"webhook_secret": "s3cret", "template": "t1"}, name="Main store")
    assert created["webhook_url"] == f"http://hub.test/webhooks/acme/{created['id']}"
    assert created["secrets_set"] == ["webhook_secret"] and "webhook_secret" not in created["config"]
    url = f"/api/v1/installations/{created['id']}"
    patched = client.patch(url, json={"config": {"template": "t2"}}, headers=workspace.headers).json
    assert patched["config"]["template"] == "t2" and patched["secrets_set"] == ["webhook_secret"]
    with client.rt.db.session() as s:
        inst = s.get(Installation, created["id"])
        assert inst.secrets["webhook_secret"] == "s3cret"  # kept across the patch
        raw = s.execute(text("select secrets from installations where id = :i"), {"i": created["id"]}).scalar()
    assert "s3cret" not in raw  # encrypted at rest
    for response in (client.get(url, headers=workspace.headers),
                     client.get("/api/v1/installations", headers=workspace.headers)):
        assert "s3cret" not in response.get_data(as_text=True)
    bad = client.patch(url, json={"config": {"delay_minutes": "soon"}}, headers=workspace.headers)
    assert bad.status_code == 422 and bad.json["error"]["code"] == "invalid_config"
    assert client.delete(url, headers=workspace.headers).status_code == 204
    assert client.get(url, headers=workspace.headers).status_code == 404


def test_installation_config_is_validated(client, workspace):
    r = client.post("/api/v1/installations", json={"connector": "acme", "config": {}}, headers=workspace.headers)
    assert r.status_code == 422 and "webhook_secret" in r.json["error"]["details"]["fields"]
    r = client.post("/api/v1/installations", json={"connector": "nope"}, headers=workspace.headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "unknown_connector"


def test_a_workspace_never_sees_another_workspaces_data(client, workspace, acme_installation):
    inst, secrets = acme_installation
    client.deliver("acme", inst["id"], {"id": 1}, secrets, {"X-Acme-Topic": "order.paid", "X-Acme-Webhook-Id": "i1"})
    other = client.new_workspace("Other agency client")
    assert client.get("/api/v1/installations", headers=other.headers).json == []
    assert client.get(f"/api/v1/installations/{inst['id']}", headers=other.headers).status_code == 404
    assert client.patch(f"/api/v1/installations/{inst['id']}", json={"name": "x"},
                        headers=other.headers).status_code == 404
    assert client.delete(f"/api/v1/installations/{inst['id']}", headers=other.headers).status_code == 404
    assert client.get("/api/v1/events", headers=other.headers).json == []
    mine = client.get("/api/v1/events", headers=workspace.headers).json
    assert len(mine) == 1
    assert client.post(f"/api/v1/events/{mine[0]['id']}/replay", headers=other.headers).status_code == 404


def test_openapi_document_describes_the_api(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["info"]["title"] == "coexhub"
    for path in ("/api/v1/workspaces", "/api/v1/installations", "/api/v1/installations/{installation_id}",
                 "/api/v1/connectors", "/api/v1/events"):
        assert path in doc["paths"], path
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_health_readiness_and_metrics(client, acme_installation):
    inst, secrets = acme_installation
    assert client.get("/healthz").json == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"database": "ok", "redis": "ok"}
    client.deliver("acme", inst["id"], {"id": 3}, secrets, {"X-Acme-Topic": "order.paid", "X-Acme-Webhook-Id": "m"})
    client.deliver("acme", inst["id"], {"id": 3}, {"webhook_secret": "wrong"}, {"X-Acme-Topic": "order.paid"})
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'coexhub_ingest_total{provider="acme",result="stored"}' in metrics
    assert 'coexhub_ingest_total{provider="acme",result="bad_signature"}' in metrics
    assert 'coexhub_queue_depth{queue="ingest"}' in metrics
    assert 'coexhub_http_requests_total{endpoint="/webhooks/<connector_name>/<installation_id>"' in metrics


def test_errors_are_json(client, workspace):
    r = client.get("/api/v1/nowhere", headers=workspace.headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = client.post("/api/v1/installations", data="{", content_type="application/json", headers=workspace.headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "bad_request"


def test_out_of_range_and_wrongly_typed_input_is_4xx(client, workspace):
    h = workspace.headers
    huge = "9" * 30
    for url in (f"/api/v1/sends/{huge}", f"/api/v1/contacts/{huge}", f"/api/v1/events/{huge}/replay"):
        r = client.post(url, headers=h) if url.endswith("replay") else client.get(url, headers=h)
        assert r.status_code == 404, url
    assert client.get(f"/api/v1/sends?offset={huge}", headers=h).status_code == 200
    assert client.get("/api/v1/sends?contact_id=abc", headers=h).status_code == 404  # no such contact
    assert client.get("/api/v1/sends?limit=ten", headers=h).status_code == 400
    r = client.post("/api/v1/broadcasts", json={"template": "t", "params": ["{name.__class__}"],
                                               "audience": {"tags": ["x"]}}, headers=h)
    assert r.status_code == 422 and "params" in r.json["error"]["details"]["fields"]


def test_workspace_settings_are_validated_and_merged(client, workspace):
    h = workspace.headers
    bad = client.patch("/api/v1/workspace", json={"settings": {"opt_out_keywords": "STOP", "echo_hold_minutes": "x"}},
                       headers=h)
    assert bad.status_code == 422 and set(bad.json["error"]["details"]["fields"]["settings"]) == {
        "opt_out_keywords", "echo_hold_minutes"}
    ok = client.patch("/api/v1/workspace", json={"settings": {"echo_hold_minutes": 5, "opt_out_keywords": ["BASTA"]}},
                      headers=h).json
    ok = client.patch("/api/v1/workspace", json={"settings": {"require_marketing_consent": True}}, headers=h).json
    assert ok["settings"] == {"echo_hold_minutes": 5.0, "opt_out_keywords": ["BASTA"], "require_marketing_consent": True}
    assert client.post("/api/v1/workspaces", json={"name": "x", "settings": {"nope": 1}},
                       headers=client.admin_headers).status_code == 422


def test_contacts_filter_by_tag_and_page(client, workspace):
    from hub.core import contacts

    with client.rt.db.session() as s:
        for i in range(5):
            c = contacts.upsert(s, workspace.id, wa_id=f"1415555{1000 + i}")
            contacts.add_tags(c, ["vip"] if i % 2 == 0 else ["vipx"])
    h = workspace.headers
    vip = client.get("/api/v1/contacts?tag=vip", headers=h).json
    assert sorted(c["wa_id"] for c in vip) == ["14155551000", "14155551002", "14155551004"]
    assert len(client.get("/api/v1/contacts?tag=vip&limit=2&offset=2", headers=h).json) == 1
    assert len(client.get("/api/v1/contacts?limit=2", headers=h).json) == 2


def test_api_keys_are_listed_without_secrets_and_can_be_revoked(client, workspace):
    second = client.post("/api/v1/workspace/keys", json={"name": "zapier"}, headers=workspace.headers).json["api_key"]
    keys = client.get("/api/v1/workspace/keys", headers=workspace.headers).json
    assert [k["name"] for k in keys] == ["default", "zapier"] and second not in str(keys)
    zapier = keys[1]
    assert second.startswith(zapier["prefix"])
    other = client.new_workspace("Other")
    assert client.delete(f"/api/v1/workspace/keys/{zapier['id']}", headers=other.headers).status_code == 404
    assert client.delete(f"/api/v1/workspace/keys/{zapier['id']}", headers=workspace.headers).json["revoked_at"]
    assert client.get("/api/v1/workspace", headers={"Authorization": f"Bearer {second}"}).status_code == 401
