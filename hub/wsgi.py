"""WSGI entry point: the Flask app alone (``coexhub serve``, any WSGI server). Production runs
``hub.asgi`` (the webhook routes on an event loop in front of this app)."""
from hub.app import create_app

app = create_app()
