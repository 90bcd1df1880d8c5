"""The Graph API simulator's control API, under ``/_sim``: try every feature without Meta.

| method and path | body | what it does |
|---|---|---|
| ``GET /_sim`` | | what the simulator accepts: numbers (WABA, token), unused signup codes, templates |
| ``POST /_sim/numbers`` | ``{phone_number_id?, waba_id?, token?, display_phone_number?, verified_name?, code?}`` | a new Coexistence number, a single-use Embedded Signup code for it and starter templates |
| ``POST /_sim/numbers/<id>/codes`` | ``{code?}`` | another signup code for the number (codes are single use) |
| ``POST /_sim/numbers/<id>/customer-message`` | ``{from?, user_id?, username?, text, name?}`` | a customer writes in (opens the 24-hour window); ``user_id`` without ``from``: a BSUID-only user |
| ``POST /_sim/numbers/<id>/user-changed-user-id`` | ``{from_user_id, user_id}`` | the user moved to a new BSUID (``user_changed_user_id`` system message) |
| ``POST /_sim/numbers/<id>/owner-reply`` | ``{to, text}`` | the owner replies from the Business app (``smb_message_echoes``) |
| ``POST /_sim/numbers/<id>/contact-sync`` | ``{contacts: [{phone, full_name?, first_name?, action?}]}`` | the app's contacts (``smb_app_state_sync``) |
| ``POST /_sim/recipients/<wa_id>/failure`` | ``{code?}`` | sends to that customer are accepted, then a ``failed`` status arrives; ``DELETE`` clears |
| ``POST /_sim/marketing-limit`` | ``{max, window_hours?}`` | Meta's per-user marketing limit: a customer who got ``max`` marketing templates in ``window_hours`` (default 24) gets 131049; ``DELETE`` turns it off |
| ``POST /_sim/portfolio-limit`` | ``{waba_id, limit, portfolio_id?, notify?}`` | the messaging limit of the WABA's business portfolio (``null``/-1: unlimited): templates to more unique users outside the window in 24 h get 131048; ``notify`` (default true) sends ``phone_number_quality_update`` with the new ``current_limit`` |
| ``GET /_sim/reads`` | | the mark-as-read / typing-indicator calls received |

Webhooks the plays cause are signed and posted to the hub the simulator serves; the answer
says the hub's HTTP status (``webhook_status``). ``coexhub simulator <command>`` wraps each route.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, jsonify, request

from hub.core.bsuid import is_bsuid
from hub.core.sending.portfolio import parse_limit
from hub.testing import payloads

if TYPE_CHECKING:
    from hub.testing.simulator import GraphSimulator

STARTER_TEMPLATES = (("hello_world", "UTILITY", 0), ("order_update", "UTILITY", 2),
                     ("spring_sale", "MARKETING", 1))


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _digits(n: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (n - 1)) + 10 ** (n - 1))


def new_code(sim: GraphSimulator, phone_number_id: str, code: str | None = None) -> str:
    """A single-use Embedded Signup code (``code``, or a fresh one) that connects ``phone_number_id``."""
    number = sim.numbers[str(phone_number_id)]
    code = code or "sim-code-" + secrets.token_hex(6)
    if code in sim.signup_codes or code in sim.used_codes:
        raise ControlError(409, "code_exists", f"the signup code {code!r} was issued already; codes are single use")
    sim.add_signup_code(code, number["waba_id"], number["id"], number["token"])
    return code


def provision_number(sim: GraphSimulator, *, phone_number_id: str | None = None, waba_id: str | None = None,
                     token: str | None = None, display_phone_number: str | None = None,
                     verified_name: str = "My Shop", templates: bool = True, code: str | None = None) -> dict:
    """Add a Coexistence number (ids generated when not given), its signup code and starter
    templates (``hello_world``, ``order_update`` with 2 parameters, ``spring_sale``)."""
    pnid, waba = phone_number_id or _digits(15), waba_id or _digits(15)
    if pnid in sim.numbers:
        raise ControlError(409, "number_exists", f"the simulator already has number {pnid}")
    if code and (code in sim.signup_codes or code in sim.used_codes):
        raise ControlError(409, "code_exists", f"the signup code {code!r} was issued already; codes are single use")
    number = sim.add_number(pnid, waba, token or "EAAsim" + secrets.token_hex(12),
                            display_phone_number or "1555" + _digits(7), verified_name=verified_name)
    known = {t["name"] for t in sim.templates.get(waba, [])}
    for name, category, params in STARTER_TEMPLATES if templates else ():
        if name not in known:
            sim.add_template(waba, name, category=category, body_params=params)
    code = new_code(sim, pnid, code)
    return {**describe(sim, number), "code": code}


def describe(sim: GraphSimulator, number: dict) -> dict:
    codes = [code for code, (_, pnid, _) in sim.signup_codes.items() if pnid == number["id"]]
    return {"phone_number_id": number["id"], "waba_id": number["waba_id"], "token": number["token"],
            "display_phone_number": number["display_phone_number"], "verified_name": number["verified_name"],
            "coexistence": number["coexistence"], "messages_per_second": number["mps"],
            "signup_codes": codes,
            "templates": [f"{t['name']} ({t['language']}, {t['status']})"
                          for t in sim.templates.get(number["waba_id"], [])]}


def _number(sim: GraphSimulator, phone_number_id: str) -> dict:
    number = sim.numbers.get(phone_number_id)
    if number is None:
        raise ControlError(404, "unknown_number", f"the simulator has no number {phone_number_id}; "
                                                  "GET /_sim lists them, POST /_sim/numbers adds one")
    return number


def _wa_id(phone: Any) -> str:
    """WhatsApp writes numbers as bare digits (``wa_id``): "+1 415-555-0100" → "14155550100"."""
    digits = "".join(ch for ch in str(phone) if ch.isdigit())
    if not digits:
        raise ControlError(400, "bad_request", f"{phone!r} is not a phone number")
    return digits


def _body(*required: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ControlError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
    missing = [key for key in required if not body.get(key)]
    if missing:
        raise ControlError(400, "bad_request", f"missing: {', '.join(missing)}")
    return body


def _played(play: Callable[[], Any], wamid: str | None = None) -> tuple:
    """Run ``play`` (it posts a webhook) and answer how the hub took it."""
    import httpx

    out: dict[str, Any] = {"wamid": wamid} if wamid else {}
    try:
        out["webhook_status"] = getattr(play(), "status_code", None)
    except httpx.HTTPError as exc:  # the hub is not running (yet)
        out.update(webhook_status=None, webhook_error=f"the hub did not answer: {exc}")
    return jsonify(out), 200


def register_control(app: Flask, sim: GraphSimulator) -> None:
    """Mount ``/_sim`` on the simulator's Flask app."""
    bp = Blueprint("sim_control", __name__, url_prefix="/_sim")

    @bp.errorhandler(ControlError)
    def control_error(exc: ControlError):
        return jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status

    @bp.get("")
    def index():
        with sim.lock:
            return jsonify({"app_id": sim.app_id, "hub_url": sim.hub_url,
                            "numbers": [describe(sim, n) for n in sim.numbers.values()],
                            "signup_codes": [{"code": c, "waba_id": w, "phone_number_id": p}
                                             for c, (w, p, _) in sim.signup_codes.items()],
                            "marketing_limit": _marketing_limit(sim)})

    @bp.post("/numbers")
    def add_number():
        body = request.get_json(silent=True) or {}
        keys = ("phone_number_id", "waba_id", "token", "display_phone_number", "verified_name", "code")
        with sim.lock:
            number = provision_number(sim, **{k: str(body[k]) for k in keys if body.get(k)},
                                      templates=body.get("templates", True) is not False)
        return jsonify(number), 201

    @bp.post("/numbers/<phone_number_id>/codes")
    def add_code(phone_number_id):
        number, wanted = _number(sim, phone_number_id), (request.get_json(silent=True) or {}).get("code")
        with sim.lock:
            code = new_code(sim, phone_number_id, str(wanted) if wanted else None)
        return jsonify({"code": code, "waba_id": number["waba_id"],
                        "phone_number_id": number["id"]}), 201

    @bp.post("/numbers/<phone_number_id>/customer-message")
    def customer_message(phone_number_id):
        _number(sim, phone_number_id)
        body, wamid = _body("text"), payloads.new_wamid()
        user_id = body.get("user_id")
        if not body.get("from") and not user_id:
            raise ControlError(400, "bad_request", "missing: from (a phone number) or user_id (a BSUID)")
        if user_id is not None and not is_bsuid(user_id):
            raise ControlError(400, "bad_request", f"{user_id!r} is not a BSUID (e.g. US.13491208655302741918)")
        wa_id = _wa_id(body["from"]) if body.get("from") else None
        username = str(body["username"]) if body.get("username") else None
        return _played(lambda: sim.customer_message(phone_number_id, wa_id, str(body["text"]), user_id=user_id,
                                                    username=username, name=str(body.get("name") or "Customer"),
                                                    wamid=wamid), wamid)

    @bp.post("/numbers/<phone_number_id>/user-changed-user-id")
    def user_changed_user_id(phone_number_id):
        _number(sim, phone_number_id)
        body, wamid = _body("from_user_id", "user_id"), payloads.new_wamid()
        bad = [k for k in ("from_user_id", "user_id") if not is_bsuid(body[k])]
        if bad:
            raise ControlError(400, "bad_request", f"not a BSUID: {', '.join(bad)}")
        return _played(lambda: sim.user_changed_user_id(phone_number_id, body["from_user_id"], body["user_id"],
                                                        wamid=wamid), wamid)

    @bp.post("/numbers/<phone_number_id>/owner-reply")
    def owner_reply(phone_number_id):
        _number(sim, phone_number_id)
        body, wamid = _body("to", "text"), payloads.new_wamid()
        return _played(lambda: sim.echo(phone_number_id, _wa_id(body["to"]), str(body["text"]), wamid=wamid),
                       wamid)

    @bp.post("/numbers/<phone_number_id>/contact-sync")
    def contact_sync(phone_number_id):
        _number(sim, phone_number_id)
        contacts = _body("contacts")["contacts"]
        if not isinstance(contacts, list) or not all(isinstance(c, dict) and c.get("phone") for c in contacts):
            raise ControlError(400, "bad_request", "contacts: a list of {phone, full_name?, first_name?, action?}")
        items = [(c.get("action") or "add", str(c["phone"]), c.get("full_name"), c.get("first_name"))
                 for c in contacts]
        return _played(lambda: sim.state_sync(phone_number_id, items))

    @bp.route("/recipients/<wa_id>/failure", methods=["POST", "DELETE"])
    def recipient_failure(wa_id):
        if request.method == "DELETE":
            sim.clear_error_for(wa_id)
            return jsonify({"wa_id": wa_id, "failure": None})
        code = int((request.get_json(silent=True) or {}).get("code") or 131026)
        sim.fail_delivery_to(wa_id, code)
        return jsonify({"wa_id": wa_id, "failure": code})

    @bp.route("/marketing-limit", methods=["POST", "DELETE"])
    def marketing_limit():
        if request.method == "DELETE":
            sim.set_marketing_limit(None)
            return jsonify({"marketing_limit": None})
        body = _body()
        try:
            most, hours = int(body.get("max")), float(body.get("window_hours") or 24)
        except (TypeError, ValueError) as exc:
            raise ControlError(400, "bad_request", "max: an integer; window_hours: a number") from exc
        if most < 0 or hours <= 0:
            raise ControlError(400, "bad_request", "max must be >= 0 and window_hours > 0")
        sim.set_marketing_limit(most, hours * 3600)
        return jsonify({"marketing_limit": _marketing_limit(sim)})

    @bp.route("/portfolio-limit", methods=["POST"])
    def portfolio_limit():
        body = _body("waba_id")
        waba, limit = str(body["waba_id"]), body.get("limit")
        if not any(n["waba_id"] == waba for n in sim.numbers.values()):
            raise ControlError(404, "unknown_waba", f"no number of WABA {waba}")
        try:
            limit = None if limit is None else int(limit)
        except (TypeError, ValueError) as exc:
            raise ControlError(400, "bad_request", "limit: an integer (-1 or null: unlimited)") from exc
        old = sim.portfolio_tier(waba)
        pid = sim.set_portfolio_limit(waba, limit, portfolio_id=body.get("portfolio_id"))
        tier, statuses = sim.portfolio_tier(waba), []
        if body.get("notify", True) and tier != old:
            event = "UPGRADE" if _rank(tier) > _rank(old) else "DOWNGRADE"
            for n in [n for n in sim.numbers.values() if n["waba_id"] == waba]:
                answer = sim.deliver(payloads.quality_update(waba, n["display_phone_number"], event, tier,
                                                             old_limit=old))
                statuses.append(getattr(answer, "status_code", None))
        return jsonify({"waba_id": waba, "portfolio_id": pid, "limit": tier, "webhook_statuses": statuses})

    @bp.get("/reads")
    def reads():
        return jsonify({"reads": sim.read_marks()})

    app.register_blueprint(bp)


def _rank(tier: str) -> float:
    limit = parse_limit(tier)
    return float("inf") if limit is None or limit < 0 else float(limit)


def _marketing_limit(sim: GraphSimulator) -> dict | None:
    limit = sim.marketing_limit
    return None if limit is None else {"max": limit["max"], "window_hours": limit["window_seconds"] / 3600}
