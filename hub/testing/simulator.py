"""A Graph API (WhatsApp Cloud API) simulator for tests, demos and load runs.

``GraphSimulator`` keeps numbers, templates, 24-hour windows and onboarding state, serves a Flask
app at ``sim.app`` (usable through ``httpx.WSGITransport`` or live via ``sim.serve()``) and
delivers signed webhooks to the hub (``sim.hub_url`` or ``sim.hub_client``). It enforces what
Meta enforces: bearer tokens (190), per-number throughput (130429), the customer service window
(131047), template existence/parameters/status (132001/132000/132015/132016) and, when set
(``set_marketing_limit``), the per-user marketing limit (a ``failed`` status with 131049) and,
when set (``set_portfolio_limit``), the business portfolio's messaging limit: unique users
reached by templates outside the service window in a rolling 24 h, refused beyond it with
131048 (served as ``whatsapp_business_manager_messaging_limit``). It
records mark-as-read calls (``read_marks``) so tests can assert that none happened.

Statuses of accepted sends (sent, delivered, read — or failed for recipients set up with
``fail_delivery_to``) queue up until ``flush_statuses()`` in tests; with ``live_statuses=True``
(``coexhub simulator`` and ``coexhub up``) they are posted by themselves after short delays.
A control API under ``/_sim`` (``hub.testing.sim_control``) adds numbers and signup codes and
plays customers, the owner's phone and contact syncs over HTTP.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.routing import BaseConverter
from werkzeug.serving import make_server

from hub.core.bsuid import SEND_FIELD, is_bsuid
from hub.testing import payloads
from hub.testing.graph_errors import ERRORS, GraphError  # noqa: F401  (re-exported)

WINDOW_SECONDS = 24 * 3600
SEND_TYPES = {"text", "template", "image", "document", "audio", "video", "interactive", "reaction"}
SYNC_TYPES = {"smb_app_state_sync", "history"}
STATUS_DELAYS = (0.5, 1.5, 3.0)  # seconds after the send: sent, delivered, read (live mode)
ERROR_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
log = logging.getLogger("hub.testing.simulator")


class _Version(BaseConverter):
    regex = r"v\d+\.\d+"


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", str(phone))


def _key(recipient: str) -> str:
    """How the simulator keys a user: a BSUID as it is, a phone number as its digits."""
    return recipient if is_bsuid(recipient) else _digits(recipient)


def _status_error(code: int) -> dict:
    """One entry of a ``failed`` status's ``errors[]``, shaped as Meta sends it."""
    message, details = ERRORS.get(code, (f"(#{code}) Error", ""))
    title = re.sub(r"^\(#\d+\)\s*", "", message)
    return {"code": code, "title": title, "message": title,
            "error_data": {"details": details or title}, "href": ERROR_DOCS}


class GraphSimulator:
    def __init__(self, *, hub_url: str | None = None, hub_client=None,
                 app_secret: str = "test-app-secret", app_id: str = "1234567890",
                 clock: Callable[[], float] = time.time, seed: int | None = None,
                 live_statuses: bool = False, status_delays: tuple[float, float, float] = STATUS_DELAYS):
        self.hub_url, self.hub_client = hub_url, hub_client
        self.live_statuses, self.status_delays = live_statuses, status_delays
        self.app_secret, self.app_id, self.clock = app_secret, app_id, clock
        self.random = random.Random(seed)
        self.lock = threading.RLock()
        self.numbers: dict[str, dict] = {}
        self.templates: dict[str, list[dict]] = {}
        self.windows: dict[tuple[str, str], float] = {}
        self.requests: list[dict] = []
        self.calls: list[tuple[str, str, Any]] = []
        self.pending_statuses: list[dict] = []
        self.subscribed: set[str] = set()
        self.sync_requests: dict[tuple[str, str], str] = {}
        self.signup_codes: dict[str, tuple[str, str, str]] = {}
        self.used_codes: set[str] = set()
        self.delivery_failures: dict[str, int] = {}
        self.user_ids: dict[str, str] = {}  # phone digits -> the user's BSUID, once seen
        self.usernames: dict[str, str] = {}  # a user's key (BSUID or phone digits) -> username
        self.recipient_errors: dict[str, tuple[int, int]] = {}
        self._faults: deque[dict] = deque()
        self._send_times: dict[str, deque] = {}
        self.marketing_limit: dict | None = None  # {"max": K, "window_seconds": W}: Meta's per-user limit
        self._marketing_received: dict[str, deque] = {}
        self.portfolios: dict[str, str] = {}  # waba_id -> business portfolio id
        self.portfolio_limits: dict[str, int] = {}  # portfolio id -> tier (absent: unlimited)
        self._portfolio_reach: dict[str, dict[str, float]] = {}  # portfolio -> user -> last reached
        self._server = self._thread = None
        self.app = self._build_app()

    # --- state helpers -----------------------------------------------------------------------
    def add_number(self, phone_number_id: str, waba_id: str, token: str,
                   display_phone_number: str = "15550001111", coexistence: bool = True,
                   verified_name: str = "Test Shop", *, mps: int | None = None,
                   quality_rating: str = "GREEN") -> dict:
        number = {"id": str(phone_number_id), "waba_id": str(waba_id), "token": token,
                  "display_phone_number": str(display_phone_number), "coexistence": coexistence,
                  "verified_name": verified_name, "quality_rating": quality_rating,
                  "mps": mps or (20 if coexistence else 80)}
        with self.lock:
            self.numbers[str(phone_number_id)] = number
        return number

    def add_template(self, waba_id: str, name: str, language: str = "en_US",
                     category: str = "UTILITY", body_params: int = 0, status: str = "APPROVED",
                     buttons: list | None = None) -> dict:
        text = "Hello" + "".join(f" {{{{{i}}}}}" for i in range(1, body_params + 1))
        components: list[dict] = [{"type": "BODY", "text": text}]
        if buttons:
            components.append({"type": "BUTTONS", "buttons": [
                b if isinstance(b, dict) else {"type": "QUICK_REPLY", "text": str(b)} for b in buttons]})
        tpl = {"name": name, "parameter_format": "POSITIONAL", "components": components,
               "language": language, "status": status, "category": category,
               "id": str(self.random.randint(10**14, 10**15 - 1))}
        with self.lock:
            self.templates.setdefault(str(waba_id), []).append(tpl)
        return tpl

    def set_template_status(self, waba_id: str, name: str, status: str, language: str | None = None,
                            *, notify: bool = False, reason: str | None = None) -> None:
        with self.lock:
            hits = [t for t in self.templates.get(str(waba_id), [])
                    if t["name"] == name and (language is None or t["language"] == language)]
            for tpl in hits:
                tpl["status"] = status
        if notify:
            for tpl in hits:
                self.deliver(payloads.template_status(waba_id, status, int(tpl["id"]), name,
                                                      tpl["language"], reason))

    def add_signup_code(self, code: str, waba_id: str, phone_number_id: str, token: str) -> None:
        with self.lock:
            self.signup_codes[code] = (str(waba_id), str(phone_number_id), token)
            if str(phone_number_id) in self.numbers:
                self.numbers[str(phone_number_id)]["token"] = token
            else:
                self.add_number(phone_number_id, waba_id, token)

    def open_window(self, phone_number_id: str, wa_id: str, at: float | None = None) -> None:
        with self.lock:
            self.windows[(str(phone_number_id), _key(wa_id))] = self.clock() if at is None else at

    def window_open(self, phone_number_id: str, wa_id: str) -> bool:
        seen = self.windows.get((str(phone_number_id), _key(wa_id)))
        return seen is not None and self.clock() - seen < WINDOW_SECONDS

    def fail_next(self, n: int = 1, *, code: int = 131016, http_status: int = 500,
                  timeout: bool = False, delay: float = 5.0) -> None:
        """The next ``n`` sends fail with ``code``; with ``timeout=True`` they instead sleep
        ``delay`` seconds first and then are processed normally (the client gave up, yet Meta
        may have sent the message: that is the duplicate-send trap)."""
        with self.lock:
            for _ in range(n):
                self._faults.append({"code": code, "http_status": http_status,
                                     "timeout": timeout, "delay": delay})

    def set_error_for(self, to: str, code: int, http_status: int = 400) -> None:
        with self.lock:
            self.recipient_errors[_key(to)] = (code, http_status)

    def clear_error_for(self, to: str) -> None:
        with self.lock:
            self.recipient_errors.pop(_key(to), None)
            self.delivery_failures.pop(_key(to), None)

    def fail_delivery_to(self, to: str, code: int = 131026) -> None:
        """Sends to ``to`` are accepted (a wamid comes back) and then fail by webhook: one
        ``failed`` status carrying Meta's ``errors[]`` for ``code`` (131026 undeliverable,
        131049 marketing cap, 131050 user stopped marketing, ...)."""
        with self.lock:
            self.delivery_failures[_key(to)] = code

    def set_marketing_limit(self, max_messages: int | None, window_seconds: float = WINDOW_SECONDS) -> None:
        """Meta's per-user marketing limit: a customer who got ``max_messages`` marketing templates
        (from any number) in the last ``window_seconds`` gets no more — the send is accepted, then
        a ``failed`` status with 131049 arrives. Marketing inside the customer's open service window
        with that number is not counted. ``None`` turns the limit off."""
        with self.lock:
            self.marketing_limit = None if max_messages is None else \
                {"max": int(max_messages), "window_seconds": float(window_seconds)}
            self._marketing_received.clear()

    def _marketing_refused(self, number: dict, to: str) -> bool:
        """Count one marketing template to ``to``; True when Meta would refuse it (131049)."""
        with self.lock:
            limit = self.marketing_limit
            if limit is None or self.window_open(number["id"], to):
                return False
            now, times = self.clock(), self._marketing_received.setdefault(_key(to), deque())
            while times and times[0] <= now - limit["window_seconds"]:
                times.popleft()
            if len(times) >= limit["max"]:
                return True
            times.append(now)
            return False

    def portfolio_of(self, waba_id: str) -> str:
        """The business portfolio owning ``waba_id`` (by default one per WABA)."""
        return self.portfolios.get(str(waba_id)) or "9" + str(waba_id)[-14:]

    def set_portfolio_limit(self, waba_id: str, limit: int | None, *, portfolio_id: str | None = None) -> str:
        """The messaging limit of the portfolio owning ``waba_id`` (``None`` or -1: unlimited);
        ``portfolio_id`` moves the WABA into that portfolio first. Returns the portfolio id."""
        with self.lock:
            if portfolio_id:
                self.portfolios[str(waba_id)] = str(portfolio_id)
            pid = self.portfolio_of(waba_id)
            if limit is None or int(limit) < 0:
                self.portfolio_limits.pop(pid, None)
            else:
                self.portfolio_limits[pid] = int(limit)
            return pid

    def portfolio_tier(self, waba_id: str) -> str:
        limit = self.portfolio_limits.get(self.portfolio_of(waba_id))
        names = {250: "TIER_250", 2000: "TIER_2K", 10000: "TIER_10K", 100000: "TIER_100K"}
        return "TIER_UNLIMITED" if limit is None else names.get(limit, str(limit))

    def _reach(self, number: dict, to: str) -> None:
        """A template outside the window counts its user for the portfolio (unique, rolling
        24 h); past the limit Meta refuses it (131048)."""
        if self.window_open(number["id"], to):
            return
        with self.lock:
            pid = self.portfolio_of(number["waba_id"])
            limit, now = self.portfolio_limits.get(pid), self.clock()
            reached = self._portfolio_reach.setdefault(pid, {})
            for user in [u for u, at in reached.items() if at <= now - WINDOW_SECONDS]:
                del reached[user]
            if limit is not None and _key(to) not in reached and len(reached) >= limit:
                raise GraphError(131048, 400)
            reached[_key(to)] = now

    def read_marks(self, phone_number_id: str | None = None) -> list[dict]:
        """Mark-as-read (and typing indicator) calls the hub made: their request bodies."""
        with self.lock:
            return [r["body"] for r in self.requests if r["body"].get("status") == "read"
                    and (phone_number_id is None or r["phone_number_id"] == str(phone_number_id))]

    def sent(self, phone_number_id: str | None = None) -> list[dict]:
        """Successful message sends (mark-as-read excluded)."""
        with self.lock:
            return [r for r in self.requests if r["status"] == 200 and "messages" in r["response"]
                    and (phone_number_id is None or r["phone_number_id"] == str(phone_number_id))]

    # --- webhook delivery ---------------------------------------------------------------------
    def deliver(self, envelope: dict | bytes):
        """Sign and POST to ``{hub}/webhooks/whatsapp``; ``None`` when no hub is configured."""
        body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json", **payloads.sign(body, self.app_secret)}
        if self.hub_client is not None:
            return self.hub_client.post("/webhooks/whatsapp", data=body, headers=headers)
        if self.hub_url:
            import httpx
            return httpx.post(self.hub_url.rstrip("/") + "/webhooks/whatsapp", content=body,
                              headers=headers, timeout=30)
        return None

    def _number(self, phone_number_id: str) -> dict:
        return self.numbers[str(phone_number_id)]

    def customer_message(self, phone_number_id: str, wa_id: str | None, body: str, *,
                         name: str = "Customer", user_id: str | None = None, **kw):
        """An inbound text from ``wa_id`` — or, with ``wa_id=None``, from a user known only by the
        BSUID ``user_id`` (``username=`` too, if they set one): opens the 24 h window, then
        delivers (if a hub is set)."""
        n = self._number(phone_number_id)
        self.open_window(phone_number_id, wa_id or user_id)
        if wa_id and user_id:
            with self.lock:
                self.user_ids[_digits(wa_id)] = user_id
                self.open_window(phone_number_id, user_id)
        if kw.get("username"):
            with self.lock:
                self.usernames.update({_key(k): kw["username"] for k in (wa_id, user_id) if k})
        kw.setdefault("timestamp", self.clock())
        return self.deliver(payloads.text_message(n["waba_id"], n["id"], n["display_phone_number"],
                                                  wa_id, body, name=name, user_id=user_id, **kw))

    def user_changed_user_id(self, phone_number_id: str, old_user_id: str, new_user_id: str, **kw):
        """The user behind ``old_user_id`` now has the BSUID ``new_user_id`` (a system message);
        their open windows move with them."""
        n = self._number(phone_number_id)
        with self.lock:
            for (number, key), seen in list(self.windows.items()):
                if key == old_user_id:
                    self.windows[(number, new_user_id)] = self.windows.pop((number, key))
            for phone, user_id in list(self.user_ids.items()):
                if user_id == old_user_id:
                    self.user_ids[phone] = new_user_id
            if old_user_id in self.usernames:
                self.usernames[new_user_id] = self.usernames.pop(old_user_id)
        kw.setdefault("timestamp", self.clock())
        return self.deliver(payloads.user_changed_user_id(n["waba_id"], n["id"], n["display_phone_number"],
                                                          old_user_id, new_user_id, **kw))

    def echo(self, phone_number_id: str, to: str, body: str, **kw):
        """The owner wrote from the Business app (does not open the window)."""
        n = self._number(phone_number_id)
        return self.deliver(payloads.echo(n["waba_id"], n["id"], n["display_phone_number"], to,
                                          body, **kw))

    def state_sync(self, phone_number_id: str, contacts: list[tuple], **kw):
        n = self._number(phone_number_id)
        return self.deliver(payloads.state_sync(n["waba_id"], n["id"], n["display_phone_number"],
                                                contacts, **kw))

    def history(self, phone_number_id: str, threads: dict | None = None, *, declined: bool = False,
                **kw):
        n = self._number(phone_number_id)
        if declined:
            return self.deliver(payloads.history_declined(n["waba_id"], n["id"],
                                                          n["display_phone_number"]))
        return self.deliver(payloads.history_chunk(n["waba_id"], n["id"], n["display_phone_number"],
                                                   threads=threads, **kw))

    def _post_later(self, delay: float, envelope: dict, attempt: int = 0) -> None:
        """Live mode: deliver ``envelope`` after ``delay`` s; retry (like Meta) while the hub fails."""
        import httpx

        def fire():
            try:
                response = self.deliver(envelope)
                failed = response is not None and response.status_code >= 500
            except httpx.HTTPError as exc:  # the hub is down or restarting
                log.warning("status webhook not delivered (%s); attempt %d", exc, attempt + 1)
                failed = True
            if failed and attempt < 5:
                self._post_later(2.0 ** attempt, envelope, attempt + 1)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        timer.start()

    def _queue_statuses(self, events: list[dict]) -> None:
        if not self.live_statuses:
            with self.lock:
                self.pending_statuses.extend(events)
            return
        for delay, env in zip(self.status_delays, events):
            self._post_later(delay, env)

    def flush_statuses(self, shuffle: bool = False) -> int:
        """Deliver queued sent/delivered/read statuses (optionally out of order); returns count."""
        with self.lock:
            pending, self.pending_statuses = self.pending_statuses, []
        if shuffle:
            self.random.shuffle(pending)
        for env in pending:
            self.deliver(env)
        return len(pending)

    # --- the send endpoint --------------------------------------------------------------------
    def _check_token(self, number: dict | None) -> None:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if number is None:
            known = {n["token"] for n in self.numbers.values()}
            if token in known:
                return
        elif token and token == number["token"]:
            return
        raise GraphError(190, 401)

    def _admit(self, number: dict) -> None:
        now = self.clock()
        with self.lock:
            times = self._send_times.setdefault(number["id"], deque())
            while times and times[0] <= now - 1.0:
                times.popleft()
            if len(times) >= number["mps"]:
                raise GraphError(130429, 400)
            times.append(now)

    def _validate(self, number: dict, body: dict) -> dict:
        if body.get("messaging_product") != "whatsapp":
            raise GraphError(100, details="The parameter messaging_product is required and must be whatsapp.")
        if body.get("status") == "read":
            if not body.get("message_id"):
                raise GraphError(100, details="The parameter message_id is required.")
            typing = body.get("typing_indicator")
            if typing is not None and (not isinstance(typing, dict) or typing.get("type") != "text"):
                raise GraphError(100, details="typing_indicator.type must be text.")
            return {"success": True}
        to, kind = body.get("to") or body.get(SEND_FIELD), body.get("type", "text")  # ``to`` wins when both
        if not to:
            raise GraphError(100, details=f"The parameter to (a phone number) or {SEND_FIELD} (a BSUID) is required.")
        if not isinstance(to, str) or (not body.get("to") and not is_bsuid(to)):
            raise GraphError(100, details=f"The parameter {SEND_FIELD} must be a business-scoped user ID.")
        if kind not in SEND_TYPES:
            raise GraphError(100, details=f"Param type must be one of {sorted(SEND_TYPES)}")
        if not isinstance(body.get(kind), dict):
            raise GraphError(100, details=f"The parameter {kind} is required.")
        if kind == "text" and not body["text"].get("body"):
            raise GraphError(100, details="The parameter text['body'] is required.")
        err = self.recipient_errors.get(_key(to))
        if err:
            raise GraphError(err[0], err[1])
        if kind == "template":
            found = self._check_template(number, body["template"])
            if is_bsuid(to) and found["template"]["category"].upper() == "AUTHENTICATION":
                raise GraphError(131062)  # authentication templates need a phone number
            self._reach(number, to)
            return found
        if not self.window_open(number["id"], to):
            raise GraphError(131047)
        return {}

    def _check_template(self, number: dict, tpl: dict) -> dict:
        name, lang = tpl.get("name"), (tpl.get("language") or {}).get("code")
        found = [t for t in self.templates.get(number["waba_id"], [])
                 if t["name"] == name and t["language"] == lang]
        if not found:
            raise GraphError(132001, 404, details=f"template name ({name}) does not exist in {lang}")
        t = found[0]
        if t["status"] == "PAUSED":
            raise GraphError(132015)
        if t["status"] == "DISABLED":
            raise GraphError(132016)
        if t["status"] != "APPROVED":
            raise GraphError(132001, 404, details=f"template ({name}) is {t['status']}")
        text = next((c.get("text", "") for c in t["components"] if c["type"] == "BODY"), "")
        expected = len(set(re.findall(r"\{\{(\w+)\}\}", text)))
        given = sum(len(c.get("parameters") or []) for c in tpl.get("components") or []
                    if str(c.get("type", "")).lower() == "body")
        if given != expected:
            raise GraphError(132000, details=f"body: number of localizable_params ({given}) does "
                                             f"not match the expected number of params ({expected})")
        return {"template": t}

    def _send(self, phone_number_id: str):
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        number = self.numbers.get(phone_number_id)
        try:
            if number is None:
                raise GraphError(100, details=f"Unsupported post request. Object with ID "
                                              f"'{phone_number_id}' does not exist")
            self._check_token(number)
            self._admit(number)
            with self.lock:
                fault = self._faults.popleft() if self._faults else None
            if fault and fault["timeout"]:
                time.sleep(fault["delay"])
            elif fault:
                raise GraphError(fault["code"], fault["http_status"])
            extra = self._validate(number, body)
            if extra.get("success"):
                status, response = 200, {"success": True}
            else:
                status, response = 200, self._accept(number, body, extra.get("template"))
        except GraphError as e:
            status, response = e.http_status, e.body()
        with self.lock:
            self.requests.append({"time": time.time(), "phone_number_id": phone_number_id,
                                  "body": body, "status": status, "response": response})
        return jsonify(response), status

    def _accept(self, number: dict, body: dict, template: dict | None) -> dict:
        wamid, to = payloads.new_wamid(), body.get("to") or body[SEND_FIELD]
        message: dict[str, Any] = {"id": wamid}
        if template is not None:
            message["message_status"] = "accepted"
        pricing = self._pricing(number, to, template)
        now = int(self.clock())
        args = (number["waba_id"], number["id"], number["display_phone_number"], wamid)
        opaque = body.get("biz_opaque_callback_data")
        by_bsuid = is_bsuid(to)
        phone, user_id = (None, to) if by_bsuid else (_digits(to), self.user_ids.get(_digits(to)))
        failure = self.delivery_failures.get(_key(to))
        if not failure and template is not None and template["category"].upper() == "MARKETING" \
                and self._marketing_refused(number, to):
            failure = 131049
        if failure:  # a failed status names the BSUID only when the send used it
            events = [payloads.status(*args, "failed", phone, timestamp=now, errors=[_status_error(failure)],
                                      biz_opaque_callback_data=opaque, user_id=to if by_bsuid else None)]
        else:
            events = [payloads.status(*args, st, phone, timestamp=now + i, **pricing,
                                      biz_opaque_callback_data=opaque, user_id=user_id,
                                      username=self.usernames.get(_key(to)))
                      for i, st in enumerate(("sent", "delivered", "read"))]
        self._queue_statuses(events)
        contact = {"input": to, "user_id": to} if by_bsuid else {"input": to, "wa_id": phone}
        return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [message]}

    def _pricing(self, number: dict, to: str, template: dict | None) -> dict:
        """The statuses' ``pricing`` as Meta documents it (per-message pricing): a template is
        priced by its category (``regular``, billable), except a utility template inside an open
        customer service window (free: ``free_customer_service``); a non-template message is
        ``service``, free inside the window (it cannot be sent outside it)."""
        category = template["category"].lower() if template is not None else "service"
        free = category == "service" or (category == "utility" and self.window_open(number["id"], to))
        return {"pricing_category": category, "billable": not free,
                "pricing_type": "free_customer_service" if free else "regular"}

    # --- the Flask app -------------------------------------------------------------------------
    def _record(self, params: Any = None) -> None:
        if params is None:
            params = (request.get_json(silent=True) if request.method != "GET" else None) \
                or dict(request.values)
        with self.lock:
            self.calls.append((request.method, request.path, params))

    def _build_app(self) -> Flask:
        app = Flask("coexhub-graph-simulator", static_folder=None)
        app.url_map.converters["ver"] = _Version

        @app.errorhandler(GraphError)
        def graph_error(e: GraphError):
            return jsonify(e.body()), e.http_status

        @app.post("/<ver:version>/<phone_number_id>/messages")
        def messages(version, phone_number_id):
            return self._send(phone_number_id)

        @app.get("/<ver:version>/oauth/access_token")
        def access_token(version):
            self._record()
            args = request.args
            if args.get("client_id") != self.app_id or args.get("client_secret") != self.app_secret:
                raise GraphError(101, 400, "Error validating client secret.",
                                 "Error validating client secret.")
            code = args.get("code", "")
            with self.lock:
                found = self.signup_codes.pop(code, None)
                if found:  # a new onboarding: the one-time syncs may be requested again
                    self.used_codes.add(code)
                    for sync_type in SYNC_TYPES:
                        self.sync_requests.pop((found[1], sync_type), None)
            if not found and code in self.used_codes:
                raise GraphError(100, 400, "This authorization code has been used.",
                                 "This authorization code has been used.", subcode=36009)
            if not found:
                raise GraphError(100, 400, "Invalid verification code format.",
                                 "Invalid verification code format.")
            return jsonify({"access_token": found[2], "token_type": "bearer"})

        @app.get("/<ver:version>/<object_id>")
        def node(version, object_id):
            self._record()
            number = self.numbers.get(object_id)
            if number is None and any(n["waba_id"] == object_id for n in self.numbers.values()):
                self._check_token(None)  # a WABA: its owner (the business portfolio)
                return jsonify({"id": object_id, "owner_business_info": {
                    "id": self.portfolio_of(object_id), "name": "Test Shop portfolio"}})
            if number is None:
                raise GraphError(100, 400, f"Object with ID '{object_id}' does not exist")
            self._check_token(number)
            return jsonify(self._number_view(number))

        @app.get("/<ver:version>/<waba_id>/phone_numbers")
        def phone_numbers(version, waba_id):
            self._record()
            self._check_token(None)
            data = [self._number_view(n) for n in self.numbers.values() if n["waba_id"] == waba_id]
            return jsonify({"data": data, "paging": {"cursors": {"before": "QVFIUm", "after": "QVFIUm"}}})

        @app.get("/<ver:version>/<waba_id>/message_templates")
        def message_templates(version, waba_id):
            self._record()
            self._check_token(None)
            items = list(self.templates.get(waba_id, []))
            limit = max(1, int(request.args.get("limit", 25)))
            start = int(request.args.get("after") or 0)
            page = items[start:start + limit]
            paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
            if start + limit < len(items):
                paging["next"] = f"{request.base_url}?limit={limit}&after={start + limit}"
            return jsonify({"data": page, "paging": paging})

        @app.route("/<ver:version>/<waba_id>/subscribed_apps", methods=["GET", "POST"])
        def subscribed_apps(version, waba_id):
            self._record()
            self._check_token(None)
            if request.method == "GET":
                data = [{"whatsapp_business_api_data": {"id": self.app_id}}] \
                    if waba_id in self.subscribed else []
                return jsonify({"data": data})
            with self.lock:
                self.subscribed.add(waba_id)
            return jsonify({"success": True})

        @app.post("/<ver:version>/<phone_number_id>/smb_app_data")
        def smb_app_data(version, phone_number_id):
            self._record()
            number = self.numbers.get(phone_number_id)
            if number is None:
                raise GraphError(100, 400, f"Object with ID '{phone_number_id}' does not exist")
            self._check_token(number)
            body = request.get_json(silent=True) or dict(request.values)
            sync_type = body.get("sync_type")
            if sync_type not in SYNC_TYPES:
                raise GraphError(100, details="sync_type must be smb_app_state_sync or history")
            with self.lock:
                key = (phone_number_id, sync_type)
                if key in self.sync_requests:
                    raise GraphError(100, 400, f"{sync_type} synchronization was already requested "
                                               "for this phone number; it can be requested only once.")
                self.sync_requests[key] = request_id = f"req_{self.random.getrandbits(64):x}"
            return jsonify({"request_id": request_id})

        @app.post("/<ver:version>/<phone_number_id>/register")
        def register(version, phone_number_id):
            self._record()
            return jsonify({"success": True})

        from hub.testing.sim_control import register_control

        register_control(app, self)

        @app.route("/<path:rest>", methods=["GET", "POST", "DELETE"])
        def unknown(rest):
            self._record()
            raise GraphError(100, 400, f"Unsupported {request.method.lower()} request.")

        return app

    def _number_view(self, n: dict) -> dict:
        return {"verified_name": n["verified_name"], "display_phone_number": n["display_phone_number"],
                "id": n["id"], "quality_rating": n["quality_rating"], "platform_type": "CLOUD_API",
                "throughput": {"level": "STANDARD"},
                "whatsapp_business_manager_messaging_limit": self.portfolio_tier(n["waba_id"])}

    # --- serving -------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Run the app in a background thread (threaded werkzeug server); returns the base URL."""
        self._server = make_server(host, port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="graph-simulator")
        self._thread.start()
        self.base_url = f"http://{host}:{self._server.server_port}"
        return self.base_url

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None


DEMO = {"waba_id": "102290129340398", "phone_number_id": "106540352242922",
        "display": "15550783881", "token": "sim-token"}


def seed_demo_state(sim: GraphSimulator) -> dict:
    """Demo WABA, Coexistence number, three templates and the signup code ``demo-code``."""
    sim.add_number(DEMO["phone_number_id"], DEMO["waba_id"], DEMO["token"], DEMO["display"])
    sim.add_template(DEMO["waba_id"], "hello_world", body_params=0)
    sim.add_template(DEMO["waba_id"], "order_update", body_params=2, buttons=["Track", "Stop"])
    sim.add_template(DEMO["waba_id"], "spring_sale", category="MARKETING", body_params=1)
    sim.add_signup_code("demo-code", DEMO["waba_id"], DEMO["phone_number_id"], DEMO["token"])
    return DEMO


def run(host: str = "127.0.0.1", port: int = 8765, hub_url: str | None = None,
        app_secret: str = "test-app-secret", seed_demo: bool = True, app_id: str = "1234567890") -> None:
    """Serve the simulator in the foreground (for ``coexhub simulator``); statuses are live."""
    sim = GraphSimulator(hub_url=hub_url, app_secret=app_secret, app_id=app_id, live_statuses=True)
    if seed_demo:
        seed_demo_state(sim)
        print(f"demo: waba={DEMO['waba_id']} phone_number_id={DEMO['phone_number_id']} "
              f"token={DEMO['token']} signup code=demo-code (single use)", flush=True)
    server = make_server(host, port, sim.app, threaded=True)
    base = f"http://{host}:{server.server_port}"
    print(f"Graph simulator on {base} (webhooks -> {hub_url}); control API: {base}/_sim, "
          f"or `coexhub simulator --help`", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    import argparse
    p = argparse.ArgumentParser(prog="coexhub-simulator", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--hub-url", default=None)
    p.add_argument("--app-secret", default="test-app-secret")
    p.add_argument("--no-demo", action="store_true")
    a = p.parse_args(argv)
    run(a.host, a.port, a.hub_url, a.app_secret, seed_demo=not a.no_demo)


if __name__ == "__main__":
    main()
