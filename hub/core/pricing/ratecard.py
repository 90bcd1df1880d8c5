"""The rate card: what Meta charges per delivered message, by category and market, as data.

A rate card is a CSV file (``data/rate_card.csv`` is shipped) with the columns
``market,category,price,price_in_window,currency,effective_from,source``:

- ``market`` is one of Meta's market names (``Brazil``, ``Rest of Latin America``…) that the
  markets file maps countries to, or an ISO 3166 country code for a country-specific price;
- ``category`` is ``marketing``, ``utility``, ``authentication``,
  ``authentication_international`` or ``service`` (Meta's pricing categories);
- ``price_in_window`` is the price inside an open customer service window (blank: ``price``),
  which is how "utility templates in an open window are free" is written (``0``);
- ``effective_from`` (``YYYY-MM-DD``): several rows of one market and category are a history;
  a message is priced by the newest row in effect on its day.

The markets file (``country,market[,source]``) maps countries to Meta's market groups. Both are
validated line by line (``RateCardError`` names the line) and stored in ``rate_cards``: the
instance's card (no workspace; the shipped files until one is loaded) and a workspace's own
override, the newest of each counting.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.core.models import RateCard

DATA = Path(__file__).parent / "data"
CATEGORIES = ("marketing", "utility", "authentication", "authentication_international", "service")
RATE_COLUMNS = ("market", "category", "price", "price_in_window", "currency", "effective_from", "source")
REQUIRED = ("market", "category", "price", "currency", "effective_from")
COUNTRY = re.compile(r"[A-Z]{2}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_ROWS = 20000


class RateCardError(ValueError):
    """A line of a rate card or markets file that cannot be used."""

    def __init__(self, line: int, message: str, file: str = "rate card"):
        super().__init__(f"{file} line {line}: {message}")
        self.line, self.problem, self.file = line, message, file


@dataclass
class Card:
    """A usable rate card: ``rates[(market, category)]`` is its rows, newest first."""
    rates: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    markets: dict[str, str] = field(default_factory=dict)
    origin: str = "shipped"  # shipped | instance | workspace
    loaded_at: dt.datetime | None = None
    source: str | None = None

    def rate(self, country: str | None, category: str | None, on: dt.date | None = None) -> dict | None:
        """The row pricing ``category`` to ``country`` on day ``on`` (today), or None (unpriced):
        the country's own rows when the card has them for this category, else its market's."""
        category = normalize_category(category)
        if not country or not category:
            return None
        rows = self.rates.get((country, category)) or self.rates.get((self.markets.get(country), category))
        day = (on or dt.date.today()).isoformat()
        return next((row for row in rows or () if row["effective_from"] <= day), None)

    def price(self, country: str | None, category: str | None, *, in_window: bool = False,
              on: dt.date | None = None) -> tuple[Decimal, str] | None:
        """``(price, currency)`` of one delivered message, or None when the card has no price."""
        row = self.rate(country, category, on)
        if row is None:
            return None
        value = row["price_in_window"] if in_window and row.get("price_in_window") is not None else row["price"]
        return Decimal(value), row["currency"]

    def describe(self) -> dict:
        return {"origin": self.origin, "source": self.source, "loaded_at": self.loaded_at,
                "markets": len(set(self.markets.values())), "countries_mapped": len(self.markets),
                "rates": [row for rows in self.rates.values() for row in rows]}


def normalize_category(category: str | None) -> str | None:
    """Meta writes ``authentication-international`` in prose and ``authentication_international``
    in webhooks; both become the latter, in lower case."""
    return category.strip().lower().replace("-", "_") if isinstance(category, str) and category.strip() else None


def country_of(number: str | None) -> str | None:
    """The ISO 3166 region of a WhatsApp number (``wa_id``: digits with the country code)."""
    digits = re.sub(r"\D", "", number or "")
    if not digits:
        return None
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + digits, None))
    except phonenumbers.NumberParseException:
        return None
    return region if region and region != "ZZ" else None


def parse_markets(text: str) -> dict[str, str]:
    """``{country: market}`` from a markets CSV, or RateCardError naming the line."""
    header, rows = _csv(text, "markets")
    missing = [c for c in ("country", "market") if c not in header]
    if missing:
        raise RateCardError(1, f"the header needs the columns country and market (missing {missing})", "markets")
    out: dict[str, str] = {}
    for line, row in rows:
        country, market = (row.get("country") or "").strip().upper(), (row.get("market") or "").strip()
        if not country and not market:
            continue
        if not COUNTRY.fullmatch(country) or country not in phonenumbers.SUPPORTED_REGIONS | {"AQ"}:
            raise RateCardError(line, f"country {country!r} is not an ISO 3166 code of a region with phone numbers",
                                "markets")
        if not market or len(market) > 80:
            raise RateCardError(line, "market must be a name of at most 80 characters", "markets")
        if country in out and out[country] != market:
            raise RateCardError(line, f"country {country} is already in market {out[country]!r}", "markets")
        out[country] = market
    return out


def parse_rates(text: str, markets: dict[str, str]) -> list[dict]:
    """The rows of a rate card CSV, checked against ``markets``, or RateCardError naming the line."""
    header, lines = _csv(text, "rate card")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise RateCardError(1, f"the header needs the columns {', '.join(REQUIRED)} (missing {', '.join(missing)})")
    known_markets, rows, seen = set(markets.values()), [], set()
    for line, raw in lines:
        if len(rows) >= MAX_ROWS:
            raise RateCardError(line, f"a rate card has at most {MAX_ROWS} rows")
        row = {k: (v or "").strip() for k, v in raw.items() if k in RATE_COLUMNS}
        if not any(row.values()):
            continue
        rows.append(_rate_row(row, line, known_markets))
        key = (rows[-1]["market"], rows[-1]["category"], rows[-1]["effective_from"])
        if key in seen:
            raise RateCardError(line, f"a second price for {key[0]} / {key[1]} from {key[2]}")
        seen.add(key)
    if not rows:
        raise RateCardError(1, "the rate card has no rows")
    return rows


def _rate_row(row: dict, line: int, known_markets: set[str]) -> dict:
    market, category = row.get("market", ""), normalize_category(row.get("category"))
    if market not in known_markets and not (COUNTRY.fullmatch(market) and market in phonenumbers.SUPPORTED_REGIONS):
        raise RateCardError(line, f"market {market!r} is neither a market of the markets file nor an ISO 3166 "
                                  "country code")
    if category not in CATEGORIES:
        raise RateCardError(line, f"category {row.get('category')!r} is not one of {', '.join(CATEGORIES)}")
    price = _amount(row.get("price"), line, "price")
    in_window = _amount(row["price_in_window"], line, "price_in_window") if row.get("price_in_window") else None
    currency = row.get("currency", "").upper()
    if not CURRENCY.fullmatch(currency):
        raise RateCardError(line, f"currency {row.get('currency')!r} is not a three-letter ISO 4217 code")
    try:
        effective = dt.date.fromisoformat(row.get("effective_from", "")).isoformat()
    except ValueError:
        raise RateCardError(line, f"effective_from {row.get('effective_from')!r} is not a date (YYYY-MM-DD)") from None
    return {"market": market, "category": category, "price": price, "price_in_window": in_window,
            "currency": currency, "effective_from": effective, "source": (row.get("source") or "")[:300] or None}


def _amount(text: str | None, line: int, column: str) -> str:
    try:
        value = Decimal(text or "")
    except InvalidOperation:
        raise RateCardError(line, f"{column} {text!r} is not a number") from None
    if not value.is_finite() or value < 0 or value > 1000:
        raise RateCardError(line, f"{column} {text!r} must be a number from 0 to 1000")
    return str(value)


def parse(rates_text: str, markets_text: str | None = None) -> tuple[list[dict], dict[str, str]]:
    """Validate a rate card (and optionally a markets file; default: the shipped one)."""
    markets = parse_markets(markets_text if markets_text is not None else shipped_text("markets.csv"))
    return parse_rates(rates_text, markets), markets


def _csv(text: str, file: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and the ``(line, row)`` pairs of a CSV text; what the csv module cannot read
    (a field past its size limit, say) is a RateCardError on that line."""
    reader = csv.DictReader(io.StringIO(text, newline=""))  # newline="": as the csv module requires
    try:
        reader.fieldnames = [h.strip() for h in reader.fieldnames or []]
        return reader.fieldnames, [(reader.line_num, row) for row in reader]
    except csv.Error as exc:  # on the line being read
        raise RateCardError(reader.line_num + 1, f"not readable as CSV: {exc}", file) from None


def shipped_text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def build(rates: list[dict], markets: dict[str, str], **meta) -> Card:
    card = Card(markets=dict(markets), **meta)
    for row in rates:
        card.rates.setdefault((row["market"], row["category"]), []).append(row)
    for rows in card.rates.values():
        rows.sort(key=lambda r: r["effective_from"], reverse=True)
    return card


def shipped() -> Card:
    rates, markets = parse(shipped_text("rate_card.csv"))
    return build(rates, markets, origin="shipped", source="hub/core/pricing/data/rate_card.csv")


def store(session: Session, rates: list[dict], markets: dict[str, str], *, workspace_id: str | None,
          source: str | None) -> RateCard:
    """Save a validated card as the instance's (``workspace_id=None``) or a workspace's override."""
    row = RateCard(workspace_id=workspace_id, rates=rates, markets=markets, source=(source or "")[:200] or None)
    session.add(row)
    session.flush()
    return row


def current(session: Session, workspace_id: str | None = None) -> Card:
    """The card that prices a workspace's messages: its override, else the instance's, else shipped."""
    for owner, origin in ((workspace_id, "workspace"), (None, "instance")):
        if origin == "workspace" and not workspace_id:
            continue
        found = session.scalars(select(RateCard).where(
            RateCard.workspace_id.is_(None) if owner is None else RateCard.workspace_id == owner)
            .order_by(RateCard.loaded_at.desc(), RateCard.id.desc()).limit(1)).first()
        if found is not None:
            return build(found.rates, found.markets, origin=origin, loaded_at=found.loaded_at, source=found.source)
    return shipped()
