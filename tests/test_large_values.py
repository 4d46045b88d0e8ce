"""Values of any size: each lands, or is dead-lettered with its reason while the rest lands.

Each load runs in a subprocess with a deadline, so a hang (psycopg's pipeline used to wait for
good on a value of a few MB) fails its test instead of stopping the suite. The sizes are the
issue's: 100 KB (over MySQL's TEXT), 40 MB (over MariaDB's default max_allowed_packet of 16
MiB) and just over what each database takes in one statement or value.
"""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
from collections.abc import Iterator
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


def _limit(engine: sa.Engine) -> int:
    """About what one row may take on this database (values of more are dead-lettered)."""
    backend = engine.dialect.name
    if backend in ("mysql", "mariadb"):
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
    return 1 << 30  # PostgreSQL's 1 GiB a value; SQLite's default SQLITE_MAX_LENGTH is 1e9


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


def _long_text(engine: sa.Engine) -> str:
    return "LONGTEXT" if engine.dialect.name in ("mysql", "mariadb") else "TEXT"


@pytest.fixture
def big_table(engine: sa.Engine) -> Iterator[str]:
    """A table whose ``p`` takes any text the database can store."""
    _ddl(engine, f"CREATE TABLE big (id BIGINT PRIMARY KEY, p {_long_text(engine)})")
    yield "big"


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


@pytest.mark.parametrize("size", [100 * KB, 40 * MB], ids=["100KB", "40MB"])
def test_a_large_value_lands_with_its_chunk(
    db_url: str, engine: sa.Engine, big_table: str, size: int
) -> None:
    # PostgreSQL hung here for good (psycopg's pipeline sync with a partly sent statement);
    # a 40 MB value is over MariaDB's default max_allowed_packet: a data error of its record
    result = _load(db_url, big_table, [[1, None], [2, size], [3, None]])
    if size + 1024 < _limit(engine):
        assert (result["status"], result["items_processed"]) == ("success", 3)
        assert _lengths(engine, big_table) == [(1, 2), (2, size), (3, 2)]
        return
    assert (result["status"], result["items_processed"]) == ("partial_success", 2)
    assert result["retries"] == 0  # not taken for a lost connection
    assert _lengths(engine, big_table) == [(1, 2), (3, 2)]
    [letter] = _letters(db_url)
    assert (letter.line, letter.stage, letter.error_class) == (2, "write", "RowTooLarge")
    assert "max_allowed_packet" in letter.message
    assert letter.truncated


@pytest.mark.parametrize("size", [100 * KB, 40 * MB], ids=["100KB", "40MB"])
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
    if size + 1024 < _limit(engine):
        assert letter.record == {"id": 2, "p": "B" * size}  # the whole record, kept
    else:
        assert letter.truncated
        assert "max_allowed_packet" in letter.message


# -- values over what the database takes ------------------------------------------------------


def test_a_value_over_the_database_limit_is_dead_lettered_cut_and_the_rest_lands(
    db_url: str, engine: sa.Engine, big_table: str
) -> None:
    backend = _backend(db_url)
    sqlite_length = 0
    if backend == "sqlite":
        sqlite_length = 4 * MB  # as compiled with SQLITE_MAX_LENGTH of 4 MiB
        size = 5 * MB
    elif backend == "mysql":
        packet = _limit(engine)
        if packet > 256 * MB:
            pytest.skip(f"max_allowed_packet is {packet:,} bytes: a value over it is too big")
        size = packet + MB
    else:
        size = (1 << 30) + MB  # over PostgreSQL's 1 GiB a value
    result = _load(
        db_url, big_table, [[1, None], [2, size], [3, None]], sqlite_length=sqlite_length
    )
    assert (result["status"], result["items_processed"], result["items_failed"]) == (
        "partial_success",
        2,
        1,
    )
    assert result["retries"] == 0  # MySQL: not taken for a lost connection
    assert _lengths(engine, big_table) == [(1, 2), (3, 2)]
    [letter] = _letters(db_url)
    assert (letter.line, letter.stage, letter.error_class) == (2, "write", "RowTooLarge")
    limit = {"sqlite": "SQLITE_LIMIT_LENGTH", "mysql": "max_allowed_packet"}.get(backend, "1 GiB")
    assert letter.message.startswith("insert big: a row of ") and limit in letter.message
    assert "dead letter cut" in letter.message
    cut = letter.record["batchline_truncated"]
    assert cut["bytes"] > size
    assert cut["head"].startswith('{"id": 2, "p": "BBBB')
    # a cut letter cannot be replayed: replay leaves it as it is
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert(big_table)])
    with bl.DeadLetters(db_url) as letters:
        replayed = letters.replay(pipeline)
        assert replayed.records_seen == 0
        [again] = letters.list()
    assert again.attempts == letter.attempts


# -- PostgreSQL: a value too large for an index ---------------------------------------------------


def test_a_value_too_large_for_an_index_row_is_dead_lettered(postgres_url: str) -> None:
    # SQLSTATE 54000 (program_limit_exceeded) used to stop the run as the setup's fault
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        _ddl(engine, "CREATE TABLE indexed (id BIGINT PRIMARY KEY, p TEXT UNIQUE)")
        noise = "".join(random.Random(7).choices(string.ascii_letters, k=100 * KB))  # no TOAST
        pipeline = bl.Pipeline(engine, writes=[bl.Insert("indexed")])
        result = pipeline.run([{"id": 1, "p": "a"}, {"id": 2, "p": noise}, {"id": 3, "p": "c"}])
        assert (result.status, result.items_processed, result.items_failed) == (
            "partial_success",
            2,
            1,
        )
        assert _lengths(engine, "indexed") == [(1, 1), (3, 1)]
        [letter] = _letters(postgres_url)
        assert "index row" in letter.message
        assert letter.record == {"id": 2, "p": noise}
    finally:
        engine.dispose()


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


def test_a_lookup_row_over_max_allowed_packet_is_its_records_error(mysql_url: str) -> None:
    # A created lookup row's values are not among those measured while mapping: the statement
    # is measured before it is sent instead of the server dropping the connection (2006)
    engine = sa.create_engine(mysql_url, poolclass=sa.pool.NullPool)
    try:
        _ddl(
            engine,
            "CREATE TABLE tags (id INT AUTO_INCREMENT PRIMARY KEY, "
            "tag VARCHAR(20) NOT NULL UNIQUE, note LONGTEXT)",
            "CREATE TABLE posts (id INT PRIMARY KEY, tag_id INT NOT NULL)",
        )
        tags = bl.Lookup("tags", key="tag", returns="id", create=True)
        note = "B" * (_limit(engine) + MB)

        def posts(record: dict[str, Any], out: bl.Out) -> None:
            tag = tags.ref(tag=record["tag"], note=note if record["tag"] == "big" else "n")
            out.insert("posts", {"id": record["id"], "tag_id": tag})

        pipeline = bl.Pipeline(engine, writes=[bl.Insert("posts")], lookups=[tags])
        records = [{"id": 1, "tag": "a"}, {"id": 2, "tag": "big"}, {"id": 3, "tag": "c"}]
        result = pipeline.run(records, posts)
        assert (result.status, result.items_processed, result.retries) == (
            "partial_success",
            2,
            0,
        )
        with engine.connect() as conn:
            ids = conn.exec_driver_sql("SELECT id FROM posts ORDER BY id").scalars().all()
        assert ids == [1, 3]
        [letter] = _letters(mysql_url)
        assert (letter.stage, letter.error_class) == ("lookup", "RowTooLarge")
        assert "max_allowed_packet" in letter.message
    finally:
        engine.dispose()
