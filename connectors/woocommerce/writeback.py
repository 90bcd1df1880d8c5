"""WooCommerce REST API calls: write-backs (retried ``writeback`` jobs) and the catch-up poll.

httpx with HTTP basic auth (consumer key/secret), as WooCommerce accepts over HTTPS. Failures
raise, so the core retries the write-back with backoff and dead-letters it at the end.
"""
from __future__ import annotations

from typing import Any

import httpx

from hub.connector import outbound_client

TIMEOUT = 15.0
PAGE_SIZE = 100
MAX_PAGES = 10  # per poll; the cursor moves on, the next poll continues


class WooCommerceError(RuntimeError):
    pass


def api_base(config: dict[str, Any]) -> str:
    return str(config.get("store_url") or "").rstrip("/") + "/wp-json/wc/v3"


def client(ctx) -> httpx.Client:
    key, secret_ = ctx.config.get("consumer_key"), ctx.config.get("consumer_secret")
    if not (key and secret_ and ctx.config.get("store_url")):
        raise WooCommerceError("store_url, consumer_key and consumer_secret are required for the REST API")
    base = api_base(ctx.config)  # pinned to the address it checked: no second lookup, no redirects
    return outbound_client(base, base_url=base, auth=(key, secret_), timeout=TIMEOUT,
                           headers={"Accept": "application/json"})


def _json(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()


def add_order_note(ctx, order_id: str, note: str, marker: str | None = None) -> None:
    """A private order note. With ``marker``, a note already carrying it is not added again, so a
    retried or repeated write-back (push and poll of the same order) leaves one note."""
    with client(ctx) as http:
        if marker:
            existing = _json(http.get(f"/orders/{order_id}/notes", params={"type": "internal"}))
            if any(marker in str((n or {}).get("note", "")) for n in existing if isinstance(n, dict)):
                return
            note = f"{note} [{marker}]"
        _json(http.post(f"/orders/{order_id}/notes", json={"note": note, "customer_note": False}))


def set_order_status(ctx, order_id: str, status: str) -> None:
    with client(ctx) as http:
        _json(http.put(f"/orders/{order_id}", json={"status": status}))


def mark_paid(ctx, order_id: str, transaction_id: str) -> None:
    """An unpaid order (pending, failed, on-hold) paid by link: ``set_paid`` (WooCommerce's
    ``payment_complete``: processing, stock reduced) with the provider's payment id. Orders in
    any other status (a COD order is already processing) are left as they are: the note says it."""
    with client(ctx) as http:
        order = _json(http.get(f"/orders/{order_id}"))
        if str((order or {}).get("status")) in ("pending", "failed", "on-hold"):
            _json(http.put(f"/orders/{order_id}", json={"set_paid": True, "transaction_id": transaction_id,
                                                        "status": "processing"}))


def orders_modified_after(ctx, modified_after: str) -> list[dict[str, Any]]:
    """Orders modified after ``modified_after`` (UTC, ISO 8601), oldest change first."""
    out: list[dict[str, Any]] = []
    with client(ctx) as http:
        for page in range(1, MAX_PAGES + 1):
            batch = _json(http.get("/orders", params={
                "modified_after": modified_after, "dates_are_gmt": "true", "per_page": PAGE_SIZE,
                "page": page, "orderby": "modified", "order": "asc"}))
            if not isinstance(batch, list):
                raise WooCommerceError(f"unexpected orders response: {str(batch)[:200]}")
            out += [o for o in batch if isinstance(o, dict)]
            if len(batch) < PAGE_SIZE:
                break
    return out
