"""Isolation against a one-record-at-a-time reference (hypothesis), and what it costs.

The differential test is the contract: whatever the chunk size and wherever the bad
records are, batchline's final tables and dead-lettered positions equal what applying the
records one at a time, in order, in their own transactions produces.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batchline as bl
from batchline.testing import capture_statements
from tests._schemas import dead_positions, diff_metadata, reference_load, table_rows

BAD_KINDS = ["check_child", "dup_child", "null_parent", "check_totals"]


@st.composite
def workloads(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int]:
    n = draw(st.integers(min_value=1, max_value=60))
    records = []
    for i in range(n):
        records.append(
            {
                "id": i + 1,
                "k": draw(st.integers(0, 6)),
                "v": draw(st.integers(0, 100)),
                "amount": draw(st.integers(0, 50)),
                "inc": draw(st.integers(1, 9)),
            }
        )
    bad = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(BAD_KINDS)), max_size=8))
    for idx, kind in bad:
        r = records[idx]
        if kind == "check_child":
            r["amount"] = 5000
        elif kind == "dup_child" and idx > 0:
            r["id"] = records[draw(st.integers(0, idx - 1))]["id"]
        elif kind == "null_parent":
            r["v"] = None
        elif kind == "check_totals":
            r["inc"] = 10**10
    chunk = draw(st.sampled_from([1, 2, 3, 7, 16, 50, 500]))
    return records, chunk


def emit(record: dict[str, Any], out: bl.Out) -> None:
    out.upsert("parent", {"k": record["k"], "v": record["v"]})
    out.insert("child", {"id": record["id"], "k": record["k"], "amount": record["amount"]})
    out.increment("totals", {"k": record["k"], "total": record["inc"]})


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "parent": table_rows(engine, "parent", "k"),
        "child": table_rows(engine, "child", "id"),
        "totals": table_rows(engine, "totals", "k"),
    }


def reset(engine: sa.Engine) -> sa.MetaData:
    md = diff_metadata()
    with engine.begin() as conn:
        for name in (
            "child",
            "parent",
            "totals",
            "batchline_dead_letters",
            "batchline_ledger",
            "batchline_jobs",
        ):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    md.create_all(engine)
    return md


@pytest.mark.parametrize("child_first", [False, True], ids=["parent-first", "child-first"])
@pytest.mark.parametrize("fallback", ["bisect", "sequential"])
@settings(
    max_examples=int(os.environ.get("BATCHLINE_HYPOTHESIS_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=workloads())
def test_batched_load_equals_one_at_a_time(
    db_url: str,
    engine: sa.Engine,
    fallback: str,
    child_first: bool,
    case: tuple[list[dict[str, Any]], int],
) -> None:
    # The tables have no constraint between them, so a record's outcome does not depend on
    # the order of its writes. With the child insert first, a bad child row is the first
    # write of its record: where the database names it (COPY, SQLite row by row), it is set
    # aside or left out without a verifying try, and that must change nothing.
    records, chunk = case
    md = reset(engine)
    expected_failed = reference_load(engine, md, records)
    expected = snapshot(engine)

    reset(engine)
    writes: list[bl.Write] = [
        bl.Upsert("parent", key="k"),
        bl.Insert("child"),
        bl.Increment("totals", key="k", columns=["total"]),
    ]
    if child_first:
        writes[:2] = writes[1::-1]
    pipeline = bl.Pipeline(db_url, writes=writes, chunk_size=chunk, fallback=fallback)
    result = pipeline.run(records, emit, job="diff")
    assert snapshot(engine) == expected
    assert dead_positions(engine) == expected_failed
    assert [f.position for f in result.failed_items or []] == expected_failed
    assert result.items_processed == len(records) - len(expected_failed)


def _ev_table(engine: sa.Engine) -> None:
    md = sa.MetaData()
    sa.Table(
        "ev",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.CheckConstraint("n >= 0", name="ck_n"),
    )
    md.create_all(engine)


@pytest.mark.parametrize("n", [64, 512])
def test_bisect_isolates_one_bad_record_in_log_n_statements(
    db_url: str, engine: sa.Engine, n: int
) -> None:
    _ev_table(engine)
    rows = [{"id": i, "n": -1 if i == n // 3 else 1} for i in range(1, n + 1)]
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("ev")], chunk_size=n)
    with capture_statements(pipeline) as captured:
        result = pipeline.run(rows)
    assert result.items_failed == 1 and result.items_processed == n - 1
    levels = math.log2(n)
    assert result.isolation_flushes <= 2 * levels + 2
    # each flush is a handful of statements (begin, write, checkpoint, commit...)
    assert len(captured) <= 8 * (2 * levels + 4), len(captured)
    if n >= 512:
        assert len(captured) < n / 4  # against n transactions for one-at-a-time


def test_isolation_asks_for_existing_lookup_rows_once_per_chunk(
    db_url: str, engine: sa.Engine
) -> None:
    # A chunk with a bad record is retried in parts; the lookup rows its first try found
    # are still there for the later tries, which must not select them again.
    _ev_table(engine)
    md = sa.MetaData()
    sa.Table(
        "kinds",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(20), unique=True),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(md.tables["kinds"].insert(), [{"id": i, "name": f"k{i}"} for i in range(1, 9)])
    kinds = bl.Lookup("kinds", key="name")
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("ev")], lookups=[kinds], chunk_size=64)

    def emit_ev(record: dict[str, Any], out: bl.Out) -> None:
        n = -1 if record["bad"] else kinds.ref(name=f"k{1 + record['id'] % 8}")
        out.insert("ev", {"id": record["id"], "n": n})

    rows = [{"id": i, "bad": i == 21} for i in range(1, 65)]
    with capture_statements(pipeline) as captured:
        result = pipeline.run(rows, emit_ev)
    assert [f.position for f in result.failed_items] == [21]
    assert result.items_processed == 63
    # (SQLite and PostgreSQL leave the bad row out and go on: one isolation try; MySQL
    # bisects: several)...
    assert result.isolation_flushes >= (3 if "mysql" in db_url else 1)
    # ...yet the lookup is asked once per transaction: by the chunk's first try, then by
    # the isolation's first (a new transaction); later tries reuse what those found. Over a
    # network the keys are read ahead instead, once, and both transactions reuse that.
    selects = [sql for sql in captured.matching("kinds") if sql.startswith("SELECT")]
    assert len(selects) == (2 if db_url.startswith("sqlite") else 1), selects


@pytest.mark.postgres
def test_postgres_goes_straight_to_the_rows_copy_names(postgres_url: str) -> None:
    # COPY reports the line it failed on, and only earlier rows were in the table then: the
    # record is left out and the rest go to the server once, staged, where each row is
    # tried on its own and every other bad row is found in the same pass. Two COPYs in
    # all, in one isolation try: not one per bad record, nor two tries per bisection level.
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    _ev_table(engine)
    bad = {37, 38, 300, 511}
    rows = [{"id": i, "n": -1 if i in bad else 1} for i in range(1, 513)]
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("ev")], chunk_size=512)
    with capture_statements(pipeline) as sent:
        result = pipeline.run(rows)
    assert sorted(f.position for f in result.failed_items) == sorted(bad)
    assert result.items_processed == 512 - len(bad)
    assert result.isolation_flushes == 1, result.isolation_flushes
    copies = [sql for sql, _ in sent.statements if sql.startswith("COPY")]
    assert len(copies) == 2, copies
    assert copies[0].startswith("COPY ev ") and "batchline_stage" in copies[1]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ev")).scalar() == 512 - len(bad)
    engine.dispose()


@pytest.mark.postgres
def test_after_a_dirty_chunk_the_first_try_already_names_the_row(postgres_url: str) -> None:
    # Chunk 1 learns its bad row by asking (a COPY try); the chunks after it insert by COPY
    # from their first try, so their failure already names the row: one try fewer each.
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    _ev_table(engine)
    engine.dispose()
    rows = [{"id": i, "n": -1 if i in (30, 150, 270) else 1} for i in range(1, 301)]
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("ev")], chunk_size=100)
    with capture_statements(pipeline) as sent:
        result = pipeline.run(rows)
    assert [f.position for f in result.failed_items] == [30, 150, 270]
    # chunk 1: one isolation try, which leaves the row out; chunks 2 and 3: none, their
    # first try leaves it out
    assert result.isolation_flushes == 1
    copies = [sql for sql, _ in sent.statements if sql.startswith(("COPY", "INSERT INTO ev"))]
    assert copies[0].startswith("INSERT")  # clean so far: the pipelined insert
    assert all(sql.startswith("COPY") for sql in copies[1:])


def test_a_record_set_aside_is_tried_again_when_an_earlier_one_turns_out_bad(
    db_url: str, engine: sa.Engine
) -> None:
    # Record 3 repeats record 2's key in ev, so ev names record 3. But record 2 is bad in
    # its last write (ev2): one at a time, record 2 fails whole and record 3 lands. The
    # guess about record 3 must be undone, not kept. (Every record writes ev0 first, so
    # record 3 cannot simply be left out of ev's insert: it is set aside, and tried again.)
    _ev_table(engine)
    md = sa.MetaData()
    for name in ("ev0", "ev2"):
        sa.Table(
            name,
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("n", sa.Integer, nullable=False),
            sa.CheckConstraint("n >= 0", name=f"ck_{name}"),
        )
    md.create_all(engine)
    rows = [{"id": i, "ev": i, "n2": 1} for i in range(1, 41)]
    rows[1]["n2"] = -1  # record 2: ev2 refuses it
    rows[2]["ev"] = 2  # record 3: ev key of record 2
    rows[30]["ev"] = 2  # record 31: ev key of record 2 again, now record 3's

    def emit(record: dict[str, Any], out: bl.Out) -> None:
        out.insert("ev0", {"id": record["id"], "n": 1})
        out.insert("ev", {"id": record["ev"], "n": 1})
        out.insert("ev2", {"id": record["id"], "n": record["n2"]})

    writes = [bl.Insert("ev0"), bl.Insert("ev"), bl.Insert("ev2")]
    pipeline = bl.Pipeline(db_url, writes=writes, chunk_size=40)
    result = pipeline.run(rows, emit)
    assert [f.position for f in result.failed_items] == [2, 31]
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM ev ORDER BY id"))]
    assert 2 in ids and len(ids) == 38


def test_sqlite_leaves_a_bad_row_out_and_goes_on(sqlite_url: str) -> None:
    # SQLite inserts row by row once it is locating, and a row that fails leaves the rows
    # before it in place: the record is left out and the insert goes on, in the same try.
    engine = sa.create_engine(sqlite_url)
    _ev_table(engine)
    rows = [{"id": i, "n": -1 if i in (30, 150, 270) else 1} for i in range(1, 301)]
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("ev")], chunk_size=100)
    result = pipeline.run(rows)
    assert [f.position for f in result.failed_items] == [30, 150, 270]
    assert {f.error for f in result.failed_items} == {"insert ev: CHECK constraint failed: ck_n"}
    # chunk 1: its first (multi-row) insert fails, one locating try lands; chunks 2 and 3
    # locate from their first try, which lands
    assert result.isolation_flushes == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ev")).scalar() == 297
    engine.dispose()


def test_sequential_fallback_costs_a_transaction_per_record(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    _ev_table(engine)
    rows = [{"id": i, "n": -1 if i == 100 else 1} for i in range(1, 257)]
    pipeline = bl.Pipeline(
        sqlite_url, writes=[bl.Insert("ev")], chunk_size=256, fallback="sequential"
    )
    result = pipeline.run(rows)
    assert result.items_failed == 1
    assert result.isolation_flushes == 256
    engine.dispose()


def test_ten_thousand_records_cost_under_one_statement_per_fifty(
    db_url: str, engine: sa.Engine
) -> None:
    from tests._schemas import shop_metadata
    from tests.test_pipeline import design_sample, invoice_lines

    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(db_url)
    with capture_statements(pipeline) as captured:
        result = pipeline.run(
            invoice_lines(10_000, skus=800),
            map_line,
            job="count",
            idempotency_key=lambda r: (r["invoice_id"], r["line_no"]),
        )
    assert result.items_processed == 10_000
    assert len(captured) < 10_000 / 50, len(captured)
    # increments are one set-based statement per chunk, not one per key
    increments = captured.matching("inventory")
    assert len(increments) <= 20 + 1
