import pytest

from tests import acme


def _not_installed(name: str, module) -> list:
    """``module`` unless the venv already registers it under ``name`` (an entry point added in a
    branch is visible only after the editable install is redone; pluggy refuses it twice)."""
    from importlib.metadata import entry_points

    return [] if any(ep.name == name for ep in entry_points(group="coexhub")) else [module]


@pytest.fixture(scope="session")
def coexhub_extra_plugins():
    import connectors.stripe

    return [acme, *_not_installed("stripe", connectors.stripe)]


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
