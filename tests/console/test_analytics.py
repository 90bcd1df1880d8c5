"""Analytics over time: ``GET /api/v1/analytics/timeseries`` (day buckets of delivery, origins,
spend by category and revenue per connector) and the console page that charts it."""
from __future__ import annotations

import datetime as dt
import secrets

from hub.core.models import Attribution, Connection, Installation, Message, Send, utcnow

RATE_CARD = """market,category,price,price_in_window,currency,effective_from,source
Rest of Western Europe,marketing,0.06,,EUR,2025-01-01,test
Rest of Western Europe,utility,0.02,0,EUR,2025-01-01,test
"""


def _seed(client, workspace_id: str) -> dict:
    """Two days of traffic: today and two days ago (noon UTC), and one message 40 days ago."""
    today = dt.datetime.combine(utcnow().date(), dt.time(12))
    earlier = today - dt.timedelta(days=2)
    with client.rt.db.session() as s:
        conn = Connection(workspace_id=workspace_id, waba_id=str(secrets.randbelow(10**12)),
                          phone_number_id=str(secrets.randbelow(10**15)), access_token="t")
        shop = Installation(workspace_id=workspace_id, connector="acme", config={})
        s.add_all([conn, shop])
        s.flush()

        def message(when, origin, status="received", direction="out", send=None, category=None, billable=None):
            s.add(Message(workspace_id=workspace_id, connection_id=conn.id, wamid="wamid." + secrets.token_hex(8),
                          direction=direction, origin=origin, type="text", status=status, timestamp=when,
                          send_id=send.id if send else None, pricing_category=category, pricing_billable=billable,
                          pricing_country="AT" if category else None))

        def send(origin, installation=None):
            row = Send(workspace_id=workspace_id, connection_id=conn.id, to="436640000000", kind="template",
                       origin=origin, installation_id=installation, status="sent")
            s.add(row)
            s.flush()
            return row

        message(earlier, "customer", direction="in")
        message(earlier, "customer", direction="in")
        message(earlier, "app_echo")
        message(earlier, "api", "read", send=send("api"), category="utility", billable=True)
        message(earlier, "api", "delivered", send=send("broadcast"), category="marketing", billable=True)
        message(earlier, "api", "failed", send=send("broadcast"))
        paid = send("connector", shop.id)
        message(today, "api", "read", send=paid, category="marketing", billable=True)
        message(today, "api", "sent", send=send("api"), category="utility", billable=True)  # not delivered: free
        message(today - dt.timedelta(days=40), "customer", direction="in")
        s.add_all([Attribution(workspace_id=workspace_id, installation_id=shop.id, order_id="1001", amount="49.90",
                               currency="EUR", send_id=paid.id, created_at=today),
                   Attribution(workspace_id=workspace_id, installation_id=shop.id, order_id="1002", amount="10.10",
                               currency="EUR", send_id=paid.id, created_at=today)])
    return {"today": today.date().isoformat(), "earlier": earlier.date().isoformat()}


def test_timeseries_counts_each_day(client, workspace):
    assert client.put("/api/v1/rate-card", json={"csv": RATE_CARD}, headers=workspace.headers).status_code == 200
    days = _seed(client, workspace.id)
    r = client.get("/api/v1/analytics/timeseries?days=7", headers=workspace.headers)
    assert r.status_code == 200, r.json
    data = r.json
    assert len(data["days"]) == 7 and data["days"][-1] == days["today"]
    t, e = data["days"].index(days["today"]), data["days"].index(days["earlier"])
    delivery = data["delivery"]
    assert (delivery["sent"][e], delivery["delivered"][e], delivery["read"][e], delivery["failed"][e]) == (3, 2, 1, 1)
    assert (delivery["delivered_rate"][e], delivery["read_rate"][e]) == (0.6667, 0.3333)
    assert (delivery["sent"][t], delivery["delivered"][t], delivery["read"][t]) == (2, 1, 1)
    assert delivery["delivered_rate"][e - 1] is None and delivery["totals"]["sent"] == 5
    origins = data["origins"]["series"]
    assert (origins["customer"][e], origins["app_echo"][e], origins["api"][e], origins["broadcast"][e]) == (2, 1, 1, 2)
    assert (origins["connector"][t], origins["api"][t]) == (1, 1)
    assert data["origins"]["totals"]["customer"] == 2  # the message 40 days ago is outside the range
    spend = data["spend"]
    assert spend["currency"] == "EUR"
    assert (spend["series"]["utility"][e], spend["series"]["marketing"][e], spend["series"]["marketing"][t]) \
        == ("0.02", "0.06", "0.06")
    assert spend["totals"] == {"messages": 3, "unpriced": 0, "cost": {"EUR": "0.14"}}
    revenue = data["revenue"]
    assert revenue["series"]["acme"][t] == "60" and revenue["series"]["acme"][e] == "0"
    assert revenue["totals"] == {"orders": {"acme": 2}, "amount": {"EUR": "60"}}
    longer = client.get("/api/v1/analytics/timeseries?days=90", headers=workspace.headers).json
    assert longer["origins"]["totals"]["customer"] == 3


def test_timeseries_is_per_workspace_and_checks_its_input(client, workspace):
    _seed(client, workspace.id)
    other = client.new_workspace("Other shop")
    data = client.get("/api/v1/analytics/timeseries", headers=other.headers).json
    assert len(data["days"]) == 30 and data["origins"]["series"] == {} and data["delivery"]["totals"]["sent"] == 0
    assert data["revenue"]["series"] == {} and data["spend"]["totals"]["messages"] == 0
    for bad in ("0", "367", "x"):
        r = client.get(f"/api/v1/analytics/timeseries?days={bad}", headers=workspace.headers)
        assert r.status_code == 400 and r.json["error"]["code"] == "bad_request"
    assert client.get("/api/v1/analytics/timeseries").status_code == 401


def test_the_page_embeds_the_series_with_tables_and_totals(client, workspace):
    days = _seed(client, workspace.id)
    agent = client.console(workspace, role="agent")
    page = agent.get("/analytics?days=7")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="analytics-data"' in html and "vendor/uPlot.iife.min.js" in html and "cdn" not in html.lower()
    assert html.count('data-chart="') == 4 and html.count("<details>") == 4
    assert "5 messages sent by the hub · 60.0\u00a0% delivered · 40.0\u00a0% read · 1 failed" in html
    assert f'<th scope="row">{days["earlier"]}</th><td>3</td><td>2</td><td>1</td><td>1</td>' in html
    assert "Phone app (echo): 1" in html and "60 EUR" in html and "acme 2" in html
    assert 'aria-current="true">7 days' in html
    assert agent.get("/analytics?days=13").status_code == 200  # unknown range: 30 days
    assert 'href="/analytics"' in agent.get("/").get_data(as_text=True)  # in the agent's menu


def test_the_page_of_an_empty_workspace_says_so(client, workspace):
    html = client.console(workspace, role="agent").get("/analytics").get_data(as_text=True)
    assert "No messages in this period." in html and "No attributed orders in this period" in html
    assert "0 messages sent by the hub" in html
