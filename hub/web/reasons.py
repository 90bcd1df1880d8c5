"""Plain words for the queue page: why a send is held or failed, why a number is paused, and
what to do about each. Built on the Graph error table (``hub.core.sending.errors``) and the
reasons the core stores (``Send.hold_reason``, ``Connection.pause_reason``)."""
from __future__ import annotations

from dataclasses import dataclass

from hub.core.sending import errors


@dataclass(frozen=True)
class Reason:
    """A reason as shown: a short label, an explanation and what to do (may be empty)."""
    label: str
    explanation: str
    what_to_do: str = ""
    tone: str = "warn"  # ok|warn|bad (the badge; the label says it in words too)


# Meta error code → what the seller or developer can do about it.
WHAT_TO_DO_BY_CODE: dict[int, str] = {
    131047: "More than 24 hours since the customer last wrote: send an approved template instead of free text.",
    131026: ("WhatsApp could not deliver to this number (not on WhatsApp, an old app, or the customer has not "
             "accepted the latest terms). Check the number with the customer; replaying rarely helps."),
    131049: "Meta limits marketing messages per person: wait a day or more before trying marketing again.",
    131050: "The customer stopped marketing messages from you. Send only utility messages, or wait until they opt back in.",
    131051: "This message type is not supported for the recipient: send text or a template.",
    132015: "The template is paused for low quality: edit it in WhatsApp Manager or use another, then replay.",
    132016: "The template was disabled by Meta: create a new template, then replay.",
    132000: "The number of template parameters does not match the template: fix the parameters, then send again.",
    132001: "This template (name and language) does not exist: sync templates (POST /api/v1/templates/sync) or fix the name.",
    190: "The access token is invalid or expired: re-run Embedded Signup for this number, then resume it.",
    131048: "Too many customers blocked or reported your messages: the number is paused; send fewer, wanted messages.",
    368: "Meta blocked the number for policy violations: see Business Support Home, then resume.",
    131031: "The account is locked: see Business Support Home in Meta Business Suite.",
}

HOLDS: dict[str, Reason] = {
    "human_took_over": Reason("Held: a person took over",
                              "The owner replied from the phone app, so automations wait for this customer.",
                              "Open the conversation and use \"Resume automations\" to send it now."),
    "pacing": Reason("Pacing", "Waiting for a free slot under the number's messages-per-second rate.",
                     "Nothing to do: it goes out in a moment.", "ok"),
    "retry": Reason("Retrying", "A temporary error at Meta; it is tried again automatically with a growing delay.",
                    "Nothing to do unless it ends up dead."),
    "connection_paused": Reason("Held: number paused", "The number it leaves from is paused; it waits with that queue.",
                                "See the number below for why it is paused and how to resume it.", "bad"),
}


def send_reason(status: str, hold_reason: str | None, error_code: int | None, last_error: str | None) -> Reason | None:
    """Why a send is where it is (None when there is nothing to explain)."""
    if hold_reason:
        if hold_reason in HOLDS:
            return HOLDS[hold_reason]
        if hold_reason.startswith("portfolio limit"):
            return Reason("Held: messaging limit", hold_reason[:1].upper() + hold_reason[1:],
                          "It goes out when a slot frees. A higher tier comes from Meta as your quality and volume grow.")
        return Reason("Held", hold_reason)
    if status not in ("failed", "dead"):
        return None
    if error_code is not None:
        decision = errors.TABLE.get(error_code) or errors.classify(_Code(error_code))
        what_to_do = WHAT_TO_DO_BY_CODE.get(error_code, "")
        if not what_to_do and status == "dead":
            what_to_do = "Meta kept failing after every retry: replay once the problem is fixed."
        return Reason(f"Meta error {error_code}", decision.reason[:1].upper() + decision.reason[1:], what_to_do, "bad")
    text = last_error or ("gave up after every retry" if status == "dead" else "refused before sending")
    return Reason("Refused" if status == "failed" else "Dead", text, _what_to_do_for_text(text), "bad")


class _Code:
    """The least of a ``GraphError`` that ``errors.classify`` reads."""

    def __init__(self, code: int):
        self.code, self.timeout, self.http_status = code, False, 400

    def __str__(self) -> str:
        return f"error {self.code}"


def _what_to_do_for_text(text: str) -> str:
    lowered = text.lower()
    for needle, what_to_do in (
            ("opted out", "The customer opted out: do not message them unless they opt back in."),
            ("no whatsapp connection", "Connect a WhatsApp number (Embedded Signup), then replay."),
            ("consent", "The customer has not accepted marketing: send utility messages only."),
            ("template", "Check the template name, language and parameters, then replay."),
            ("window", "Outside the 24-hour window: send an approved template instead.")):
        if needle in lowered:
            return what_to_do
    return ""


def pause_reason(status: str, reason: str | None) -> Reason | None:
    """Why a number does not send, and what to do (None for an active number)."""
    if status == "active":
        return None
    text = reason or status
    code = text.split(":", 1)[0].strip()
    if code == "190" or "token" in text.lower():
        return Reason("Token expired", text, "Re-run Embedded Signup for this number (or store a fresh token with "
                      "POST /api/v1/connections), then resume it. Its queue waits and is kept.", "bad")
    if code == "PARTNER_REMOVED":
        return Reason("Partner removed", text, "The business removed this app as a partner in Meta Business Suite: "
                      "add it back (or re-run Embedded Signup); the number resumes by itself when Meta tells us.", "bad")
    if code == "ACCOUNT_OFFBOARDED":
        return Reason("Offboarded", text, "The number left Coexistence (offboarded in the WhatsApp Business app): "
                      "onboard it again with Embedded Signup.", "bad")
    if code.isdigit() and int(code) in WHAT_TO_DO_BY_CODE:
        return Reason("Paused by Meta", text, WHAT_TO_DO_BY_CODE[int(code)] + " Then resume the number.", "bad")
    if status == "disconnected":
        return Reason("Disconnected", text, "Connect the number again with Embedded Signup.", "bad")
    if "through the api" in text.lower() or "cli" in text.lower():
        return Reason("Paused by you", text, "Resume it when you want its queue to go out.", "warn")
    return Reason("Paused", text, "Fix the cause, then resume the number.", "bad")


INACTIVITY_WHAT_TO_DO = ("Open the WhatsApp Business app on the phone and use it (e.g. reply to a chat) before day 14, "
                   "or Meta may disconnect the number from Coexistence.")


def quality_tone(rating: str | None) -> str:
    """The badge tone of a quality rating or event (GREEN/YELLOW/RED, FLAGGED/UNFLAGGED…)."""
    value = (rating or "").upper()
    return "bad" if value in ("RED", "FLAGGED", "DOWNGRADE") else "warn" if value in ("YELLOW", "") else "ok"
