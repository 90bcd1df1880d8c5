"""``coexhub rotate-key``: every secret column re-encrypted under the new key, run as an operator
runs it (a subprocess on its own database), and the shell steps of docs/operations.md."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text, select, type_coerce

from hub.core import crypto, keys
from hub.core.db import Database
from hub.core.models import Connection, Installation, Subscription, Workspace

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {
    "access_token": "EAAG-secret-token",
    "installation": {"webhook_secret": "whsec-1", "api_token": "tok-2"},
    "subscription": "sub-signing-secret",
    "previous_subscription": "sub-previous-signing-secret",  # a rotation's overlap window
}


@pytest.fixture
def fresh_db(tmp_path, coexhub_settings):
    """A database of its own (rotation rewrites every row: the session's must stay as it is)."""
    server = os.environ.get("COEXHUB_TEST_DATABASE_URL")
    if server:
        from hub.testing.plugin import _fresh_postgres

        url, drop = _fresh_postgres(server)
    else:
        url, drop = f"sqlite:///{tmp_path / 'rotate.db'}", None
    db = Database(url)
    db.migrate()
    yield db
    db.dispose()
    if drop:
        drop()


def _seed(db: Database, key: str) -> None:
    """One row of each model with an encrypted column, encrypted under ``key``."""
    saved = crypto._keyring
    crypto.configure([key])
    try:
        with db.session() as s:
            ws = Workspace(name="rotation")
            s.add(ws)
            s.flush()
            s.add(
                Connection(
                    workspace_id=ws.id,
                    waba_id="1",
                    phone_number_id="rot-" + ws.id,
                    access_token=SECRETS["access_token"],
                )
            )
            s.add(Installation(workspace_id=ws.id, connector="acme", secrets=SECRETS["installation"]))
            s.add(
                Subscription(
                    workspace_id=ws.id, target_url="https://example.com/hook", secret=SECRETS["subscription"],
                    previous_secret=SECRETS["previous_subscription"],
                )
            )
    finally:
        crypto._keyring = saved


def _stored(db: Database) -> list[str]:
    """The raw tokens of every encrypted column (what is on disk)."""
    with db.engine.connect() as conn:
        return [
            token
            for table, column in keys.encrypted_columns()
            for token in conn.execute(select(type_coerce(column, Text)).where(column.is_not(None))).scalars()
        ]


def _plain(db: Database, key: str) -> list[str]:
    ring = Fernet(key.encode())
    return sorted(ring.decrypt(t.encode()).decode() for t in _stored(db))


def _cli(db: Database, data_dir: Path, *args: str, secret_key: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COEXHUB_")}
    env.update(
        COEXHUB_DATABASE_URL=db.url,
        COEXHUB_DATA_DIR=str(data_dir),
        COEXHUB_ADMIN_TOKEN="adm",
        PYTHONPATH=str(ROOT),
    )
    if secret_key is not None:
        env["COEXHUB_SECRET_KEY"] = secret_key
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "rotate-key", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rotate_key_reencrypts_every_secret_under_the_new_key(fresh_db, tmp_path):
    old, new = keys.generate_key(), keys.generate_key()
    _seed(fresh_db, old)
    before = _stored(fresh_db)
    expected = _plain(fresh_db, old)
    assert len(before) == len(keys.encrypted_columns()) == 4

    refused = _cli(fresh_db, tmp_path, "--check", secret_key=f"{new},{old}")
    assert refused.returncode != 0 and "not encrypted under the first key" in refused.stderr

    done = _cli(fresh_db, tmp_path, secret_key=f"{new},{old}")
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 4 secrets" in done.stdout

    after = _stored(fresh_db)
    assert set(after).isdisjoint(before)
    assert _plain(fresh_db, new) == expected  # the new key alone decrypts every value
    for token in after:
        with pytest.raises(InvalidToken):
            Fernet(old.encode()).decrypt(token.encode())
    checked = _cli(fresh_db, tmp_path, "--check", secret_key=new)
    assert checked.returncode == 0 and "4 secrets decrypt" in checked.stdout

    crypto_before = crypto._keyring
    crypto.configure([new])  # the hub's own columns read them back under the new key alone
    try:
        with fresh_db.session() as s:
            assert s.scalars(select(Connection.access_token)).one() == SECRETS["access_token"]
            assert s.scalars(select(Installation.secrets)).one() == SECRETS["installation"]
            assert s.scalars(select(Subscription.secret)).one() == SECRETS["subscription"]
    finally:
        crypto._keyring = crypto_before


def test_rotate_key_refuses_when_a_key_is_missing_and_changes_nothing(fresh_db, tmp_path):
    old, new, other = keys.generate_key(), keys.generate_key(), keys.generate_key()
    _seed(fresh_db, old)
    before = _stored(fresh_db)
    result = _cli(fresh_db, tmp_path, secret_key=f"{new},{other}")
    assert result.returncode != 0 and "decrypts with none of the keys" in result.stderr
    assert _stored(fresh_db) == before


def test_rotate_key_on_the_embedded_default_replaces_the_key_file(fresh_db, tmp_path):
    old = keys.generate_key()
    (tmp_path / "secret.key").write_text(old + "\n")
    _seed(fresh_db, old)
    expected = _plain(fresh_db, old)
    result = _cli(fresh_db, tmp_path, secret_key=None)
    assert result.returncode == 0, result.stderr
    new = (tmp_path / "secret.key").read_text().strip()
    assert new != old and not (tmp_path / "secret.key.next").exists()
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert _plain(fresh_db, new) == expected


def test_an_interrupted_file_rotation_is_finished_by_the_next_run(fresh_db, tmp_path):
    old, pending = keys.generate_key(), keys.generate_key()
    (tmp_path / "secret.key").write_text(old + "\n")
    _seed(fresh_db, old)
    expected = _plain(fresh_db, old)
    keys.rotate_secrets(fresh_db, [pending, old])  # committed, then the process died before the rename
    (tmp_path / "secret.key.next").write_text(pending + "\n")
    result = _cli(fresh_db, tmp_path, secret_key=None)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret.key").read_text().strip() == pending
    assert _plain(fresh_db, pending) == expected


def _doc_block(marker: str) -> str:
    """The ```sh block after ``marker`` in docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    found = re.search(re.escape(marker) + r".*?```sh\n(.*?)```", text, re.S)
    assert found, f"docs/operations.md has no sh block after {marker!r}"
    return found.group(1)


def test_the_key_rotation_steps_in_operations_md_work(fresh_db, tmp_path):
    old = keys.generate_key()
    _seed(fresh_db, old)
    expected = _plain(fresh_db, old)
    script = _doc_block("<!-- tested: key rotation -->")
    assert "coexhub rotate-key" in script
    out = tmp_path / "final.key"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COEXHUB_")}
    env.update(
        COEXHUB_DATABASE_URL=fresh_db.url,
        COEXHUB_DATA_DIR=str(tmp_path),
        COEXHUB_ADMIN_TOKEN="adm",
        COEXHUB_SECRET_KEY=old,
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + f'\nprintf %s "$COEXHUB_SECRET_KEY" > {out}\n'],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    final = out.read_text()
    assert final != old and "," not in final
    assert _plain(fresh_db, final) == expected
