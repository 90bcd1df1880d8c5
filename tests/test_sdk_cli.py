"""`coexhub connectors` and `coexhub new-connector`: the generated skeleton installs, is discovered
through its entry point, and passes its own tests as written."""
import json
import os
import re
import subprocess
import sys

from tests.test_sdk_examples import isolated_env, redis_servers_under, run_pytest


def test_connectors_lists_topics_and_config_fields(runner):
    result = runner.invoke(["connectors"])
    assert result.exit_code == 0, result.output
    assert "acme  Acme Store  (tests.acme)" in result.output
    assert "  topics: cart.updated, explode, order.created, order.paid" in result.output
    assert "    webhook_secret (string, required, secret)" in result.output
    assert "    delay_minutes (integer, default 60)" in result.output
    assert "shopify  Shopify" in result.output


def test_connectors_json(runner):
    result = runner.invoke(["connectors", "--json"])
    assert result.exit_code == 0, result.output
    found = {c["name"]: c for c in json.loads(result.output)}
    assert {"acme", "acme-poll", "shopify", "woocommerce"} <= set(found)
    acme = found["acme"]
    assert acme["topics"] == ["cart.updated", "explode", "order.created", "order.paid"]
    assert acme["config_schema"]["required"] == ["webhook_secret"]
    assert acme["config_schema"]["properties"]["api_token"]["x-secret"] is True
    assert found["acme-poll"]["poll_every"] == 60
    assert "message.received" in found["woocommerce"]["whatsapp_events"]


def test_new_connector_refuses_a_bad_name_and_a_non_empty_directory(runner, tmp_path):
    assert runner.invoke(["new-connector", "My Shop", "--dir", str(tmp_path / "x")]).exit_code == 2
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    result = runner.invoke(["new-connector", "shop", "--dir", str(tmp_path / "taken")])
    assert result.exit_code == 1 and "not empty" in result.output
    assert (tmp_path / "taken" / "file").read_text() == "mine"


def test_a_generated_connector_installs_is_discovered_and_passes_its_own_tests(runner, tmp_path):
    package = tmp_path / "coexhub-bookshop"
    result = runner.invoke(["new-connector", "bookshop", "--dir", str(package)])
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()) == [
        "README.md", "coexhub_bookshop/__init__.py", "pyproject.toml", "tests/conftest.py",
        "tests/test_coexhub_bookshop.py"]
    assert 'bookshop = "coexhub_bookshop"' in (package / "pyproject.toml").read_text()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True, timeout=120)
    listed = subprocess.run([sys.executable, "-m", "hub.cli", "connectors", "--json"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path,
                            env={**isolated_env(tmp_path, [site]), "COEXHUB_DATA_DIR": str(tmp_path / "data")})
    assert listed.returncode == 0, listed.stderr
    [entry] = [c for c in json.loads(listed.stdout) if c["name"] == "bookshop"]
    assert entry["topics"] == ["order.cancelled", "order.created"] and entry["module"] == "coexhub_bookshop"
    done = run_pytest(package / "tests", tmp_path, [site])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert re.search(r"\b\d+ passed", done.stdout) and not re.search(r"failed|error|skipped", done.stdout)
    assert redis_servers_under(tmp_path) == []
    assert not os.path.exists(package / "tests" / "__pycache__")
