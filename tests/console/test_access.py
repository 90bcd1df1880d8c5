"""Console sign-in, sessions, CSRF and roles, through the real app."""
from __future__ import annotations


def test_sign_in_reaches_the_console_and_sign_out_ends_it(client, workspace):
    person = client.console(workspace, role="owner")
    home = person.get("/")
    assert home.status_code == 200 and "Test shop" in home.get_data(as_text=True)
    cookie = person.http.get_cookie("coexhub_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert person.form("/logout").status_code == 302
    assert person.get("/").headers["Location"].endswith("/login")


def test_wrong_password_is_refused_and_logged_without_the_address(client, workspace, caplog):
    person = client.console(workspace)
    response = person.http.post("/login", data={"email": person.email, "password": "wrong password!",
                                                "csrf_token": person.csrf_token()})
    assert response.status_code == 401 and "Wrong email or password" in response.get_data(as_text=True)
    assert person.email not in caplog.text


def test_a_form_without_the_csrf_token_is_refused(client, workspace):
    person = client.console(workspace)
    assert person.http.post("/logout").status_code == 400
    assert person.get("/").status_code == 200  # still signed in


def test_the_api_takes_the_console_session_only_with_the_csrf_header(client, workspace):
    person = client.console(workspace, role="owner")
    assert person.get("/api/v1/contacts").status_code == 200
    body = {"url": "https://hooks.example.com/coexhub", "events": ["message.received"]}
    refused = person.http.post("/api/v1/subscriptions", json=body)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "csrf_failed"
    accepted = person.api("POST", "/api/v1/subscriptions", json=body)
    assert accepted.status_code != 403, accepted.json


def test_an_agent_cannot_change_connectors_through_the_api(client, workspace):
    agent = client.console(workspace, role="agent")
    response = agent.api("POST", "/api/v1/installations", json={"connector": "acme", "config": {}})
    assert response.status_code == 403 and "agent" in response.json["error"]["message"]


def test_a_session_never_reaches_another_workspace(client, workspace):
    other = client.new_workspace("Other shop")
    person = client.console(workspace, role="owner")
    assert person.form("/workspace", {"workspace_id": other.id}).status_code == 404
    from hub.core.models import Contact

    with client.rt.db.session() as s:
        s.add(Contact(workspace_id=other.id, wa_id="919876500000", profile_name="Other customer"))
    listed = person.get("/api/v1/contacts").json
    items = listed["items"] if isinstance(listed, dict) else listed
    assert items == [] and "Other customer" not in person.get("/api/v1/contacts").get_data(as_text=True)


def test_api_docs_page_is_served_with_its_assets_from_the_package(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and "/api/v1/docs/assets/swagger-ui-bundle.js" in page.get_data(as_text=True)
    asset = client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.get_data()) > 100_000
    assert client.get("/docs").headers["Location"].endswith("/api/v1/docs")
