"""The people around the number: customers writing, BSUID changes, the owner's Business app (echoes,
contact syncs, history) — and the signed webhooks, statuses included, that carry it all to the hub."""
from __future__ import annotations

import json
import threading

from hub.testing import payloads
from hub.testing.simulator.common import _digits, _key, log


class UsersMixin:
    """``GraphSimulator``'s webhook side: what users and the owner do, and status delivery."""

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
