"""``Stripe-Signature`` checked with Stripe's own library (``stripe.WebhookSignature``).

The signature is checked first; a genuine signature whose timestamp is outside the tolerance
(either direction) is a replay: ``Rejected`` with the reason (401 ``rejected``). A wrong,
missing or malformed signature is 401 ``bad_signature``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import stripe

from hub.connector import IncomingRequest, Rejected, Verifier

HEADER = "Stripe-Signature"


@dataclass
class StripeSignature(Verifier):
    key: str = "webhook_secret"
    tolerance: int = 300

    def verify(self, request: IncomingRequest, secrets: Mapping[str, Any]) -> bool:
        secret, given = secrets.get(self.key), request.header(HEADER)
        if not secret or not given:
            return False
        try:  # tolerance=None: the age is judged below, once the timestamp is known to be genuine
            stripe.WebhookSignature.verify_header(request.body, given, secret, tolerance=None)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError, OverflowError):
            return False
        stamp = next((part.partition("=")[2] for part in given.split(",") if part.strip().startswith("t=")), "")
        age = time.time() - int(stamp)
        if abs(age) > self.tolerance:
            raise Rejected(f"Stripe-Signature timestamp is {int(abs(age))} s {'old' if age > 0 else 'ahead'}; "
                           f"the tolerance is {self.tolerance} s (a replayed or delayed delivery)")
        return True

    def sign(self, body: bytes, secrets: Mapping[str, Any], timestamp: int | None = None, **options) -> dict[str, str]:
        """The header Stripe would send (``stripe.WebhookSignature.generate_signature_header``)."""
        return {HEADER: stripe.WebhookSignature.generate_signature_header(
            body.decode("utf-8"), secrets[self.key], timestamp=int(time.time()) if timestamp is None else timestamp)}
