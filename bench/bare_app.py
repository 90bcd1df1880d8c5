"""The baseline: a minimal Flask app that verifies an HMAC-SHA256 header and parses JSON.

``POST /webhooks/whatsapp`` checks ``X-Hub-Signature-256: sha256=<hex>`` (constant time) against
``BENCH_APP_SECRET`` on the raw body, parses the JSON and answers 200. Nothing is stored:
this is what a webhook receiver costs under gunicorn before doing any work.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os

from flask import Flask, jsonify, request

SECRET = os.environ.get("BENCH_APP_SECRET", "bench-app-secret").encode()
app = Flask("bare")


@app.post("/webhooks/whatsapp")
def receive():
    body = request.get_data(cache=False)
    given = request.headers.get("X-Hub-Signature-256", "")
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        return jsonify(error="bad_signature"), 401
    try:
        json.loads(body)
    except ValueError:
        return jsonify(error="malformed_body"), 400
    return jsonify(ok=True)
