"""The plugin system: documented hooks, entry-point discovery, COEXHUB_PLUGINS, the contract."""
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub.core.connectors import Connector, Context, config_json_schema, normalize_phone, on_webhook
from hub.core.plugins import hookspecs
from tests import acme

ROOT = Path(__file__).resolve().parents[1]


def test_every_hookspec_is_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    specs = [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("coexhub_")]
    assert len(specs) == 5
    for name in specs:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert re.search(rf"^### `{name}\({re.escape(params)}\)`", docs, re.M), f"{name} is not documented"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


@pytest.fixture(scope="module")
def hello_installed(tmp_path_factory):
    """pip-install the example plugin into a scratch directory (the shared venv stays untouched)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "examples" / "coexhub-hello")], check=True)
    return target


def list_connectors(site: Path, **env) -> list[str]:
    code = "from hub.core.plugins.manager import Plugins; from hub.config import Settings; " \
           "print(','.join(sorted(Plugins(Settings.from_env().plugins).connectors)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(site), "COEXHUB_DATA_DIR": str(site / ".hub"),
                                 **env})
    return [c for c in result.stdout.strip().split(",") if c]


def test_a_pip_installed_plugin_shows_up_without_changing_the_hub(hello_installed):
    assert "hello" in list_connectors(hello_installed)
    assert "hello" not in list_connectors(hello_installed.parent)  # not installed there


def test_coexhub_plugins_limits_what_loads(hello_installed):
    assert list_connectors(hello_installed, COEXHUB_PLUGINS="hello") == ["hello"]
    assert "hello" not in list_connectors(hello_installed, COEXHUB_PLUGINS="something-else")


def test_connector_declarations_are_collected():
    assert acme.Acme._webhook_handlers["order.created"] == ["order_created"]
    assert acme.Acme().secret_fields() == {"webhook_secret", "api_token"}
    schema = config_json_schema(acme.AcmeConfig)
    assert schema["properties"]["webhook_secret"] == {"type": "string", "writeOnly": True, "x-secret": True}
    assert schema["properties"]["delay_minutes"] == {"type": "integer", "default": 60}
    assert schema["required"] == ["webhook_secret"]


def test_a_handler_returning_something_else_than_actions_is_an_error():
    class Broken(Connector):
        name = "broken"

        @on_webhook("x")
        def x(self, payload, ctx):
            return [{"send": "this"}]

    with pytest.raises(TypeError, match="not an action"):
        Broken().handle_webhook("x", {}, Context("ws", None, {}))
    assert Broken().handle_webhook("y", {}, Context("ws", None, {}))[0].reason == "no handler for topic 'y'"


@pytest.mark.parametrize("raw,region,expected", [
    ("090909 09090", "IN", "919090909090"), ("+1 (415) 555-2671", None, "14155552671"),
    ("0044 20 7946 0958", None, "442079460958"), ("14155552671", None, "14155552671"),
    ("12345", "US", None), ("not a phone", "IN", None)])
def test_phone_normalization(raw, region, expected):
    assert normalize_phone(raw, region) == expected


def test_verifiers_sign_what_they_verify():
    from hub.core.verifiers import HmacHeader, IncomingRequest, SharedToken, TimestampedHmac

    body = b'{"a": 1}'
    for verifier, secrets in ((HmacHeader("X-Sig", prefix="sha256="), {"webhook_secret": "k"}),
                              (HmacHeader("X-Sig", encoding="base64"), {"webhook_secret": "k"}),
                              (TimestampedHmac("Sig-Header"), {"signing_key": "k"}),
                              (SharedToken(header="X-Token"), {"token": "k"})):
        headers = verifier.sign(body, secrets)
        assert verifier.verify(IncomingRequest(headers, body), secrets)
        assert not verifier.verify(IncomingRequest(headers, body + b" "), secrets) or isinstance(verifier, SharedToken)
        assert not verifier.verify(IncomingRequest({}, body), secrets)
    old = TimestampedHmac("Sig").sign(body, {"signing_key": "k"}, timestamp=1_000_000)
    assert not TimestampedHmac("Sig").verify(IncomingRequest(old, body), {"signing_key": "k"})
