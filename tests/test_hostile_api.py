"""Hostile or odd API input: 4xx with a JSON reason, never a 500 (and never HTML)."""
import json
import threading

import pytest
from sqlalchemy import select

from hub.core.models import Contact, Send
from hub.testing import HubClient

README_PLACEHOLDER = '{"connector": "...", "config": {...}}'


def deep(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def raw(client, method, url, body, headers, content_type="application/json"):
    return client.open(url, method=method, data=body,
                       headers={**headers, **({"Content-Type": content_type} if content_type else {})})


def error_of(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.is_json, response.get_data(as_text=True)[:300]
    return response.json["error"]


@pytest.mark.parametrize("levels", [40, 5000, 100_000])
def test_deep_json_is_400_on_every_json_endpoint(client, workspace, levels):
    body = deep(levels)
    for method, url, headers in (("POST", "/api/v1/messages", workspace.headers),
                                 ("POST", "/api/v1/installations", workspace.headers),
                                 ("PATCH", "/api/v1/workspace", workspace.headers),
                                 ("POST", "/api/v1/broadcasts", workspace.headers),
                                 ("POST", "/api/v1/workspaces", client.admin_headers)):
        error = error_of(raw(client, method, url, body, headers), 400)
        assert error["code"] == "bad_request" and "nested deeper" in error["message"]


@pytest.mark.parametrize("send_at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"])
def test_send_at_out_of_range_once_in_utc_is_422(client, coexistence, send_at):
    response = client.post("/api/v1/messages", headers=coexistence.workspace.headers,
                           json={"to": "+14155552671", "text": "hi", "send_at": send_at})
    error = error_of(response, 422)
    assert "send_at" in error["details"]["fields"]


@pytest.mark.parametrize("field", ["text", "template", "idempotency_key", "to", "cancel_key"])
@pytest.mark.parametrize("bad", ["a\ud800b", "a\x00b"])
def test_lone_surrogates_and_nul_in_strings_are_422(client, coexistence, field, bad):
    body = {"to": "+14155552671", "text": "hi", field: bad}
    if field == "template":
        body.pop("text")
    response = raw(client, "POST", "/api/v1/messages", json.dumps(body), coexistence.workspace.headers)
    error = error_of(response, 422)
    assert field in error["details"]["fields"]
    with client.rt.db.session() as s:
        assert s.scalars(select(Send).where(Send.workspace_id == coexistence.workspace.id)).all() == []


@pytest.mark.parametrize("body, where", [('{"to": "+14155552671", "template": "t", "params": [1e999]}', "params[0]"),
                                         ('{"to": "+14155552671", "template": "t", "params": [NaN]}', "params[0]"),
                                         ('{"name": "x", "template": "t", "audience": {"contact_ids": [1%s]}}'
                                          % ("0" * 29), "audience.contact_ids[0]")])
def test_non_finite_numbers_and_huge_integers_are_422(client, coexistence, body, where):
    url = "/api/v1/broadcasts" if "audience" in body else "/api/v1/messages"
    error = error_of(raw(client, "POST", url, body, coexistence.workspace.headers), 422)
    assert where in error["details"]["fields"]


@pytest.mark.parametrize("value", ["²", "١٢", "1²", "99999999999999999999999", "1", "ct_", "ct_" + "a" * 26])
def test_a_contact_id_filter_that_is_no_contact_id_is_404(client, workspace, value):
    response = client.get(f"/api/v1/sends?contact_id={value}", headers=workspace.headers)
    assert error_of(response, 404)["message"].startswith("no contact ")


def test_contact_id_filter_still_filters(client, coexistence):
    client.post("/api/v1/messages", headers=coexistence.workspace.headers, json={"to": "+14155552671", "template": "order_update", "params": ["#1001"]})
    with client.rt.db.session() as s:
        [contact] = s.scalars(select(Contact).where(Contact.workspace_id == coexistence.workspace.id)).all()
    found = client.get(f"/api/v1/sends?contact_id={client.public_id('ct', contact.id)}", headers=coexistence.workspace.headers).json
    assert [s["contact_id"] for s in found] == [client.public_id("ct", contact.id)]


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_json_post_without_json_content_type_is_415_saying_what_to_send(client, workspace, content_type):
    response = raw(client, "POST", "/api/v1/messages", '{"to": "+14155552671", "text": "hi"}', workspace.headers,
                   content_type=content_type)
    error = error_of(response, 415)
    assert "Content-Type: application/json" in error["message"]


def test_posts_without_a_body_need_no_content_type(client, coexistence):
    response = client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers)
    assert response.status_code == 200


def test_readme_placeholder_body_is_a_json_400(client, workspace):
    response = raw(client, "POST", "/api/v1/installations", README_PLACEHOLDER, workspace.headers)
    error = error_of(response, 400)
    assert error["code"] == "bad_request" and "line 1 column" in error["message"]
    assert "<" not in error["message"] and "browser" not in error["message"]


def test_nul_in_the_url_is_400(client, workspace):
    for url in ("/api/v1/events?status=a%00b", "/api/v1/installations/ins%00x", "/api/v1/contacts?q=%00"):
        error_of(client.get(url, headers=workspace.headers), 400)
    assert client.post("/webhooks/acme/ins%00x", data=b"{}").status_code == 400


def test_an_unexpected_exception_answers_a_json_500_without_a_traceback(app, client):
    def broken():
        raise RuntimeError("secret detail from deep inside")

    app.add_url_rule("/api/v1/broken-for-test", "broken_for_test", broken)
    response = client.get("/api/v1/broken-for-test")
    error = error_of(response, 500)
    assert error == {"code": "internal_error", "message": "internal error; it has been logged"}
    assert "secret detail" not in response.get_data(as_text=True)


# -- bounded settings --------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("abandoned_cart_delay_minutes", 10**9), ("abandoned_cart_delay_minutes", 0),
                                          ("second_reminder_delay_minutes", 10**12),
                                          ("attribution_window_days", 10**6), ("attribution_window_days", -1)])
def test_shopify_numeric_config_is_bounded(client, workspace, field, value):
    config = {"shop": "x.myshopify.com", "webhook_secret": "s", field: value}
    response = client.post("/api/v1/installations", headers=workspace.headers,
                           json={"connector": "shopify", "config": config})
    error = error_of(response, 422)
    assert field in error["details"]["fields"]


def test_numeric_config_bounds_are_in_the_published_schema(client, workspace):
    connectors = {c["name"]: c for c in client.get("/api/v1/connectors", headers=workspace.headers).json}
    delay = connectors["shopify"]["config_schema"]["properties"]["abandoned_cart_delay_minutes"]
    assert (delay["minimum"], delay["maximum"]) == (1, 30 * 24 * 60)
    assert connectors["woocommerce"]["config_schema"]["properties"]["attribution_window_days"]["maximum"] == 366


def test_patching_an_installation_to_an_unbounded_delay_is_422(client, workspace):
    inst = client.install(workspace, "shopify", {"shop": "x.myshopify.com", "webhook_secret": "s"})
    response = client.patch(f"/api/v1/installations/{inst['id']}", headers=workspace.headers,
                            json={"config": {"abandoned_cart_delay_minutes": 10**15}})
    error_of(response, 422)


@pytest.mark.parametrize("settings", [{"prices": {"marketing": 1e300}}, {"echo_hold_minutes": 10**9},
                                      {"attribution_window_days": 1e12}, {"prices": {"": 1}}])
def test_workspace_settings_are_bounded(client, workspace, settings):
    error_of(client.patch("/api/v1/workspace", headers=workspace.headers, json={"settings": settings}), 422)


# -- the same idempotency key, many requests at once ---------------------------------------------

def sqlite_transactions_take_the_write_lock_first(rt) -> bool:
    """True when a SQLite transaction holds the write lock from its start (``BEGIN IMMEDIATE``):
    without it, concurrent writers fail with ``database is locked`` whatever the API does."""
    import sqlite3

    from sqlalchemy import text

    with rt.db.session() as session:
        session.execute(text("select 1"))
        other = sqlite3.connect(rt.settings.database_url.split("///", 1)[-1], timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            other.close()


def test_concurrent_requests_with_one_idempotency_key_make_one_send(app, coexistence):
    rt = app.extensions["coexhub"]
    if rt.db.is_sqlite and not sqlite_transactions_take_the_write_lock_first(rt):
        pytest.skip("on SQLite this needs transactions that BEGIN IMMEDIATE (issue 8's embedded-default slice)")
    threads, results, start = 24, [], threading.Barrier(24)
    body = {"to": "+14155550123", "template": "order_update", "params": ["#1"], "idempotency_key": "same-key"}

    def call():
        http = app.test_client()
        start.wait()
        response = http.post("/api/v1/messages", json=body, headers=coexistence.workspace.headers)
        results.append((response.status_code, (response.json or {}).get("id")))

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert len(results) == threads
    assert {status for status, _ in results} <= {202, 409}, results
    with app.extensions["coexhub"].db.session() as s:
        sends = s.scalars(select(Send).where(Send.workspace_id == coexistence.workspace.id)).all()
        contacts = s.scalars(select(Contact).where(Contact.workspace_id == coexistence.workspace.id)).all()
    assert len(sends) == 1 and len(contacts) == 1
    assert {send_id for status, send_id in results if status == 202} == {HubClient(app).public_id("snd", sends[0].id)}


@pytest.mark.parametrize("body, field", [({"access_token": "\x98", "waba_id": "1"}, "access_token"),
                                         ({"access_token": "EAAG x", "waba_id": "1"}, "access_token"),
                                         ({"access_token": "EAAG", "waba_id": "¸B:á"}, "waba_id"),
                                         ({"access_token": "EAAG", "waba_id": "1", "phone_number_id": "../x"},
                                          "phone_number_id")])
def test_meta_ids_and_tokens_that_cannot_reach_the_graph_api_are_422(client, workspace, body, field):
    error = error_of(client.post("/api/v1/connections", json=body, headers=workspace.headers), 422)
    assert field in error["details"]["fields"]
    onboard = {"code": "c", "waba_id": body["waba_id"], "phone_number_id": body.get("phone_number_id")}
    if field != "access_token":
        error_of(client.post("/api/v1/connections/onboard", json=onboard, headers=workspace.headers), 422)


def test_errors_of_list_items_and_of_the_whole_list_together_are_a_422(client, workspace):
    """Marshmallow keys item errors by index and list errors by ``_schema``: both in one answer."""
    body = {"url": "https://example.com/hook", "events": ["x" * 100, "no.such.event"]}
    r = client.post("/api/v1/subscriptions", json=body, headers=workspace.headers)
    assert r.status_code == 422, r.json
    assert set(r.json["error"]["details"]["fields"]["events"]) >= {"0"}
