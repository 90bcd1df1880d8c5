"""Opaque public ids for rows numbered by the database (contacts, messages, sends, events…).

The database, the jobs and the logs keep integers; the API shows and accepts only tokens such
as ``snd_5tq3…`` (a prefix per kind, then 26 base32 characters). A token is one AES block
holding the integer and the kind, encrypted under a key derived (HKDF) from ``COEXHUB_ID_KEY``
or, when unset, the last key of ``COEXHUB_SECRET_KEY``: it reveals neither the number nor
the volume, a changed character or another kind's token does not decode (a 64-bit check), and
every token that does not decode is answered like an id that does not exist (404).

Use, in one import::

    from hub.api import ids

    @bp.route("/things/<pid(snd):send_id>")      # the view gets the integer (bad token → 404)
    class Out(Schema):
        id = ids.PublicId("snd")                   # integer → token in responses
        contact_id = ids.PublicId("ct", allow_none=True)   # token → integer in bodies (bad → 404)
    contact_id = ids.query_arg("contact_id", "ct")  # an optional query filter (bad → 404)
    ids.encode("snd", 42), ids.decode("snd", token)  # anywhere else (None when it does not decode)

A new kind is one ``register("pfx", "noun", "table")`` call.
"""
from __future__ import annotations

import base64
import functools
import re
import struct
import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, has_app_context, request
from marshmallow import fields
from werkzeug.routing import BaseConverter
from werkzeug.routing import ValidationError as NoMatch

from hub.api.errors import ApiError

KINDS: dict[str, str] = {"ct": "contact", "msg": "message", "snd": "send", "tpl": "template",
                         "evt": "inbound event", "dlv": "delivery"}
TABLES: dict[str, str] = {"contacts": "ct", "messages": "msg", "sends": "snd", "templates": "tpl",
                          "inbound_events": "evt", "outbound_deliveries": "dlv"}  # table → prefix
BODY_CHARS = 26  # base32 of one 16-byte block, without padding
MAX_ID = 2**63 - 1


def register(prefix: str, noun: str, table: str | None = None) -> None:
    """Add a kind of id (``prefix`` is 2–4 lowercase letters, unique); ``table`` lets
    ``hub.api.owned`` name a missing row of that table by its token."""
    if not re.fullmatch(r"[a-z]{2,4}", prefix) or KINDS.get(prefix, noun) != noun:
        raise ValueError(f"cannot register public id prefix {prefix!r}")
    KINDS[prefix] = noun
    if table:
        TABLES[table] = prefix


def pattern(prefix: str) -> str:
    """The token's regular expression (as the OpenAPI document states it)."""
    return f"^{prefix}_[a-z2-7]{{{BODY_CHARS}}}$"


class Codec:
    """Encode and decode the tokens of one instance (its keys)."""

    def __init__(self, secrets: tuple[str, ...]):
        if not secrets:
            raise ValueError("public ids need a key")
        self._ciphers = [Cipher(algorithms.AES(_derive(s)), modes.ECB()) for s in secrets]
        self._local = threading.local()  # an encryptor per thread, reused (ECB keeps no state between blocks)

    def encode(self, prefix: str, value: int) -> str:
        if prefix not in KINDS or not 0 < value <= MAX_ID:
            raise ValueError(f"no public id for {prefix} {value!r}")
        # ECB on a single block is a keyed permutation of that block: no IV, no repetition
        encryptor = getattr(self._local, "encryptor", None)
        if encryptor is None:
            encryptor = self._local.encryptor = self._ciphers[0].encryptor()
        block = encryptor.update(struct.pack(">Q8s", value, _tag(prefix)))
        return f"{prefix}_{base64.b32encode(block).decode().rstrip('=').lower()}"

    def decode(self, prefix: str, token: object) -> int | None:
        """The integer of a ``prefix`` token made by this instance, else None (never raises)."""
        if not isinstance(token, str) or len(token) != len(prefix) + 1 + BODY_CHARS \
                or not token.startswith(prefix + "_") or prefix not in KINDS:
            return None
        body = token[len(prefix) + 1:]
        try:
            block = base64.b32decode(body.upper() + "======")
        except ValueError:  # binascii.Error: not base32
            return None
        if base64.b32encode(block).decode().rstrip("=").lower() != body:  # one token per id
            return None
        for cipher in self._ciphers:
            value, tag = struct.unpack(">Q8s", cipher.decryptor().update(block))
            if tag == _tag(prefix) and 0 < value <= MAX_ID:
                return value
        return None

    def decode_any(self, token: object) -> int | None:
        """The integer of a token of any kind (its prefix says which), else None."""
        prefix = token.split("_", 1)[0] if isinstance(token, str) else ""
        return self.decode(prefix, token) if prefix in KINDS else None


def _tag(prefix: str) -> bytes:
    return b"coex" + prefix.encode().ljust(4, b"\0")


def _derive(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"coexhub public ids v1").derive(secret.encode())


@functools.lru_cache(maxsize=8)
def _codec_for(secrets: tuple[str, ...]) -> Codec:
    return Codec(secrets)


def id_secrets(settings) -> tuple[str, ...]:
    """The secrets public ids come from: ``COEXHUB_ID_KEY``, else the last (oldest) key of
    ``COEXHUB_SECRET_KEY`` — rotation prepends keys, so ids stay until that key is dropped;
    the other keys still decode the tokens they made."""
    own = getattr(settings, "id_key", "")
    keys = tuple(reversed(settings.secret_keys))
    return (own, *keys) if own else keys


def codec(settings=None) -> Codec:
    """The codec of ``settings``, else of the current app, else of the process's runtime."""
    if settings is None:
        if has_app_context() and "coexhub" in current_app.extensions:
            settings = current_app.extensions["coexhub"].settings
        else:
            from hub.core import runtime

            settings = runtime.current().settings
    return _codec_for(id_secrets(settings))


def encode(prefix: str, value: int) -> str:
    return codec().encode(prefix, value)


def decode(prefix: str, token: object) -> int | None:
    return codec().decode(prefix, token)


def not_found(prefix: str, token: object) -> ApiError:
    return ApiError(404, "not_found", f"no {KINDS[prefix]} {str(token)[:80]}")


def decode_or_404(prefix: str, token: object) -> int:
    value = decode(prefix, token)
    if value is None:
        raise not_found(prefix, token)
    return value


def query_arg(name: str, prefix: str) -> int | None:
    """An optional id in the query string: None when absent, the integer, or 404."""
    token = request.args.get(name)
    return decode_or_404(prefix, token) if token else None


class PublicIdConverter(BaseConverter):
    """``<pid(snd):send_id>``: the view gets the integer; a token that does not decode matches
    no route (404, like an id that does not exist)."""

    def __init__(self, url_map, prefix: str):
        super().__init__(url_map)
        if prefix not in KINDS:
            raise ValueError(f"unknown public id prefix {prefix!r}")
        self.prefix = prefix

    def to_python(self, value: str) -> int:
        found = decode(self.prefix, value)
        if found is None:
            raise NoMatch()
        return found

    def to_url(self, value) -> str:
        return encode(self.prefix, value) if isinstance(value, int) else str(value)


class PublicId(fields.String):
    """An id as a token: integers are written as tokens, tokens are read as integers; a string
    that is not a token of this kind answers 404 (as an id that does not exist would)."""

    def __init__(self, prefix: str, **kwargs):
        if prefix not in KINDS:
            raise ValueError(f"unknown public id prefix {prefix!r}")
        self.prefix = prefix
        metadata = {"description": f"a {KINDS[prefix]} id", "pattern": pattern(prefix),
                    "example": f"{prefix}_{'a' * BODY_CHARS}", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value if isinstance(value, str) else encode(self.prefix, value)

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        token = super()._deserialize(value, attr, data, **kwargs)  # not a string: 422
        found = decode(self.prefix, token)
        if found is None:
            raise not_found(self.prefix, token)
        return found


def path_schema(converter: PublicIdConverter) -> dict:
    return {"type": "string", "pattern": pattern(converter.prefix),
            "description": f"a {KINDS[converter.prefix]} id"}


def install(app, api) -> None:
    """Register the ``pid`` converter on ``app`` (before any blueprint) and in the OpenAPI spec."""
    app.url_map.converters["pid"] = PublicIdConverter
    api.register_converter(PublicIdConverter, path_schema)


__all__ = ["KINDS", "Codec", "PublicId", "PublicIdConverter", "codec", "decode", "decode_or_404", "encode",
           "install", "not_found", "pattern", "query_arg", "register"]
