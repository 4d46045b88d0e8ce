"""Chunks prepared on the mapping thread: lookups read ahead on a second connection, rows
built ahead, and nothing of it changing what lands."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from batchline.testing import capture_statements

pytestmark = pytest.mark.postgres


@pytest.fixture
def kinds(postgres_url: str) -> Iterator[str]:
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE kinds (id int PRIMARY KEY, name text UNIQUE)"))
        conn.execute(sa.text("CREATE TABLE ev (id int PRIMARY KEY, kind int NOT NULL)"))
        conn.execute(sa.text("INSERT INTO kinds SELECT g, 'k' || g FROM generate_series(1, 9) g"))
    engine.dispose()
    yield postgres_url


def _load(db: str | sa.Engine, n: int = 300) -> tuple[bl.Result, list[tuple[str, str]]]:
    lookup = bl.Lookup("kinds", key="name")
    pipeline = bl.Pipeline(db, writes=[bl.Insert("ev")], lookups=[lookup], chunk_size=100)
    sent: list[tuple[str, str]] = []

    def record_thread(sql: str, rows: int) -> None:
        sent.append((threading.current_thread().name, sql))

    def emit(record: dict[str, Any], out: bl.Out) -> None:
        out.insert("ev", {"id": record["id"], "kind": lookup.ref(name=f"k{record['id'] % 9 + 1}")})

    with capture_statements(pipeline):
        pipeline.statement_listeners.append(record_thread)
        result = pipeline.run(({"id": i} for i in range(1, n + 1)), emit)
    return result, sent


def test_lookups_are_read_ahead_off_the_flush_thread(kinds: str) -> None:
    result, sent = _load(kinds)
    assert result.items_processed == 300
    selects = [(thread, sql) for thread, sql in sent if "kinds" in sql]
    assert selects, "the lookup was never asked"
    # asked on the mapping thread (the caller's), never by the flush worker
    assert all(not thread.startswith("batchline-flush") for thread, _ in selects), selects


def test_a_one_connection_pool_is_not_asked_for_a_second(kinds: str) -> None:
    # The read-ahead would wait for the pool's only connection (held by the flush) for the
    # pool's whole timeout; with such a pool batchline does not read ahead.
    engine = sa.create_engine(kinds, pool_size=1, max_overflow=0, pool_timeout=30)
    try:
        result, sent = _load(engine)
    finally:
        engine.dispose()
    assert result.items_processed == 300
    assert result.processing_time_seconds < 15
    selects = [thread for thread, sql in sent if "kinds" in sql]
    assert selects and all(thread.startswith("batchline-flush") for thread in selects)
