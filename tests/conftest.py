import pytest

from tests import acme
from tests.connectors import paylink_plugin


def extra_plugins() -> list:
    """The plugins the tests register besides the installed ones: acme (a test connector) and
    linkpay (a test payment connector)."""
    return [acme, paylink_plugin]


@pytest.fixture(scope="session")
def coexhub_extra_plugins():
    return extra_plugins()


@pytest.fixture
def acme_installation(client, workspace):
    secrets = {"webhook_secret": "acme-secret", "api_token": "acme-token"}
    inst = client.install(workspace, "acme", {**secrets, "default_country": "IN"})
    return inst, secrets


@pytest.fixture
def connection(client, workspace):
    """A Coexistence connection row for the workspace (the WhatsApp API arrives with the core issue)."""
    import secrets as _s

    from hub.core.models import Connection

    with client.rt.db.session() as s:
        conn = Connection(workspace_id=workspace.id, waba_id="1029384756", phone_number_id=_s.token_hex(6),
                          display_phone_number="15550001111", access_token="EAAG-test-token")
        s.add(conn)
    return conn


from tests.faults.report import pytest_runtest_logreport, pytest_terminal_summary  # noqa: E402,F401  (counts table)
