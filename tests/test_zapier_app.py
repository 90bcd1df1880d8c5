"""The Zapier app (connectors/zapier/app, Node) against a live hub (issue 11, item 4).

The hub is served on a loopback port (werkzeug, in a thread) on this session's runtime, with a
workspace whose number is onboarded against the Graph simulator and a customer who wrote in;
then ``npm ci`` and ``npm test`` run the app's own tests (``zapier-platform-core``'s
``createAppTester``) with HUB_URL/API_KEY/CUSTOMER. The app and the hub cannot drift apart.
Needs Node 20 and the npm registry (CI has both); skipped with a reason where ``npm`` is absent.
"""
import os
import secrets
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

APP_DIR = Path(__file__).resolve().parents[1] / "connectors" / "zapier" / "app"
NPM = shutil.which("npm")


@pytest.fixture
def live_hub(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def npm(*args: str, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([NPM, *args], cwd=APP_DIR, env=env or os.environ.copy(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(NPM is None, reason="npm (Node 20) is not installed; CI runs this test with it")
def test_the_zapier_app_passes_its_tests_against_a_live_hub(live_hub, client, coexistence, simulator, run_jobs):
    customer = "1415557" + str(secrets.randbelow(10**4)).zfill(4)
    simulator.customer_message(coexistence.phone_number_id, customer, "hello from a Zap test")
    run_jobs()
    installed = npm("ci", "--no-audit", "--no-fund")
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    env = {**os.environ, "HUB_URL": live_hub, "API_KEY": coexistence.workspace.api_key, "CUSTOMER": customer}
    result = npm("test", env=env, timeout=120)
    report = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, report
    assert "# fail 0" in result.stdout and "# skipped 0" in result.stdout, report
    run_jobs()  # the sends the app queued leave nothing behind for later tests


def test_the_apps_trigger_list_is_the_event_catalogue():
    """events.json (the app's triggers) is regenerated whenever the catalogue changes."""
    from connectors.zapier import events

    assert events.main(["--check"]) == 0, "run: python -m connectors.zapier.events"
    names = [e["type"] for e in events.app_events()["events"]]
    assert {"message.received", "message.echoed", "contact.opted_out", "connection.inactivity_warning"} <= set(names)
