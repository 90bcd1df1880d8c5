"""What the simulator's parts share: limits, how users are keyed, Meta's failed-status errors."""
from __future__ import annotations

import logging
import re

from werkzeug.routing import BaseConverter

from hub.core.bsuid import is_bsuid
from hub.testing.graph_errors import ERRORS

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

