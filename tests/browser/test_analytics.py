"""The Analytics page in a real browser: uPlot draws the day series from the vendored script."""
from __future__ import annotations

from tests.browser.conftest import shot
from tests.console.test_analytics import RATE_CARD, _seed


def test_analytics_draws_charts_offline(client, workspace, live_hub, browser_page, sign_in):
    assert client.put("/api/v1/rate-card", json={"csv": RATE_CARD}, headers=workspace.headers).status_code == 200
    _seed(client, workspace.id)
    page = browser_page
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    sign_in(page, workspace, role="agent")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Analytics").click()
    page.get_by_role("link", name="7 days").click()
    page.wait_for_url("**/analytics?days=7")
    for chart in ("delivery", "origins", "spend", "revenue"):
        page.locator(f'[data-chart="{chart}"][data-drawn="true"] canvas').wait_for()
    legend = page.locator('[data-chart="origins"] .u-legend').inner_text()
    assert "Customers" in legend and "Phone app (echo)" in legend and "Broadcasts" in legend
    # the canvas has ink: some pixel differs from the first one
    inked = page.evaluate("""() => {
        const c = document.querySelector('[data-chart="delivery"] canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 4; i < d.length; i += 4) if (d[i + 3] !== d[3]) return true;
        return false; }""")
    assert inked
    assert all(url.startswith(live_hub.url) or url.startswith("data:") for url in requests), requests
    shot(page, "analytics")
    page.get_by_text("Numbers by day").first.click()
    assert page.locator("details[open] table tbody tr").count() == 7
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)  # the ResizeObserver redraws at the new width
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "analytics-phone")
