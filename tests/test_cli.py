"""``batchline load``, ``jobs`` and ``dlq``, run as a user would, with the database checked after.

Each test loads into its own SQLite file (or private PostgreSQL schema) and looks at the
tables and the dead letters afterwards, not at the library's internals.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from rich.console import Console

from batchline import Result as ResultType
from batchline import cli as cli_module
from batchline.cli import _load as load_command
from batchline.cli import cli
from tests._schemas import execute, rows

ROWS = [
    {"id": 1, "name": "apple", "price": "1.50", "picked": "2024-01-02", "organic": "true"},
    {"id": 2, "name": "pear", "price": "2.25", "picked": "2024-01-03", "organic": "false"},
    {"id": 3, "name": "plum", "price": "0.99", "picked": "2024-01-04", "organic": "true"},
]


def run(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def dead_letters(url: str) -> list[tuple[Any, ...]]:
    return rows(url, "SELECT line, stage, message FROM batchline_dead_letters ORDER BY position")


def write_csv(path: Path, records: list[dict[str, Any]], delimiter: str = ",") -> Path:
    header = list(records[0])
    lines = [delimiter.join(header)]
    lines += [delimiter.join(str(r[h]) for h in header) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_format(path: Path, fmt: str) -> Path:
    if fmt == "csv":
        return write_csv(path, ROWS)
    if fmt == "tsv":
        return write_csv(path, ROWS, "\t")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    else:  # Parquet declares its types, and they are used as declared
        schema = pa.schema(
            [
                ("id", pa.int64()),
                ("name", pa.string()),
                ("price", pa.decimal128(18, 2)),
                ("picked", pa.date32()),
                ("organic", pa.bool_()),
            ]
        )
        typed = [
            {
                **r,
                "price": Decimal(r["price"]),
                "picked": date.fromisoformat(r["picked"]),
                "organic": r["organic"] == "true",
            }
            for r in ROWS
        ]
        pq.write_table(pa.Table.from_pylist(typed, schema=schema), path)
    return path


# -- formats ------------------------------------------------------------------------------


def check_fruit(url: str) -> None:
    got = rows(url, "SELECT id, name, price, picked, organic FROM fruit ORDER BY id")
    assert [(r[0], r[1], Decimal(str(r[2])), str(r[3]), bool(r[4])) for r in got] == [
        (1, "apple", Decimal("1.50"), "2024-01-02", True),
        (2, "pear", Decimal("2.25"), "2024-01-03", False),
        (3, "plum", Decimal("0.99"), "2024-01-04", True),
    ]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("fruit")}
    engine.dispose()
    assert isinstance(columns["id"], sa.Integer)
    if url.startswith("sqlite"):  # DECIMAL_TEXT(p, s): exact text, see the README
        assert isinstance(columns["price"], sa.Text)
    else:
        assert isinstance(columns["price"], sa.Numeric)
    assert isinstance(columns["picked"], sa.Date)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_load_each_format_creates_the_table_with_the_data_types(
    tmp_path: Path, sqlite_url: str, fmt: str
) -> None:
    path = write_format(tmp_path / f"fruit.{fmt}", fmt)

    result = run("load", str(path), "--db", sqlite_url, "--table", "fruit")

    assert result.exit_code == 0, result.output
    check_fruit(sqlite_url)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_load_creates_the_typed_table_on_each_backend(
    tmp_path: Path, db_url: str, fmt: str
) -> None:
    path = write_format(tmp_path / f"fruit.{fmt}", fmt)

    result = run("load", str(path), "--db", db_url, "--table", "fruit")

    assert result.exit_code == 0, result.output
    check_fruit(db_url)


def test_load_reads_standard_input_with_format(sqlite_url: str) -> None:
    data = "".join(json.dumps(r) + "\n" for r in ROWS)

    result = run(
        "load", "-", "--format", "jsonl", "--db", sqlite_url, "--table", "fruit", input=data
    )

    assert result.exit_code == 0, result.output
    assert rows(sqlite_url, "SELECT count(*) FROM fruit") == [(3,)]


def test_default_database_is_a_sqlite_file_from_batchline_db_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHLINE_DB", raising=False)
    write_csv(tmp_path / "fruit.csv", ROWS)

    assert run("load", "fruit.csv", "--table", "fruit").exit_code == 0
    assert rows(f"sqlite:///{tmp_path / 'batchline.db'}", "SELECT count(*) FROM fruit") == [(3,)]

    other = tmp_path / "other.db"
    monkeypatch.setenv("BATCHLINE_DB", f"sqlite:///{other}")
    assert run("load", "fruit.csv", "--table", "fruit").exit_code == 0
    assert rows(f"sqlite:///{other}", "SELECT count(*) FROM fruit") == [(3,)]


# -- bad input: dead letters, exit 3 ----------------------------------------------------------


def test_wrong_field_count_is_a_read_dead_letter_and_the_rest_loads(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,name\n1,a\n2,b,extra\n3,c\n", encoding="utf-8")

    result = run("load", str(path), "--db", sqlite_url, "--table", "t")

    assert result.exit_code == 3, result.output
    assert rows(sqlite_url, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]
    assert dead_letters(sqlite_url) == [(3, "read", "expected 2 fields, found 3")]


def test_malformed_csv_quote_is_a_read_dead_letter(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text('id,name\n1,a\n2,"b"x\n3,c\n', encoding="utf-8")

    result = run("load", str(path), "--db", sqlite_url, "--table", "t")

    assert result.exit_code == 3, result.output
    assert rows(sqlite_url, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]
    [(line, stage, message)] = dead_letters(sqlite_url)
    assert (line, stage) == (3, "read")
    assert "malformed CSV" in message


def test_bad_utf8_is_a_read_dead_letter(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"id,name\n1,caf\xc3\xa9\n2,caf\xe9\n3,ok\n")

    result = run("load", str(path), "--db", sqlite_url, "--table", "t")

    assert result.exit_code == 3, result.output
    assert rows(sqlite_url, "SELECT id, name FROM t ORDER BY id") == [(1, "café"), (3, "ok")]
    [(line, stage, message)] = dead_letters(sqlite_url)
    assert (line, stage) == (3, "read")
    assert "utf-8" in message.lower()


def test_invalid_json_line_is_a_read_dead_letter(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"id": 1}\n{"id": 2,\n{"id": 3}\n', encoding="utf-8")

    result = run("load", str(path), "--db", sqlite_url, "--table", "t")

    assert result.exit_code == 3, result.output
    assert rows(sqlite_url, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]
    [(line, stage, message)] = dead_letters(sqlite_url)
    assert (line, stage) == (2, "read")
    assert "invalid JSON" in message


def test_value_that_does_not_convert_is_dead_lettered_with_its_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,amount\n1,10\n2,12\nthree,13\n4,14\n", encoding="utf-8")
    execute(sqlite_url, "CREATE TABLE t (id INTEGER, amount INTEGER)")

    result = run("load", str(path), "--db", sqlite_url, "--table", "t")

    assert result.exit_code == 3, result.output
    assert rows(sqlite_url, "SELECT id FROM t ORDER BY id") == [(1,), (2,), (4,)]
    [(line, stage, message)] = dead_letters(sqlite_url)
    assert (line, stage) == (4, "map")
    assert "'three'" in message and "integer" in message


def test_row_the_database_refuses_is_a_write_dead_letter(tmp_path: Path, sqlite_url: str) -> None:
    execute(sqlite_url, "CREATE TABLE t (id INTEGER, name TEXT CHECK (length(name) <= 5))")
    path = tmp_path / "f.csv"
    path.write_text("id,name\n1,short\n2,much too long\n3,ok\n", encoding="utf-8")

    result = run("load", str(path), "--db", sqlite_url, "--table", "t")

    assert result.exit_code == 3, result.output
    assert rows(sqlite_url, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]
    [(line, stage, _)] = dead_letters(sqlite_url)
    assert (line, stage) == (3, "write")


@pytest.mark.postgres
def test_value_too_long_for_varchar_on_postgres_is_a_write_dead_letter(
    tmp_path: Path, postgres_url: str
) -> None:
    execute(postgres_url, "CREATE TABLE t (id integer, name varchar(5))")
    path = tmp_path / "f.csv"
    path.write_text("id,name\n1,short\n2,much too long\n3,ok\n", encoding="utf-8")

    result = run("load", str(path), "--db", postgres_url, "--table", "t")

    assert result.exit_code == 3, result.output
    assert rows(postgres_url, "SELECT id FROM t ORDER BY id") == [(1,), (3,)]
    [(line, stage, message)] = dead_letters(postgres_url)
    assert (line, stage) == (3, "write")
    assert "too long" in message


# -- usage and input errors: exit 2, one line ----------------------------------------------------


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("batchline: error:")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path, sqlite_url: str) -> None:
    result = run("load", str(tmp_path / "nope.csv"), "--db", sqlite_url, "--table", "t")
    assert_one_line_error(result, "no such file")


def test_unknown_format_is_one_line_and_exit_2(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x", encoding="utf-8")
    result = run("load", str(path), "--db", sqlite_url, "--table", "t")
    assert_one_line_error(result, "cannot tell the format")


def test_unknown_forced_format_is_one_line_and_exit_2(tmp_path: Path, sqlite_url: str) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    result = run("load", str(path), "--format", "xml", "--db", sqlite_url, "--table", "t")
    assert_one_line_error(result, "unknown format 'xml'")


def test_bad_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    result = run("load", str(path), "--db", "nonsense:/x::y", "--table", "t")
    assert_one_line_error(result, "URL")


def test_unsupported_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    result = run("load", str(path), "--db", "oracle://scott:tiger99@db/x", "--table", "t")
    assert_one_line_error(result)
    assert "tiger99" not in result.output


def test_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    url = "postgresql://loader:S3cretPw@127.0.0.1:1/nowhere"

    result = run("load", str(path), "--db", url, "--table", "t")

    assert_one_line_error(result, "cannot connect", "127.0.0.1")
    assert "S3cretPw" not in result.output


def test_unreachable_sqlite_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    result = run("load", str(path), "--db", url, "--table", "t")
    assert_one_line_error(result, "cannot connect")


def test_glob_pattern_without_dask_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    result = run("load", str(tmp_path / "*.csv"), "--db", sqlite_url, "--table", "t")
    assert_one_line_error(result, "--dask")


def test_dask_options_without_the_dask_module_exit_2(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "batchline.dask", None)  # makes the import fail
    path = write_csv(tmp_path / "f.csv", ROWS)
    result = run("load", str(path), "--db", sqlite_url, "--table", "t", "--workers", "2")
    assert_one_line_error(result, "Dask backend is not available")


def test_dask_options_hand_the_load_to_batchline_dask(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def load_files(pattern: str, **kwargs: Any) -> ResultType:
        calls.append((pattern, kwargs))
        return ResultType(job="parts", items_processed=4, status="success")

    fake = types.ModuleType("batchline.dask")
    fake.load_files = load_files  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "batchline.dask", fake)
    pattern = str(tmp_path / "part-*.csv")

    result = run(
        "load", pattern, "--db", sqlite_url, "--table", "t", "--workers", "3",
        "--upsert", "--key", "id", "--job", "parts", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items_processed"] == 4
    [(got, kwargs)] = calls
    assert got == pattern
    assert kwargs["db"] == sqlite_url and kwargs["table"] == "t"
    assert (kwargs["workers"], kwargs["scheduler"], kwargs["job"]) == (3, None, "parts")
    assert kwargs["spec"]["mode"] == "upsert" and kwargs["spec"]["key"] == ["id"]
    assert kwargs["restart"] is False


def test_fatal_database_error_is_one_line_and_exit_1(tmp_path: Path, sqlite_url: str) -> None:
    execute(sqlite_url, "CREATE TABLE t (id INTEGER)")
    path = tmp_path / "f.csv"
    path.write_text("id\n1\n", encoding="utf-8")
    # An upsert needs a unique key the table does not have: the database refuses every
    # statement, which is the setup's fault, not the record's.
    result = run("load", str(path), "--db", sqlite_url, "--table", "t", "--upsert", "--key", "id")
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert rows(sqlite_url, "SELECT count(*) FROM batchline_dead_letters") == [(0,)]


# -- modes, json, idempotency -----------------------------------------------------------------


def test_json_output_matches_the_database(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,n\n1,1\n2,x\n3,3\n4,4,4\n5,5\n", encoding="utf-8")
    execute(sqlite_url, "CREATE TABLE t (id INTEGER, n INTEGER)")

    result = run("load", str(path), "--db", sqlite_url, "--table", "t", "--json")

    assert result.exit_code == 3
    report = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert report["status"] == "partial_success"
    assert report["items_processed"] == rows(sqlite_url, "SELECT count(*) FROM t")[0][0] == 3
    assert report["items_failed"] == len(dead_letters(sqlite_url)) == 2
    assert sorted((f["line"], f["stage"]) for f in report["failed_items"]) == [
        (3, "map"),
        (5, "read"),
    ]


def test_upsert_updates_rows_by_key(tmp_path: Path, sqlite_url: str) -> None:
    first = write_csv(tmp_path / "a.csv", [{"sku": "A", "price": 1}, {"sku": "B", "price": 2}])
    second = write_csv(tmp_path / "b.csv", [{"sku": "B", "price": 5}, {"sku": "C", "price": 7}])
    for path in (first, second):
        result = run(
            "load", str(path), "--db", sqlite_url, "--table", "p", "--upsert", "--key", "sku"
        )
        assert result.exit_code == 0, result.output
    assert rows(sqlite_url, "SELECT sku, price FROM p ORDER BY sku") == [
        ("A", 1),
        ("B", 5),
        ("C", 7),
    ]


def test_increment_adds_columns_by_key(tmp_path: Path, sqlite_url: str) -> None:
    path = write_csv(
        tmp_path / "moves.csv",
        [{"item": "A", "qty": 2}, {"item": "B", "qty": 1}, {"item": "A", "qty": 3}],
    )
    for _ in range(2):
        result = run(
            "load", str(path), "--db", sqlite_url, "--table", "stock",
            "--increment", "--key", "item", "--columns", "qty",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert rows(sqlite_url, "SELECT item, qty FROM stock ORDER BY item") == [("A", 10), ("B", 2)]


def test_upsert_without_key_is_a_usage_error(tmp_path: Path, sqlite_url: str) -> None:
    path = write_csv(tmp_path / "a.csv", ROWS)
    result = run("load", str(path), "--db", sqlite_url, "--table", "t", "--upsert")
    assert_one_line_error(result, "--key")


def test_idempotency_key_skips_records_loaded_before(tmp_path: Path, sqlite_url: str) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    args = ("load", str(path), "--db", sqlite_url, "--table", "t", "--idempotency-key", "id")

    assert run(*args, "--job", "first").exit_code == 0
    again = run(*args, "--job", "second", "--json")

    assert again.exit_code == 0
    assert json.loads(again.stdout)["duplicates_skipped"] == 3
    assert rows(sqlite_url, "SELECT count(*) FROM t") == [(3,)]


# -- resume -------------------------------------------------------------------------------------


def numbered_csv(path: Path, n: int, bad: frozenset[int] = frozenset()) -> Path:
    """``id,label`` rows 1..n; the rows in ``bad`` have a field too many."""
    lines = ["id,label"] + [f"{i},a,b" if i in bad else f"{i},L{i}" for i in range(1, n + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_stopped_by_max_failures_resumes_to_the_clean_result(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = numbered_csv(tmp_path / "f.csv", 1000, bad=frozenset({450}))
    args = ("load", str(path), "--db", sqlite_url, "--table", "t", "--chunk-size", "100")

    stopped = run(*args, "--job", "j", "--max-failures", "0")
    assert stopped.exit_code == 1, stopped.output
    assert "max_failures" in stopped.stderr
    partial = rows(sqlite_url, "SELECT count(*) FROM t")[0][0]
    assert 0 < partial < 999

    resumed = run(*args, "--job", "j", "--json")
    assert resumed.exit_code == 0, resumed.output  # this run's records all landed
    assert json.loads(resumed.stdout)["resumed_from"] == partial + 1  # + the dead letter
    assert rows(sqlite_url, "SELECT position, processed, failed FROM batchline_jobs") == [
        (1000, 999, 1)
    ]

    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    assert run("load", str(path), "--db", clean_url, "--table", "t").exit_code == 3
    query = "SELECT id, label FROM t ORDER BY id"
    assert rows(sqlite_url, query) == rows(clean_url, query)
    assert [r[:2] for r in dead_letters(sqlite_url)] == [(451, "read")]


def test_killed_load_resumes_without_duplicates(tmp_path: Path, sqlite_url: str) -> None:
    n = 20_000
    path = numbered_csv(tmp_path / "big.csv", n)
    command = [
        sys.executable, "-m", "batchline.cli", "load", str(path), "--db", sqlite_url,
        "--table", "t", "--job", "big", "--chunk-size", "100", "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    position = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            found = rows(sqlite_url, "SELECT position FROM batchline_jobs WHERE name = 'big'")
        except sa.exc.OperationalError:
            found = []  # not created yet, or locked for a moment
        position = found[0][0] if found else 0
        if position > 0:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if position == 0 or position >= n:
        pytest.skip("the load finished before it could be killed mid-way")

    assert rows(sqlite_url, "SELECT status FROM batchline_jobs") == [("running",)]
    resumed = run("load", str(path), "--db", sqlite_url, "--table", "t", "--job", "big", "--json")

    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["resumed_from"] > 0
    assert rows(sqlite_url, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t") == [
        (n, n, 1, n)
    ]


# -- a job run again ------------------------------------------------------------------------------


def tables(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return sorted(t for t in sa.inspect(engine).get_table_names() if t.startswith("t"))
    finally:
        engine.dispose()


def test_a_job_run_again_with_another_table_or_mode_is_refused_naming_the_difference(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    load = ("load", str(path), "--db", sqlite_url, "--job", "x")
    assert run(*load, "--table", "t1").exit_code == 0

    other_table = run(*load, "--table", "t2")
    other_mode = run(*load, "--table", "t1", "--upsert", "--key", "id")
    chunked = run(
        *load, "--table", "t1", "--chunk-size", "2", "--redact", "name",
        "--dead-letter-payload", "none", "--json",
    )  # fmt: skip

    assert_one_line_error(
        other_table,
        "job 'x' was started with --table t1, this command says --table t2; "
        "use another --job or pass --restart to start it over",
    )
    assert_one_line_error(
        other_mode,
        "was started with no --upsert, no --key, this command says --upsert, --key id;",
    )
    assert tables(sqlite_url) == ["t1"]  # the refused command created no table
    # How the load reads and flushes, and what its dead letters keep, is not what it loads:
    # the finished job has nothing to do.
    assert chunked.exit_code == 0, chunked.output
    assert json.loads(chunked.stdout)["items_processed"] == 0
    assert rows(sqlite_url, "SELECT count(*) FROM t1") == [(3,)]


def test_restart_starts_a_job_over_and_messages_name_the_option(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    load = ("load", str(path), "--db", sqlite_url, "--job", "x")
    assert run(*load, "--table", "t1").exit_code == 0

    finished = run(*load, "--table", "t1")
    path.write_text(path.read_text() + "4,fig,3.00,2024-01-05,false\n", encoding="utf-8")
    changed = run(*load, "--table", "t1")
    restarted = run(*load, "--table", "t1", "--restart", "--json")
    elsewhere = run(*load, "--table", "t2", "--restart", "--json")

    assert finished.exit_code == 0
    assert "already finished" in finished.stdout and "pass --restart to redo" in finished.stdout
    assert_one_line_error(changed, "different source", "use another --job or pass --restart")
    for result in (finished, changed):
        assert "restart=True" not in result.output and "job name" not in result.output
    assert restarted.exit_code == 0, restarted.output
    assert json.loads(restarted.stdout)["items_processed"] == 4  # from the first record again
    assert rows(sqlite_url, "SELECT count(*) FROM t1") == [(7,)]  # a plain insert adds again
    assert elsewhere.exit_code == 0, elsewhere.output
    assert rows(sqlite_url, "SELECT count(*) FROM t2") == [(4,)]
    [job] = json.loads(run("jobs", "--db", sqlite_url, "--json").stdout)
    assert (job["spec"]["table"], job["processed"]) == ("t2", 4)


def test_restart_without_a_job_is_a_usage_error(tmp_path: Path, sqlite_url: str) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    result = run("load", str(path), "--db", sqlite_url, "--table", "t", "--restart")
    assert result.exit_code == 2
    assert "--restart needs --job" in result.stderr


# -- jobs and dead letters ------------------------------------------------------------------------


@pytest.fixture
def loaded(tmp_path: Path, sqlite_url: str) -> str:
    """A database with job ``j``: three rows landed, two dead letters (write stage)."""
    execute(
        sqlite_url, "CREATE TABLE t (id INTEGER, name TEXT)", "CREATE UNIQUE INDEX u ON t (name)"
    )
    path = tmp_path / "f.csv"
    path.write_text("id,name\n1,a\n2,b\n3,a\n4,c\n5,b\n", encoding="utf-8")
    result = run("load", str(path), "--db", sqlite_url, "--table", "t", "--job", "j")
    assert result.exit_code == 3, result.output
    return sqlite_url


def test_jobs_lists_position_counts_and_status(loaded: str) -> None:
    table = run("jobs", "--db", loaded)
    assert table.exit_code == 0
    assert "j" in table.stdout and "partial_success" in table.stdout

    [job] = json.loads(run("jobs", "--db", loaded, "--json").stdout)
    assert (job["name"], job["status"], job["position"], job["processed"], job["failed"]) == (
        "j",
        "partial_success",
        5,
        3,
        2,
    )
    assert job["spec"]["table"] == "t" and job["spec"]["mode"] == "insert"


def test_dlq_list_show_and_export(loaded: str, tmp_path: Path) -> None:
    listed = json.loads(run("dlq", "list", "--db", loaded, "--job", "j", "--json").stdout)
    assert [(d["line"], d["stage"], d["record"]) for d in listed] == [
        (4, "write", {"id": "3", "name": "a"}),
        (6, "write", {"id": "5", "name": "b"}),
    ]
    assert "UNIQUE" in run("dlq", "list", "--db", loaded).stdout

    shown = run("dlq", "show", str(listed[0]["id"]), "--db", loaded)
    assert shown.exit_code == 0
    assert "UNIQUE constraint failed" in shown.stdout and '"name": "a"' in shown.stdout

    out = tmp_path / "dead.jsonl"
    exported = run("dlq", "export", "--db", loaded, "--job", "j", "-o", str(out))
    assert exported.exit_code == 0
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [4, 6]
    to_stdout = run("dlq", "export", "--db", loaded)
    assert len(to_stdout.stdout.splitlines()) == 2


def test_dlq_show_unknown_id_exits_2(loaded: str) -> None:
    assert_one_line_error(run("dlq", "show", "999", "--db", loaded), "999")


def test_dlq_commands_on_a_missing_sqlite_file_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    assert_one_line_error(run("jobs", "--db", url), "no database")
    assert not (tmp_path / "absent.db").exists()


def test_dlq_purge_asks_and_deletes(loaded: str) -> None:
    refused = run("dlq", "purge", "--db", loaded, input="n\n")
    assert refused.exit_code == 1
    assert len(dead_letters(loaded)) == 2

    purged = run("dlq", "purge", "--db", loaded, "--job", "j", "--yes")
    assert purged.exit_code == 0
    assert "deleted 2" in purged.stderr
    assert dead_letters(loaded) == []


def test_dlq_replay_after_fixing_the_cause_lands_the_rows(loaded: str) -> None:
    still = run("dlq", "replay", "--db", loaded, "--job", "j")
    assert still.exit_code == 1  # nothing can land yet: both still collide
    assert [r[:2] for r in dead_letters(loaded)] == [(4, "write"), (6, "write")]
    assert rows(loaded, "SELECT attempts FROM batchline_dead_letters") == [(2,), (2,)]
    # The summary's hint lists the letters left: they are still the load job's.
    [hint] = [line for line in still.stdout.splitlines() if line.startswith("All of them:")]
    assert hint == f"All of them: batchline dlq list --job j --db {loaded}"
    listed = run(*hint.removeprefix("All of them: batchline ").split(), "--json")
    assert [d["line"] for d in json.loads(listed.stdout)] == [4, 6]

    execute(loaded, "DROP INDEX u")
    fixed = run("dlq", "replay", "--db", loaded, "--job", "j", "--json")

    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["items_processed"] == 2
    assert dead_letters(loaded) == []
    assert rows(loaded, "SELECT id, name FROM t ORDER BY id") == [
        (1, "a"),
        (2, "b"),
        (3, "a"),
        (4, "c"),
        (5, "b"),
    ]


def test_dlq_replay_leaves_unreadable_rows_and_says_so(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id\n1\n2,2\n", encoding="utf-8")
    assert run("load", str(path), "--db", sqlite_url, "--table", "t", "--job", "j").exit_code == 3

    replayed = run("dlq", "replay", "--db", sqlite_url, "--job", "j")

    assert replayed.exit_code == 0  # nothing to replay, nothing failed
    assert "1 unreadable rows (stage read) were not replayed" in replayed.stderr
    assert [r[:2] for r in dead_letters(sqlite_url)] == [(3, "read")]


def test_dlq_replay_of_an_unknown_job_exits_2(loaded: str) -> None:
    assert_one_line_error(run("dlq", "replay", "--db", loaded, "--job", "nope"), "nope")


@pytest.mark.postgres
def test_postgres_load_then_widen_column_then_replay(tmp_path: Path, postgres_url: str) -> None:
    execute(postgres_url, "CREATE TABLE t (id integer, name varchar(5), price numeric(6, 2))")
    path = tmp_path / "f.csv"
    path.write_text(
        "id,name,price\n1,short,1.50\n2,much too long,2.00\n3,ok,x\n4,fine,4.25\n", encoding="utf-8"
    )

    loaded = run("load", str(path), "--db", postgres_url, "--table", "t", "--job", "pg")
    assert loaded.exit_code == 3, loaded.output
    assert [r[:2] for r in dead_letters(postgres_url)] == [(3, "write"), (4, "map")]

    execute(postgres_url, "ALTER TABLE t ALTER COLUMN name TYPE varchar(50)")
    replayed = run("dlq", "replay", "--db", postgres_url, "--job", "pg")

    assert replayed.exit_code == 3  # one landed; the bad price still does not convert
    assert [r[:2] for r in dead_letters(postgres_url)] == [(4, "map")]
    assert rows(postgres_url, "SELECT id, name FROM t ORDER BY id") == [
        (1, "short"),
        (2, "much too long"),
        (4, "fine"),
    ]

    # The price column becomes text: the replay converts to what the table holds now.
    execute(postgres_url, "ALTER TABLE t ALTER COLUMN price TYPE text")
    last = run("dlq", "replay", "--db", postgres_url, "--job", "pg")
    assert last.exit_code == 0, last.output
    assert dead_letters(postgres_url) == []
    assert rows(postgres_url, "SELECT id, price FROM t WHERE id = 3") == [(3, "x")]


# -- output: progress, help, bench ----------------------------------------------------------


def test_no_progress_bar_off_a_terminal(tmp_path: Path, sqlite_url: str) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    result = run("load", str(path), "--db", sqlite_url, "--table", "t")
    assert "loading" not in result.stderr
    assert result.stderr == ""
    assert "records processed" in result.stdout


def test_progress_bar_on_a_terminal_and_not_with_quiet(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    fake: Callable[[], Console] = lambda: Console(file=screen, force_terminal=True, width=120)  # noqa: E731
    monkeypatch.setattr(load_command, "stderr_console", fake)
    path = numbered_csv(tmp_path / "f.csv", 600, bad=frozenset({7}))

    result = run("load", str(path), "--db", sqlite_url, "--table", "t")

    assert result.exit_code == 3
    assert "loading" in screen.getvalue() and "600 records" in screen.getvalue()
    assert "1 failed" in screen.getvalue()

    screen.truncate(0)
    screen.seek(0)
    quiet = run("load", str(path), "--db", sqlite_url, "--table", "t2", "--quiet")
    assert quiet.exit_code == 3
    assert screen.getvalue() == "" and quiet.stdout == ""


def test_a_csv_load_with_the_progress_bar_still_goes_in_bulk(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar counts records through a wrapper of the load's map; the wrapper keeps the
    hooks the Arrow bulk path looks for, so a CSV shown loading is not sent row by row."""
    from batchline._flush import Flusher

    screen = io.StringIO()
    fake: Callable[[], Console] = lambda: Console(file=screen, force_terminal=True, width=120)  # noqa: E731
    monkeypatch.setattr(load_command, "stderr_console", fake)
    bulk: list[int] = []
    real = Flusher._flush_arrow

    def spy(self: Any, part: Any, *args: Any, **kwargs: Any) -> Any:
        bulk.append(len(part))
        return real(self, part, *args, **kwargs)

    monkeypatch.setattr(Flusher, "_flush_arrow", spy)
    path = numbered_csv(tmp_path / "f.csv", 600)
    result = run("load", str(path), "--db", sqlite_url, "--table", "t")
    assert result.exit_code == 0, result.stdout
    assert "600 records" in screen.getvalue()
    assert sum(bulk) == 600


def test_progress_bar_counts_database_failures_as_chunks_commit(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two rows break a CHECK: they are found at flush time, and the bar counts them then.
    execute(sqlite_url, "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER CHECK (n > 0))")
    path = tmp_path / "f.csv"
    rows = [f"{i},{-1 if i in (150, 420) else i}" for i in range(1, 601)]
    path.write_text("id,n\n" + "\n".join(rows) + "\n", encoding="utf-8")
    screen = io.StringIO()
    fake: Callable[[], Console] = lambda: Console(file=screen, force_terminal=True, width=120)  # noqa: E731
    monkeypatch.setattr(load_command, "stderr_console", fake)
    seen: list[int] = []
    real = load_command.LoadProgress.on_chunk

    def spy(self: Any, result: Any, failed: Any) -> None:
        real(self, result, failed)
        seen.append(self.database_failures)

    monkeypatch.setattr(load_command.LoadProgress, "on_chunk", spy)
    args = ("load", str(path), "--db", sqlite_url, "--table", "t", "--chunk-size", "100")
    result = run(*args)
    assert result.exit_code == 3
    assert seen == [0, 1, 1, 1, 2, 2]  # counted chunk by chunk, not at the end
    assert "2 failed" in screen.getvalue()


def test_values_that_look_like_markup_are_shown_as_they_are(
    tmp_path: Path, sqlite_url: str
) -> None:
    execute(sqlite_url, "CREATE TABLE t (n INTEGER)")
    path = tmp_path / "f.csv"
    path.write_text("n\n1\n[red]x[/red]\n", encoding="utf-8")
    summary = run("load", str(path), "--db", sqlite_url, "--table", "t", "--job", "[b]j")
    assert "[red]x[/red]" in summary.stdout and "[b]j" in summary.stdout
    listed = run("dlq", "list", "--db", sqlite_url)
    assert "[red]x[/red]" in listed.stdout
    assert "ValueError: column 'n'" in listed.stdout
    assert "ValueError: ValueError" not in listed.stdout


def test_verbose_logs_each_dead_letter_on_stderr(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id\n1\n2,2\n", encoding="utf-8")
    loud = run("--verbose", "load", str(path), "--db", sqlite_url, "--table", "t")
    assert "dead-lettered" in loud.stderr and "line 3" in loud.stderr
    calm = run("load", str(path), "--db", sqlite_url, "--table", "t2")
    assert calm.stderr == ""


def test_summary_lists_failed_records_with_line_and_reason(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id\n1\n2,2\n", encoding="utf-8")
    result = run("load", str(path), "--db", sqlite_url, "--table", "t")
    assert "expected 1 fields, found 2" in result.stdout
    assert "batchline dlq list --job" in result.stdout


def _all_commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [()]
    ctx = cli.make_context("batchline", ["--help"], resilient_parsing=True)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        found.append((name,))
        if command is not None and hasattr(command, "list_commands"):
            found.extend((name, sub) for sub in command.list_commands(ctx))
    return found


def test_every_command_has_help() -> None:
    commands = _all_commands()
    names = {c for c in commands if c}
    assert {("load",), ("demo",), ("jobs",), ("dlq",), ("dlq", "replay"), ("dlq", "purge")} <= names
    for command in commands:
        result = run(*command, "--help")
        assert result.exit_code == 0, command
        text = result.stdout.split("Options:")[0]
        assert len(text.strip().splitlines()) >= 3, (command, result.stdout)


def test_cli_works_without_the_bench_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        cli_module._Group._LAZY, "bench", ("batchline._no_such_module", "bench_command")
    )
    result = run("--help")
    assert result.exit_code == 0
    assert " bench " not in result.stdout and "load" in result.stdout
    assert run("bench").exit_code == 2  # "No such command", a usage error


def test_console_script_runs_in_a_subprocess(tmp_path: Path, sqlite_url: str) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS)
    done = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "load", str(path), "--db", sqlite_url,
         "--table", "t", "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items_processed"] == 3
