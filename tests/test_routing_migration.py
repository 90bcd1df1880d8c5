"""Migration 0004 fills the per-number windows and holds from what a 0002 database holds."""
import datetime as dt
import os

from alembic import command
from sqlalchemy import select, text

from hub.core.db import Database
from hub.core.models import ContactWindow
from hub.testing.plugin import _fresh_postgres


def _database(tmp_path):
    url = os.environ.get("COEXHUB_TEST_DATABASE_URL")
    if url:
        url, drop = _fresh_postgres(url)
        return Database(url), drop
    return Database(f"sqlite:///{tmp_path / 'old.db'}"), lambda: None


def test_upgrade_fills_windows_from_messages_and_keeps_a_running_hold(tmp_path):
    db, drop = _database(tmp_path)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    try:
        db.migrate("0002")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO workspaces (id, name, settings, created_at) VALUES ('ws_m', 'm', '{}', :t)"),
                         {"t": now})
            for con in ("con_a", "con_b"):
                conn.execute(text(
                    "INSERT INTO connections (id, workspace_id, waba_id, phone_number_id, access_token, mode, "
                    "messages_per_second, status, history_opt_in, history_status, quality, created_at, updated_at) "
                    "VALUES (:id, 'ws_m', 'w', :id, 'x', 'coexistence', 20, 'active', false, '{}', '{}', :t, :t)"),
                    {"id": con, "t": now})
            conn.execute(text(
                "INSERT INTO contacts (id, workspace_id, wa_id, source, tags, attributes, opted_out, "
                "marketing_opted_out, last_inbound_at, hold_until, created_at, updated_at) VALUES "
                "(1, 'ws_m', '1415', 'customer', '[]', '{}', false, false, :last, :hold, :t, :t)"),
                {"last": now - dt.timedelta(minutes=5), "hold": now + dt.timedelta(minutes=25), "t": now})
            messages = [("in1", "con_a", "in", "customer", "text", now - dt.timedelta(hours=30)),
                        ("in2", "con_b", "in", "customer", "text", now - dt.timedelta(minutes=5)),
                        ("sys", "con_a", "in", "customer", "system", now - dt.timedelta(minutes=1)),
                        ("echo", "con_b", "out", "app_echo", "text", now - dt.timedelta(minutes=4)),
                        ("old_echo", "con_a", "out", "app_echo", "text", now - dt.timedelta(hours=2))]
            for wamid, con, direction, origin, kind, when in messages:
                conn.execute(text(
                    "INSERT INTO messages (workspace_id, connection_id, contact_id, wamid, direction, origin, type, "
                    "body, status, timestamp, created_at) VALUES ('ws_m', :con, 1, :wamid, :direction, :origin, "
                    ":kind, '{}', 'received', :when, :when)"),
                    {"con": con, "wamid": wamid, "direction": direction, "origin": origin, "kind": kind, "when": when})
        db.migrate("0004")
        with db.engine.connect() as conn:
            rows = conn.execute(select(ContactWindow.connection_id, ContactWindow.last_inbound_at,
                                       ContactWindow.hold_until).where(ContactWindow.contact_id == 1)
                                .order_by(ContactWindow.connection_id)).all()
            reasons = conn.execute(text("SELECT count(*) FROM sends WHERE connection_reason IS NOT NULL")).scalar()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("con_a", now - dt.timedelta(hours=30), None),  # a system notice does not open the window
            ("con_b", now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=25))]  # the hold of the last echo
        assert reasons == 0
        command.downgrade(db.alembic_config(), "0002")  # and back
        with db.engine.connect() as conn:
            assert "contact_windows" not in {r[0] for r in conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'table'" if db.is_sqlite else
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))}
    finally:
        db.dispose()
        drop()
