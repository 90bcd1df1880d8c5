"""Browser tests: the console in Debian's Chromium driven by Playwright for Python.

``live_hub`` serves this test's app on a loopback port as production does (``hub.asgi`` under
uvicorn: the console and its event stream go through a2wsgi); ``browser_page`` is a fresh
Chromium page (``/usr/bin/chromium``, or ``COEXHUB_CHROMIUM``). Without Chromium or
Playwright these tests are skipped locally; CI installs both (``.ci/run``) and sets
``COEXHUB_REQUIRE_BROWSER=1``, which turns the skip into a failure.
``shot(page, name)`` saves ``docs/screenshots/<name>.png`` (the README shows them).
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _chromium() -> str | None:
    return os.environ.get("COEXHUB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable(reason: str):
    if os.environ.get("COEXHUB_REQUIRE_BROWSER"):
        pytest.fail(f"browser tests required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_browser():
    executable = _chromium()
    if executable is None:
        _unavailable("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)  # as patient as the pages' own waits on a loaded CI machine
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


class LiveHub:
    """The app as production serves it (``hub.asgi``: uvicorn, webhooks on the event loop, the
    console and API through a2wsgi's thread pool) on a loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        from hub.api.fast_webhooks import WebhookApp

        self.server = uvicorn.Server(uvicorn.Config(WebhookApp(app, threads=16), host="127.0.0.1", port=0,
                                                    log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_hub(app):
    """This test's app on a loopback port: ``live_hub.url``."""
    hub = LiveHub(app)
    yield hub
    hub.close()


@pytest.fixture
def browser_page(chromium_browser):
    """A fresh browser context and page (phone-sized with ``browser_page.set_viewport_size``)."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def sign_in(client, live_hub):
    """``sign_in(page, workspace, role="owner")``: a new console user, signed in through the form."""
    def _sign_in(page, workspace, role: str = "owner", **kwargs):
        person = client.console(workspace, role=role, **kwargs)
        page.goto(f"{live_hub.url}/login")
        page.get_by_label("Email").fill(person.email)
        page.get_by_label("Password").fill(person.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_hub.url}/")
        return person
    return _sign_in


def shot(page, name: str) -> Path:
    """Save a screenshot of the page under docs/screenshots/ (for the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
