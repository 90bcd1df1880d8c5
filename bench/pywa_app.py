"""pywa's Flask webhook handler, for comparison with the hub's ``POST /webhooks/whatsapp``.

No token and no callback URL, so pywa makes no network call at startup; it validates
``X-Hub-Signature-256`` with ``BENCH_APP_SECRET``, parses the update, builds a ``Message`` and
runs one handler that only counts.
"""
from __future__ import annotations

import os

from flask import Flask
from pywa import WhatsApp, types

app = Flask("pywa_bench")
wa = WhatsApp(phone_id=os.environ.get("BENCH_PHONE_NUMBER_ID", "106540352242922"), server=app,
              webhook_endpoint="/webhooks/whatsapp", verify_token="bench-verify-token",
              app_secret=os.environ.get("BENCH_APP_SECRET", "bench-app-secret"), validate_updates=True)
RECEIVED = {"messages": 0}


@wa.on_message()
def on_message(client: WhatsApp, msg: types.Message) -> None:
    RECEIVED["messages"] += 1
