"""ASGI entry point, the production way to serve the hub:
``gunicorn -k uvicorn_worker.UvicornWorker -w 4 'hub.asgi:app'``.

The webhook POST routes are served on the event loop (``hub.api.fast_webhooks``); everything
else by the Flask app (``hub.wsgi``'s, which ``coexhub serve`` and WSGI servers still run).
"""
from hub.api.fast_webhooks import WebhookApp
from hub.app import create_app

app = WebhookApp(create_app())
