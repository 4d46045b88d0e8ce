"""Arrow data flushed in bulk (``batchline._arrow_write``): the same database, job and Result
as the row path, on SQLite and PostgreSQL.

Each test runs the same data twice through a Pipeline with no map function and one Insert:
once as Arrow (the bulk path) and once as a list of dicts (the row path), into two tables of
the same definition, and compares what was read back exactly, the dead letters, the job's
checkpoint and counters, and the Result.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchline as bl
from batchline import _arrow_write
from tests._schemas import execute, kill_after_first_commit, rows

BULK_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=BULK_BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    name = {"sqlite": "sqlite_url", "postgres": "postgres_url", "mysql": "mysql_url"}[request.param]
    return str(request.getfixturevalue(name))


class Sent:
    """What the bulk path sent: rows through ``ArrowWriter.send`` and the statements."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bulk_rows = 0
        self.attempts = 0
        self.statements: list[tuple[str, int]] = []
        original = _arrow_write.ArrowWriter.send

        def send(
            writer: _arrow_write.ArrowWriter, session: Any, data: Any, wire: Any = None
        ) -> None:
            self.attempts += 1
            original(writer, session, data, wire)
            self.bulk_rows += data.num_rows  # counted once it went through

        monkeypatch.setattr(_arrow_write.ArrowWriter, "send", send)

    def listen(self, pipeline: bl.Pipeline) -> None:
        pipeline.statement_listeners.append(lambda sql, n: self.statements.append((sql, n)))


def run_both(
    url: str, ddl: str, data: pa.Table, monkeypatch: pytest.MonkeyPatch, chunk_size: int = 7
) -> tuple[dict[str, Any], dict[str, Any], Sent]:
    """Load ``data`` as Arrow into ``bulk`` and as dicts into ``rowwise`` (both made with
    ``ddl``, ``{}`` standing for the name); return what each left, and what was sent."""
    execute(url, ddl.format("bulk"), ddl.format("rowwise"))
    sent = Sent(monkeypatch)
    out = []
    for table, source in (("bulk", data), ("rowwise", data.to_pylist())):
        pipeline = bl.Pipeline(url, writes=[bl.Insert(table)], chunk_size=chunk_size)
        if table == "bulk":
            sent.listen(pipeline)
        result = pipeline.run(source, job=table)
        out.append(left_by(url, table, result))
    # the table's name is in the databases' messages
    bulk, rowwise = (eval_named(o, name) for o, name in zip(out, ("bulk", "rowwise")))
    return bulk, rowwise, sent


def left_by(url: str, table: str, result: bl.Result, *, chunks: bool = True) -> dict[str, Any]:
    """What a load into ``table`` (job ``table``) left: its Result (but the timings, the
    statement count and the job's name), the table, its dead letters and its job row;
    without ``chunks``, not how many chunks it took (paths that cut chunks differently)."""
    ignored = ("processing_time_seconds", "records_per_second", "statements", "job")
    if not chunks:
        ignored += ("chunks_committed",)
    return {
        "result": {k: v for k, v in result.to_dict().items() if k not in ignored},
        "table": rows(url, f"SELECT * FROM {table} ORDER BY id"),
        "letters": rows(
            url,
            "SELECT position, line, stage, error_class, message, payload FROM "
            f"batchline_dead_letters WHERE job = '{table}' ORDER BY position",
        ),
        "job": rows(
            url,
            "SELECT position, processed, failed, duplicates, "
            + ("chunks, " if chunks else "")
            + f"status FROM batchline_jobs WHERE name = '{table}'",
        ),
    }


def eval_named(value: Any, name: str) -> Any:
    """``value`` with the table's name in its text replaced by ``T``."""
    if isinstance(value, str):
        return value.replace(name, "T")
    if isinstance(value, dict):
        return {k: eval_named(v, name) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(eval_named(v, name) for v in value)
    return value


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and a float's sign of zero and type compared too."""
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)
    return type(a) is type(b) and a == b


def test_a_dataframe_takes_the_bulk_path_and_leaves_what_the_row_path_leaves(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pa.table({"id": range(1, 101), "name": [f"n{i}" for i in range(100)]})
    bulk, rowwise, sent = run_both(
        url, "CREATE TABLE {} (id BIGINT PRIMARY KEY, name TEXT)", data, monkeypatch, 30
    )
    assert sent.bulk_rows == 100
    if url.startswith("postgresql"):
        copies = [(sql, n) for sql, n in sent.statements if sql.startswith("COPY")]
        assert copies == [
            ("COPY bulk (id, name) FROM STDIN (FORMAT csv)", n) for n in (30, 30, 30, 10)
        ]
    assert bulk == rowwise
    assert bulk["job"] == [(100, 100, 0, 0, 4, "success")]


def _random_floats(n: int) -> list[float]:
    rng = random.Random(13)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300) for _ in range(n)]
    return [*values, 0.1, 1 / 3, -0.0, 5e-324, 1.7976931348623157e308, 2**53 + 1.0]


def _every_type(url: str) -> tuple[str, pa.Table]:
    """A table of every Arrow type the bulk path takes, with nulls, extremes and text that
    CSV must quote, and its DDL per database."""
    postgres, mysql = url.startswith("postgresql"), url.startswith("mysql")
    floats = _random_floats(40)
    n = len(floats) + 2
    utc, paris = timezone.utc, ZoneInfo("Europe/Paris")
    specials = ["", "a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "back\\slash", "\\.", "NULL",
                "\\N", " padded ", "été ☃ 𝄞", "tab\there"]  # fmt: skip

    def cycle(values: list[Any]) -> list[Any]:
        return [values[i % len(values)] if i % 5 else None for i in range(n)]

    def ints(lo: int, hi: int) -> list[Any]:
        return cycle([lo, hi, 0, -1 if lo < 0 else 1, 7])

    # (MySQL holds no infinity: a chunk with one goes as rows, see the NaN test)
    floats_with_edges = [*floats, 1.0, -1.0] if mysql else [*floats, math.inf, -math.inf]
    decimal_type = "NUMERIC(38,10)" if postgres else "DECIMAL(38,10)" if mysql else None
    stamp = "DATETIME(6)" if mysql else "TIMESTAMP"
    zoned = "TIMESTAMPTZ" if postgres else "DATETIME(6)" if mysql else "TEXT"
    columns: dict[str, tuple[pa.Array, str]] = {
        "id": (pa.array(range(n), pa.int64()), "BIGINT PRIMARY KEY"),
        "i8": (pa.array(ints(-128, 127), pa.int8()), "SMALLINT"),
        "i16": (pa.array(ints(-32768, 32767), pa.int16()), "SMALLINT"),
        "i32": (pa.array(ints(-(2**31), 2**31 - 1), pa.int32()), "INTEGER"),
        "i64": (pa.array(ints(-(2**63), 2**63 - 1), pa.int64()), "BIGINT"),
        "u8": (pa.array(ints(0, 255), pa.uint8()), "SMALLINT"),
        "u32": (pa.array(ints(0, 2**32 - 1), pa.uint32()), "BIGINT"),
        "f64": (pa.array(floats_with_edges, pa.float64()), "DOUBLE PRECISION"),
        "f32": (
            pa.array(cycle([0.1, 1e30, -2.5, 3.4028234663852886e38]), pa.float32()),
            "DOUBLE PRECISION",
        ),
        "dcm": (
            pa.array(
                cycle(
                    [
                        Decimal("0E-10"),
                        Decimal("-12345678901234567.8900000001"),
                        Decimal("0.0000000001"),
                        Decimal("1E+17"),
                    ]
                ),
                pa.decimal128(38, 10),
            ),
            decimal_type or "DECIMAL_TEXT(38, 10)",
        ),
        "b": (pa.array(cycle([True, False]), pa.bool_()), "BOOLEAN"),
        "s": (pa.array(cycle(specials), pa.string()), "TEXT"),
        "ls": (pa.array(cycle(specials[::-1]), pa.large_string()), "VARCHAR(50)"),
        "d": (
            pa.array(cycle([date(2024, 2, 29), date(1, 1, 1), date(9999, 12, 31)]), pa.date32()),
            "DATE",
        ),
        "ts": (
            pa.array(
                cycle(
                    [
                        datetime(2024, 1, 1, 12, 0, 0, 500001),
                        datetime(1, 1, 1),
                        datetime(9999, 12, 31, 23, 59, 59, 999999),
                    ]
                ),
                pa.timestamp("us"),
            ),
            stamp,
        ),
        "ts_s": (pa.array(cycle([datetime(2024, 1, 1, 12, 0, 1)]), pa.timestamp("s")), stamp),
        "ts_ms": (
            pa.array(cycle([datetime(2024, 1, 1, 12, 0, 1, 123000)]), pa.timestamp("ms")),
            stamp,
        ),
        "tz": (
            pa.array(
                cycle(
                    [datetime(2024, 1, 1, 12, 0, 0, 500001, utc), datetime(1970, 1, 1, tzinfo=utc)]
                ),
                pa.timestamp("us", "UTC"),
            ),
            zoned,
        ),
        "tzp": (
            pa.array(
                cycle(
                    [
                        datetime(2024, 7, 1, 12, 0, 0, 7, paris),
                        datetime(2024, 1, 1, 0, 0, tzinfo=paris),
                    ]
                ),
                pa.timestamp("us", "Europe/Paris"),
            ),
            zoned,
        ),
        # nanoseconds that are whole microseconds: cast to microseconds, as the row path does
        "ns": (
            pa.array(cycle([1_000, 1_704_110_400_000_001_000]), pa.timestamp("ns")),
            stamp,
        ),
    }
    if postgres:
        columns["u64"] = (pa.array(ints(0, 2**64 - 1), pa.uint64()), "NUMERIC(20,0)")
        columns["nan"] = (pa.array(cycle([math.nan, 1.5]), pa.float64()), "DOUBLE PRECISION")
        columns["real"] = (pa.array(cycle([0.1, 1e30, -2.5]), pa.float32()), "REAL")
        columns["dec256"] = (
            pa.array(cycle([Decimal("1" * 60 + ".5"), Decimal("-0.5")]), pa.decimal256(70, 1)),
            "NUMERIC",
        )
    table = pa.table({k: v for k, (v, _) in columns.items()})
    ddl = "CREATE TABLE {} (" + ", ".join(f"{k} {t}" for k, (_, t) in columns.items()) + ")"
    return ddl, table


def test_every_type_the_bulk_path_takes_reads_back_as_the_row_path_stored_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddl, data = _every_type(url)
    bulk, rowwise, sent = run_both(url, ddl, data, monkeypatch)
    assert sent.bulk_rows == data.num_rows  # every chunk went in bulk
    assert bulk["letters"] == rowwise["letters"] == []
    assert len(bulk["table"]) == data.num_rows
    for got, want in zip(bulk["table"], rowwise["table"]):
        for name, a, b in zip(data.schema.names, got, want):
            assert same(a, b), (name, got[0], a, b)
    # (On PostgreSQL the row path's first try of a chunk with an integer column holding
    # a null fails: its unnest array literal spells the null "None". Its isolation then
    # lands every row, and counts the tries; the bulk path has none to count.)
    bulk["result"].pop("isolation_flushes")
    rowwise["result"].pop("isolation_flushes")
    assert bulk["result"] == rowwise["result"] and bulk["job"] == rowwise["job"]


def test_types_the_bulk_path_cannot_write_exactly_go_the_row_path(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # binary, a list, a nanosecond part: each its own chunk (chunk_size=1 below), row path
    data = pa.table(
        {
            "id": [1, 2, 3, 4],
            "v": [b"\x00\x01", None, None, None],
            "at": pa.array([None, None, 1_001, 5_000], pa.timestamp("ns")),
        }
    )
    postgres = url.startswith("postgresql")
    ddl = "CREATE TABLE {} (id BIGINT PRIMARY KEY, v " + ("BYTEA" if postgres else "BLOB")
    ddl += ", at TEXT)" if not postgres else ", at TIMESTAMP)"
    bulk, rowwise, sent = run_both(url, ddl, data, monkeypatch, chunk_size=4)
    assert sent.bulk_rows == 0  # binary: the whole chunk went as rows
    assert same(bulk, rowwise)


def test_a_nan_on_sqlite_is_dead_lettered_as_the_row_path_does(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pa.table({"id": [1, 2, 3, 4, 5, 6], "x": [1.5, math.nan, None, 2.5, 3.5, 4.5]})
    bulk, rowwise, sent = run_both(
        sqlite_url, "CREATE TABLE {} (id BIGINT PRIMARY KEY, x REAL)", data, monkeypatch, 2
    )
    # the chunk with the NaN goes as rows; so does the next (after a chunk with a bad
    # record, as the row path's "dirty" form); the third in bulk
    assert sent.bulk_rows == 2
    assert same(bulk, rowwise)
    assert [letter[0] for letter in bulk["letters"]] == [2]


def test_bad_rows_inside_an_arrow_chunk_are_dead_lettered_as_the_row_path_does(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 500
    ids = list(range(1, n + 1))
    ids[300] = 5  # a duplicate key
    names: list[str | None] = [f"n{i}" for i in range(n)]
    names[10] = None  # NOT NULL
    values = [i / 3 for i in range(n)]
    values[20] = -1.0  # CHECK
    data = pa.table({"id": ids, "name": names, "v": values})
    ddl = (
        "CREATE TABLE {} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
        "v DOUBLE PRECISION CHECK (v >= 0))"
    )
    bulk, rowwise, sent = run_both(url, ddl, data, monkeypatch, chunk_size=100)
    if url.startswith("postgresql"):
        # every chunk in bulk: COPY names each bad row, which alone goes the row path
        # (_copy_isolation; tests/test_copy_isolation.py), with less isolation to count
        assert sent.attempts == 5
        assert bulk["result"].pop("isolation_flushes") <= rowwise["result"].pop("isolation_flushes")
    else:
        # chunk 1 refused in bulk, then sent as rows; chunk 2 as rows (after bad records, as
        # the row path's "dirty" form); chunk 3 in bulk; chunk 4 refused, as rows; chunk 5
        # rows
        assert sent.attempts == 3 and sent.bulk_rows == 100
    assert bulk == rowwise
    assert [letter[:3] for letter in bulk["letters"]] == [
        (11, 11, "write"), (21, 21, "write"), (301, 301, "write")
    ]  # fmt: skip
    assert bulk["job"] == [(n, n - 3, 3, 0, 5, "partial_success")]
    assert len(bulk["table"]) == n - 3


def test_progress_and_resume_positions_are_the_row_paths(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pa.table({"id": range(1, 1001), "v": [str(i) for i in range(1000)]})
    execute(url, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
    seen: list[tuple[int, int, int]] = []
    pipeline = bl.Pipeline(url, writes=[bl.Insert("t")], chunk_size=300)

    class Stop(Exception):
        pass

    def progress(result: bl.Result, failed: list[Any]) -> None:
        seen.append((result.items_processed, result.chunks_committed, len(failed)))
        if len(seen) == 2:
            raise Stop  # the run ends after its second chunk committed, as a kill would

    with pytest.raises(Stop):
        pipeline.run(data, job="j", on_chunk=progress)
    assert rows(url, "SELECT position, processed, chunks FROM batchline_jobs") == [(600, 600, 2)]
    second = pipeline.run(data, job="j", on_chunk=progress)
    assert second.resumed_from == 600 and second.items_processed == 400
    assert seen == [(300, 1, 0), (600, 2, 0), (300, 1, 0), (400, 2, 0)]
    assert rows(url, "SELECT count(*), min(id), max(id) FROM t") == [(1000, 1, 1000)]


def test_a_killed_arrow_load_resumes_to_exactly_a_clean_load(tmp_path: Path, url: str) -> None:
    n = 200_000
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "amount": pa.array([Decimal(i) / 10_000 for i in range(n)], pa.decimal128(38, 4)),
            "at": pa.array(
                [base + timedelta(microseconds=7 * i) for i in range(n)], pa.timestamp("us", "UTC")
            ),
            "name": pa.array([f"name {i}" for i in range(n)]),
        }
    )
    path = tmp_path / "k.parquet"
    pq.write_table(table, path, row_group_size=20_000)
    postgres, mysql = url.startswith("postgresql"), url.startswith("mysql")
    types = "DECIMAL_TEXT(38, 4), at TEXT"
    if postgres or mysql:
        types = "NUMERIC(38,4), at " + ("TIMESTAMPTZ" if postgres else "DATETIME(6)")
    ddl = "CREATE TABLE {} (id BIGINT PRIMARY KEY, amount " + types + ", name TEXT)"
    execute(url, ddl.format("k"), ddl.format("clean"))
    script = (
        "import sys, batchline as bl, pyarrow.parquet as pq\n"
        "bl.Pipeline(sys.argv[1], writes=[bl.Insert('k')], chunk_size=500)"
        ".run(pq.read_table(sys.argv[2]), job='k')\n"
    )
    position = kill_after_first_commit(url, script, str(path))
    if position == 0 or position >= n:
        pytest.skip("the load finished before it could be killed mid-way")

    resumed = bl.Pipeline(url, writes=[bl.Insert("k")], chunk_size=500).run(
        pq.read_table(path), job="k"
    )
    assert resumed.resumed_from > 0 and resumed.status == "success"
    clean = bl.Pipeline(url, writes=[bl.Insert("clean")]).run(pq.read_table(path), job="c")
    assert clean.status == "success"
    sql = "SELECT id, amount, at, name FROM {} ORDER BY id"
    resumed_rows, clean_rows = rows(url, sql.format("k")), rows(url, sql.format("clean"))
    assert len(resumed_rows) == n and resumed_rows == clean_rows
    assert rows(url, "SELECT position, processed, failed FROM batchline_jobs WHERE name = 'k'") == [
        (n, n, 0)
    ]


def _load_twice(
    url: str, data: Any, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[dict[str, Any], dict[str, Any], Sent]:
    """``bl.load`` ``data`` into ``bulk``, then into ``rowwise`` with the bulk path turned
    off (every chunk judged inexact), and return what each left."""
    sent = Sent(monkeypatch)
    out = []
    for table in ("bulk", "rowwise"):
        if table == "rowwise":
            monkeypatch.setattr(_arrow_write.ArrowWriter, "exact", lambda self, data: False)
        result = bl.load(data, url, table=table, job=table, **options)
        out.append(left_by(url, table, result))
    bulk, rowwise = (eval_named(o, name) for o, name in zip(out, ("bulk", "rowwise")))
    return bulk, rowwise, sent


def test_bl_load_of_a_dataframe_takes_the_bulk_path_and_leaves_what_rows_leave(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    n = 1_000
    frame = pd.DataFrame(
        {
            "id": range(n),
            "qty": [i % 7 for i in range(n)],
            "price": [i / 7 for i in range(n)],
            "name": [f"name, {i}" if i % 9 else "" for i in range(n)],
            "ok": [i % 2 == 0 for i in range(n)],
            "at": pd.date_range("2024-01-01", periods=n, freq="1017us", tz="UTC"),
            "day": [date(2024, 1, 1) + timedelta(days=i) for i in range(n)],
            "amount": [Decimal(i) / 100 for i in range(n)],
        }
    )
    bulk, rowwise, sent = _load_twice(url, frame, monkeypatch, chunk_size=300)
    assert sent.bulk_rows == n
    assert same(bulk, rowwise)
    assert bulk["job"] == [(n, n, 0, 0, 4, "success")]


def test_bl_load_sends_as_rows_what_its_map_would_change_or_refuse(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # empty text stored as NULL (empty_text="null"): the map changes it, so those chunks
    # go as rows; a NaN on SQLite is refused by the map, as rows
    data = pa.table(
        {
            "id": range(6),
            "name": ["a", "", "c", "d", "e", "f"],
            "x": [1.0, 2.0, 3.0, math.nan, 5.0, 6.0],
        }
    )
    bulk, rowwise, sent = _load_twice(url, data, monkeypatch, chunk_size=2, empty_text="null")
    assert same(bulk, rowwise)
    postgres = url.startswith("postgresql")
    assert sent.bulk_rows == (4 if postgres else 2)
    assert bulk["table"][1][1] is None
    assert [letter[0] for letter in bulk["letters"]] == ([] if postgres else [4])


def test_batchline_load_of_a_parquet_file_takes_the_bulk_path(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from batchline.cli import cli

    n = 3_000
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "price": pa.array([Decimal(i) / 100 for i in range(n)], pa.decimal128(12, 2)),
            "at": pa.array([datetime(2024, 1, 1) + timedelta(seconds=i) for i in range(n)]),
            "note": [f'line {i}, "quoted"' for i in range(n)],
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, row_group_size=1_000)
    sent = Sent(monkeypatch)
    runner = CliRunner()
    got = []
    for name in ("bulk", "rowwise"):
        if name == "rowwise":
            monkeypatch.setattr(_arrow_write.ArrowWriter, "exact", lambda self, data: False)
        args = ["load", str(path), "--db", url, "--table", name, "--job", name, "--quiet"]
        outcome = runner.invoke(cli, [*args, "--chunk-size", "700"], catch_exceptions=False)
        assert outcome.exit_code == 0, outcome.output
        got.append(rows(url, f"SELECT * FROM {name} ORDER BY id"))
        got.append(
            rows(
                url, f"SELECT position, processed, chunks FROM batchline_jobs WHERE name = '{name}'"
            )
        )
    assert sent.bulk_rows == n
    assert got[0] == got[2] and len(got[0]) == n
    assert got[1] == got[3] == [(n, n, 5)]
