"""Replicas of one database: heartbeat rows (for `/status` and diagnosis) and, on SQLite, the
file lock that keeps a second `monitor run` off the same database file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from monitor.store.tables import ReplicaRow


class DatabaseInUse(Exception):
    """Another `monitor run` holds the SQLite database; the message says what to do."""


class SqliteInstanceLock:
    """One `monitor run` per SQLite file: an exclusive lock on `<db>.lock`."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise DatabaseInUse(
                f"another `monitor run` ({holder}) already uses the SQLite database "
                f"{self.path.with_suffix('')}: SQLite is single-replica. Stop it first, or use "
                "PostgreSQL (MONITOR_DATABASE_URL=postgresql+psycopg://…) for several replicas."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def heartbeat(engine: Engine, name: str, *, version: str, now: datetime) -> None:
    """Record that replica `name` is alive (its row is made on the first beat)."""
    with Session(engine) as session, session.begin():
        row = session.get(ReplicaRow, name)
        if row is None:
            row = ReplicaRow(name=name, started_at=now, version=version)
        row.last_seen_at = now
        session.add(row)


def forget(engine: Engine, name: str) -> None:
    """Remove replica `name`'s row (at a clean shutdown)."""
    with Session(engine) as session, session.begin():
        row = session.get(ReplicaRow, name)
        if row is not None:
            session.delete(row)


__all__ = ["DatabaseInUse", "SqliteInstanceLock", "forget", "heartbeat"]
