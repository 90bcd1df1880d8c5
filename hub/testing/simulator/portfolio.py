"""The business portfolio's messaging limit as the simulated Graph API enforces it: unique users
reached by templates outside the service window in a rolling 24 h, shared by the portfolio's
numbers, refused beyond the tier with 131048 (served as ``whatsapp_business_manager_messaging_limit``)."""
from __future__ import annotations

from hub.testing.graph_errors import GraphError
from hub.testing.simulator.common import WINDOW_SECONDS, _key

TIER_NAMES = {250: "TIER_250", 2000: "TIER_2K", 10000: "TIER_10K", 100000: "TIER_100K"}


class PortfolioMixin:
    """``GraphSimulator``'s portfolios (``portfolios``, ``portfolio_limits`` and ``_portfolio_reach``
    are made in its ``__init__``)."""

    def portfolio_of(self, waba_id: str) -> str:
        """The business portfolio owning ``waba_id`` (by default one per WABA)."""
        return self.portfolios.get(str(waba_id)) or "9" + str(waba_id)[-14:]

    def set_portfolio_limit(self, waba_id: str, limit: int | None, *, portfolio_id: str | None = None) -> str:
        """The messaging limit of the portfolio owning ``waba_id`` (``None`` or -1: unlimited);
        ``portfolio_id`` moves the WABA into that portfolio first. Returns the portfolio id."""
        with self.lock:
            if portfolio_id:
                self.portfolios[str(waba_id)] = str(portfolio_id)
            pid = self.portfolio_of(waba_id)
            if limit is None or int(limit) < 0:
                self.portfolio_limits.pop(pid, None)
            else:
                self.portfolio_limits[pid] = int(limit)
            return pid

    def portfolio_tier(self, waba_id: str) -> str:
        limit = self.portfolio_limits.get(self.portfolio_of(waba_id))
        return "TIER_UNLIMITED" if limit is None else TIER_NAMES.get(limit, str(limit))

    def _reach(self, number: dict, to: str) -> None:
        """A template outside the window counts its user for the portfolio (unique, rolling
        24 h); past the limit Meta refuses it (131048)."""
        if self.window_open(number["id"], to):
            return
        with self.lock:
            pid = self.portfolio_of(number["waba_id"])
            limit, now = self.portfolio_limits.get(pid), self.clock()
            reached = self._portfolio_reach.setdefault(pid, {})
            for user in [u for u, at in reached.items() if at <= now - WINDOW_SECONDS]:
                del reached[user]
            if limit is not None and _key(to) not in reached and len(reached) >= limit:
                raise GraphError(131048, 400)
            reached[_key(to)] = now
