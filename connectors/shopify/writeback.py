"""Shopify write-backs through the Admin GraphQL API (run in retried ``writeback`` jobs).

Plain httpx rather than the ``shopifyapi`` package: the package keeps its session in
process-global state (``ShopifyResource.activate_session``), so two installations' write-backs
in one worker, or a web thread, could send one shop's token to another shop. An explicit
request per call has no such state and is trivial to point at a local stand-in in tests
(``admin_api_url``). Any failure raises, so the core retries with backoff and dead-letters.
"""
from __future__ import annotations

from typing import Any


from hub.connector import outbound_client

API_VERSION = "2026-04"
TIMEOUT = 10.0

TAGS_ADD = """mutation tagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
}"""

ORDER_CANCEL = """mutation orderCancel($orderId: ID!) {
  orderCancel(orderId: $orderId, reason: CUSTOMER, refund: false, restock: true, notifyCustomer: false) {
    job { id } orderCancelUserErrors { field message code }
  }
}"""


ORDER_NOTE = """query orderNote($id: ID!) { order(id: $id) { id note } }"""

ORDER_UPDATE = """mutation orderUpdate($input: OrderInput!) {
  orderUpdate(input: $input) { order { id } userErrors { field message } }
}"""


class ShopifyAdminError(RuntimeError):
    """The Admin API answered, but with GraphQL errors or userErrors."""


def shop_domain(value: Any) -> str:
    domain = str(value or "").strip().removeprefix("https://").removeprefix("http://")
    return domain.split("/", 1)[0]


def admin_url(config: dict[str, Any]) -> str:
    return config.get("admin_api_url") or \
        f"https://{shop_domain(config.get('shop'))}/admin/api/{API_VERSION}/graphql.json"


def order_gid(order_id: Any) -> str:
    order_id = str(order_id)
    return order_id if order_id.startswith("gid://") else f"gid://shopify/Order/{order_id}"


def graphql(ctx, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    token = ctx.config.get("admin_api_token")
    if not token:
        raise ShopifyAdminError("no admin_api_token configured for this installation")
    url = admin_url(ctx.config)
    with outbound_client(url, timeout=TIMEOUT) as client:  # pinned to the address it checked: no second lookup
        response = client.post(url, json={"query": query, "variables": variables},
                               headers={"X-Shopify-Access-Token": token, "Accept": "application/json"})
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise ShopifyAdminError(f"GraphQL errors: {body['errors']}")
    return body.get("data") or {}


def _check(result: dict[str, Any] | None, errors_key: str) -> None:
    errors = (result or {}).get(errors_key) or []
    if errors:
        raise ShopifyAdminError("; ".join(str(e.get("message") or e) for e in errors))


def add_order_tag(ctx, order_id: str, tag: str) -> None:
    """Append ``tag`` to the order (``tagsAdd`` never removes existing tags; re-adding is a no-op)."""
    data = graphql(ctx, TAGS_ADD, {"id": order_gid(order_id), "tags": [tag]})
    _check(data.get("tagsAdd"), "userErrors")


def cancel_order(ctx, order_id: str) -> None:
    """Cancel the order (customer reason, restock, no refund: a COD order was never paid)."""
    data = graphql(ctx, ORDER_CANCEL, {"orderId": order_gid(order_id)})
    _check(data.get("orderCancel"), "orderCancelUserErrors")


def add_order_note(ctx, order_id: str, note: str, marker: str) -> None:
    """Append ``note [marker]`` to the order's note. ``OrderInput.note`` replaces the whole note,
    so the current one is read first and kept; a note already carrying ``marker`` is left alone
    (a retried write-back, a payment reported twice)."""
    gid = order_gid(order_id)
    current = str((graphql(ctx, ORDER_NOTE, {"id": gid}).get("order") or {}).get("note") or "")
    if marker in current:
        return
    line = f"{note} [{marker}]"
    data = graphql(ctx, ORDER_UPDATE, {"input": {"id": gid, "note": f"{current}\n{line}" if current else line}})
    _check(data.get("orderUpdate"), "userErrors")
