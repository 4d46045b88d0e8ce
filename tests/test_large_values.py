"""Values of any size: each lands, or is dead-lettered with its reason while the rest lands.

Each load runs in a subprocess with a deadline, so a hang (psycopg's pipeline used to wait for
good on a value of a few MB) fails its test instead of stopping the suite. The sizes are the
issue's: 100 KB (over MySQL's TEXT), 40 MB (over MariaDB's default max_allowed_packet of 16
MiB) and just over what each database takes in one statement or value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl

KB = 1000
MB = 1 << 20
DEADLINE = 180  # seconds for one load; a clean 40 MB load takes a few

# Loads ``records`` (a JSON list of [id, size]: a value of ``size`` "B"s, or a short one
# when size is null) into TABLE through the public API; prints the Result as JSON.
_WORKER = r"""
import json, sqlite3, sys
import sqlalchemy as sa
import batchline as bl

url, table, records, sqlite_length = sys.argv[1:3] + [json.loads(sys.argv[3]), int(sys.argv[4])]
sqlite = url.startswith("sqlite")
engine = sa.create_engine(url, connect_args={"check_same_thread": False} if sqlite else {})
if sqlite_length:
    @sa.event.listens_for(engine, "connect")
    def _limit(dbapi_conn, _record):
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, sqlite_length)
rows = ({"id": i, "p": f"v{i}" if size is None else "B" * size} for i, size in records)
result = bl.Pipeline(engine, writes=[bl.Insert(table)]).run(rows, job="sizes")
print(json.dumps(result.to_dict()))
"""


def _load(url: str, table: str, records: list[Any], *, sqlite_length: int = 0) -> dict[str, Any]:
    """Run the worker; a load that outlives DEADLINE fails the test."""
    args = [sys.executable, "-c", _WORKER, url, table, json.dumps(records), str(sqlite_length)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the load of {table} did not end within {DEADLINE}s (a hang)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _backend(url: str) -> str:
    return sa.make_url(url).get_backend_name()


def _ddl(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)


def _lengths(engine: sa.Engine, table: str) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT id, LENGTH(p) FROM {table} ORDER BY id").all()
    return [(int(i), int(n)) for i, n in rows]


def _letters(url: str) -> list[bl.DeadLetter]:
    with bl.DeadLetters(url) as letters:
        return letters.list()


# -- values the table takes ---------------------------------------------------------------


def test_the_cli_loads_a_100_kb_value_into_the_table_it_creates(
    db_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    # the reproduction: MariaDB made the column TEXT (64 KiB), refused the row, then
    # failed to store its dead letter (TEXT as well) and lost the chunk with a traceback
    source = tmp_path / "m.csv"
    source.write_text("id,p\n1,a\n2," + "B" * (100 * KB) + "\n")
    args = [sys.executable, "-m", "batchline.cli", "load", str(source), "-t", "m"]
    try:
        done = subprocess.run(
            [*args, "--db", db_url, "--json"], capture_output=True, text=True, timeout=DEADLINE
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"batchline load did not end within {DEADLINE}s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["items_processed"] == 2
    assert _lengths(engine, "m") == [(1, 1), (2, 100 * KB)]


@pytest.mark.parametrize("size", [100 * KB], ids=["100KB"])
def test_a_value_its_column_refuses_is_dead_lettered_and_the_rest_lands(
    db_url: str, engine: sa.Engine, size: int
) -> None:
    # MySQL's TEXT stops at 65,535 bytes; elsewhere a CHECK says the same
    column = "TEXT" if _backend(db_url) == "mysql" else "TEXT CHECK (LENGTH(p) <= 65535)"
    _ddl(engine, f"CREATE TABLE narrow (id BIGINT PRIMARY KEY, p {column})")
    result = _load(db_url, "narrow", [[1, None], [2, size], [3, None]])
    assert (result["status"], result["items_processed"], result["items_failed"]) == (
        "partial_success",
        2,
        1,
    )
    assert result["retries"] == 0
    assert _lengths(engine, "narrow") == [(1, 2), (3, 2)]
    [letter] = _letters(db_url)
    assert (letter.line, letter.stage) == (2, "write")
    assert letter.record == {"id": 2, "p": "B" * size}  # the whole record, kept


# -- MySQL: dead letters of an older layout --------------------------------------------------------


def test_dead_letters_made_as_text_become_longtext(mysql_url: str) -> None:
    # batchline created payload and message as TEXT (64 KiB) on MySQL before
    engine = sa.create_engine(mysql_url, poolclass=sa.pool.NullPool)
    try:
        bl.DeadLetters(mysql_url).jobs()  # creates the state tables
        _ddl(
            engine,
            "ALTER TABLE batchline_dead_letters MODIFY message TEXT NOT NULL, "
            "MODIFY payload TEXT NOT NULL",
            "CREATE TABLE narrow (id BIGINT PRIMARY KEY, p TEXT)",
        )
        result = _load(mysql_url, "narrow", [[1, None], [2, 100 * KB]])
        assert (result["items_processed"], result["items_failed"]) == (1, 1)
        [letter] = _letters(mysql_url)
        assert letter.record == {"id": 2, "p": "B" * 100 * KB}
        with engine.connect() as conn:
            types = conn.exec_driver_sql(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'batchline_dead_letters' "
                "AND COLUMN_NAME IN ('message', 'payload') ORDER BY 1"
            ).all()
        assert [tuple(t) for t in types] == [("message", "longtext"), ("payload", "longtext")]
    finally:
        engine.dispose()
