"""Embeddings by (model, text key): the `VectorCache` of the relevance models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.clock import utcnow
from monitor.store import db
from monitor.store.db import Engine, Session
from monitor.store.tables import TextVectorRow

Vector = npt.NDArray[np.float32]
_CHUNK = 500  # keys per IN (...): well under SQLite's variable limit


def _decode(raw: bytes, dim: int) -> Vector:
    vector = np.frombuffer(raw, dtype="<f4")
    return vector.astype(np.float32) if vector.shape == (dim,) else np.zeros(dim, np.float32)


def load(session: Session, model: str, keys: Sequence[str]) -> dict[str, Vector]:
    found: dict[str, Vector] = {}
    unique = list(dict.fromkeys(keys))
    table = TextVectorRow.__table__  # type: ignore[attr-defined]
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        rows = session.execute(
            select(table.c.key, table.c.dim, table.c.vector).where(
                table.c.model == model, table.c.key.in_(chunk)
            )
        )
        for key, dim, raw in rows:
            found[key] = _decode(raw, dim)
    return found


def save(session: Session, model: str, items: Mapping[str, Vector]) -> None:
    """Insert vectors that are not stored yet (a replica racing us stored the same bytes)."""
    if not items:
        return
    table = TextVectorRow.__table__  # type: ignore[attr-defined]
    now = utcnow()
    rows = [
        {
            "model": model,
            "key": k,
            "dim": int(v.shape[0]),
            "vector": v.astype("<f4").tobytes(),
            "created_at": now,
        }
        for k, v in items.items()
    ]
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    for start in range(0, len(rows), _CHUNK):
        statement = insert(table).values(rows[start : start + _CHUNK])
        session.execute(statement.on_conflict_do_nothing(index_elements=["model", "key"]))


class DatabaseVectors:
    """The cache on the service's database: each call in its own short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_many(self, model: str, keys: Sequence[str]) -> dict[str, Vector]:
        with db.transaction(self.engine) as session:
            return load(session, model, keys)

    def put_many(self, model: str, items: Mapping[str, Vector]) -> None:
        with db.transaction(self.engine) as session:
            save(session, model, items)
