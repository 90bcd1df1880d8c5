"""Encryption at rest for tokens and webhook secrets (Fernet / MultiFernet).

``COEXHUB_SECRET_KEY`` holds one or more comma-separated Fernet keys: the first encrypts,
all of them decrypt, so a key can be rotated by prepending a new one.
"""
from __future__ import annotations

import functools
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.types import Text, TypeDecorator

_keyring: MultiFernet | None = None


def configure(keys: tuple[str, ...] | list[str]) -> None:
    """Install the process-wide keyring (first key encrypts, all decrypt)."""
    global _keyring
    _keyring = MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def keyring() -> MultiFernet:
    if _keyring is None:
        raise RuntimeError("crypto.configure() has not been called")
    return _keyring


def encrypt(value: str) -> str:
    return keyring().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    """The plain text of ``token``. Remembered per keyring (``DECRYPTED`` tokens): every job
    loads the same connections and installations, and each load decrypted their secrets again."""
    return _decrypt(keyring(), token)


DECRYPTED = 1024  # distinct tokens remembered (connections' access tokens, installations' secrets)


@functools.lru_cache(maxsize=DECRYPTED)
def _decrypt(ring: MultiFernet, token: str) -> str:
    try:
        return ring.decrypt(token.encode()).decode()
    except InvalidToken as exc:  # a key was removed before its data was rotated
        raise RuntimeError("cannot decrypt a stored secret: is COEXHUB_SECRET_KEY complete?") from exc


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the current first key."""
    return keyring().rotate(token.encode()).decode()


class EncryptedText(TypeDecorator):
    """A string column stored encrypted."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else decrypt(value)


class EncryptedJSON(TypeDecorator):
    """A JSON object stored encrypted (the secret fields of a connector's config)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect) -> str | None:
        return None if value is None else encrypt(json.dumps(value, separators=(",", ":")))

    def process_result_value(self, value: str | None, dialect) -> dict[str, Any] | None:
        return None if value is None else json.loads(decrypt(value))
