"""Builders of Meta webhook envelopes (``object: whatsapp_business_account``) for tests.

Shapes follow Meta's published webhook reference examples: timestamps are strings of unix
seconds (except ``user_preferences`` and ``entry.time``), optional fields are *omitted* rather
than blanked, and business-scoped user ids (``user_id`` / ``from_user_id``) appear when given.
Pass ``wa_id=None`` (with ``user_id=...``) for the BSUID-only variant of a user whose phone
number is hidden. Every builder returns a plain ``dict`` of the full envelope unless noted.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import time
from collections.abc import Iterable
from typing import Any

__all__ = [
    "account_update",
    "batch",
    "contacts_message",
    "echo",
    "echo_edit",
    "echo_revoke",
    "envelope",
    "history_chunk",
    "history_declined",
    "interactive_reply",
    "location_message",
    "media_message",
    "message",
    "metadata",
    "new_wamid",
    "quality_update",
    "reaction",
    "revoke_message",
    "sign",
    "state_sync",
    "status",
    "template_button_reply",
    "template_status",
    "text_message",
    "unsupported_message",
    "user_preferences",
]

OBJECT = "whatsapp_business_account"


def _ts(timestamp: Any = None) -> str:
    """Meta's string unix seconds."""
    return str(int(time.time() if timestamp is None else float(timestamp)))


def new_wamid() -> str:
    """A fresh message id shaped like Meta's (``wamid.`` + base64 text)."""
    return "wamid.HBgL" + base64.b64encode(os.urandom(33)).decode()


def envelope(waba_id: str, field: str, value: dict, *, time_: int | None = None) -> dict:
    """One entry with one change. ``time_`` adds ``entry.time`` (account-level fields have it)."""
    entry: dict[str, Any] = {"id": str(waba_id)}
    if time_ is not None:
        entry["time"] = int(time_)
    entry["changes"] = [{"value": value, "field": field}]
    return {"object": OBJECT, "entry": [entry]}


def batch(*envelopes: dict) -> dict:
    """Merge envelopes into one POST body; changes of entries with the same id are joined."""
    entries: list[dict] = []
    by_id: dict[str, dict] = {}
    for env in envelopes:
        for entry in env.get("entry", []):
            entry = copy.deepcopy(entry)
            if entry.get("id") in by_id:
                by_id[entry["id"]]["changes"].extend(entry.get("changes", []))
            else:
                by_id[entry.get("id")] = entry
                entries.append(entry)
    return {"object": OBJECT, "entry": entries}


def metadata(phone_number_id: str, display_phone_number: str) -> dict:
    return {"display_phone_number": str(display_phone_number), "phone_number_id": str(phone_number_id)}


def _value(phone_number_id: str, display: str, **parts) -> dict:
    return {"messaging_product": "whatsapp", "metadata": metadata(phone_number_id, display), **parts}


def _contact(wa_id: str | None, name: str | None = None, user_id: str | None = None,
             username: str | None = None) -> dict:
    contact: dict[str, Any] = {}
    if name is not None or username is not None:
        contact["profile"] = {k: v for k, v in (("name", name), ("username", username)) if v is not None}
    if wa_id is not None:
        contact["wa_id"] = str(wa_id)
    if user_id is not None:
        contact["user_id"] = user_id
    return contact


def _sender(wa_id: str | None, user_id: str | None) -> dict:
    if wa_id is None and user_id is None:
        raise ValueError("a message needs wa_id or user_id (BSUID)")
    out: dict[str, Any] = {}
    if wa_id is not None:
        out["from"] = str(wa_id)
    if user_id is not None:
        out["from_user_id"] = user_id
    return out


# --- inbound customer messages (field "messages") ---------------------------------------

def message(waba_id: str, phone_number_id: str, display: str, msg: dict, *,
            contacts: list[dict] | None = None) -> dict:
    """A ``messages`` webhook carrying ``msg`` (a complete message object) and ``contacts``.

    ``contacts=None`` derives one contact from ``msg['from']``/``msg['from_user_id']``; pass
    ``contacts=[]`` to omit ``contacts`` entirely (as ``system`` messages do).
    """
    if contacts is None:
        contacts = [_contact(msg.get("from"), "Customer", msg.get("from_user_id"))]
    value = _value(phone_number_id, display)
    if contacts:
        value["contacts"] = contacts
    value["messages"] = [msg]
    return envelope(waba_id, "messages", value)


def _inbound(waba_id, phone_number_id, display, wa_id, kind, body, *, wamid=None, name="Customer",
             timestamp=None, user_id=None, context=None, extra=None, username=None) -> dict:
    msg: dict[str, Any] = _sender(wa_id, user_id)
    msg["id"] = wamid or new_wamid()
    msg["timestamp"] = _ts(timestamp)
    if context is not None:
        msg["context"] = context
    msg["type"] = kind
    if body is not None:
        msg[kind] = body
    msg.update(extra or {})
    return message(waba_id, phone_number_id, display, msg, contacts=[_contact(wa_id, name, user_id, username)])


def text_message(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, body: str, *,
                 wamid: str | None = None, name: str = "Customer", timestamp: Any = None,
                 user_id: str | None = None, context: dict | None = None, username: str | None = None) -> dict:
    """``context`` (reply-to) is ``{"from": business number, "id": wamid}``. A user known only by
    a BSUID has ``wa_id=None`` and a ``user_id`` (and a ``username`` if they set one)."""
    return _inbound(waba_id, phone_number_id, display, wa_id, "text", {"body": body}, wamid=wamid,
                    name=name, timestamp=timestamp, user_id=user_id, context=context, username=username)


def media_message(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, *,
                  kind: str = "image", media_id: str = "1234567890123456",
                  mime_type: str = "image/jpeg", sha256: str | None = None,
                  caption: str | None = None, filename: str | None = None, **kw) -> dict:
    """image | video | audio | document | sticker. ``caption``/``filename`` omitted unless given."""
    media: dict[str, Any] = {}
    if caption is not None:
        media["caption"] = caption
    if filename is not None:
        media["filename"] = filename
    media["mime_type"] = mime_type
    media["sha256"] = sha256 or hashlib.sha256(media_id.encode()).hexdigest()
    media["id"] = str(media_id)
    return _inbound(waba_id, phone_number_id, display, wa_id, kind, media, **kw)


def location_message(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, *,
                     latitude: float = 37.4848, longitude: float = -122.1484,
                     name: str | None = None, address: str | None = None, **kw) -> dict:
    """``name`` here is the place name; pass the profile name as ``profile_name``."""
    loc: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        loc["name"] = name
    if address is not None:
        loc["address"] = address
    if "profile_name" in kw:
        kw["name"] = kw.pop("profile_name")
    return _inbound(waba_id, phone_number_id, display, wa_id, "location", loc, **kw)


def contacts_message(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, *,
                     cards: list[dict] | None = None, formatted_name: str = "Barbara Johnson",
                     phone: str = "+16505551234", card_wa_id: str | None = "16505551234",
                     **kw) -> dict:
    """A shared contact card (``contacts`` message type); ``cards`` overrides the default card."""
    if cards is None:
        first, _, last = formatted_name.partition(" ")
        name = {"formatted_name": formatted_name, "first_name": first}
        if last:
            name["last_name"] = last
        ph: dict[str, Any] = {"phone": phone, "type": "MOBILE"}
        if card_wa_id:
            ph["wa_id"] = card_wa_id
        cards = [{"name": name, "phones": [ph]}]
    return _inbound(waba_id, phone_number_id, display, wa_id, "contacts", cards, **kw)


def interactive_reply(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, *,
                      kind: str = "button_reply", reply_id: str, title: str,
                      description: str | None = None, context: dict | None = None, **kw) -> dict:
    """Reply to an interactive message: ``button_reply`` or ``list_reply``."""
    if kind not in ("button_reply", "list_reply"):
        raise ValueError("kind must be button_reply or list_reply")
    reply: dict[str, Any] = {"id": reply_id, "title": title}
    if description is not None and kind == "list_reply":
        reply["description"] = description
    if context is None:
        context = {"from": str(display), "id": new_wamid()}
    return _inbound(waba_id, phone_number_id, display, wa_id, "interactive",
                    {"type": kind, kind: reply}, context=context, **kw)


def template_button_reply(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, *,
                          payload: str, text: str, context: dict | None = None, **kw) -> dict:
    """Quick-reply button tap on a template (message type ``button``)."""
    if context is None:
        context = {"from": str(display), "id": new_wamid()}
    return _inbound(waba_id, phone_number_id, display, wa_id, "button",
                    {"payload": payload, "text": text}, context=context, **kw)


def reaction(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, *,
             message_id: str, emoji: str | None = None, **kw) -> dict:
    """``emoji=None`` is a reaction removal (Meta omits ``emoji``)."""
    body: dict[str, Any] = {"message_id": message_id}
    if emoji is not None:
        body["emoji"] = emoji
    return _inbound(waba_id, phone_number_id, display, wa_id, "reaction", body, **kw)


def unsupported_message(waba_id: str, phone_number_id: str, display: str, wa_id: str | None,
                        **kw) -> dict:
    """Type ``unsupported`` with ``errors[]`` 131051."""
    errors = [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
               "error_data": {"details": "Message type is currently not supported."}}]
    return _inbound(waba_id, phone_number_id, display, wa_id, "unsupported", None,
                    extra={"errors": errors}, **kw)


def revoke_message(waba_id: str, phone_number_id: str, display: str, wa_id: str | None, *,
                   original_message_id: str, **kw) -> dict:
    """The customer deleted a message (``type: revoke``)."""
    return _inbound(waba_id, phone_number_id, display, wa_id, "revoke",
                    {"original_message_id": original_message_id}, **kw)


# --- statuses ---------------------------------------------------------------------------

def user_changed_user_id(waba_id: str, phone_number_id: str, display: str, old_user_id: str, new_user_id: str,
                        *, wamid: str | None = None, timestamp: Any = None, name: str = "Customer") -> dict:
    """The ``system`` message telling that a user moved to a new BSUID. Shaped like Meta's
    documented ``user_changed_number`` system message (no ``contacts``; the sender's old id in the
    message, the new one in ``system``); the exact field names are not confirmed (docs/whatsapp.md)."""
    msg = {"from_user_id": old_user_id, "id": wamid or new_wamid(), "timestamp": _ts(timestamp), "type": "system",
           "system": {"body": f"User {name} changed from {old_user_id} to {new_user_id}",
                      "user_id": new_user_id, "type": "user_changed_user_id"}}
    return message(waba_id, phone_number_id, display, msg, contacts=[])


def status(waba_id: str, phone_number_id: str, display: str, wamid: str, status: str,
           recipient_id: str | None, *, timestamp: Any = None, pricing_category: str = "utility",
           billable: bool = True, pricing_type: str = "regular", errors: list[dict] | None = None,
           user_id: str | None = None, biz_opaque_callback_data: str | None = None,
           pricing: bool | None = None, username: str | None = None) -> dict:
    """A status webhook. ``pricing`` defaults to present on ``sent`` and ``read`` only;
    ``failed`` has ``errors`` and neither pricing nor ``contacts``; the user's ``username``
    appears in ``contacts`` of ``delivered`` and ``read`` only."""
    st: dict[str, Any] = {"id": wamid, "status": status, "timestamp": _ts(timestamp)}
    if recipient_id is not None:
        st["recipient_id"] = str(recipient_id)
    if user_id is not None:
        st["recipient_user_id"] = user_id
    if biz_opaque_callback_data is not None:
        st["biz_opaque_callback_data"] = biz_opaque_callback_data
    value = _value(phone_number_id, display)
    if status == "failed":
        st["errors"] = errors or [{"code": 131026, "title": "Message undeliverable",
                                   "message": "Message undeliverable",
                                   "error_data": {"details": "Message Undeliverable."}}]
    else:
        if pricing if pricing is not None else status in ("sent", "read"):
            st["pricing"] = {"billable": billable, "pricing_model": "PMP",
                             "category": pricing_category, "type": pricing_type}
        if errors:
            st["errors"] = errors
        value["contacts"] = [_contact(recipient_id, None, user_id,
                                      username if status in ("delivered", "read") else None)]
    value["statuses"] = [st]
    return envelope(waba_id, "messages", value)


# --- Coexistence: echoes, contacts sync, history -------------------------------------------

def _echo(waba_id, phone_number_id, display, to, kind, body, *, wamid=None, timestamp=None,
          to_user_id=None) -> dict:
    item: dict[str, Any] = {"from": str(display)}
    if to:
        item["to"] = str(to)
    if to_user_id is not None:
        item["to_user_id"] = to_user_id
    item.update({"id": wamid or new_wamid(), "timestamp": _ts(timestamp), "type": kind, kind: body})
    value = _value(phone_number_id, display, message_echoes=[item])
    return envelope(waba_id, "smb_message_echoes", value)


def echo(waba_id: str, phone_number_id: str, display: str, to: str | None, body: str, *,
         wamid: str | None = None, timestamp: Any = None, to_user_id: str | None = None) -> dict:
    """A text the owner sent from the WhatsApp Business app (``smb_message_echoes``)."""
    return _echo(waba_id, phone_number_id, display, to, "text", {"body": body}, wamid=wamid,
                 timestamp=timestamp, to_user_id=to_user_id)


def echo_edit(waba_id: str, phone_number_id: str, display: str, to: str | None, *,
              original_message_id: str, new_body: str, **kw) -> dict:
    body = {"original_message_id": original_message_id,
            "message": {"type": "text", "text": {"body": new_body}}}
    return _echo(waba_id, phone_number_id, display, to, "edit", body, **kw)


def echo_revoke(waba_id: str, phone_number_id: str, display: str, to: str | None, *,
                original_message_id: str, **kw) -> dict:
    return _echo(waba_id, phone_number_id, display, to, "revoke",
                 {"original_message_id": original_message_id}, **kw)


def state_sync(waba_id: str, phone_number_id: str, display: str,
               contacts: Iterable[tuple], *, timestamp: Any = None) -> dict:
    """``contacts``: ``(action, phone, full_name, first_name)``; ``remove`` omits the names."""
    items = []
    for action, phone, full_name, first_name in contacts:
        contact: dict[str, Any] = {}
        if action != "remove":
            if full_name is not None:
                contact["full_name"] = full_name
            if first_name is not None:
                contact["first_name"] = first_name
        if phone is not None:
            contact["phone_number"] = str(phone)
        items.append({"type": "contact", "contact": contact, "action": action,
                      "metadata": {"timestamp": _ts(timestamp)}})
    return envelope(waba_id, "smb_app_state_sync",
                    _value(phone_number_id, display, state_sync=items))


def history_chunk(waba_id: str, phone_number_id: str, display: str, *, phase: int = 0,
                  chunk_order: int = 1, progress: int = 100,
                  threads: dict[str, list[tuple]] | None = None) -> dict:
    """``threads``: ``{wa_id: [(wamid, from_me, body, timestamp), ...]}`` (text messages;
    ``body=None`` gives a ``media_placeholder``)."""
    out = []
    for wa_id, msgs in (threads or {}).items():
        items = []
        for wamid, from_me, body, timestamp in msgs:
            item: dict[str, Any] = {"from": str(display) if from_me else str(wa_id)}
            if from_me:
                item["to"] = str(wa_id)
            item.update({"id": wamid or new_wamid(), "timestamp": _ts(timestamp)})
            if body is None:
                item["type"] = "media_placeholder"
            else:
                item.update({"type": "text", "text": {"body": body}})
            item["history_context"] = {"status": "READ" if not from_me else "DELIVERED"}
            items.append(item)
        out.append({"id": str(wa_id), "messages": items})
    chunk = {"metadata": {"phase": phase, "chunk_order": chunk_order, "progress": progress},
             "threads": out}
    return envelope(waba_id, "history", _value(phone_number_id, display, history=[chunk]))


def history_declined(waba_id: str, phone_number_id: str, display: str) -> dict:
    """The business declined history sharing: error 2593109 inside ``history[0].errors``."""
    title = "History sync is turned off by the business from the WhatsApp Business App"
    err = {"code": 2593109, "title": title, "message": title,
           "error_data": {"details": "History sharing is turned off by the business"}}
    return envelope(waba_id, "history", _value(phone_number_id, display, history=[{"errors": [err]}]))


# --- account-level fields (entry.time present) ------------------------------------------------

def account_update(waba_id: str, event: str, *, reason: str | None = None,
                   business_id: str = "2949482758682047",
                   owner_business_id: str = "2329417887457253", initiated_by: str = "SYSTEM",
                   timestamp: Any = None) -> dict:
    """For ``PARTNER_*`` events ``entry.id`` is ``business_id`` (a business portfolio) and the
    WABA is in ``value.waba_info.waba_id``; ``reason`` adds ``disconnection_info``."""
    value: dict[str, Any] = {"event": event}
    entry_id = waba_id
    if event.startswith("PARTNER_"):
        entry_id = business_id
        value["waba_info"] = {"waba_id": str(waba_id), "owner_business_id": owner_business_id}
    if reason is not None:
        value["disconnection_info"] = {"reason": reason, "initiated_by": initiated_by}
    return envelope(entry_id, "account_update", value, time_=int(_ts(timestamp)))


def template_status(waba_id: str, event: str, template_id: int, name: str, language: str,
                    reason: str | None = None, *, category: str | None = None,
                    timestamp: Any = None) -> dict:
    """``message_template_id`` is a number; ``reason`` omitted unless given (APPROVED: NONE)."""
    value: dict[str, Any] = {"event": event, "message_template_id": int(template_id),
                             "message_template_name": name, "message_template_language": language}
    if reason is None and event == "APPROVED":
        reason = "NONE"
    if reason is not None:
        value["reason"] = reason
    if category is not None:
        value["message_template_category"] = category
    return envelope(waba_id, "message_template_status_update", value, time_=int(_ts(timestamp)))


def user_preferences(waba_id: str, phone_number_id: str, display: str, wa_id: str,
                     value: str = "stop", *, timestamp: Any = None) -> dict:
    """Marketing stop/resume from WhatsApp's UI; ``timestamp`` is an integer here."""
    if value not in ("stop", "resume"):
        raise ValueError("value must be 'stop' or 'resume'")
    detail = ("User requested to stop marketing messages" if value == "stop"
              else "User requested to resume marketing messages")
    pref = {"wa_id": str(wa_id), "detail": detail, "category": "marketing_messages",
            "value": value, "timestamp": int(_ts(timestamp))}
    return envelope(waba_id, "user_preferences", _value(
        phone_number_id, display, contacts=[{"wa_id": str(wa_id)}], user_preferences=[pref]))


def quality_update(waba_id: str, display: str, event: str, current_limit: str, *,
                   old_limit: str | None = None, max_daily_conversations_per_business: str | None = None,
                   timestamp: Any = None) -> dict:
    value: dict[str, Any] = {"display_phone_number": str(display), "event": event}
    if old_limit is not None:
        value["old_limit"] = old_limit
    value["current_limit"] = current_limit
    if max_daily_conversations_per_business is not None:
        value["max_daily_conversations_per_business"] = max_daily_conversations_per_business
    return envelope(waba_id, "phone_number_quality_update", value, time_=int(_ts(timestamp)))


def sign(body: bytes, app_secret: str) -> dict[str, str]:
    """``{"X-Hub-Signature-256": "sha256=<hex>"}``: HMAC-SHA256 of the exact body bytes."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}
