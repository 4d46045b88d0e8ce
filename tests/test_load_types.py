"""Exact types on the load path: what is read back equals what was loaded, on every database.

Each test loads through ``batchline load`` (or ``bl.load``) into a private database on SQLite,
PostgreSQL and MariaDB, then reads the table back with plain SQL: the instant to the
microsecond, every decimal digit, the bytes. A value a database cannot hold is dead-lettered
with the reason, never changed.
"""

from __future__ import annotations

import json
import math
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import batchline as bl
from batchline.cli import cli
from tests._schemas import execute, rows


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def letters(url: str) -> list[tuple[Any, ...]]:
    return rows(url, "SELECT line, stage, message FROM batchline_dead_letters ORDER BY position")


def backend(url: str) -> str:
    return sa.make_url(url).get_backend_name()


def instant(value: Any, url: str) -> datetime:
    """A stored timestamp as an aware UTC datetime: MySQL's DATETIME(6) holds UTC, naive;
    SQLite holds ISO text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


# -- timestamps -------------------------------------------------------------------------------


def test_timestamps_keep_their_offset_and_microseconds(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "id,at\n1,2024-01-01T12:00:00.5+02:00\n2,2024-06-30T23:59:59.123456-05:30\n"
        "3,2024-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    result = run("load", str(path), "--db", db_url, "--table", "t")
    assert result.exit_code == 0, result.output
    got = [instant(r[1], db_url) for r in rows(db_url, "SELECT id, at FROM t ORDER BY id")]
    assert got == [
        datetime(2024, 1, 1, 10, 0, 0, 500000, tzinfo=timezone.utc),
        datetime(2024, 7, 1, 5, 29, 59, 123456, tzinfo=timezone.utc),
        datetime(2024, 1, 1, tzinfo=timezone.utc),
    ]


def test_parquet_timestamps_keep_microseconds(tmp_path: Path, db_url: str) -> None:
    values = [datetime(2024, 1, 1, 12, 0, 0, 1), datetime(2024, 2, 29, 23, 59, 59, 999999)]
    table = pa.table({"id": [1, 2], "at": pa.array(values, pa.timestamp("us"))})
    pq.write_table(table, tmp_path / "t.parquet")
    result = run("load", str(tmp_path / "t.parquet"), "--db", db_url, "--table", "t")
    assert result.exit_code == 0, result.output
    got = [r[0] for r in rows(db_url, "SELECT at FROM t ORDER BY id")]
    got = [datetime.fromisoformat(v) if isinstance(v, str) else v for v in got]
    assert got == values


def test_an_existing_coarser_timestamp_column_refuses_finer_values(
    tmp_path: Path, db_url: str
) -> None:
    if backend(db_url) == "sqlite":
        pytest.skip("SQLite stores timestamps as text: every digit is kept")
    column = "DATETIME" if backend(db_url) == "mysql" else "TIMESTAMP(0)"
    execute(db_url, f"CREATE TABLE c (id INTEGER, at {column})")
    path = tmp_path / "c.csv"
    path.write_text("id,at\n1,2024-01-01 12:00:00\n2,2024-01-01 12:00:00.5\n", "utf-8")
    result = run("load", str(path), "--db", db_url, "--table", "c")
    assert result.exit_code == 3, result.output
    assert rows(db_url, "SELECT id FROM c") == [(1,)]
    ((line, stage, message),) = letters(db_url)
    assert (line, stage) == (3, "map") and "finer than the column keeps (0 digits)" in message


# -- binary, decimals, declared types ---------------------------------------------------------


def test_parquet_binary_is_stored_as_bytes(tmp_path: Path, db_url: str) -> None:
    blobs = [b"\x00\x01\xff", b"", bytes(range(256))]
    table = pa.table({"id": [1, 2, 3], "b": pa.array(blobs, pa.binary())})
    pq.write_table(table, tmp_path / "b.pq")
    result = run("load", str(tmp_path / "b.pq"), "--db", db_url, "--table", "blobs")
    assert result.exit_code == 0, result.output
    assert [bytes(r[0]) for r in rows(db_url, "SELECT b FROM blobs ORDER BY id")] == blobs


def test_parquet_declared_types_are_used_as_declared(tmp_path: Path, db_url: str) -> None:
    big = Decimal("1234567890123456789012345678901234.5678")  # 38 digits
    n = 2500
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "amount": pa.array([Decimal("0.0001")] * (n - 1) + [big], pa.decimal128(38, 4)),
            # the first 2,000 values are null: still an integer column
            "late": pa.array([None] * 2000 + list(range(n - 2000)), pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=1000)
    result = run("load", str(tmp_path / "d.parquet"), "--db", db_url, "--table", "d", "--json")
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("d")}
    engine.dispose()
    assert isinstance(columns["late"], sa.Integer)
    if backend(db_url) != "sqlite":
        assert isinstance(columns["amount"], sa.Numeric)
        assert (columns["amount"].precision, columns["amount"].scale) == (38, 4)
    (last,) = rows(db_url, f"SELECT amount, late FROM d WHERE id = {n - 1}")
    assert Decimal(str(last[0])) == big and str(last[0]) == str(big)
    assert last[1] == n - 2001
    assert rows(db_url, "SELECT COUNT(*) FROM d WHERE late IS NULL") == [(2000,)]


def test_sqlite_keeps_every_decimal_digit_as_text(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,amount\n1,12345678901234567.89\n2,0.10\n", encoding="utf-8")
    assert run("load", str(path), "--db", sqlite_url, "--table", "m").exit_code == 0
    got = rows(sqlite_url, "SELECT amount, typeof(amount) FROM m ORDER BY id")
    assert got == [("12345678901234567.89", "text"), ("0.10", "text")]


def test_sqlite_refuses_to_add_decimals_inexactly(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text("k,amount\na,0.10\na,0.20\n", encoding="utf-8")
    args = ("load", str(path), "--db", sqlite_url, "--table", "m", "--increment", "--key", "k")
    refused = run(*args, "--columns", "amount")
    assert refused.exit_code == 2 and "SQLite cannot add decimals exactly" in refused.output
    assert run(*args, "--columns", "amount", "--type", "amount=float").exit_code == 0


# -- NaN and infinity -------------------------------------------------------------------------


def test_nan_and_infinity_are_kept_or_dead_lettered_with_the_reason(
    tmp_path: Path, db_url: str
) -> None:
    values = [1.5, math.nan, math.inf, -math.inf]
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "x": values}), tmp_path / "f.parquet")
    result = run("load", str(tmp_path / "f.parquet"), "--db", db_url, "--table", "f")
    got = dict(rows(db_url, "SELECT id, x FROM f"))
    dead = {line: message for line, _, message in letters(db_url)}
    kind = backend(db_url)
    if kind == "postgresql":  # double precision holds all of them
        assert result.exit_code == 0, result.output
        assert got[1] == 1.5 and math.isnan(got[2]) and got[3] == math.inf and got[4] == -math.inf
    elif kind == "sqlite":  # REAL holds ±inf; NaN would become NULL
        assert result.exit_code == 3
        assert got == {1: 1.5, 3: math.inf, 4: -math.inf}
        assert "is NaN" in dead[2]
    else:  # DOUBLE holds neither
        assert result.exit_code == 3
        assert got == {1: 1.5}
        assert "is NaN" in dead[2] and "is infinite" in dead[3] and "is infinite" in dead[4]


# -- inference by what most values say --------------------------------------------------------


def test_one_outlier_in_the_sample_is_dead_lettered_not_the_column(
    tmp_path: Path, db_url: str
) -> None:
    path = tmp_path / "inf.csv"
    path.write_text("sku,qty\nA,1\nB,x2\nA,3\nC,4\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["load", str(path), "--db", db_url, "--table", "stock", "--increment", "--key", "sku",
         "--columns", "qty"],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert rows(db_url, "SELECT sku, qty FROM stock ORDER BY sku") == [("A", 4), ("C", 4)]
    ((line, stage, message),) = letters(db_url)
    assert (line, stage) == (3, "map") and "'x2' is not an integer" in message
    outliers = [ln for ln in result.stderr.splitlines() if ln.startswith("column 'qty'")]
    assert len(outliers) == 1 and "1 value did not fit" in outliers[0]


def test_mariadb_text_key_is_a_varchar_sized_from_the_data(tmp_path: Path, mysql_url: str) -> None:
    path = tmp_path / "k.csv"
    path.write_text("sku,qty\n" + "".join(f"{'S' * 300}{i},1\n" for i in range(3)), "utf-8")
    args = ("--table", "k", "--upsert", "--key", "sku")
    assert run("load", str(path), "--db", mysql_url, *args).exit_code == 0
    ((kind,),) = rows(
        mysql_url,
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'k' AND COLUMN_NAME = 'sku'",
    )
    assert kind == "varchar(602)"  # twice the longest (301)
    assert rows(mysql_url, "SELECT COUNT(*) FROM k") == [(3,)]


# -- empty fields -----------------------------------------------------------------------------


def test_an_empty_field_is_null_except_in_text_unless_asked(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text("id,n,day,name\n1,,,\n2,5,2024-01-01,x\n", encoding="utf-8")
    assert run("load", str(path), "--db", db_url, "--table", "e1").exit_code == 0
    assert rows(db_url, "SELECT n, day, name FROM e1 WHERE id = 1") == [(None, None, "")]
    args = ("--table", "e2", "--empty-text", "null")
    assert run("load", str(path), "--db", db_url, *args).exit_code == 0
    assert rows(db_url, "SELECT n, day, name FROM e2 WHERE id = 1") == [(None, None, None)]


# -- schema.table -----------------------------------------------------------------------------


@pytest.fixture
def other_schema(db_url: str) -> Iterator[str]:
    """A second schema (PostgreSQL) or database (MySQL) beside the test's own, dropped after."""
    if backend(db_url) == "sqlite":
        pytest.skip("SQLite has no schemas to create tables in (only attached databases)")
    name = f"bt_other_{secrets.token_hex(4)}"
    quoted = f'"{name}"' if backend(db_url) == "postgresql" else f"`{name}`"
    drop = (
        f"DROP SCHEMA {quoted} CASCADE"
        if backend(db_url) == "postgresql"
        else (f"DROP DATABASE {quoted}")
    )
    execute(db_url, f"CREATE SCHEMA {quoted}" if backend(db_url) == "postgresql" else (
        f"CREATE DATABASE {quoted}"
    ))  # fmt: skip
    try:
        yield name
    finally:
        execute(db_url, drop)


def test_schema_dot_table_creates_the_table_in_that_schema(
    tmp_path: Path, db_url: str, other_schema: str
) -> None:
    path = tmp_path / "s.csv"
    path.write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    q = '"' if backend(db_url) == "postgresql" else "`"
    dotted = run("load", str(path), "--db", db_url, "--table", f"{other_schema}.t1")
    assert dotted.exit_code == 0, dotted.output
    flag = run("load", str(path), "--db", db_url, "--schema", other_schema, "--table", "t2")
    assert flag.exit_code == 0, flag.output
    for table in ("t1", "t2"):
        got = rows(db_url, f"SELECT id, name FROM {q}{other_schema}{q}.{table} ORDER BY id")
        assert got == [(1, "a"), (2, "b")]


# -- reading CSV ------------------------------------------------------------------------------


def test_semicolons_latin1_and_sniffing(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes("id;name\n1;caf\xe9\n2;na\xefve\n".encode("latin-1"))
    args = ("--db", sqlite_url, "--encoding", "latin-1")
    assert run("load", str(path), *args, "--table", "a", "--delimiter", ";").exit_code == 0
    assert run("load", str(path), *args, "--table", "b", "--sniff").exit_code == 0
    for table in ("a", "b"):
        assert rows(sqlite_url, f"SELECT id, name FROM {table}") == [(1, "café"), (2, "naïve")]


def test_a_custom_quote_and_a_200000_character_field(tmp_path: Path, sqlite_url: str) -> None:
    big = "x" * 200_000
    path = tmp_path / "q.csv"
    path.write_text(f"id,v\n1,'a,b'\n2,{big}\n", encoding="utf-8")
    result = run("load", str(path), "--db", sqlite_url, "--table", "q", "--quote", "'")
    assert result.exit_code == 0, result.output
    assert rows(sqlite_url, "SELECT v FROM q ORDER BY id") == [("a,b",), (big,)]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_40_mb_field_loads(tmp_path: Path, sqlite_url: str, fmt: str) -> None:
    big = "y" * (40 * 1024 * 1024)
    path = tmp_path / f"big.{fmt}"
    if fmt == "csv":
        path.write_text(f"id,v\n1,{big}\n2,small\n", encoding="utf-8")
    else:
        path.write_text(f'{{"id": 1, "v": "{big}"}}\n{{"id": 2, "v": "small"}}\n', "utf-8")
    result = run("load", str(path), "--db", sqlite_url, "--table", "big")
    assert result.exit_code == 0, result.output
    assert rows(sqlite_url, "SELECT id, length(v) FROM big ORDER BY id") == [
        (1, len(big)),
        (2, 5),
    ]


def test_a_tpch_tbl_file(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "region.tbl"
    path.write_text("0|AFRICA|lar deposits|\n1|AMERICA|hs use ironic|\n", encoding="utf-8")
    names = "r_regionkey,r_name,r_comment"
    result = run("load", str(path), "--db", sqlite_url, "--table", "region", "--names", names)
    assert result.exit_code == 0, result.output
    assert rows(sqlite_url, "SELECT * FROM region ORDER BY r_regionkey") == [
        (0, "AFRICA", "lar deposits"),
        (1, "AMERICA", "hs use ironic"),
    ]


def test_type_overrides_the_inferred_kind(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "o.csv"
    path.write_text("id,code,amount\n1,12,3.5\n", encoding="utf-8")
    args = ("--table", "o", "--type", "code=text", "--type", "amount=decimal(12,4)")
    assert run("load", str(path), "--db", db_url, *args).exit_code == 0
    ((code, amount),) = rows(db_url, "SELECT code, amount FROM o")
    assert code == "12" and Decimal(str(amount)) == Decimal("3.5")


# -- in-process data --------------------------------------------------------------------------


def test_a_dataframe_loads_like_the_same_file(tmp_path: Path, db_url: str) -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["a", None, "c"],
            "amount": [Decimal("1.10"), Decimal("2.25"), None],
            "at": pd.to_datetime(
                ["2024-01-01 12:00:00.000001", None, "2024-03-01"], utc=True, format="ISO8601"
            ),
            "tags": [[1, 2], [], None],
        }
    )
    frame["amount"] = frame["amount"].astype(object)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "same.parquet")
    from_file = bl.load(tmp_path / "same.parquet", db_url, table="from_file")
    from_frame = bl.load(frame, db_url, table="from_frame")
    assert from_file.status == from_frame.status == "success"
    sql = "SELECT id, name, amount, at, tags FROM {} ORDER BY id"
    file_rows = rows(db_url, sql.format("from_file"))
    assert file_rows == rows(db_url, sql.format("from_frame"))
    first = file_rows[0]
    assert instant(first[3], db_url) == datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=timezone.utc)
    tags = first[4] if isinstance(first[4], list) else json.loads(first[4])
    assert tags == [1, 2]


def test_pipeline_run_takes_a_dataframe_and_arrow_data(db_url: str) -> None:
    execute(db_url, "CREATE TABLE p (id INTEGER PRIMARY KEY, v VARCHAR(10))")
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("p")])
    with pipeline:
        first = pipeline.run(pd.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
        second = pipeline.run(pa.table({"id": [3], "v": ["c"]}))
        third = pipeline.run(pa.record_batch({"id": [4], "v": ["d"]}))
    assert first.items_processed + second.items_processed + third.items_processed == 4
    assert rows(db_url, "SELECT id, v FROM p ORDER BY id") == [
        (1, "a"), (2, "b"), (3, "c"), (4, "d")
    ]  # fmt: skip


def test_nanoseconds_are_refused_not_truncated(sqlite_url: str) -> None:
    stamps = pa.array([1_000, 1_001], pa.timestamp("ns"))  # the second has a nanosecond part
    result = bl.load(pa.table({"id": [1, 2], "at": stamps}), sqlite_url, table="ns")
    assert result.status == "partial_success"
    ((_, stage, message),) = letters(sqlite_url)
    assert stage == "map" and "nanoseconds" in message
    (value,) = rows(sqlite_url, "SELECT at FROM ns")[0]
    assert datetime.fromisoformat(value) == datetime(1970, 1, 1) + timedelta(microseconds=1)


def test_a_killed_parquet_load_resumes_to_exactly_a_clean_load(tmp_path: Path, db_url: str) -> None:
    n = 20_000
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "amount": pa.array([Decimal(i) / 10_000 for i in range(n)], pa.decimal128(38, 4)),
            "payload": pa.array([i.to_bytes(4, "big") for i in range(n)], pa.binary()),
            "at": pa.array(
                [base + timedelta(microseconds=7 * i) for i in range(n)], pa.timestamp("us", "UTC")
            ),
        }
    )
    path = tmp_path / "k.parquet"
    pq.write_table(table, path, row_group_size=2_000)
    command = [
        sys.executable, "-m", "batchline.cli", "load", str(path), "--db", db_url,
        "--table", "k", "--job", "k", "--chunk-size", "100", "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    position = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            found = rows(db_url, "SELECT position FROM batchline_jobs WHERE name = 'k'")
        except sa.exc.DBAPIError:
            found = []  # not created yet, or locked for a moment
        position = found[0][0] if found else 0
        if position > 0:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if position == 0 or position >= n:
        pytest.skip("the load finished before it could be killed mid-way")

    resumed = run("load", str(path), "--db", db_url, "--table", "k", "--job", "k", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["resumed_from"] > 0
    clean = run("load", str(path), "--db", db_url, "--table", "clean", "--json")
    assert clean.exit_code == 0, clean.output
    sql = "SELECT id, amount, payload, at FROM {} ORDER BY id"
    resumed_rows, clean_rows = rows(db_url, sql.format("k")), rows(db_url, sql.format("clean"))
    assert len(resumed_rows) == n and resumed_rows == clean_rows
    last = resumed_rows[-1]
    assert str(last[1]) == "1.9999" and bytes(last[2]) == (n - 1).to_bytes(4, "big")
    assert instant(last[3], db_url) == base + timedelta(microseconds=7 * (n - 1))


def test_a_replay_on_sqlite_still_checks_decimals_stored_as_text(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,price\n1,1.25\n2,1.234\n", encoding="utf-8")
    args = ("--db", sqlite_url, "--table", "p", "--type", "price=decimal(10,2)", "--job", "p")
    assert run("load", str(path), *args).exit_code == 3
    replay = run("dlq", "replay", "--db", sqlite_url, "--job", "p")
    assert replay.exit_code == 1, replay.output  # its only record failed again
    assert rows(sqlite_url, "SELECT id, price FROM p") == [(1, "1.25")]
    ((_, stage, message),) = letters(sqlite_url)
    assert stage == "map" and "has more than 2 decimal places" in message


def test_csv_read_options_are_refused_with_dask_for_now(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n", encoding="utf-8")
    result = run("load", str(path), "--db", sqlite_url, "--table", "a", "--workers", "1",
                 "--delimiter", ";")  # fmt: skip
    assert result.exit_code == 2 and "--delimiter cannot be used with --dask/--workers" in (
        result.output
    )


def test_a_dataframe_column_arrow_cannot_type_is_one_clear_error(sqlite_url: str) -> None:
    with pytest.raises(bl.SourceError, match="column a"):
        bl.load(pd.DataFrame({"a": [1, "x"]}), sqlite_url, table="mixed")
    assert rows(sqlite_url, "SELECT name FROM sqlite_master WHERE name = 'mixed'") == []


def test_a_polars_dataframe_loads_like_pandas(sqlite_url: str) -> None:
    pl = pytest.importorskip("polars")
    frame = {"id": [1, 2], "v": [1.5, None], "at": [datetime(2024, 1, 1, 0, 0, 0, 7), None]}
    assert bl.load(pl.DataFrame(frame), sqlite_url, table="from_polars").status == "success"
    assert bl.load(pd.DataFrame(frame), sqlite_url, table="from_pandas").status == "success"
    sql = "SELECT id, v, at FROM {} ORDER BY id"
    assert rows(sqlite_url, sql.format("from_polars")) == rows(
        sqlite_url, sql.format("from_pandas")
    )


def test_every_arrow_type_of_the_readme_table_round_trips(tmp_path: Path, db_url: str) -> None:
    plus2 = timezone(timedelta(hours=2))
    wide = Decimal("1234567890" * 6 + "12345.67891")  # 70 digits: beyond DECIMAL(65)
    table = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "tiny": pa.array([-128], pa.int8()),
            "huge": pa.array([2**64 - 1], pa.uint64()),
            "f32": pa.array([1.5], pa.float32()),
            "money": pa.array([Decimal("-1234567.891")], pa.decimal128(10, 3)),
            "wide": pa.array([wide], pa.decimal256(70, 5)),
            "flag": pa.array([True]),
            "day": pa.array([date(2024, 2, 29)], pa.date32()),
            "naive": pa.array([datetime(2024, 1, 1, 1, 2, 3, 456789)], pa.timestamp("us")),
            "aware": pa.array(
                [datetime(2024, 1, 1, 1, 2, 3, 456789, tzinfo=plus2)], pa.timestamp("us", "+02:00")
            ),
            "name": pa.array(["zoë"], pa.large_string()),
            "raw": pa.array([b"\x00\xff\x10"], pa.binary(3)),
            "items": pa.array([[1, 2, 3]], pa.list_(pa.int64())),
            "point": pa.array([{"x": 1, "label": "a"}]),
            "clock": pa.array([time_of_day(12, 34, 56, 789012)], pa.time64("us")),
        }
    )
    pq.write_table(table, tmp_path / "all.parquet")
    result = run("load", str(tmp_path / "all.parquet"), "--db", db_url, "--table", "alltypes")
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            got = conn.exec_driver_sql("SELECT * FROM alltypes").mappings().one()
    finally:
        engine.dispose()
    assert got["tiny"] == -128
    assert Decimal(str(got["huge"])) == 2**64 - 1
    assert got["f32"] == 1.5
    assert str(got["money"]) == "-1234567.891"
    assert got["wide"] == str(wide)
    assert bool(got["flag"]) is True
    assert str(got["day"]) == "2024-02-29"
    naive = got["naive"]
    assert (datetime.fromisoformat(naive) if isinstance(naive, str) else naive) == datetime(
        2024, 1, 1, 1, 2, 3, 456789
    )
    assert instant(got["aware"], db_url) == datetime(2023, 12, 31, 23, 2, 3, 456789, timezone.utc)
    assert got["name"] == "zoë"
    assert bytes(got["raw"]) == b"\x00\xff\x10"
    items, point = got["items"], got["point"]
    assert (items if isinstance(items, list) else json.loads(items)) == [1, 2, 3]
    assert (point if isinstance(point, dict) else json.loads(point)) == {"x": 1, "label": "a"}
    assert got["clock"] == "12:34:56.789012"


@pytest.mark.parametrize("write", ["insert", "upsert"])
def test_a_nan_from_a_hand_written_pipeline_is_refused_on_sqlite(
    sqlite_url: str, write: str
) -> None:
    execute(sqlite_url, "CREATE TABLE n (id INTEGER PRIMARY KEY, x REAL)")
    target = bl.Insert("n") if write == "insert" else bl.Upsert("n", key="id")
    records = [{"id": 1, "x": 1.0}, {"id": 2, "x": math.nan}, {"id": 3, "x": None}]
    with bl.Pipeline(sqlite_url, writes=[target]) as pipeline:
        result = pipeline.run(records)
    assert (result.items_processed, result.items_failed) == (2, 1)
    assert rows(sqlite_url, "SELECT id, x FROM n ORDER BY id") == [(1, 1.0), (3, None)]
    ((line, stage, message),) = letters(sqlite_url)
    assert (line, stage) == (2, "write") and "NaN" in message and "NULL" in message


def test_mariadb_composite_text_key_fits_the_index(tmp_path: Path, mysql_url: str) -> None:
    path = tmp_path / "c.csv"
    long = "L" * 200  # twice that is past a third of the 768 characters a key may take
    path.write_text(f"a,b,c,qty\n{long},x,y,1\n{long},x,y,2\nz,x,y,5\n", encoding="utf-8")
    args = ("--table", "ck", "--increment", "--key", "a,b,c", "--columns", "qty")
    result = run("load", str(path), "--db", mysql_url, *args)
    assert result.exit_code == 0, result.output
    assert rows(mysql_url, "SELECT LENGTH(a), qty FROM ck ORDER BY qty") == [(200, 3), (1, 5)]
    types = rows(
        mysql_url,
        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
        "DATABASE() AND TABLE_NAME = 'ck' AND COLUMN_NAME IN ('a','b','c') ORDER BY 1",
    )
    assert types == [("a", "varchar(256)"), ("b", "varchar(255)"), ("c", "varchar(255)")]
