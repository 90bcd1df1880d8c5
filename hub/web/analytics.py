"""The console's Analytics page: charts over time (uPlot, vendored) of delivery and read rates,
messages by origin, spend by pricing category and attributed revenue per connector, each with
its numbers in a table. The data is ``hub.core.timeseries`` (as ``GET
/api/v1/analytics/timeseries``), read server-side and embedded in the page as JSON.
"""
from __future__ import annotations

from flask import render_template, request

from hub.core import timeseries
from hub.core.pricing import ratecard
from hub.web.access import console_blueprint, console_page, current, rt

bp = console_blueprint("console_analytics", __name__)  # "analytics" is the API's

ORIGIN_LABELS = {"customer": "Customers", "api": "API", "connector": "Connectors", "automation": "Automations",
                 "broadcast": "Broadcasts", "system": "System", "app_echo": "Phone app (echo)",
                 "history": "History import"}


@bp.get("/analytics")
@console_page("agent")
def index():
    """The charts for the last 7, 30 or 90 days (``?days=``; 30 otherwise)."""
    days = request.args.get("days", "30")
    days = int(days) if days.isdigit() and int(days) in timeseries.RANGES else 30
    with rt().db.session() as session:
        card = ratecard.current(session, current().workspace_id)
        data = timeseries.timeseries(session, card, current().workspace_id, days)
    return render_template("console/analytics/index.html", data=data, days=days, ranges=timeseries.RANGES,
                           origin_labels=ORIGIN_LABELS)
