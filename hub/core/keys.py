"""Key rotation: re-encrypt every secret column under the first key of ``COEXHUB_SECRET_KEY``.

The procedure (``docs/operations.md``): generate a key (``coexhub rotate-key --generate``),
put it first in ``COEXHUB_SECRET_KEY`` (``NEW,OLD``) and restart the processes, run
``coexhub rotate-key`` (every encrypted value is rewritten with ``MultiFernet.rotate`` in one
transaction, then checked to decrypt under the first key alone), then drop the old key.

With no ``COEXHUB_SECRET_KEY`` (embedded default, key in ``$DATA_DIR/secret.key``) the command
does all of it: a new key is written to ``secret.key.next`` first, the rows are rotated, then
``secret.key.next`` replaces ``secret.key``. A run interrupted in between is finished by the
next run (it finds ``secret.key.next`` and uses it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Column, Table, Text, select, type_coerce, update

from hub.core.crypto import EncryptedJSON, EncryptedText
from hub.core.models import Base

NEXT_SUFFIX = ".next"


class RotationError(RuntimeError):
    """A stored secret cannot be decrypted with the keys given (nothing was changed)."""


@dataclass
class Rotated:
    """What ``rotate_secrets`` did: values rewritten per ``table.column``."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def generate_key() -> str:
    """A fresh Fernet key (urlsafe base64 text)."""
    return Fernet.generate_key().decode()


def keyring(keys: list[str] | tuple[str, ...]) -> MultiFernet:
    """First key encrypts, all decrypt (as ``hub.core.crypto``)."""
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypted_columns() -> list[tuple[Table, Column]]:
    """Every column of the model stored encrypted (found from the column types, so a new
    encrypted column is rotated without touching this module)."""
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, (EncryptedText, EncryptedJSON))
    ]


def rotate_secrets(db, keys: list[str] | tuple[str, ...]) -> Rotated:
    """Re-encrypt every stored secret under ``keys[0]`` in one transaction, then check each
    decrypts with ``keys[0]`` alone. Raises ``RotationError`` (and changes nothing) when a
    value decrypts with none of ``keys``."""
    ring, first, done = keyring(keys), keyring(keys[:1]), Rotated()
    with db.session() as session:
        for table, column in encrypted_columns():
            pk = list(table.primary_key.columns)[0]
            raw = type_coerce(column, Text)  # the stored token, not the TypeDecorator's plaintext
            rows = session.execute(select(pk, raw).where(column.is_not(None))).all()
            for row_id, token in rows:
                try:
                    new = ring.rotate(token.encode()).decode()
                    first.decrypt(new.encode())
                except InvalidToken as exc:
                    raise RotationError(
                        f"{table.name}.{column.name} of {row_id} decrypts with none of the "
                        "keys given: is COEXHUB_SECRET_KEY complete?"
                    ) from exc
                session.execute(
                    update(table).where(pk == row_id).values({column.name: type_coerce(new, Text)})
                )
            done.counts[f"{table.name}.{column.name}"] = len(rows)
    return done


def check_secrets(db, key: str) -> int:
    """How many stored secrets decrypt with ``key`` alone; raises ``RotationError`` on the first
    that does not (run before dropping the old keys)."""
    ring, checked = keyring([key]), 0
    with db.engine.connect() as conn:
        for table, column in encrypted_columns():
            pk = list(table.primary_key.columns)[0]
            for row_id, token in conn.execute(
                select(pk, type_coerce(column, Text)).where(column.is_not(None))
            ):
                try:
                    ring.decrypt(token.encode())
                except InvalidToken as exc:
                    raise RotationError(
                        f"{table.name}.{column.name} of {row_id} is not encrypted under the "
                        "first key: run coexhub rotate-key before dropping the old key"
                    ) from exc
                checked += 1
    return checked


def rotate_key_file(db, key_file: Path) -> tuple[Rotated, str]:
    """Rotate the embedded default's key file: returns what was rotated and the new key."""
    pending = key_file.with_name(key_file.name + NEXT_SUFFIX)
    if pending.exists():  # an earlier run stopped between its commit and the rename
        new = pending.read_text().strip()
    else:
        new = generate_key()
        _write_private(pending, new)
    old = key_file.read_text().strip()
    rotated = rotate_secrets(db, [new, old])
    os.replace(pending, key_file)
    return rotated, new


def _write_private(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())


def rotate_command(rt, *, check: bool = False) -> str:
    """``coexhub rotate-key``: rotate (or only ``check``) the runtime's secrets; a report line."""
    settings = rt.settings
    if check:
        return f"{check_secrets(rt.db, settings.secret_keys[0])} secrets decrypt with the first key alone"
    key_file = settings.data_dir / "secret.key"
    if os.environ.get("COEXHUB_SECRET_KEY", "").strip() or not _holds(key_file, settings.secret_keys):
        done = rotate_secrets(rt.db, settings.secret_keys)
        after = "every secret decrypts with the first key alone: the other keys can be dropped"
    else:  # the embedded default: the key lives in $DATA_DIR/secret.key
        done, _ = rotate_key_file(rt.db, key_file)
        after = f"the new key is in {settings.data_dir / 'secret.key'}: restart the hub's processes"
    detail = ", ".join(f"{name}: {n}" for name, n in done.counts.items())
    return f"re-encrypted {done.total} secrets ({detail}); {after}"


def _holds(key_file: Path, keys: tuple[str, ...]) -> bool:
    """Whether the settings' only key is the one in ``key_file`` (the embedded default)."""
    return key_file.exists() and keys == (key_file.read_text().strip(),)
