"""Transient failures are retried, and when they outlast the retries the run stops cleanly.

These are real faults: the PostgreSQL server terminating our backend mid-run, and another
SQLite connection holding the write lock.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from tests._schemas import dead_positions


def _ev(engine: sa.Engine) -> None:
    md = sa.MetaData()
    sa.Table(
        "ev",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("k", sa.Integer, nullable=False),
    )
    sa.Table(
        "agg",
        md,
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    md.create_all(engine)


def _emit(r: dict[str, Any], out: bl.Out) -> None:
    out.insert("ev", r)
    out.increment("agg", {"k": r["k"], "n": 1})


@pytest.mark.postgres
def test_terminated_backend_mid_run_is_retried_and_every_record_lands_once(
    postgres_url: str,
) -> None:
    app = f"bl_{secrets.token_hex(4)}"
    url = sa.make_url(postgres_url).update_query_dict({"application_name": app})
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    _ev(admin)
    kills: list[int] = []

    def terminate() -> None:
        with admin.connect() as conn:
            n = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :app"
                ),
                {"app": app},
            ).scalar()
            conn.commit()
        kills.append(int(n or 0))

    def records() -> Iterator[dict[str, int]]:
        for i in range(1, 20_001):
            if i in (3_000, 9_000, 15_000):
                terminate()
            yield {"id": i, "k": i % 17}

    pipeline = bl.Pipeline(
        url,
        writes=[bl.Insert("ev"), bl.Increment("agg", key="k", columns="n")],
        chunk_size=500,
        retry=bl.RetryPolicy(attempts=6, initial=0.01),
    )
    result = pipeline.run(records(), _emit, job="terminated")
    assert sum(kills) >= 2, kills  # the faults really hit our connection
    assert result.retries >= 2
    assert result.status == "success" and result.items_processed == 20_000
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM ev")).one() == (
            20_000,
            20_000,
        )
        assert conn.execute(sa.text("SELECT sum(n) FROM agg")).scalar() == 20_000
    assert dead_positions(admin) == []
    admin.dispose()


def test_locked_sqlite_is_retried_until_the_lock_is_released(tmp_path: Any) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url, connect_args={"timeout": 0.05}, poolclass=sa.pool.NullPool)
    _ev(engine)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    released = threading.Timer(0.6, lambda: blocker.execute("COMMIT"))
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        threading.Event().wait(0.1)

    pipeline = bl.Pipeline(
        engine,
        writes=[bl.Insert("ev"), bl.Increment("agg", key="k", columns="n")],
        retry=bl.RetryPolicy(attempts=30, initial=0.01, sleep=sleep),
    )
    released.start()
    try:
        result = pipeline.run(({"id": i, "k": i % 3} for i in range(1, 1001)), _emit)
    finally:
        released.join()
        blocker.close()
    assert result.status == "success" and result.items_processed == 1000
    assert result.retries >= 1 and sleeps
    engine.dispose()


def test_transient_failure_outlasting_retries_stops_with_intact_checkpoint(tmp_path: Any) -> None:
    path = tmp_path / "stuck.db"
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url, connect_args={"timeout": 0.02}, poolclass=sa.pool.NullPool)
    _ev(engine)
    slept: list[float] = []
    pipeline = bl.Pipeline(
        engine,
        writes=[bl.Insert("ev"), bl.Increment("agg", key="k", columns="n")],
        chunk_size=100,
        retry=bl.RetryPolicy(attempts=3, sleep=slept.append),
    )
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def records() -> Iterator[dict[str, int]]:
        for i in range(1, 1001):
            if i == 450:
                blocker.execute("BEGIN EXCLUSIVE")  # from here on the database is locked
            yield {"id": i, "k": i % 3}

    try:
        result = pipeline.run(records(), _emit, job="stuck")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.status == "failed"
    assert result.error is not None and "locked" in result.error
    # three attempts each for the chunk and for recording the end: four back-offs, none slept
    assert len(slept) == 4
    with engine.connect() as conn:
        position = conn.execute(
            sa.text("SELECT position FROM batchline_jobs WHERE name='stuck'")
        ).scalar()
        count = conn.execute(sa.text("SELECT count(*) FROM ev")).scalar()
    assert position == count and position in (300, 400)  # no chunk half applied
    assert dead_positions(engine) == []  # an outage is not bad data
    # The run could not record its end either: its row still says "running", but no runner
    # holds the job, so it shows as interrupted.
    with bl.DeadLetters(engine) as letters:
        state = letters.job("stuck")
    assert state is not None and state.status == "interrupted"
    # the next run resumes after the checkpoint and finishes the job exactly once
    again = pipeline.run(({"id": i, "k": i % 3} for i in range(1, 1001)), _emit, job="stuck")
    assert again.resumed_from == position and again.status == "success"
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*), sum(n) FROM ev, (SELECT sum(n) n FROM agg)")
            ).one()[0]
            == 1000
        )
        assert conn.execute(sa.text("SELECT sum(n) FROM agg")).scalar() == 1000
    engine.dispose()
