"""Settings, encryption at rest with key rotation, migrations matching the models, the CLI."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet

from hub.config import ConfigError, Settings
from hub.core import crypto
from hub.core.models import Base


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="COEXHUB_SECRET_KEY"):
        Settings.from_env({"COEXHUB_ENV": "production", "COEXHUB_DATA_DIR": str(tmp_path)})
    assert not (tmp_path / "secret.key").exists()


def test_development_generates_and_keeps_secrets(tmp_path):
    env = {"COEXHUB_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    assert first.generated == ("secret.key", "admin.token")
    assert first.database_url == f"sqlite:///{tmp_path / 'hub.db'}" and first.embedded_redis
    again = Settings.from_env(env)
    assert (again.secret_keys, again.admin_token, again.generated) == (first.secret_keys, first.admin_token, ())


def test_settings_read_the_documented_variables(tmp_path):
    s = Settings.from_env({"COEXHUB_DATA_DIR": str(tmp_path), "COEXHUB_SECRET_KEY": "a, b",
                           "COEXHUB_ADMIN_TOKEN": "t", "COEXHUB_PLUGINS": "shopify, stripe",
                           "COEXHUB_GRAPH_URL": "http://127.0.0.1:9/", "COEXHUB_OUTBOUND_ALLOW_PRIVATE": "true",
                           "COEXHUB_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert s.secret_keys == ("a", "b") and s.plugins == ("shopify", "stripe")
    assert s.graph_url == "http://127.0.0.1:9" and s.outbound_allow_private and not s.embedded_redis
    assert s.graph_version == "v25.0" and s.public_url == "http://localhost:8000"


def test_key_rotation_old_key_decrypts_new_key_encrypts(coexhub_runtime):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    try:
        crypto.configure([old])
        stored = crypto.encrypt("EAAG-token")
        crypto.configure([new, old])
        assert crypto.decrypt(stored) == "EAAG-token"
        rotated = crypto.rotate(stored)
        crypto.configure([new])
        assert crypto.decrypt(rotated) == "EAAG-token"
        with pytest.raises(RuntimeError, match="cannot decrypt"):
            crypto.decrypt(stored)
    finally:
        crypto.configure(coexhub_runtime.settings.secret_keys)


def test_migrations_match_the_models(coexhub_runtime):
    with coexhub_runtime.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == []


def test_init_migrates_and_creates_the_first_workspace_once(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hub.cli import cli
    from hub.core import runtime as runtime_module
    from hub.core.runtime import Runtime, install

    monkeypatch.setenv("COEXHUB_DATA_DIR", str(tmp_path))
    previous = runtime_module._current
    rt = install(Runtime(Settings.from_env()))
    try:
        first = CliRunner().invoke(cli, ["init", "--workspace", "Shop"])
        assert first.exit_code == 0, first.output
        assert "API key (shown once): chk_" in first.output and "admin token" in first.output
        second = CliRunner().invoke(cli, ["init"])
        assert second.exit_code == 0 and "workspaces exist already" in second.output
    finally:
        rt.close()
        install(previous)
        crypto.configure(previous.settings.secret_keys)  # the keyring is process-wide


def test_demo_plays_a_full_coexistence_flow(coexhub_runtime):
    from hub.demo import run_demo

    lines = []
    before = coexhub_runtime.settings
    result = run_demo(coexhub_runtime, echo=lines.append)
    assert coexhub_runtime.settings is before  # the demo's simulator settings do not leak
    origins = [(m["origin"], m["status"]) for m in result["thread"]]
    assert origins == [("customer", "received"), ("app_echo", "sent"), ("api", "read")]
    assert result["send"]["status"] == "sent"
    assert {c["source"] for c in result["contacts"]} == {"customer", "app_sync"}
    assert any("echo-aware hold" in line for line in lines)
    assert result["recovery"]["status"] == "sent" and result["recovery"]["template_name"] == "abandoned_cart"


def test_a_failed_job_does_not_block_its_job_id(coexhub_runtime):
    from rq import SimpleWorker

    queues = coexhub_runtime.queues
    queues["outbound"].empty()
    assert queues.enqueue("outbound", "builtins.int", "not a number", job_id="blocker-1")
    assert not queues.enqueue("outbound", "builtins.int", "1", job_id="blocker-1")  # still waiting
    SimpleWorker([queues["outbound"]], connection=coexhub_runtime.redis).work(burst=True, logging_level="ERROR")
    assert queues["outbound"].failed_job_registry.count >= 1
    assert queues.enqueue("outbound", "builtins.int", "2", job_id="blocker-1")  # the failed one is replaced
    assert queues["outbound"].count == 1
    queues["outbound"].empty()
