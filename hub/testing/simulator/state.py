"""Test set-up of the simulated Graph API: numbers, templates, signup codes, 24-hour windows, injected
faults and Meta's per-user marketing limit, and what the hub sent (``sent``, ``read_marks``)."""
from __future__ import annotations

from collections import deque

from hub.testing import payloads
from hub.testing.simulator.common import WINDOW_SECONDS, _key


class StateMixin:
    """``GraphSimulator``'s state set-up and queries (its attributes are made in its ``__init__``)."""

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
