"""ASGI entry point, the production way to serve the hub:
``gunicorn -k uvicorn_worker.UvicornWorker -w 4 'hub.asgi:app'``.

The webhook POST routes are served on the event loop (``hub.api.fast_webhooks``); everything
else by the Flask app (the one ``hub.wsgi``, ``coexhub serve`` and WSGI servers run) in a pool
of ``COEXHUB_WEB_THREADS`` threads per worker (default 32; an open console inbox holds one).
"""
import os

from hub.api.fast_webhooks import WebhookApp
from hub.app import create_app

app = WebhookApp(create_app(), threads=int(os.environ.get("COEXHUB_WEB_THREADS") or 32))
app.rt.settle()  # plugins loaded and the heap frozen before the first request
