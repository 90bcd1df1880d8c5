"""A Graph API (WhatsApp Cloud API) simulator for tests, demos and load runs.

``GraphSimulator`` keeps numbers, templates, 24-hour windows and onboarding state, serves a Flask
app at ``sim.app`` (usable through ``httpx.WSGITransport`` or live via ``sim.serve()``) and
delivers signed webhooks to the hub (``sim.hub_url`` or ``sim.hub_client``). It enforces what
Meta enforces: bearer tokens (190), per-number throughput (130429), the customer service window
(131047), template existence/parameters/status (132001/132000/132015/132016) and, when set
(``set_marketing_limit``), the per-user marketing limit (a ``failed`` status with 131049) and,
when set (``set_portfolio_limit``), the business portfolio's messaging limit (131048). It
records mark-as-read calls (``read_marks``) so tests can assert that none happened.

Statuses of accepted sends (sent, delivered, read — or failed for recipients set up with
``fail_delivery_to``) queue up until ``flush_statuses()`` in tests; with ``live_statuses=True``
(``coexhub simulator`` and ``coexhub up``) they are posted by themselves after short delays.
A control API under ``/_sim`` (``hub.testing.sim_control``) adds numbers and signup codes and
plays customers, the owner's phone and contact syncs over HTTP.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from werkzeug.serving import make_server

from hub.testing.graph_errors import ERRORS, GraphError  # noqa: F401  (re-exported)
from hub.testing.simulator.common import (  # noqa: F401  (re-exported)
    ERROR_DOCS,
    SEND_TYPES,
    STATUS_DELAYS,
    SYNC_TYPES,
    WINDOW_SECONDS,
    log,
)
from hub.testing.simulator.graph_app import AppMixin, KeepAliveHandler
from hub.testing.simulator.portfolio import PortfolioMixin
from hub.testing.simulator.sending import SendingMixin
from hub.testing.simulator.state import StateMixin
from hub.testing.simulator.users import UsersMixin


class GraphSimulator(StateMixin, UsersMixin, SendingMixin, PortfolioMixin, AppMixin):
    """The simulated Graph API: state set-up (``state``), users and webhooks (``users``), the send
    endpoint (``sending``), portfolio limits (``portfolio``) and the Flask app (``graph_app``)."""

    def __init__(self, *, hub_url: str | None = None, hub_client=None,
                 app_secret: str = "test-app-secret", app_id: str = "1234567890",
                 clock: Callable[[], float] = time.time, seed: int | None = None,
                 live_statuses: bool = False, status_delays: tuple[float, float, float] = STATUS_DELAYS):
        self.hub_url, self.hub_client = hub_url, hub_client
        self.live_statuses, self.status_delays = live_statuses, status_delays
        self.app_secret, self.app_id, self.clock = app_secret, app_id, clock
        self.random = random.Random(seed)
        self.lock = threading.RLock()
        self.numbers: dict[str, dict] = {}
        self.templates: dict[str, list[dict]] = {}
        self.windows: dict[tuple[str, str], float] = {}
        self.requests: list[dict] = []
        self.calls: list[tuple[str, str, Any]] = []
        self.pending_statuses: list[dict] = []
        self.subscribed: set[str] = set()
        self.sync_requests: dict[tuple[str, str], str] = {}
        self.signup_codes: dict[str, tuple[str, str, str]] = {}
        self.used_codes: set[str] = set()
        self.delivery_failures: dict[str, int] = {}
        self.user_ids: dict[str, str] = {}  # phone digits -> the user's BSUID, once seen
        self.usernames: dict[str, str] = {}  # a user's key (BSUID or phone digits) -> username
        self.recipient_errors: dict[str, tuple[int, int]] = {}
        self._faults: deque[dict] = deque()
        self._send_times: dict[str, deque] = {}
        self.marketing_limit: dict | None = None  # {"max": K, "window_seconds": W}: Meta's per-user limit
        self._marketing_received: dict[str, deque] = {}
        self.portfolios: dict[str, str] = {}  # waba_id -> business portfolio id
        self.portfolio_limits: dict[str, int] = {}  # portfolio id -> tier (absent: unlimited)
        self._portfolio_reach: dict[str, dict[str, float]] = {}  # portfolio -> user -> last reached
        self._server = self._thread = None
        self.app = self._build_app()

    # --- serving -------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Run the app in a background thread (threaded werkzeug server); returns the base URL."""
        self._server = make_server(host, port, self.wsgi, threaded=True, request_handler=KeepAliveHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="graph-simulator")
        self._thread.start()
        self.base_url = f"http://{host}:{self._server.server_port}"
        return self.base_url

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None


DEMO = {"waba_id": "102290129340398", "phone_number_id": "106540352242922",
        "display": "15550783881", "token": "sim-token"}


def seed_demo_state(sim: GraphSimulator) -> dict:
    """Demo WABA, Coexistence number, three templates and the signup code ``demo-code``."""
    sim.add_number(DEMO["phone_number_id"], DEMO["waba_id"], DEMO["token"], DEMO["display"])
    sim.add_template(DEMO["waba_id"], "hello_world", body_params=0)
    sim.add_template(DEMO["waba_id"], "order_update", body_params=2, buttons=["Track", "Stop"])
    sim.add_template(DEMO["waba_id"], "spring_sale", category="MARKETING", body_params=1)
    sim.add_signup_code("demo-code", DEMO["waba_id"], DEMO["phone_number_id"], DEMO["token"])
    return DEMO


def run(host: str = "127.0.0.1", port: int = 8765, hub_url: str | None = None,
        app_secret: str = "test-app-secret", seed_demo: bool = True, app_id: str = "1234567890") -> None:
    """Serve the simulator in the foreground (for ``coexhub simulator``); statuses are live."""
    sim = GraphSimulator(hub_url=hub_url, app_secret=app_secret, app_id=app_id, live_statuses=True)
    if seed_demo:
        seed_demo_state(sim)
        print(f"demo: waba={DEMO['waba_id']} phone_number_id={DEMO['phone_number_id']} "
              f"token={DEMO['token']} signup code=demo-code (single use)", flush=True)
    server = make_server(host, port, sim.wsgi, threaded=True, request_handler=KeepAliveHandler)
    base = f"http://{host}:{server.server_port}"
    print(f"Graph simulator on {base} (webhooks -> {hub_url}); control API: {base}/_sim, "
          f"or `coexhub simulator --help`", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    import argparse
    p = argparse.ArgumentParser(prog="coexhub-simulator", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--hub-url", default=None)
    p.add_argument("--app-secret", default="test-app-secret")
    p.add_argument("--no-demo", action="store_true")
    a = p.parse_args(argv)
    run(a.host, a.port, a.hub_url, a.app_secret, seed_demo=not a.no_demo)


if __name__ == "__main__":
    main()
