"""docs/console.md cannot drift: its shell blocks run on a fresh data directory, as written, and
the first run they describe (init, then the demo) gives admin@localhost what the page says."""
from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

from werkzeug.security import check_password_hash

from tests.test_first_run import blocks, coexhub, fresh, rows  # noqa: F401  (fresh is a fixture)

DOC = Path(__file__).resolve().parents[2] / "docs" / "console.md"


def test_the_console_docs_steps_work_as_written(fresh):
    env, url = fresh
    data_dir = Path(env["COEXHUB_DATA_DIR"])
    first, second = blocks(DOC.read_text())
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", first], env=env, cwd=data_dir.parent,
                         capture_output=True, text=True, timeout=180, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    password = (data_dir / "admin.password").read_text().strip()
    assert ran.stdout.strip().endswith(password) and len(password) >= 16
    assert f"password saved in {data_dir / 'admin.password'}" in ran.stdout
    assert stat.S_IMODE((data_dir / "admin.password").stat().st_mode) == 0o600
    [(hashed, admin)] = rows(url, "select password_hash, instance_admin from users where email = 'admin@localhost'")
    assert check_password_hash(hashed, password) and admin
    assert rows(url, "select w.name, m.role from memberships m join workspaces w on w.id = m.workspace_id "
                     "join users u on u.id = m.user_id where u.email = 'admin@localhost'") == [("Default", "owner")]

    again = coexhub(env, "init")
    assert again.returncode == 0 and "console user admin@localhost exists already" in again.stdout
    assert (data_dir / "admin.password").read_text().strip() == password  # unchanged

    demo = coexhub(env, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "console: admin@localhost is an owner of 'Demo shop'" in demo.stdout
    roles = rows(url, "select w.name, m.role from memberships m join workspaces w on w.id = m.workspace_id "
                      "join users u on u.id = m.user_id where u.email = 'admin@localhost' order by w.name")
    assert roles == [("Default", "owner"), ("Demo shop", "owner")]

    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", second], env=env, cwd=data_dir.parent,
                         capture_output=True, text=True, timeout=180, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert rows(url, "select w.name, m.role from memberships m join workspaces w on w.id = m.workspace_id "
                     "join users u on u.id = m.user_id where u.email = 'maya@example.com'") == [("Default", "agent")]
    [(maya,)] = rows(url, "select password_hash from users where email = 'maya@example.com'")
    assert check_password_hash(maya, "a long password for Maya")
    [(ops,)] = rows(url, "select instance_admin from users where email = 'ops@example.com'")
    assert ops
    printed = re.findall(r"password \(shown once\): (\S+)", ran.stdout)
    assert len(printed) == 2 and not (data_dir / "admin.password").exists()
    [(hashed,)] = rows(url, "select password_hash from users where email = 'admin@localhost'")
    assert check_password_hash(hashed, printed[1]) and not check_password_hash(hashed, password)
