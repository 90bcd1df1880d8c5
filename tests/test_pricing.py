"""Cost before and after (issue 12, item 2): the rate card as data, pricing on statuses,
actual spend, and the broadcast dry run — end to end through the API and the Graph simulator."""
import datetime as dt
import secrets

from sqlalchemy import func, select

from hub.core import contacts
from hub.core.models import Broadcast, Message, Send

RATE_CARD = """market,category,price,price_in_window,currency,effective_from,source
Rest of Western Europe,marketing,0.05,,EUR,2025-07-01,test
Rest of Western Europe,marketing,0.06,,EUR,2026-01-01,test
Rest of Western Europe,utility,0.02,0,EUR,2025-07-01,test
"""


def at_number() -> str:  # Austria: Meta's "Rest of Western Europe"
    return "43664" + str(secrets.randbelow(10**7)).zfill(7)


def ar_number() -> str:  # Argentina: a market of its own
    return "549114" + str(secrets.randbelow(10**7)).zfill(7)


def us_number() -> str:  # North America: no price on the shipped card
    return "1415" + str(2000000 + secrets.randbelow(7 * 10**6))


def send(client, conn, to, **body):
    r = client.post("/api/v1/messages", json={"to": "+" + to, **body}, headers=conn.workspace.headers)
    assert r.status_code == 202, r.json
    return r.json


def messages_of(client, workspace_id):
    with client.rt.db.session() as s:
        rows = s.scalars(select(Message).where(Message.workspace_id == workspace_id, Message.direction == "out"))
        return {client.public_id("snd", m.send_id): (m.status, m.pricing_category, m.pricing_billable, m.pricing_type, m.pricing_model,
                            m.pricing_country) for m in rows}


def test_statuses_carry_pricing_and_spend_reports_the_billable_ones(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    austria, argentina, chatting = at_number(), ar_number(), ar_number()
    simulator.customer_message(coexistence.phone_number_id, chatting, "where is my order?")
    run_jobs()
    promo = send(client, coexistence, austria, template="promo", params=["spring"])
    update = send(client, coexistence, argentina, template="order_update", params=["#1"])
    in_window = send(client, coexistence, chatting, template="order_update", params=["#2"])
    reply = send(client, coexistence, chatting, text="it ships today")
    run_jobs()
    assert simulator.flush_statuses() >= 12
    run_jobs()
    rows = messages_of(client, coexistence.workspace.id)
    assert rows[promo["id"]] == ("read", "marketing", True, "regular", "PMP", "AT")
    assert rows[update["id"]] == ("read", "utility", True, "regular", "PMP", "AR")
    assert rows[in_window["id"]] == ("read", "utility", False, "free_customer_service", "PMP", "AR")
    assert rows[reply["id"]] == ("read", "service", False, "free_customer_service", "PMP", "AR")

    by_category = client.get("/api/v1/analytics/spend?group_by=category", headers=h).json
    assert (by_category["messages"], by_category["currency"], by_category["cost"]) == (2, "USD", "0.0881")
    assert by_category["by_category"]["marketing"]["cost"] == "0.0592"  # shipped card: Rest of Western Europe
    assert by_category["by_category"]["utility"]["cost"] == "0.0289"  # Argentina's utility rate
    assert by_category["rate_card"]["origin"] in ("shipped", "instance")
    by_country = client.get("/api/v1/analytics/spend?group_by=country", headers=h).json["by_country"]
    assert {k: v["messages"] for k, v in by_country.items()} == {"AR": 1, "AT": 1}
    by_connection = client.get("/api/v1/analytics/spend?group_by=connection", headers=h).json
    assert list(by_connection["by_connection"]) == [coexistence.id]
    assert list(client.get("/api/v1/analytics/spend?group_by=connector", headers=h).json["by_connector"]) == ["api"]
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert client.get(f"/api/v1/analytics/spend?group_by=day&from={today}&to={today}",
                      headers=h).json["by_day"][today]["messages"] == 2
    assert client.get("/api/v1/analytics/spend?from=2020-01-01&to=2020-02-01", headers=h).json["messages"] == 0

    # the workspace's own card prices the same messages again, by the row in effect on their day
    assert client.put("/api/v1/rate-card", json={"csv": RATE_CARD}, headers=h).status_code == 200
    mine = client.get("/api/v1/analytics/spend?group_by=category", headers=h).json
    assert (mine["rate_card"]["origin"], mine["by_category"]["marketing"]["costs"]) == ("workspace", {"EUR": "0.06"})
    assert (mine["by_category"]["utility"]["unpriced"], mine["unpriced"]) == (1, 1)  # Argentina is not on it

    for bad in ("group_by=number", "from=yesterday", "from=2026-02-01&to=2026-01-01"):
        r = client.get(f"/api/v1/analytics/spend?{bad}", headers=h)
        assert r.status_code == 400, bad


def test_spend_is_workspace_scoped(client, workspace):
    assert client.get("/api/v1/analytics/spend", headers=workspace.headers).json["messages"] == 0
    assert client.get("/api/v1/analytics/spend").status_code == 401


def _audience(client, workspace_id, *people):
    """Contacts tagged ``vip``: ``(wa_id, {field: value})``; returns their ids."""
    ids = []
    with client.rt.db.session() as s:
        for wa_id, values in people:
            contact = contacts.upsert(s, workspace_id, wa_id=wa_id, source="import", first_name="Ana")
            contact.tags = ["vip"]
            for key, value in values.items():
                setattr(contact, key, value)
            s.flush()
            ids.append(contact.id)
    return ids


def test_broadcast_dry_run_counts_excludes_and_prices_without_sending(client, coexistence, simulator, run_jobs):
    h, ws = coexistence.workspace.headers, coexistence.workspace.id
    chatting = ar_number()
    simulator.customer_message(coexistence.phone_number_id, chatting, "hi")
    run_jobs()
    _audience(client, ws, (at_number(), {}), (at_number(), {}), (chatting, {}), (us_number(), {}),
              (ar_number(), {"opted_out": True}), (at_number(), {"marketing_opted_out": True}))
    body = {"template": "order_update", "params": ["{first_name|there}"], "audience": {"tags": ["vip"]}}
    r = client.post("/api/v1/broadcasts?dry_run=true", json=body, headers=h)
    assert r.status_code == 200, r.json
    plan = r.json
    assert (plan["dry_run"], plan["category"], plan["recipients"]) == (True, "utility", 5)
    assert plan["excluded"] == {"opted_out": 1, "marketing_opted_out": 0, "no_marketing_consent": 0,
                                "marketing_limited": 0, "marketing_cap": 0, "missing_value": 0}
    assert plan["recipients_by_connection"] == {coexistence.id: 5}
    estimate = plan["estimate"]
    assert (estimate["currency"], estimate["cost"], estimate["unpriced"]) == ("USD", "0.0513", 1)
    assert estimate["by_country"]["AT"] == {"messages": 3, "unpriced": 0, "currency": "USD", "cost": "0.0513",
                                            "costs": {"USD": "0.0513"}}
    assert estimate["by_country"]["AR"]["cost"] == "0" and estimate["free_in_window"] == 1  # utility in the window
    assert estimate["by_country"]["US"]["unpriced"] == 1
    assert estimate["by_category"]["utility"]["messages"] == 5
    assert "headroom" not in plan  # no portfolio governor yet: nothing made up

    marketing = client.post("/api/v1/broadcasts?dry_run=1", json={**body, "template": "promo"}, headers=h).json
    assert marketing["recipients"] == 4 and marketing["excluded"]["marketing_opted_out"] == 1
    assert marketing["estimate"]["by_country"]["AR"]["cost"] == "0.0618"  # marketing costs in the window too
    with client.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Send).where(Send.workspace_id == ws)) == 0
        assert s.scalar(select(func.count()).select_from(Broadcast).where(Broadcast.workspace_id == ws)) == 0

    real = client.post("/api/v1/broadcasts", json=body, headers=h)  # the same plan, for real
    assert real.status_code == 202 and real.json["recipients"] == 5
    assert real.json["excluded"] == plan["excluded"]


def test_rate_card_load_validates_each_line(client, workspace):
    h = workspace.headers
    before = client.get("/api/v1/rate-card", headers=h).json
    assert before["origin"] in ("shipped", "instance") and before["rates"]
    bad = RATE_CARD + "Atlantis,marketing,0.1,,EUR,2025-07-01,x\n"
    r = client.put("/api/v1/rate-card", json={"csv": bad}, headers=h)
    assert r.status_code == 422
    assert r.json["error"]["code"] == "invalid_rate_card"
    assert r.json["error"]["details"]["line"] == 5 and "Atlantis" in r.json["error"]["message"]
    for line, problem in [("Rest of Western Europe,utility,-1,,EUR,2025-07-01,x", "price"),
                          ("Rest of Western Europe,utility,abc,,EUR,2025-07-01,x", "price"),
                          ("Rest of Western Europe,bulk,0.1,,EUR,2025-07-01,x", "category"),
                          ("Rest of Western Europe,utility,0.1,,euro,2025-07-01,x", "currency"),
                          ("Rest of Western Europe,utility,0.1,,EUR,1 July,x", "effective_from"),
                          ("Rest of Western Europe,utility,0.03,,EUR,2025-07-01,dup", "second price")]:
        r = client.put("/api/v1/rate-card", json={"csv": RATE_CARD + line + "\n"}, headers=h)
        assert r.status_code == 422 and r.json["error"]["details"]["line"] == 5, line
        assert problem in r.json["error"]["message"], (line, r.json)
    r = client.put("/api/v1/rate-card", json={"csv": "market,price\nBrazil,1\n"}, headers=h)
    assert r.status_code == 422 and r.json["error"]["details"]["line"] == 1
    r = client.put("/api/v1/rate-card", json={"csv": RATE_CARD, "markets_csv": "country,market\nXX,Nowhere\n"},
                   headers=h)
    assert r.status_code == 422 and r.json["error"]["details"] == {
        "file": "markets", "line": 2, "problem": r.json["error"]["details"]["problem"]}
    assert client.put("/api/v1/rate-card", json={}, headers=h).status_code == 422
    assert client.get("/api/v1/rate-card", headers=h).json["origin"] == before["origin"]  # nothing stored

    good = client.put("/api/v1/rate-card", json={"csv": "market,category,price,currency,effective_from\n"
                                                        "AT,marketing,0.07,EUR,2025-07-01\n", "source": "mine"},
                      headers=h)
    assert good.status_code == 200, good.json
    assert (good.json["origin"], good.json["source"], len(good.json["rates"])) == ("workspace", "mine", 1)
    assert client.delete("/api/v1/rate-card", headers=h).json["origin"] == before["origin"]


def test_a_rate_card_the_csv_module_cannot_read_is_refused_with_its_line(client, workspace):
    """Old Mac line ends (a bare carriage return) are line ends; a field past the csv module's size
    limit is a 422 naming its line, not a 500 (found by tests/test_fuzz_api.py: ``"\\rÖ"``)."""
    h = workspace.headers
    r = client.put("/api/v1/rate-card", json={"csv": "\rÖ"}, headers=h)
    assert r.status_code == 422 and r.json["error"]["details"]["line"] == 1, r.json
    mac = RATE_CARD.replace("\n", "\r")
    r = client.put("/api/v1/rate-card", json={"csv": mac}, headers=h)
    assert r.status_code == 200 and len(r.json["rates"]) == 3, r.json
    huge = "x" * 200_000
    r = client.put("/api/v1/rate-card", json={"csv": RATE_CARD + f"AT,marketing,{huge},,EUR,2025-07-01,x\n"},
                   headers=h)
    assert r.status_code == 422 and r.json["error"]["details"]["line"] == 5, r.json
    assert "not readable as CSV" in r.json["error"]["message"]
    r = client.put("/api/v1/rate-card", json={"csv": RATE_CARD, "markets_csv": huge}, headers=h)
    assert r.status_code == 422 and r.json["error"]["details"]["file"] == "markets", r.json
    assert client.delete("/api/v1/rate-card", headers=h).status_code == 200


def test_cli_loads_a_rate_card_or_names_the_bad_line(runner, client, workspace, tmp_path):
    good, bad = tmp_path / "card.csv", tmp_path / "bad.csv"
    good.write_text(RATE_CARD)
    bad.write_text(RATE_CARD + "Rest of Western Europe,utility,0.1,,EUR,someday,x\n")
    result = runner.invoke(["rate-card", "load", str(bad)])
    assert result.exit_code != 0 and "line 5" in result.output and "effective_from" in result.output
    result = runner.invoke(["rate-card", "load", str(good), "--workspace", workspace.id])
    assert result.exit_code == 0, result.output
    card = client.get("/api/v1/rate-card", headers=workspace.headers).json
    assert (card["origin"], card["source"], len(card["rates"])) == ("workspace", "card.csv", 3)
    shown = runner.invoke(["rate-card", "show", "--workspace", workspace.id])
    assert "Rest of Western Europe,marketing,0.06,,EUR,2026-01-01" in shown.output


def test_pricing_of_a_bsuid_only_status_and_without_billable(client, coexistence, run_jobs):
    """A status for a user who hides their number has no ``recipient_id``: the country comes from
    the contact's number; a ``pricing`` without ``billable`` is billable only when ``regular``."""
    import json

    from hub.testing import payloads as p

    def post(envelope):
        body = json.dumps(envelope).encode()
        r = client.post("/webhooks/whatsapp", data=body, headers={"Content-Type": "application/json",
                                                                   **p.sign(body, "test-app-secret")})
        assert r.status_code == 200

    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    number, user = at_number(), "AT." + secrets.token_hex(8)
    post(p.text_message(*c, number, "hi", user_id=user))  # the contact is known with number and BSUID
    run_jobs()
    wamid, free = p.new_wamid(), p.new_wamid()
    post(p.status(*c, wamid, "sent", None, user_id=user, pricing_category="marketing"))
    envelope = p.status(*c, free, "read", number, pricing_type="free_entry_point")
    del envelope["entry"][0]["changes"][0]["value"]["statuses"][0]["pricing"]["billable"]
    post(envelope)
    run_jobs()
    with client.rt.db.session() as s:
        rows = {m.wamid: m for m in s.scalars(select(Message).where(Message.wamid.in_([wamid, free])))}
        assert (rows[wamid].pricing_country, rows[wamid].pricing_billable) == ("AT", True)
        assert (rows[free].pricing_billable, rows[free].pricing_type) == (False, "free_entry_point")


def test_a_country_row_overrides_its_market_for_its_categories_only():
    from hub.core.pricing import ratecard

    rates, markets = ratecard.parse(RATE_CARD + "AT,marketing,0.09,,EUR,2025-07-01,own\n")
    card = ratecard.build(rates, markets)
    assert card.price("AT", "marketing", on=dt.date(2026, 6, 1)) == (ratecard.Decimal("0.09"), "EUR")
    assert card.price("AD", "marketing", on=dt.date(2026, 6, 1))[0] == ratecard.Decimal("0.06")
    assert card.price("AD", "marketing", on=dt.date(2025, 8, 1))[0] == ratecard.Decimal("0.05")
    assert card.price("AT", "utility", in_window=True, on=dt.date(2026, 6, 1))[0] == 0  # the market's row
    assert card.price("AT", "Authentication-International") is None and card.price(None, "marketing") is None
    assert card.price("AT", "marketing", on=dt.date(2025, 1, 1)) is None  # before any row took effect
