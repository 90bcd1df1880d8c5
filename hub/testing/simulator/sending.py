"""The send endpoint (``POST /{version}/{phone_number_id}/messages``): token, throughput, validation
of the body and the template, injected faults, then the accepted message's statuses and pricing."""
from __future__ import annotations

import re
import time
from collections import deque
from typing import Any

from flask import jsonify, request

from hub.core.bsuid import SEND_FIELD, is_bsuid
from hub.testing import payloads
from hub.testing.graph_errors import GraphError
from hub.testing.simulator.common import SEND_TYPES, _digits, _key, _status_error


class SendingMixin:
    """``GraphSimulator``'s message sending, as Meta enforces it."""

    def _check_token(self, number: dict | None, auth: str | None = None) -> None:
        auth = request.headers.get("Authorization", "") if auth is None else auth
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
        response, status = self.handle_send(phone_number_id, request.get_json(silent=True),
                                            request.headers.get("Authorization", ""))
        return jsonify(response), status

    def handle_send(self, phone_number_id: str, body: Any, authorization: str) -> tuple[dict, int]:
        """``POST /{version}/{phone_number_id}/messages`` with this JSON ``body`` (None: not JSON)
        and ``Authorization`` header: ``(response, HTTP status)``, recorded in ``requests``."""
        body = body if isinstance(body, dict) else {}
        number = self.numbers.get(phone_number_id)
        try:
            if number is None:
                raise GraphError(100, details=f"Unsupported post request. Object with ID "
                                              f"'{phone_number_id}' does not exist")
            self._check_token(number, authorization)
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
        return response, status

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
