"""The hub with ``latency_plugin`` registered: the web app for gunicorn, and its workers.

    gunicorn -k uvicorn_worker.UvicornWorker --pythonpath bench 'latency_app:asgi_app'  # as hub.asgi
    gunicorn -k gthread --pythonpath bench 'latency_app:app'    # the Flask app alone
    python bench/latency_app.py worker [--queue send]    # = coexhub worker --simple, plus the plugin

Plugins load from entry points only, so the benchmark's reply connector reaches the worker
processes through this module; everything else is ``coexhub worker --simple`` (``workers.serve``).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import latency_plugin  # noqa: E402

from hub.config import Settings  # noqa: E402
from hub.core.plugins.manager import Plugins  # noqa: E402
from hub.core.runtime import Runtime, install  # noqa: E402


def runtime() -> Runtime:
    settings = Settings.from_env()
    return install(Runtime(settings, plugins=Plugins(settings.plugins, extra=[latency_plugin])))


def _worker(argv: list[str]) -> None:
    from hub.core.logs import configure
    from hub.core.workers import serve

    configure(verbose=False)
    queues = [argv[i + 1] for i, a in enumerate(argv) if a == "--queue"]
    try:
        serve(runtime(), queues or None, fork=False)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        _worker(sys.argv[2:])
    else:
        sys.exit("usage: latency_app.py worker [--queue NAME]…")
else:
    from hub.api.fast_webhooks import WebhookApp
    from hub.app import create_app

    app = create_app(runtime=runtime())  # the Flask app alone (``--web gthread``)
    asgi_app = WebhookApp(app, threads=int(os.environ.get("COEXHUB_WEB_THREADS") or 32))  # as hub.asgi
    asgi_app.rt.settle()
