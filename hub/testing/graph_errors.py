"""Graph API error bodies as Meta shapes them (used by the Graph simulator)."""
from __future__ import annotations

import random

ERRORS = {  # code -> (message, details)
    2: ("Service temporarily unavailable", "Service temporarily unavailable"),
    100: ("(#100) Invalid parameter", "Invalid parameter"),
    190: ("Error validating access token: The session is invalid.", "Invalid OAuth access token"),
    368: ("Temporarily blocked for policies violations", "Temporarily blocked for policies violations"),
    130429: ("(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
    131000: ("(#131000) Something went wrong", "Something went wrong"),
    131016: ("(#131016) Service unavailable", "A service is temporarily unavailable."),
    131026: ("(#131026) Message Undeliverable.", "Message Undeliverable."),
    131047: ("(#131047) Re-engagement message", ("Message failed to send because more than 24 hours "
                                                 "have passed since the customer last replied to this number.")),
    131048: ("(#131048) Spam rate limit hit", ("Message failed to send because there are restrictions "
                                               "on how many messages can be sent from this phone number.")),
    131049: ("(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
             "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."),
    131050: (("(#131050) Unable to deliver the message. This recipient has chosen to stop receiving "
              "marketing messages on WhatsApp from your business."), "Marketing messages stopped"),
    131056: ("(#131056) (Business Account, Consumer Account) pair rate limit hit",
             "Too many messages sent from the sender phone number to the same recipient."),
    132000: ("(#132000) Number of parameters does not match the expected number of params", ""),
    132001: ("(#132001) Template name does not exist in the translation", ""),
    132015: ("(#132015) Template is Paused", "Template is paused due to low quality."),
    131062: ("(#131062) Business-scoped User ID recipients are not supported for this message.",
             ("Business-scoped User ID (BSUID) recipients are not supported for this message: one-tap, zero-tap "
              "and copy-code authentication templates need the user's phone number.")),
    132016: ("(#132016) Template is Disabled", "Template has been disabled."),
}


class GraphError(Exception):
    def __init__(self, code: int, http_status: int = 400, details: str | None = None,
                 message: str | None = None, subcode: int | None = None):
        super().__init__(code)
        self.subcode = subcode
        default_message, default_details = ERRORS.get(code, (f"(#{code}) Error", ""))
        self.code, self.http_status = code, http_status
        self.message, self.details = message or default_message, details or default_details

    def body(self) -> dict:
        error = {"message": self.message, "type": "OAuthException", "code": self.code,
                 "error_data": {"messaging_product": "whatsapp", "details": self.details},
                 "fbtrace_id": "A" + "".join(random.choices("abcdefghijkXYZ0123456789", k=22))}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        return {"error": error}


__all__ = ["ERRORS", "GraphError"]
