"""The pipeline end to end on real databases: the DESIGN.md sample, the one-line form,
the failure contract (data, map, fatal, max_failures), streaming, and secrets."""

from __future__ import annotations

import itertools
import logging
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from tests._schemas import dead_positions, shop_metadata


def invoice_lines(
    n: int, *, bad: set[int] = frozenset(), skus: int = 50
) -> Iterator[dict[str, Any]]:  # type: ignore[assignment]
    for i in range(1, n + 1):
        yield {
            "invoice_id": 1000 + (i - 1) // 4,
            "line_no": (i - 1) % 4 + 1,
            "sku": f"SKU-{i % skus:04d}",
            "description": f"Product {i % skus}",
            "quantity": 0 if i in bad else i % 5 + 1,
            "unit_price": Decimal("2.50"),
        }


def design_sample(url: str, **kw: Any) -> tuple[bl.Pipeline, bl.Lookup, Any]:
    catalog = bl.Lookup("catalog", key="sku", returns="id", create=True)
    pipeline = bl.Pipeline(
        url,
        writes=[
            bl.Insert("transactions"),
            bl.Increment("inventory", key="item_id", columns=["quantity"]),
        ],
        lookups=[catalog],
        **kw,
    )

    def map_line(record: dict[str, Any], out: bl.Out) -> None:
        item_id = catalog.ref(sku=record["sku"], name=record["description"])
        out.insert(
            "transactions",
            {
                "invoice_id": record["invoice_id"],
                "line_no": record["line_no"],
                "item_id": item_id,
                "quantity": record["quantity"],
                "unit_cost": record["unit_price"],
            },
        )
        out.increment("inventory", {"item_id": item_id, "quantity": record["quantity"]})

    return pipeline, catalog, map_line


@pytest.fixture
def shop(engine: sa.Engine) -> sa.Engine:
    shop_metadata().create_all(engine)
    return engine


def scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_design_sample_loads_lookups_inserts_and_aggregates(db_url: str, shop: sa.Engine) -> None:
    pipeline, _, map_line = design_sample(db_url, chunk_size=100)
    with pipeline:
        result = pipeline.run(
            invoice_lines(1000, bad={17, 500}),
            map_line,
            job="invoices",
            idempotency_key=lambda r: (r["invoice_id"], r["line_no"]),
        )
    assert result.status == "partial_success"
    assert result.items_processed == 998
    assert result.items_failed == 2
    assert [f.line for f in result.failed_items or []] == [17, 500]
    assert all(f.stage == "write" for f in result.failed_items or [])
    assert scalar(shop, "SELECT COUNT(*) FROM catalog") == 50
    assert scalar(shop, "SELECT COUNT(*) FROM transactions") == 998
    good = sum(r["quantity"] for r in invoice_lines(1000, bad={17, 500}) if r["quantity"] > 0)
    assert int(scalar(shop, "SELECT SUM(quantity) FROM inventory")) == good
    assert int(scalar(shop, "SELECT SUM(quantity) FROM transactions")) == good
    # the failed record's increment did not land either (item-level atomicity)
    assert dead_positions(shop) == [17, 500]
    d = result.to_dict()
    for key in (
        "status",
        "items_processed",
        "items_failed",
        "failed_items",
        "processing_time_seconds",
        "duplicates_skipped",
        "chunks_committed",
        "retries",
        "isolation_flushes",
        "records_per_second",
    ):
        assert key in d
    assert d["failed_items"][0]["line"] == 17


TX_COLUMNS = ("invoice_id", "line_no", "item_id", "quantity", "unit_cost")


def test_rows_given_as_tuples_with_columns_load_as_the_same_rows_as_dicts(
    db_url: str, shop: sa.Engine
) -> None:
    # The hot loop's form: a tuple of values in ``columns=`` order, no dict per row. The
    # same lines as the design sample, with the same two bad ones, land the same.
    catalog = bl.Lookup("catalog", key="sku", returns="id", create=True)
    pipeline = bl.Pipeline(
        db_url,
        writes=[
            bl.Insert("transactions"),
            bl.Increment("inventory", key="item_id", columns=["quantity"]),
        ],
        lookups=[catalog],
        chunk_size=100,
    )

    def map_line(r: dict[str, Any], out: bl.Out) -> None:
        item_id = catalog.ref(sku=r["sku"], name=r["description"])
        values = (r["invoice_id"], r["line_no"], item_id, r["quantity"], r["unit_price"])
        out.insert("transactions", values, columns=TX_COLUMNS)
        out.increment("inventory", [item_id, r["quantity"]], columns=("item_id", "quantity"))
        if r["line_no"] == 3 and r["invoice_id"] % 50 == 7:
            out.insert("transactions", (1, 2), columns=TX_COLUMNS)  # too few: a map failure

    with pipeline:
        result = pipeline.run(invoice_lines(1000, bad={17, 500}), map_line)
    short = [p for p in range(1, 1001) if (p - 1) % 4 + 1 == 3 and (1000 + (p - 1) // 4) % 50 == 7]
    assert sorted(f.position for f in result.failed_items or []) == sorted([17, 500, *short])
    assert {f.stage for f in result.failed_items or [] if f.position in short} == {"map"}
    assert "a row of 2 values for the 5 columns" in next(
        f.error for f in result.failed_items or [] if f.position in short
    )
    lines = [r for r in invoice_lines(1000, bad={17, 500})]
    kept = [r for p, r in enumerate(lines, start=1) if p not in {17, 500, *short}]
    assert scalar(shop, "SELECT COUNT(*) FROM transactions") == len(kept)
    assert int(scalar(shop, "SELECT SUM(quantity) FROM inventory")) == sum(
        r["quantity"] for r in kept
    )


def test_one_line_upsert_form(db_url: str, engine: sa.Engine) -> None:
    md = sa.MetaData()
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("total", sa.Numeric(10, 2)),
        sa.Column("note", sa.String(20)),
    )
    md.create_all(engine)
    rows = [{"id": i, "total": Decimal(i), "note": "first"} for i in range(1, 301)]
    result = bl.Pipeline(db_url, writes=[bl.Upsert("orders", key="id")]).run(rows)
    assert result.status == "success" and result.items_processed == 300
    again = [{"id": i, "total": Decimal(i * 2), "note": "second"} for i in range(250, 351)]
    result = bl.Pipeline(db_url, writes=[bl.Upsert("orders", key="id")]).run(again)
    assert result.items_processed == 101
    assert scalar(engine, "SELECT COUNT(*) FROM orders") == 350
    assert scalar(engine, "SELECT total FROM orders WHERE id = 300") == Decimal("600.00")
    assert scalar(engine, "SELECT note FROM orders WHERE id = 10") == "first"


def test_upserts_to_one_key_in_a_chunk_merge_in_input_order(db_url: str, engine: sa.Engine) -> None:
    md = sa.MetaData()
    sa.Table(
        "kv",
        md,
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("a", sa.Integer),
        sa.Column("b", sa.Integer),
    )
    md.create_all(engine)
    rows = [{"k": 1, "a": 1, "b": 1}, {"k": 1, "a": 2}, {"k": 2, "a": 5, "b": 5}, {"k": 1, "b": 3}]

    def emit(r: dict[str, Any], out: bl.Out) -> None:
        out.upsert("kv", r)

    bl.Pipeline(db_url, writes=[bl.Upsert("kv", key="k")]).run(rows, emit)
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT k, a, b FROM kv ORDER BY k")).all()
    assert [tuple(r) for r in got] == [(1, 2, 3), (2, 5, 5)]


def test_delete_removes_keys_in_sets(db_url: str, engine: sa.Engine) -> None:
    md = sa.MetaData()
    sa.Table(
        "t",
        md,
        sa.Column("a", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("b", sa.Integer, primary_key=True, autoincrement=False),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            md.tables["t"].insert(), [{"a": i, "b": j} for i in range(10) for j in range(3)]
        )
    keys = [{"a": i, "b": 1} for i in range(10)] + [{"a": 3, "b": 2}]
    result = bl.Pipeline(db_url, writes=[bl.Delete("t", key=["a", "b"])]).run(keys)
    assert result.status == "success"
    assert scalar(engine, "SELECT COUNT(*) FROM t") == 19


def test_increment_without_create_updates_existing_rows_only(
    db_url: str, engine: sa.Engine
) -> None:
    md = sa.MetaData()
    t = sa.Table(
        "stock",
        md,
        sa.Column("k", sa.String(10), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"k": "a", "n": 1}, {"k": "b", "n": 1}])
    rows = [{"k": "a", "n": 2}, {"k": "a", "n": 3}, {"k": "zzz", "n": 7}, {"k": "b", "n": -1}]
    bl.Pipeline(db_url, writes=[bl.Increment("stock", key="k", columns="n", create=False)]).run(
        rows
    )
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT k, n FROM stock")).all())
    assert got == {"a": 6, "b": 0}


def test_map_error_fails_that_record_only(db_url: str, shop: sa.Engine) -> None:
    pipeline, _catalog, map_line = design_sample(db_url, chunk_size=64)

    def flaky(record: dict[str, Any], out: bl.Out) -> None:
        if record["line_no"] == 3 and record["invoice_id"] % 10 == 0:
            raise ValueError("no price list for this customer")
        map_line(record, out)

    result = pipeline.run(invoice_lines(400), flaky)
    failed = [f for f in result.failed_items or []]
    assert failed and all(f.stage == "map" for f in failed)
    assert "no price list" in failed[0].error
    assert result.items_processed + result.items_failed == 400
    assert scalar(shop, "SELECT COUNT(*) FROM transactions") == result.items_processed
    with shop.connect() as conn:
        payload = conn.execute(
            sa.text("SELECT payload, stage FROM batchline_dead_letters ORDER BY position")
        ).first()
    assert payload is not None and '"invoice_id"' in payload[0] and payload[1] == "map"


def test_missing_table_is_fatal_and_dead_letters_nothing(db_url: str, engine: sa.Engine) -> None:
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("no_such_table")])
    with pytest.raises(bl.FatalDatabaseError, match="no_such_table"):
        pipeline.run([{"a": 1}] * 10, job="j")
    assert dead_positions(engine) == []


def test_missing_column_is_fatal_mid_run_and_dead_letters_nothing(
    db_url: str, shop: sa.Engine
) -> None:
    rows = [{"item_id": i, "quantity": 1} for i in range(1, 50)]
    rows.append({"item_id": 99, "quantity": 1, "colour": "red"})
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("inventory")], chunk_size=10)
    with pytest.raises(bl.FatalDatabaseError) as err:
        pipeline.run(rows, job="cols")
    assert "not the records' fault" in str(err.value)
    assert dead_positions(shop) == []
    assert scalar(shop, "SELECT COUNT(*) FROM inventory") == 40  # earlier chunks stay committed
    assert scalar(shop, "SELECT status FROM batchline_jobs WHERE name = 'cols'") == "failed"


@pytest.mark.parametrize("fallback", ["bisect", "sequential", "none"])
def test_fallbacks_keep_good_records(sqlite_url: str, fallback: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(sqlite_url, chunk_size=50, fallback=fallback)
    result = pipeline.run(invoice_lines(200, bad={7, 120}), map_line)
    if fallback == "none":
        assert result.items_failed == 100  # both chunks with a bad record fail whole
        assert all("fallback='none'" in f.error for f in result.failed_items or [])
    else:
        assert result.items_failed == 2
        assert dead_positions(engine) == [7, 120]
    assert result.items_processed + result.items_failed == 200
    engine.dispose()


def test_max_failures_count_stops_the_run_keeping_what_committed(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(sqlite_url, chunk_size=100, max_failures=3)
    bad = {5, 150, 250, 260, 350, 450}
    result = pipeline.run(invoice_lines(500, bad=bad), map_line, job="mf")
    assert result.status == "failed"
    assert result.error is not None and "max_failures=3" in result.error
    assert result.items_failed == 4  # stopped after the chunk that crossed the limit
    assert scalar(engine, "SELECT COUNT(*) FROM transactions") == result.items_processed
    assert scalar(engine, "SELECT position FROM batchline_jobs WHERE name='mf'") == 300
    engine.dispose()


def test_max_failures_fraction(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(sqlite_url, chunk_size=100, max_failures=0.05)
    result = pipeline.run(invoice_lines(1000, bad=set(range(300, 330))), map_line)
    assert result.status == "failed" and "max_failures=5%" in (result.error or "")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM transactions"))
    ok = design_sample(sqlite_url, chunk_size=100, max_failures=0.05)
    result2 = ok[0].run(invoice_lines(1000, bad={3}), ok[2], job="fine")
    assert result2.status == "partial_success"
    engine.dispose()


def test_everything_failing_is_status_failed(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(sqlite_url)
    result = pipeline.run(invoice_lines(20, bad=set(range(1, 21))), map_line)
    assert result.status == "failed" and result.items_failed == 20
    engine.dispose()


def test_each_failed_record_is_logged_at_debug_and_each_chunk_at_info(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(sqlite_url, chunk_size=64)
    with caplog.at_level(logging.DEBUG, logger="batchline"):
        pipeline.run(invoice_lines(300, bad={42, 211}), map_line)
    lines = [r for r in caplog.records if "dead-lettered at stage" in r.getMessage()]
    assert len(lines) == 2 and {r.levelno for r in lines} == {logging.DEBUG}
    first = lines[0].getMessage()
    assert "record 42 (line 42)" in first and "CHECK" in first.upper()
    chunks = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(chunks) == 5  # 300 records in chunks of 64
    assert "committed records up to 64: 63 loaded, 0 duplicates, 1 dead-lettered" in chunks[0]
    assert all(r.levelno <= logging.INFO for r in caplog.records)  # nothing went wrong
    engine.dispose()


def test_records_stream_and_memory_stays_flat(sqlite_url: str) -> None:
    """A long generator is consumed lazily: peak memory does not grow with the input."""
    engine = sa.create_engine(sqlite_url)
    md = sa.MetaData()
    sa.Table(
        "ev",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("payload", sa.String(100)),
    )
    md.create_all(engine)

    def peak(n: int, offset: int) -> int:
        rows = ({"id": offset + i, "payload": "x" * 60} for i in range(n))
        tracemalloc.start()
        bl.Pipeline(sqlite_url, writes=[bl.Insert("ev")], chunk_size=500).run(rows)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small = peak(10_000, 0)
    large = peak(80_000, 1_000_000)
    assert large < small * 1.5 + 512 * 1024, (small, large)
    assert scalar(engine, "SELECT COUNT(*) FROM ev") == 90_000
    engine.dispose()


def test_generator_is_not_read_ahead_more_than_two_chunks(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    md = sa.MetaData()
    sa.Table("ev", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
    md.create_all(engine)
    pulled = itertools.count(1)
    landed: list[int] = []
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("ev")], chunk_size=100)
    pipeline.statement_listeners.append(
        lambda sql, n: landed.append(1) if sql == "COMMIT" else None
    )
    ahead = []

    def rows() -> Iterator[dict[str, int]]:
        for _ in range(2000):
            i = next(pulled)
            ahead.append(i - 100 * len(landed))
            yield {"id": i}

    pipeline.run(rows())
    assert max(ahead) <= 3 * 100


def test_password_never_appears_in_errors_or_repr() -> None:
    url = "postgresql://loader:s3cr3t-Pa55@127.0.0.1:1/nowhere"
    pipeline = bl.Pipeline(url, writes=[bl.Insert("t")], retry=bl.RetryPolicy(attempts=1))
    assert "s3cr3t" not in repr(pipeline) and "s3cr3t" not in pipeline.url
    with pytest.raises(bl.BatchlineError) as err:
        pipeline.run([{"a": 1}])
    assert "s3cr3t" not in str(err.value)
    assert "***" in str(err.value) or "127.0.0.1" in str(err.value)


def test_unknown_write_target_in_map_is_a_config_error(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("transactions")])
    with pytest.raises(bl.ConfigError, match="no such write"):
        pipeline.run([{"a": 1}], lambda r, out: out.upsert("transactions", r))
    engine.dispose()


def test_job_status_covers_every_run_of_the_job(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(sqlite_url, chunk_size=100, max_failures=0)
    first = pipeline.run(invoice_lines(500, bad={50}), map_line, job="twice")
    assert first.status == "failed" and first.items_failed == 1
    resumed, _, map_line2 = design_sample(sqlite_url, chunk_size=100)
    second = resumed.run(invoice_lines(500, bad={50}), map_line2, job="twice")
    assert second.resumed_from == 100 and second.status == "success"
    # this run had no failure, but the job did: it is a partial success
    assert scalar(engine, "SELECT status FROM batchline_jobs WHERE name = 'twice'") == (
        "partial_success"
    )
    assert scalar(engine, "SELECT COUNT(*) FROM transactions") == 499
    engine.dispose()


def test_restart_starts_the_job_over_without_its_old_dead_letters(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    pipeline, _, map_line = design_sample(sqlite_url, chunk_size=50)
    pipeline.run(invoice_lines(100, bad={10, 20}), map_line, job="again")
    assert dead_positions(engine, "again") == [10, 20]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM transactions"))
        conn.execute(sa.text("DELETE FROM inventory"))
    redo = pipeline.run(invoice_lines(100, bad={30}), map_line, job="again", restart=True)
    assert redo.status == "partial_success" and redo.resumed_from == 0
    assert dead_positions(engine, "again") == [30]
    assert scalar(engine, "SELECT COUNT(*) FROM transactions") == 99
    engine.dispose()


def test_on_chunk_reports_each_committed_chunk_and_its_failures(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    engine.dispose()
    pipeline, _, map_line = design_sample(sqlite_url, chunk_size=10)
    calls: list[tuple[int, int, list[tuple[int, str]]]] = []

    def on_chunk(result: bl.Result, failed: Any) -> None:
        positions = [(f.position, f.stage) for f in failed]
        calls.append((result.chunks_committed, result.items_processed, positions))

    records = list(invoice_lines(30, bad={4, 25}))
    records[16] = {**records[16], "quantity": "not a number"}  # the increment refuses it: map
    result = pipeline.run(records, map_line, on_chunk=on_chunk)
    assert [c[0] for c in calls] == [1, 2, 3]
    assert calls[-1][1] == result.items_processed
    assert [p for c in calls for p in c[2]] == [(4, "write"), (17, "map"), (25, "write")]


def _spec(**changes: Any) -> dict[str, Any]:
    spec = {"table": "t", "mode": "insert", "key": [], "chunk_size": 10, "file": "/a.csv"}
    return {**spec, **changes}


def test_a_job_run_again_with_another_spec_is_refused_naming_the_difference(
    db_url: str, engine: sa.Engine
) -> None:
    import pickle

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(10))"))
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("t")], chunk_size=10, max_failures=0)
    rows = [{"id": i, "v": "x"} for i in range(1, 31)]
    rows.insert(15, {"id": 1, "v": "dup"})  # stops the run after its second chunk
    stopped = pipeline.run(rows, job="j", spec=_spec(), source_id="rows")
    assert stopped.status == "failed"
    before = _job(db_url, "j")
    assert before is not None and before.position == 20

    with pytest.raises(bl.JobSpecMismatch) as refused:
        pipeline.run(rows, job="j", spec=_spec(table="u", key=["id"]), source_id="rows")
    assert refused.value.job == "j"
    assert refused.value.differences == (("table", "t", "u"), ("key", [], ["id"]))
    assert "started with table='t', key=[], this run has table='u', key=['id']" in str(
        refused.value
    )
    assert "restart=True" in str(refused.value)
    assert pickle.loads(pickle.dumps(refused.value)).differences == refused.value.differences
    assert _job(db_url, "j") == before  # refused before touching anything, still resumable

    # How the records are read and flushed may change (the file's path too, when a source
    # fingerprint vouches for it): the job resumes and finishes.
    pipeline.max_failures = None
    moved = _spec(chunk_size=500, file="/elsewhere/a.csv")
    with pytest.raises(bl.JobSpecMismatch, match="file="):
        pipeline.run(rows, job="j", spec=moved)  # nothing vouches for the moved file
    done = pipeline.run(rows, job="j", spec=moved, source_id="rows")
    assert (done.resumed_from, done.items_processed, done.status) == (20, 11, "success")

    # A finished job refuses too, rather than answering "0 processed" for another load.
    with pytest.raises(bl.JobSpecMismatch, match="mode='insert', this run has mode='upsert'"):
        pipeline.run(rows, job="j", spec=_spec(mode="upsert"), source_id="rows")
    finished = _job(db_url, "j")
    assert finished is not None and finished.status == "partial_success"

    over = pipeline.run(rows, job="j", spec=_spec(table="u"), restart=True)
    assert over.resumed_from == 0
    restarted = _job(db_url, "j")
    assert restarted is not None and restarted.spec is not None
    assert '"table": "u"' in restarted.spec


def _job(url: str, name: str) -> bl.JobState | None:
    with bl.DeadLetters(url) as letters:
        return letters.job(name)


@pytest.mark.parametrize("rows", [3, 3000], ids=["small", "copy-sized"])
def test_a_percent_sign_in_table_and_column_names_is_quoted_once(
    db_url: str, engine: sa.Engine, rows: int
) -> None:
    # In format paramstyle (psycopg, PyMySQL) a literal % is doubled once; doubled twice,
    # "100%" became a column "100%%" that does not exist, on every chunk's first try.
    md = sa.MetaData()
    sa.Table("t%x", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v%", sa.Integer))
    sa.Table(
        "s%y", md, sa.Column("k%", sa.String(20), primary_key=True), sa.Column("n%", sa.Integer)
    )
    md.create_all(engine)
    pipeline = bl.Pipeline(
        db_url,
        writes=[
            bl.Insert("t%x"),
            bl.Increment("s%y", key="k%", columns=["n%"]),
            bl.Upsert("t%x", key="id"),
        ],
        chunk_size=1000,
    )

    def map_row(r: dict[str, Any], out: bl.Out) -> None:
        out.insert("t%x", {"id": r["i"], "v%": r["i"]})
        out.increment("s%y", {"k%": f"k{r['i'] % 7}", "n%": 1})
        if r["i"] % 5 == 0:
            out.upsert("t%x", {"id": r["i"], "v%": -r["i"]})

    result = pipeline.run(({"i": i} for i in range(1, rows + 1)), map_row)
    assert result.status == "success" and result.isolation_flushes == 0, result.to_dict()
    t, s = md.tables["t%x"], md.tables["s%y"]
    with engine.connect() as conn:
        values = dict(conn.execute(sa.select(t.c.id, t.c["v%"])).all())
        totals = dict(conn.execute(sa.select(s.c["k%"], s.c["n%"])).all())
    assert values == {i: -i if i % 5 == 0 else i for i in range(1, rows + 1)}
    assert sum(totals.values()) == rows and len(totals) == min(rows, 7)


def test_a_plain_iterable_is_numbered_its_odd_records_handled_and_a_resume_skips_what_landed(
    sqlite_url: str,
) -> None:
    """A plain iterable's n-th record is position and line n: a dict goes to the mapping as
    it is, another mapping as a dict copy, anything else is a dead letter at stage read; a
    resumed job starts after its checkpoint without mapping what came before."""
    from types import MappingProxyType

    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    seen: list[Any] = []

    def map_row(record: Any, out: bl.Out) -> None:
        seen.append(record)
        out.insert("t", {"id": record["id"], "v": record["v"]})

    first = {"id": 1, "v": "a"}
    records: list[Any] = [first, MappingProxyType({"id": 2, "v": "b"}), ["no"], {"id": 4, "v": "d"}]

    def crashing() -> Iterator[Any]:
        yield from records
        raise OSError("the source broke")

    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("t")], chunk_size=2)
    with pytest.raises(OSError, match="the source broke"):
        pipeline.run(crashing(), map_row, job="numbered")
    assert seen[0] is first and type(seen[1]) is dict and seen[1] == {"id": 2, "v": "b"}

    # the job resumes after record 4, mapping only the records after it
    seen.clear()
    result = pipeline.run([*records, {"id": 5, "v": "e"}], map_row, job="numbered")
    assert (result.resumed_from, result.items_processed, result.status) == (4, 1, "success")
    assert seen == [{"id": 5, "v": "e"}]
    letters = bl.DeadLetters(sqlite_url).list(job="numbered")
    assert [(d.position, d.line, d.stage) for d in letters] == [(3, 3, "read")]
    assert "record is list, expected a mapping" in letters[0].message
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, v FROM t ORDER BY id")).all() == [
            (1, "a"), (2, "b"), (4, "d"), (5, "e"),
        ]  # fmt: skip
