"""docs/operations.md cannot drift: its backup steps run here, and the metrics and routes it
names exist. (Its key rotation steps run in tests/test_keys.py.)"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "operations.md").read_text()


def doc_block(marker: str) -> str:
    """The ```sh block after ``<!-- tested: marker -->``."""
    found = re.search(re.escape(f"<!-- tested: {marker} -->") + r"\s*```sh\n(.*?)```", DOC, re.DOTALL)
    assert found, f"docs/operations.md has no sh block marked {marker!r}"
    return found.group(1)


def run_block(marker: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", doc_block(marker)],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.skipif(not shutil.which("sqlite3"), reason="the sqlite3 command is not installed")
def test_the_sqlite_backup_steps_copy_a_live_database(tmp_path):
    data, backups = tmp_path / "data", tmp_path / "backups"
    data.mkdir(), backups.mkdir()
    live = sqlite3.connect(data / "hub.db")
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("CREATE TABLE inbound_events (id INTEGER PRIMARY KEY, body BLOB)")
    live.executemany("INSERT INTO inbound_events (body) VALUES (?)", [(b"x" * 100,)] * 50)
    live.commit()  # committed to the WAL, not yet checkpointed into hub.db: a plain copy would miss it
    try:
        result = run_block(
            "sqlite backup", {"COEXHUB_DATA_DIR": str(data), "BACKUP_DIR": str(backups)}, tmp_path
        )
    finally:
        live.close()
    assert "ok" in result.stdout
    copy = sqlite3.connect(backups / "hub.db")
    assert copy.execute("select count(*) from inbound_events").fetchone()[0] == 50
    copy.close()
    assert (backups / "hub.db").stat().st_mode & 0o077 == 0


@pytest.mark.skipif(
    not (os.environ.get("COEXHUB_TEST_DATABASE_URL") and shutil.which("pg_dump")),
    reason="runs on the PostgreSQL backend with pg_dump installed",
)
def test_the_postgres_backup_steps_dump_the_hub_database(coexhub_runtime, client, workspace, tmp_path):
    from sqlalchemy.engine import make_url

    url = make_url(coexhub_runtime.settings.database_url).set(drivername="postgresql")
    run_block("postgres backup", {"DATABASE_URL": url.render_as_string(hide_password=False)}, tmp_path)
    listing = subprocess.run(
        ["pg_restore", "--list", str(tmp_path / "coexhub.dump")], capture_output=True, text=True, check=True
    ).stdout
    assert "TABLE DATA public inbound_events" in listing and "TABLE DATA public sends" in listing


def test_the_metrics_the_docs_explain_are_served(client, workspace):
    client.get("/healthz")
    exposed = client.get("/metrics").get_data(as_text=True)
    documented = set(re.findall(r"^\| `(coexhub_[a-z_]+)`", DOC, re.MULTILINE))
    assert documented >= {"coexhub_ingest_total", "coexhub_jobs_total", "coexhub_queue_depth"}
    for name in documented:
        assert re.search(rf"^# TYPE ({name}|{name.removesuffix('_total')}) ", exposed, re.MULTILINE), name


def test_the_dead_letter_routes_the_docs_use_exist(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert len(re.findall(r"\$HUB/api/v1/", DOC)) >= 7
    for path in re.findall(r"\$HUB(/api/v1/[a-z/$A-Z_]+)", DOC):
        normalized = re.sub(r"\$ID", "{}", path.split("?")[0])
        pattern = "^" + re.escape(normalized).replace(r"\{\}", r"\{[a-z_]+\}") + "$"
        assert any(re.match(pattern, p) for p in paths), f"{path} is not an API route"
