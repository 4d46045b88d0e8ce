"""Chunks prepared on the mapping thread: lookups read ahead on a second connection, rows
built ahead, and nothing of it changing what lands."""

from __future__ import annotations

import contextlib
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


def test_the_read_ahead_reconnects_after_its_connection_is_killed(postgres_url: str) -> None:
    # A lost connection (here: every other backend terminated between chunks) costs the
    # read-ahead one chunk, not the rest of the load.
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE kinds (id int PRIMARY KEY, name text UNIQUE)"))
        conn.execute(sa.text("CREATE TABLE ev (id int PRIMARY KEY, kind int NOT NULL)"))
        conn.execute(sa.text("INSERT INTO kinds SELECT g, 'k' || g FROM generate_series(1, 600) g"))
    lookup = bl.Lookup("kinds", key="name")
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("ev")], lookups=[lookup], chunk_size=100)
    sent: list[tuple[str, str]] = []

    def record_thread(sql: str, rows: int) -> None:
        sent.append((threading.current_thread().name, sql))

    def emit(record: dict[str, Any], out: bl.Out) -> None:
        if record["id"] == 250:
            with engine.connect() as conn:
                killed = conn.execute(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar()
            sent.append(("test", f"killed {killed}"))
        # every record its own key, so every chunk has keys to read ahead
        out.insert("ev", {"id": record["id"], "kind": lookup.ref(name=f"k{record['id']}")})

    pipeline.statement_listeners.append(record_thread)
    result = pipeline.run(({"id": i} for i in range(1, 601)), emit)
    engine.dispose()
    assert (result.items_processed, result.items_failed) == (600, 0)
    mark = next(i for i, (thread, _) in enumerate(sent) if thread == "test")
    assert sent[mark][1] != "killed 0"
    ahead = [
        sql
        for thread, sql in sent[mark:]
        if "kinds" in sql and thread not in ("test",) and not thread.startswith("batchline-flush")
    ]
    # chunks 3 to 6 each read ahead; chunk 3's try finds the connection dead
    assert len(ahead) >= 4, ahead


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("postgres_url", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql_url", id="mysql", marks=pytest.mark.mysql),
    ],
)
def test_the_reader_holds_no_transaction_and_gives_its_connection_back_as_it_found_it(
    backend: str, request: pytest.FixtureRequest
) -> None:
    from batchline._database import Session, make_engine
    from batchline._dialects import dialect_for

    engine, _ = make_engine(str(request.getfixturevalue(backend)))
    engine = engine.execution_options()  # same pool
    dialect = dialect_for(engine)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE probe (id int PRIMARY KEY)")
        reader = Session(engine, dialect, autocommit=True)
        assert reader.query("SELECT count(*) FROM probe") == [(0,)]
        # no BEGIN before the read and no ROLLBACK after it: nothing is left open
        assert _in_transaction(reader.driver_connection) is False
        pooled = reader.driver_connection
        reader.close()
        raw = engine.raw_connection()  # the pool's one idle connection: the reader's
        try:
            assert raw.driver_connection is pooled
            assert _autocommit(raw.driver_connection) is False
            with contextlib.closing(raw.cursor()) as cur:
                cur.execute("SELECT count(*) FROM probe")
            assert _in_transaction(raw.driver_connection) is True
        finally:
            raw.close()
    finally:
        engine.dispose()


def _autocommit(conn: Any) -> bool:
    getter = getattr(conn, "get_autocommit", None)  # PyMySQL
    return bool(getter() if getter is not None else conn.autocommit)


def _in_transaction(conn: Any) -> bool:
    """Whether the connection holds an open transaction (a snapshot, locks)."""
    info = getattr(conn, "info", None)
    if info is not None and hasattr(info, "transaction_status"):  # psycopg
        import psycopg

        return bool(info.transaction_status != psycopg.pq.TransactionStatus.IDLE)
    # MySQL/MariaDB report no open read-only transaction; ask whether every statement
    # commits on its own (so none can stay open), or not
    with contextlib.closing(conn.cursor()) as cur:
        cur.execute("SELECT @@autocommit")
        return not cur.fetchone()[0]
