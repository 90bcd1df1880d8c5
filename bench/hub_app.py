"""WSGI module for the benchmark: the hub with ``bench_plugin`` registered.

``gunicorn --pythonpath bench 'hub_app:app'`` (Flask, WSGI) or ``gunicorn -k
uvicorn_worker.UvicornWorker --pythonpath bench 'hub_app:asgi'`` (as ``hub.asgi``); settings
come from ``COEXHUB_*`` as usual.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_plugin  # noqa: E402

from hub.api.fast_webhooks import WebhookApp  # noqa: E402
from hub.app import create_app  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.core.plugins.manager import Plugins  # noqa: E402
from hub.core.runtime import Runtime  # noqa: E402


def build():
    settings = Settings.from_env()
    return create_app(runtime=Runtime(settings, plugins=Plugins(settings.plugins, extra=[bench_plugin])))


app = build()
asgi = WebhookApp(app)  # as hub.asgi serves it
asgi.rt.settle()
