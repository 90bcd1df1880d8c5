"""``coexhub simulator <command>``: drive a running Graph API simulator through its ``/_sim`` API.

Each command is one HTTP call (see ``hub.testing.sim_control``); ``--json`` prints the answer as
JSON for scripts, otherwise a short human summary.
"""
from __future__ import annotations

import json
from typing import Any

import click

from hub.core.bsuid import is_bsuid

DEFAULT_URL = "http://127.0.0.1:8765"


def _common(f):
    f = click.option("--json", "as_json", is_flag=True, help="print the simulator's JSON answer")(f)
    return click.option("--url", envvar="COEXHUB_SIMULATOR_URL", default=DEFAULT_URL, show_default=True,
                        help="the running simulator ($COEXHUB_SIMULATOR_URL)")(f)


def call(url: str, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
    """One request to the simulator's control API; a clear error when it is not running."""
    import httpx

    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, timeout=30)
    except httpx.TransportError as exc:
        raise click.ClickException(f"no simulator answers at {url} ({exc}); start one with `coexhub up` "
                                   "or `coexhub simulator`, or pass --url") from exc
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
        raise click.ClickException(message or f"the simulator answered HTTP {response.status_code}")
    return data


def _show(data: dict, as_json: bool, summary: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else summary)


def _number_lines(n: dict) -> str:
    codes = ", ".join(n["signup_codes"]) or "none (new-code makes one)"
    return (f"+{n['display_phone_number']}  phone_number_id={n['phone_number_id']}  waba_id={n['waba_id']}  "
            f"token={n['token']}\n  unused signup codes: {codes}\n  templates: {', '.join(n['templates']) or 'none'}")


def _webhook(data: dict) -> str:
    status = data.get("webhook_status")
    if status == 200:
        return "webhook delivered to the hub"
    return data.get("webhook_error") or f"the hub answered the webhook with {status}"


def register(group: click.Group) -> None:
    """Add the client commands to the ``coexhub simulator`` group."""

    @group.command("numbers")
    @_common
    def numbers(url: str, as_json: bool) -> None:
        """List the numbers, WABAs, tokens and unused signup codes the simulator accepts."""
        data = call(url, "GET", "/_sim")
        _show(data, as_json, "\n".join(_number_lines(n) for n in data["numbers"]) or "no numbers yet")

    @group.command("add-number")
    @_common
    @click.option("--phone-number-id", default=None, help="default: generated")
    @click.option("--waba-id", default=None, help="default: generated")
    @click.option("--token", default=None, help="the business token (default: generated)")
    @click.option("--display", "display_phone_number", default=None, help="digits, default 1555…")
    @click.option("--name", "verified_name", default=None, help="the verified business name")
    @click.option("--code", default=None, help="the signup code to accept (default: generated)")
    def add_number(url: str, as_json: bool, **fields) -> None:
        """Add a Coexistence number with a single-use Embedded Signup code and starter templates."""
        data = call(url, "POST", "/_sim/numbers", {k: v for k, v in fields.items() if v})
        _show(data, as_json, _number_lines(data) + f"\nconnect it: POST /api/v1/connections/onboard "
                             f"{{\"code\": \"{data['code']}\", \"waba_id\": \"{data['waba_id']}\"}}")

    @group.command("new-code")
    @_common
    @click.argument("phone_number_id")
    @click.option("--code", default=None, help="the code to accept (default: generated)")
    def new_code(url: str, as_json: bool, phone_number_id: str, code: str | None) -> None:
        """Another single-use signup code for a number (to connect it again)."""
        data = call(url, "POST", f"/_sim/numbers/{phone_number_id}/codes", {"code": code} if code else {})
        _show(data, as_json, f"signup code {data['code']} (waba_id {data['waba_id']})")

    @group.command("customer-message")
    @_common
    @click.argument("phone_number_id")
    @click.argument("sender")
    @click.argument("text")
    @click.option("--name", default="Customer", show_default=True, help="the customer's WhatsApp profile name")
    @click.option("--user-id", default=None, help="the customer's BSUID as well (with a phone SENDER)")
    @click.option("--username", default=None, help="the customer's WhatsApp username")
    def customer_message(url: str, as_json: bool, phone_number_id: str, sender: str, text: str, name: str,
                         user_id: str | None, username: str | None) -> None:
        """A customer writes TEXT to the number; opens the 24-hour window. SENDER is a phone number,
        or a business-scoped user ID (e.g. US.13491208655302741918) for a user without one."""
        body = {"text": text, "name": name, "username": username}
        if is_bsuid(sender):
            body["user_id"] = sender
        else:
            body.update({"from": sender, "user_id": user_id})
        data = call(url, "POST", f"/_sim/numbers/{phone_number_id}/customer-message",
                    {k: v for k, v in body.items() if v is not None})
        _show(data, as_json, f"customer message {data['wamid']}: {_webhook(data)}")

    @group.command("user-changed-user-id")
    @_common
    @click.argument("phone_number_id")
    @click.argument("old_user_id")
    @click.argument("new_user_id")
    def user_changed_user_id(url: str, as_json: bool, phone_number_id: str, old_user_id: str,
                             new_user_id: str) -> None:
        """The user OLD_USER_ID now has the BSUID NEW_USER_ID (a user_changed_user_id system message)."""
        data = call(url, "POST", f"/_sim/numbers/{phone_number_id}/user-changed-user-id",
                    {"from_user_id": old_user_id, "user_id": new_user_id})
        _show(data, as_json, f"user_changed_user_id {data['wamid']}: {_webhook(data)}")

    @group.command("owner-reply")
    @_common
    @click.argument("phone_number_id")
    @click.argument("to")
    @click.argument("text")
    def owner_reply(url: str, as_json: bool, phone_number_id: str, to: str, text: str) -> None:
        """The owner answers TO from the WhatsApp Business app on the phone (smb_message_echoes)."""
        data = call(url, "POST", f"/_sim/numbers/{phone_number_id}/owner-reply", {"to": to, "text": text})
        _show(data, as_json, f"owner reply {data['wamid']}: {_webhook(data)}")

    @group.command("contact-sync")
    @_common
    @click.argument("phone_number_id")
    @click.argument("contacts", nargs=-1, required=True)
    @click.option("--remove", "removed", multiple=True, help="a phone number the owner deleted (repeatable)")
    def contact_sync(url: str, as_json: bool, phone_number_id: str, contacts: tuple[str, ...],
                     removed: tuple[str, ...]) -> None:
        """The app's address book: CONTACTS as PHONE=FULL NAME (smb_app_state_sync)."""
        items = []
        for item in contacts:
            phone, _, full_name = item.partition("=")
            items.append({"phone": phone, "full_name": full_name or None,
                          "first_name": full_name.split()[0] if full_name else None})
        items += [{"phone": phone, "action": "remove"} for phone in removed]
        data = call(url, "POST", f"/_sim/numbers/{phone_number_id}/contact-sync", {"contacts": items})
        _show(data, as_json, f"contact sync of {len(items)} contacts: {_webhook(data)}")

    @group.command("fail-delivery")
    @_common
    @click.argument("wa_id")
    @click.option("--code", type=int, default=131026, show_default=True, help="Meta's error code in the failed status")
    @click.option("--clear", is_flag=True, help="deliver to this customer normally again")
    def fail_delivery(url: str, as_json: bool, wa_id: str, code: int, clear: bool) -> None:
        """Sends to WA_ID are accepted, then a failed status with Meta's error arrives."""
        if clear:
            data = call(url, "DELETE", f"/_sim/recipients/{wa_id}/failure")
        else:
            data = call(url, "POST", f"/_sim/recipients/{wa_id}/failure", {"code": code})
        _show(data, as_json, f"deliveries to {wa_id}: " + (f"fail with {code}" if data["failure"] else "normal"))

    @group.command("marketing-limit")
    @_common
    @click.argument("max_messages", type=int, required=False)
    @click.option("--window-hours", type=float, default=24.0, show_default=True,
                  help="the rolling window Meta counts a customer's marketing templates in")
    @click.option("--off", is_flag=True, help="no per-user marketing limit")
    def marketing_limit(url: str, as_json: bool, max_messages: int | None, window_hours: float, off: bool) -> None:
        """Meta's per-user marketing limit: a customer who got MAX_MESSAGES marketing templates in the
        window gets the next one refused with 131049 (a failed status)."""
        if off or max_messages is None:
            data = call(url, "DELETE", "/_sim/marketing-limit")
        else:
            data = call(url, "POST", "/_sim/marketing-limit", {"max": max_messages, "window_hours": window_hours})
        limit = data["marketing_limit"]
        _show(data, as_json, "no per-user marketing limit" if limit is None else
              f"per-user marketing limit: {limit['max']} per {limit['window_hours']:g} h, then 131049")

    @group.command("portfolio-limit")
    @_common
    @click.argument("waba_id")
    @click.argument("limit")
    @click.option("--portfolio-id", default=None, help="move the WABA into this business portfolio first")
    @click.option("--quiet", is_flag=True, help="no phone_number_quality_update webhook")
    def portfolio_limit(url: str, as_json: bool, waba_id: str, limit: str, portfolio_id: str | None,
                        quiet: bool) -> None:
        """The messaging limit of WABA_ID's business portfolio (LIMIT unique users per 24 h outside the
        service window, or ``unlimited``). Past it the simulator refuses templates with 131048."""
        if limit.lower() != "unlimited" and not limit.isdigit():
            raise click.BadParameter("a number of users, or unlimited", param_hint="LIMIT")
        data = call(url, "POST", "/_sim/portfolio-limit", {"waba_id": waba_id,
                                                          "limit": None if limit.lower() == "unlimited" else int(limit),
                                                          "portfolio_id": portfolio_id, "notify": not quiet})
        _show(data, as_json, f"portfolio {data['portfolio_id']}: messaging limit {data['limit']}")

    @group.command("reads")
    @_common
    def reads(url: str, as_json: bool) -> None:
        """The mark-as-read (and typing indicator) calls the hub made."""
        data = call(url, "GET", "/_sim/reads")
        _show(data, as_json, "\n".join(f"read {r.get('message_id')}" + (" + typing" if r.get("typing_indicator")
                                                                           else "") for r in data["reads"])
              or "no mark-as-read calls")
