"""`batchline load file.csv` on the Arrow path (``_csv_blocks`` → ``_csv_convert`` → bulk):
what lands, the dead letters (stage, line, reason), the job and the Result are the row
path's, on all three databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from batchline import _csv_blocks, _run_loop
from tests._schemas import kill_after_first_commit, rows
from tests.test_arrow_write import Sent, eval_named, left_by, same

TYPES = {
    "id": "integer",
    "amount": "decimal(12,2)",
    "day": "date",
    "at": "timestamp",
    "ok": "boolean",
    "score": "float",
    "note": "text",
}


def write_file(path: Path, n: int) -> dict[str, int]:
    """A CSV of ``n`` records with odd values here and there; returns the line of each
    record named in it (``bad_amount``, ``bad_day``, ``short``, ``after_quoted``)."""
    lines = ["id,amount,day,at,ok,score,note"]
    where: dict[str, int] = {}
    for i in range(n):
        amount = f"{i}.{i % 100:02d}"
        day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"
        at = f"2024-01-01 {i % 24:02d}:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}"
        ok = ["true", "no", "t", "Y", "0"][i % 5]
        score = ["1.5", "1e3", ".5", "-2", "3."][i % 5]
        note = f"note {i}"
        if i % 97 == 5:
            amount = f"+{i}"  # Python converts it: not Arrow's pattern, still lands
        if i % 89 == 7:
            amount = f"{i}.500"  # three places, trailing zero: lands as the row path lands it
        if i % 83 == 3:
            day = ""  # NULL
        if i % 101 == 11:
            note = ""
        if i == n // 3:
            note = '"two\nlines, quoted"'
        record = f"{i},{amount},{day},{at},{ok},{score},{note}"
        if i == n // 3 + 1:
            where["after_quoted"] = len(lines) + 2  # the quoted newline adds a line
        if i == n // 2:
            record = f"{i},x{i},{day},{at},{ok},{score},{note}"
            where["bad_amount"] = len(lines) + 2
        if i == n // 2 + 5:
            record = f"{i},{amount},2023-02-30,{at},{ok},{score},{note}"
            where["bad_day"] = len(lines) + 2
        if i == n // 2 + 9:
            record = f"{i},{amount},{day}"
            where["short"] = len(lines) + 2
        if i == n // 3 + 1:
            record = f"{i},{amount},{day},{at},{ok},{score},x{i}"
        lines.append(record)
    path.write_text("\n".join(lines) + "\n")
    return where


def load_twice(
    url: str, path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[dict[str, Any], dict[str, Any], Sent]:
    """``bl.load`` the file into ``bulk``, then into ``rowwise`` with the Arrow path off."""
    sent = Sent(monkeypatch)
    out = []
    for table in ("bulk", "rowwise"):
        if table == "rowwise":
            monkeypatch.setattr(_run_loop, "arrow_writer", lambda *a: None)
        result = bl.load(str(path), url, table=table, job=table, **options)
        out.append(left_by(url, table, result, chunks=False))
    bulk, rowwise = (eval_named(o, name) for o, name in zip(out, ("bulk", "rowwise")))
    return bulk, rowwise, sent


def test_a_csv_load_in_bulk_leaves_what_the_row_path_leaves(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_csv_blocks, "BLOCK_BYTES", 8 * 1024)  # many blocks, both readers
    n = 3_000
    path = tmp_path / "mixed.csv"
    where = write_file(path, n)
    bulk, rowwise, sent = load_twice(db_url, path, monkeypatch, types=TYPES, chunk_size=700)
    assert same(bulk, rowwise)
    assert sent.bulk_rows > n // 2
    letters = {(line, stage): message for _, line, stage, _, message, _ in bulk["letters"]}
    assert set(letters) == {
        (where["bad_amount"], "map"),
        (where["bad_day"], "map"),
        (where["short"], "read"),
    }
    assert "'x1500' is not a decimal number" in letters[(where["bad_amount"], "map")]
    assert "expected 7 fields, found 3" in letters[(where["short"], "read")]
    assert bulk["job"] == [(n, n - 3, 3, 0, "partial_success")]
    after = [r for r in bulk["table"] if r[0] == n // 3 + 1]
    assert after and after[0][-1] == f"x{n // 3 + 1}"


def test_quoted_newlines_and_a_bad_row_keep_their_lines(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_csv_blocks, "BLOCK_BYTES", 64)  # a quoted field across blocks
    text = (
        "id,qty,note\n"
        '1,1,"a\nb\nc"\n'
        "2,x,plain\n"  # line 5: does not fit
        '3,3,"d,\n""e"""\n'
        "4,4\n"  # line 8: too few fields
        "5,5,last\n"
    )
    path = tmp_path / "q.csv"
    path.write_text(text)
    result = bl.load(str(path), db_url, table="q", types={"qty": "integer"})
    assert result.items_processed == 3
    assert [(f.position, f.line, f.stage) for f in result.failed_items_list] == [
        (2, 5, "map"),
        (4, 8, "read"),
    ]
    assert rows(db_url, "SELECT id, qty, note FROM q ORDER BY id") == [
        (1, 1, "a\nb\nc"),
        (3, 3, 'd,\n"e"'),
        (5, 5, "last"),
    ]


def test_a_semicolon_latin1_file_loads_in_bulk(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "semi.csv"
    body = "".join(f"{i};Zürich {i};{i}.25\n" for i in range(50))
    path.write_bytes(("id;city;price\n" + body).encode("latin-1"))
    sent = Sent(monkeypatch)
    result = bl.load(str(path), db_url, table="semi", delimiter=";", encoding="latin-1")
    assert result.status == "success" and result.items_processed == 50
    assert sent.bulk_rows == 50
    got = rows(db_url, "SELECT id, city, price FROM semi ORDER BY id")
    assert [(r[0], r[1], str(r[2])) for r in got][:2] == [
        (0, "Zürich 0", "0.25"),
        (1, "Zürich 1", "1.25"),
    ]


def test_the_issues_outlier_file_lands_with_one_dead_letter_in_bulk(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "inf.csv"
    path.write_text("sku,qty\nA,1\nB,x2\nA,3\nC,4\n")
    result = bl.load(str(path), db_url, table="stock")
    assert result.items_processed == 3 and result.items_failed == 1
    (failure,) = result.failed_items_list
    assert (failure.line, failure.stage) == (3, "map")
    assert rows(db_url, "SELECT sku, qty FROM stock ORDER BY sku, qty") == [
        ("A", 1),
        ("A", 3),
        ("C", 4),
    ]


def test_a_bulk_csv_chunk_the_database_refuses_goes_as_rows(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a duplicate key refuses the COPY/INSERT: the chunk is redone as rows, and the misfit
    # found while converting is dead-lettered once, not twice
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE d (id BIGINT PRIMARY KEY, qty BIGINT)"))
    engine.dispose()
    path = tmp_path / "d.csv"
    path.write_text("id,qty\n1,1\n2,x\n3,3\n1,4\n5,5\n")
    result = bl.load(str(path), db_url, table="d")
    assert result.items_processed == 3
    assert sorted((f.line, f.stage) for f in result.failed_items_list) == [(3, "map"), (5, "write")]
    assert rows(db_url, "SELECT id, qty FROM d ORDER BY id") == [(1, 1), (3, 3), (5, 5)]
    assert rows(db_url, "SELECT count(*) FROM batchline_dead_letters") == [(2,)]


def test_a_killed_csv_load_resumes_to_exactly_a_clean_load(tmp_path: Path, db_url: str) -> None:
    n = 200_000
    path = tmp_path / "k.csv"
    lines = ["id,amount,day,note"]
    for i in range(n):
        amount = f"x{i}" if i % 10_007 == 3 else f"{i}.{i % 100:02d}"
        lines.append(f"{i},{amount},2024-01-{1 + i % 28:02d},note {i}")
    path.write_text("\n".join(lines) + "\n")
    script = (
        "import sys, batchline as bl\n"
        "bl.load(sys.argv[2], sys.argv[1], table='k', job='k', chunk_size=2000)\n"
    )
    position = kill_after_first_commit(db_url, script, str(path))
    if position == 0 or position >= n:
        pytest.skip("the load finished before it could be killed mid-way")
    resumed = bl.load(str(path), db_url, table="k", job="k", chunk_size=2000)
    assert resumed.resumed_from > 0
    clean = bl.load(str(path), db_url, table="clean", job="c")
    assert clean.status == "partial_success"
    sql = "SELECT id, amount, day, note FROM {} ORDER BY id"
    resumed_rows, clean_rows = rows(db_url, sql.format("k")), rows(db_url, sql.format("clean"))
    bad = len(range(3, n, 10_007))
    assert len(resumed_rows) == n - bad and resumed_rows == clean_rows
    assert rows(
        db_url, "SELECT position, processed, failed FROM batchline_jobs WHERE name = 'k'"
    ) == [(n, n - bad, bad)]
    letters = "SELECT position, line, stage FROM batchline_dead_letters WHERE job = '{}' ORDER BY 1"
    assert rows(db_url, letters.format("k")) == rows(db_url, letters.format("c"))


@pytest.mark.mysql
def test_a_mysql_bulk_chunk_with_a_warning_is_redone_as_rows(
    tmp_path: Path, mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LOAD DATA LOCAL would cut 'toolong' to 'too' with a warning: the chunk is rolled back
    # and redone as rows, where strict mode refuses the value and it is dead-lettered
    engine = sa.create_engine(mysql_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE w (id BIGINT PRIMARY KEY, code VARCHAR(3))"))
    engine.dispose()
    path = tmp_path / "w.csv"
    path.write_text("id,code\n1,abc\n2,toolong\n3,xyz\n")
    sent = Sent(monkeypatch)
    result = bl.load(str(path), mysql_url, table="w")
    assert sent.attempts == 1 and sent.bulk_rows == 0  # tried in bulk, refused
    assert result.items_processed == 2
    (failure,) = result.failed_items_list
    assert (failure.line, failure.stage) == (3, "write")
    assert rows(mysql_url, "SELECT id, code FROM w ORDER BY id") == [(1, "abc"), (3, "xyz")]


@pytest.mark.mysql
def test_mysql_bulk_without_local_infile_inserts_the_rows(
    tmp_path: Path, mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an engine of the caller's, made without the LOCAL_FILES flag: the server refuses
    # LOAD DATA LOCAL, and the chunks go as multi-row INSERTs, still in bulk
    path = tmp_path / "n.csv"
    path.write_text("id,price\n" + "".join(f"{i},{i}.5\n" for i in range(100)))
    engine = sa.create_engine(mysql_url)
    sent = Sent(monkeypatch)
    result = bl.load(str(path), engine, table="n")
    engine.dispose()
    assert result.status == "success" and sent.bulk_rows == 100
    assert rows(mysql_url, "SELECT count(*), sum(price) FROM n")[0][0] == 100


def test_zone_aware_timestamps_go_in_bulk_as_their_instants(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL and MySQL store the instant (MySQL as UTC): Arrow's UTC instant is that;
    # SQLite keeps each value's own offset in its text, which only the row path writes
    offsets = ["Z", "+02:00", "-05:30", "+00:00", "+14:00"]
    lines = ["id,at"]
    for i in range(300):
        fraction = f".{i:06d}" if i % 3 else ""
        lines.append(f"{i},2024-03-{1 + i % 28:02d}T{i % 24:02d}:30:00{fraction}{offsets[i % 5]}")
    lines.append("300,")  # empty: NULL
    lines.append("301,2024-01-01 12:00:00+0200")  # another form: Python converts it
    path = tmp_path / "tz.csv"
    path.write_text("\n".join(lines) + "\n")
    types = {"id": "integer", "at": "timestamptz"}
    bulk, rowwise, sent = load_twice(db_url, path, monkeypatch, types=types)
    assert same(bulk, rowwise)
    assert bulk["job"] == [(302, 302, 0, 0, "success")]
    assert sent.bulk_rows == (0 if db_url.startswith("sqlite") else 302)

    # a value with no offset: read in the database's session zone, by the row path
    monkeypatch.undo()
    naive = tmp_path / "naive.csv"
    naive.write_text("id,at\n1,2024-01-01T12:00:00Z\n2,2024-01-01 12:00:00\n")
    sent = Sent(monkeypatch)
    result = bl.load(str(naive), db_url, table="naive", types=types)
    assert result.items_processed == 2 and sent.bulk_rows == 0
