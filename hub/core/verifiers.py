"""How a connector checks that a webhook is genuine, and where it finds ids and topics.

Each verifier checks the raw request bytes and can also *sign* a body, which the test kit
and the simulator use to build requests the way the provider does.
"""
from __future__ import annotations

import abc
import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping
from urllib.parse import parse_qs


@dataclass
class IncomingRequest:
    """What verification and extraction may look at: headers, query args and raw bytes."""
    headers: Mapping[str, str]
    body: bytes
    args: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None:  # plain dicts (tests, the simulator) are not case-insensitive
            lowered = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lowered), None)
        return value

    @cached_property
    def json(self) -> Any:
        return json.loads(self.body)


class Rejected(Exception):
    """A correctly signed request refused for the reason given (e.g. too old: a replay); 401."""


class Verifier(abc.ABC):
    """Base class: ``verify`` a request against an installation's secrets; ``sign`` a body."""

    @abc.abstractmethod
    def verify(self, request: IncomingRequest, secrets: Mapping[str, Any]) -> bool:
        """True when the request is genuine."""

    @abc.abstractmethod
    def sign(self, body: bytes, secrets: Mapping[str, Any], **options) -> dict[str, str]:
        """Headers that make ``body`` pass ``verify``."""


class NoVerification(Verifier):
    """Accept every request (for sources that cannot sign, e.g. behind a private network)."""

    def verify(self, request, secrets) -> bool:
        return True

    def sign(self, body, secrets, **options) -> dict[str, str]:
        return {}


@dataclass
class HmacHeader(Verifier):
    """HMAC of the raw body in a header, hex or base64, optionally prefixed (``sha256=``).

    ``timestamp_header``: a delivery-time header (ISO 8601 or unix seconds) that must be at most
    ``max_age`` seconds old (and not more than ``max_skew`` ahead); otherwise ``Rejected``. When
    the provider does not sign that header it only stops replays that keep it unchanged, so pair
    it with a body-based dedupe key."""
    header: str
    key: str = "webhook_secret"
    encoding: str = "hex"
    prefix: str = ""
    digest: str = "sha256"
    timestamp_header: str | None = None
    max_age: int = 300
    max_skew: int = 300

    def _mac(self, body: bytes, secret: str) -> str:
        raw = hmac.new(secret.encode(), body, self.digest).digest()
        return self.prefix + (base64.b64encode(raw).decode() if self.encoding == "base64" else raw.hex())

    def verify(self, request, secrets) -> bool:
        secret, given = secrets.get(self.key), request.header(self.header)
        if not secret or not given:
            return False
        genuine = hmac.compare_digest(self._mac(request.body, secret).encode(), given.strip().encode())
        if genuine and self.timestamp_header:
            check_fresh(request.header(self.timestamp_header), self.timestamp_header, self.max_age, self.max_skew)
        return genuine

    def sign(self, body, secrets, timestamp: float | None = None, **options) -> dict[str, str]:
        headers = {self.header: self._mac(body, secrets[self.key])}
        if self.timestamp_header:
            at = dt.datetime.fromtimestamp(time.time() if timestamp is None else timestamp, dt.timezone.utc)
            headers[self.timestamp_header] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return headers


def check_fresh(value: str | None, name: str, max_age: int, max_skew: int, now: float | None = None) -> None:
    """Raise ``Rejected`` unless ``value`` (ISO 8601 or unix seconds) is within ``max_age`` seconds
    in the past and ``max_skew`` in the future."""
    value = (value or "").strip()
    try:
        if value.isdigit():
            at = float(value)
        else:
            parsed = dt.datetime.fromisoformat(value)
            at = (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()
    except (ValueError, OverflowError, OSError):
        raise Rejected(f"{name} is missing or not a time") from None
    age = (time.time() if now is None else now) - at
    if age > max_age:
        raise Rejected(f"{name} is {int(age // 60)} min old; deliveries older than {max_age // 60} min "
                       "are refused (a replay)")
    if age < -max_skew:
        raise Rejected(f"{name} is {int(-age // 60)} min in the future")


@dataclass
class TimestampedHmac(Verifier):
    """``t=<unix>,v1=<hex>`` over ``"{t}.{body}"`` with a replay tolerance (Stripe, Calendly)."""
    header: str
    key: str = "signing_key"
    tolerance: int = 300
    scheme: str = "v1"

    @staticmethod
    def _mac(secret: str, timestamp: str, body: bytes) -> str:
        return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    def verify(self, request, secrets) -> bool:
        secret, given = secrets.get(self.key), request.header(self.header)
        if not secret or not given:
            return False
        parts: dict[str, list[str]] = {}
        for item in given.split(","):
            name, _, value = item.strip().partition("=")
            parts.setdefault(name, []).append(value)
        timestamp = (parts.get("t") or [""])[0]
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) \
                or abs(time.time() - int(timestamp)) > self.tolerance:  # "²".isdigit() is True
            return False
        expected = self._mac(secret, timestamp, request.body).encode()
        return any(hmac.compare_digest(expected, sig.encode()) for sig in parts.get(self.scheme, []))

    def sign(self, body, secrets, timestamp: int | None = None, **options) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {self.header: f"t={ts},{self.scheme}={self._mac(secrets[self.key], ts, body)}"}


@dataclass
class SharedToken(Verifier):
    """A shared token in a header or a query parameter, compared in constant time."""
    key: str = "token"
    header: str | None = None
    query: str | None = None

    def verify(self, request, secrets) -> bool:
        secret = secrets.get(self.key)
        given = request.header(self.header) if self.header else request.args.get(self.query or "token")
        return bool(secret and given) and hmac.compare_digest(str(secret).encode(), given.encode())

    def sign(self, body, secrets, **options) -> dict[str, str]:
        return {self.header: secrets[self.key]} if self.header else {}


# -- extractors: where the dedupe key and the topic are -------------------------------------

class Extractor(abc.ABC):
    @abc.abstractmethod
    def __call__(self, request: IncomingRequest) -> str | None:
        """The value, or None when the request does not carry it."""


@dataclass
class Header(Extractor):
    name: str

    def __call__(self, request):
        return request.header(self.name) or None


@dataclass
class JsonField(Extractor):
    """A dotted path into the JSON body, e.g. ``JsonField("payload.uri")``."""
    path: str

    def __call__(self, request):
        value = dig(request.json, self.path)
        return None if value is None or isinstance(value, (dict, list)) else str(value)


class Fields(Extractor):
    """Several extractors joined (a dedupe key made of event + uri + updated_at, say)."""

    def __init__(self, *parts: Extractor, sep: str = ":"):
        self.parts, self.sep = parts, sep

    def __call__(self, request):
        values = [part(request) for part in self.parts]
        return self.sep.join(v or "" for v in values) if any(values) else None


class BodyHash(Extractor):
    """SHA-256 of the raw body: the dedupe key of last resort (an identical redelivery)."""

    def __call__(self, request):
        return hashlib.sha256(request.body).hexdigest()


def dig(data: Any, path: str, default: Any = None) -> Any:
    """Follow a dotted path through dicts (and list indexes); ``default`` when anything is missing."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return default
        if data is None:
            return default
    return data


def parse_form(body: bytes) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "strict")).items()}
