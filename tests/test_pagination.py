"""Keyset pages (``hub.api.cursors``): ``?cursor=`` / ``X-Next-Cursor`` on /sends, /messages,
/contacts and a contact's thread return every row exactly once, also while rows are added;
contact search finds a contact by a fragment of its number or name."""
from __future__ import annotations

from hub.core import contacts

CUSTOMER = "14155550177"


def pages(client, url: str, headers: dict, between=None) -> tuple[list[str], int]:
    """Follow ``X-Next-Cursor`` from ``url``; returns the ids seen and the number of pages.
    ``between()`` runs after each page (to add rows while paging)."""
    seen, n, sep = [], 0, "&" if "?" in url else "?"
    next_url = url
    while next_url:
        r = client.get(next_url, headers=headers)
        assert r.status_code == 200, r.json
        seen += [row["id"] for row in r.json]
        n += 1
        cursor = r.headers.get("X-Next-Cursor")
        assert cursor is None or cursor == r.json[-1]["id"]
        next_url = f"{url}{sep}cursor={cursor}" if cursor else None
        if between:
            between()
        assert n < 50
    return seen, n


def send(client, conn, key: str) -> str:
    r = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "order_update", "params": ["x"],
                                               "idempotency_key": key}, headers=conn.workspace.headers)
    assert r.status_code == 202, r.json
    return r.json["id"]


def test_sends_cursor_pages_return_every_send_once_while_sends_are_added(client, coexistence):
    h = coexistence.workspace.headers
    before = [send(client, coexistence, f"p{i}") for i in range(7)]
    added: list[str] = []
    seen, n = pages(client, "/api/v1/sends?limit=3", h,
                    between=lambda: added.append(send(client, coexistence, f"late{len(added)}")))
    assert n == 3 and len(seen) == len(set(seen))  # 3 + 3 + 1: nothing twice
    assert seen == list(reversed(before))  # newest first; sends added meanwhile are ahead of the cursor
    assert client.get("/api/v1/sends?limit=50", headers=h).json[0]["id"] == added[-1]
    # filters keep working with a cursor, and offset paging still answers the same rows
    assert pages(client, "/api/v1/sends?limit=2&status=queued", h)[0] == \
        [s["id"] for s in client.get("/api/v1/sends?limit=50&status=queued", headers=h).json]
    first = client.get("/api/v1/sends?limit=3", headers=h).json
    assert [s["id"] for s in client.get("/api/v1/sends?limit=3&offset=3", headers=h).json] == \
        [s["id"] for s in client.get(f"/api/v1/sends?limit=3&cursor={first[-1]['id']}", headers=h).json]


def test_messages_and_thread_cursor_pages(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    for i in range(5):
        simulator.customer_message(coexistence.phone_number_id, CUSTOMER, f"hello {i}")
    run_jobs()
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=h).json
    whole = [m["id"] for m in client.get(f"/api/v1/contacts/{contact['id']}/messages", headers=h).json]
    assert len(whole) == 5
    thread, n = pages(client, f"/api/v1/contacts/{contact['id']}/messages?limit=2", h)
    assert thread == whole and n == 3  # oldest first, each once
    listed = [m["id"] for m in client.get("/api/v1/messages?limit=500", headers=h).json]
    newest_first, n = pages(client, "/api/v1/messages?limit=2", h,
                            between=lambda: simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "more")
                            or run_jobs())
    assert newest_first == listed and len(set(newest_first)) == len(listed)
    # a message of another contact's thread is no cursor for this thread
    simulator.customer_message(coexistence.phone_number_id, "14155550166", "other")
    run_jobs()
    other = client.get("/api/v1/messages?limit=1", headers=h).json[0]["id"]
    r = client.get(f"/api/v1/contacts/{contact['id']}/messages?cursor={other}", headers=h)
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_cursor"


def test_bad_cursors_are_400(client, coexistence):
    h = coexistence.workspace.headers
    sid = send(client, coexistence, "only")
    for url in ("/api/v1/sends?cursor=nope", "/api/v1/sends?cursor=ct_aaaaaaaaaaaaaaaaaaaaaaaaaa",
                "/api/v1/messages?cursor=snd_x", "/api/v1/contacts?cursor=ct_"):
        r = client.get(url, headers=h)
        assert r.status_code == 400 and r.json["error"]["code"] == "invalid_cursor", (url, r.json)
    r = client.get(f"/api/v1/sends?cursor={sid}&offset=2", headers=h)
    assert r.status_code == 400 and "cursor or offset" in r.json["error"]["message"]
    assert client.get(f"/api/v1/sends?cursor={sid}&offset=0", headers=h).json == []
    other = client.new_workspace("other")  # another workspace's message names no row of this list
    msg = client.public_id("msg", 2**40)
    r = client.get(f"/api/v1/messages?cursor={msg}", headers=other.headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_cursor"


def test_contacts_pages_tags_and_search_by_fragment(client, workspace):
    h = workspace.headers
    with client.rt.db.session() as s:
        for i in range(12):
            c = contacts.upsert(s, workspace.id, wa_id=f"4930{i:07d}", profile_name=f"Käthe Schmidt {i}",
                                full_name="Werkstatt Nord" if i == 4 else None)
            contacts.add_tags(c, ["vip"] if i % 3 == 0 else ["regular"])
    everyone = [c["id"] for c in client.get("/api/v1/contacts?limit=50", headers=h).json]
    assert len(everyone) == 12
    assert pages(client, "/api/v1/contacts?limit=5", h)[0] == everyone
    vip, n = pages(client, "/api/v1/contacts?tag=vip&limit=3", h)
    assert n == 2 and sorted(client.get(f"/api/v1/contacts/{c}", headers=h).json["wa_id"] for c in vip) == \
        ["49300000000", "49300000003", "49300000006", "49300000009"]
    assert len(client.get("/api/v1/contacts?tag=vip&limit=2&offset=3", headers=h).json) == 1
    # search: a prefix or any fragment of the number, a name fragment in any case
    assert len(client.get("/api/v1/contacts?q=4930000", headers=h).json) == 12
    assert [c["wa_id"] for c in client.get("/api/v1/contacts?q=0000011", headers=h).json] == ["49300000011"]
    assert [c["wa_id"] for c in client.get("/api/v1/contacts?q=werkstatt", headers=h).json] == ["49300000004"]
    assert len(client.get("/api/v1/contacts?q=käthe schmidt 1", headers=h).json) == 3  # 1, 10, 11
    assert client.get("/api/v1/contacts?q=zzz", headers=h).json == []
