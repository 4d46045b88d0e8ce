"""`batchline load file.jsonl` on the Arrow path (``_jsonl_blocks`` → ``_jsonl_convert`` →
bulk): what lands, the dead letters (stage, line, reason), the job and the Result are the
row path's, on all three databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import batchline as bl
from batchline import _jsonl_blocks
from tests._schemas import rows
from tests.test_arrow_write import same
from tests.test_csv_arrow import load_twice

TYPES = {
    "id": "integer",
    "amount": "decimal(12,2)",
    "day": "date",
    "at": "timestamp",
    "ok": "boolean",
    "score": "float",
    "note": "text",
    "big": "integer",
}


class Parsed:
    """How many records pyarrow's JSON reader read (``_jsonl_blocks._fast``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        original = _jsonl_blocks._fast

        def fast(*args: Any) -> Any:
            table = original(*args)
            self.rows += 0 if table is None else table.num_rows
            return table

        monkeypatch.setattr(_jsonl_blocks, "_fast", fast)


def write_file(path: Path, n: int) -> dict[str, int]:
    """A JSON Lines file of ``n`` records with odd lines here and there; returns the line of
    each named in it."""
    lines: list[str] = []
    where: dict[str, int] = {}
    for i in range(n):
        record: dict[str, object] = {
            "id": i,
            "amount": f"{i}.{i % 100:02d}",
            "day": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "at": f"2024-01-01 {i % 24:02d}:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}",
            "ok": [True, False, None][i % 3],
            "score": [0.1, 1e300, -0.0, 3, 2.5e-7, None][i % 6],
            "note": ["note", "Zürich ✓ 😀", "", None][i % 4] + str(i) if i % 4 != 3 else None,
            "big": i * 1_000_003,
        }
        if i % 13 == 0:
            del record["note"]  # a missing key: NULL
        if i % 500 == 17:
            record["amount"] = i + 0.5  # a decimal as a number: the row reader's block
        line = json.dumps(record, ensure_ascii=i % 2 == 0)
        if i == n // 2:
            line = '{"id": 1, "amount": '
            where["bad_json"] = len(lines) + 1
        if i == n // 2 + 5:
            line = "[1, 2]"
            where["not_object"] = len(lines) + 1
        if i == n // 2 + 9:
            line = json.dumps({**record, "day": "2023-02-30"})
            where["bad_day"] = len(lines) + 1
        if i == n // 2 + 13:
            line = json.dumps({**record, "big": 2**64 + 1})
            where["too_big"] = len(lines) + 1
        if i == n // 2 + 17:
            line = json.dumps({**record, "id": "x"})
            where["bad_id"] = len(lines) + 1
        if i == n // 3:
            lines.append("")  # a blank line still counts as a line
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return where


def test_a_jsonl_load_in_bulk_leaves_what_the_row_path_leaves(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_jsonl_blocks, "BLOCK_BYTES", 8 * 1024)  # many blocks, both readers
    n = 3_000
    path = tmp_path / "mixed.jsonl"
    where = write_file(path, n)
    parsed = Parsed(monkeypatch)
    bulk, rowwise, sent = load_twice(db_url, path, monkeypatch, types=TYPES, chunk_size=700)
    assert same(bulk, rowwise)
    assert sent.bulk_rows > n // 2 and parsed.rows > n // 2
    letters = {(line, stage): message for _, line, stage, _, message, _ in bulk["letters"]}
    assert set(letters) == {
        (where["bad_json"], "read"),
        (where["not_object"], "read"),
        (where["bad_day"], "map"),
        (where["too_big"], "map"),
        (where["bad_id"], "map"),
    }
    assert "invalid JSON" in letters[(where["bad_json"], "read")]
    assert "expected an object" in letters[(where["not_object"], "read")]
    assert "too large for a 64-bit integer" in letters[(where["too_big"], "map")]
    assert "'x' is not an integer" in letters[(where["bad_id"], "map")]
    assert bulk["job"] == [(n, n - 5, 5, 0, "partial_success")]


def test_floats_read_back_as_pythons_json_reads_them(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = ["0.1", "1e300", "-0.0", "3", "0.30000000000000004", "5e-324", "1e-400", "123456789"]
    path = tmp_path / "f.jsonl"
    path.write_text("".join(f'{{"id": {i}, "x": {v}}}\n' for i, v in enumerate(values)))
    parsed = Parsed(monkeypatch)
    bulk, rowwise, sent = load_twice(db_url, path, monkeypatch, types={"x": "float"})
    assert same(bulk, rowwise)
    assert sent.bulk_rows == parsed.rows == len(values)
    got = [r[1] for r in sorted(bulk["table"])]
    assert got == [float(json.loads(v)) for v in values]


def test_the_least_int64_is_refused_as_the_row_path_refuses_it(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow reads -2**63 as an int64; coerce_record refuses it (|value| > 2**63 - 1)
    values = [0, 2**63 - 1, -(2**63), -(2**63) + 1, -5]
    path = tmp_path / "i.jsonl"
    path.write_text("".join(f'{{"id": {i}, "x": {v}}}\n' for i, v in enumerate(values)))
    parsed = Parsed(monkeypatch)
    bulk, rowwise, sent = load_twice(db_url, path, monkeypatch, types={"x": "integer"})
    assert same(bulk, rowwise)
    assert parsed.rows == len(values) and sent.bulk_rows == len(values) - 1
    assert [(line, stage) for _, line, stage, *_ in bulk["letters"]] == [(3, "map")]


def test_a_40_mb_field_in_jsonl_lands_as_the_row_path_lands_it(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.jsonl"
    size = 40 * 1024 * 1024
    with path.open("w") as f:
        f.write('{"id": 1, "p": "a"}\n')
        f.write('{"id": 2, "p": "' + "B" * size + '"}\n')
        f.write('{"id": 3, "p": "c"}\n')
    bulk, rowwise, sent = load_twice(db_url, path, monkeypatch, types={"p": "text"})
    assert [(i, len(p)) for i, p in sorted(bulk["table"])] == [(1, 1), (2, size), (3, 1)]
    assert sent.bulk_rows == 3
    if not db_url.startswith("mysql"):
        assert same(bulk, rowwise)
    # (MySQL: LOAD DATA is not bound by max_allowed_packet, where the row path's INSERT is
    # and dead-letters the record, as for a CSV file's bulk chunk)


def test_a_killed_jsonl_load_resumes_to_exactly_a_clean_load(tmp_path: Path, db_url: str) -> None:
    from tests._schemas import kill_after_first_commit

    n = 200_000
    path = tmp_path / "k.jsonl"
    with path.open("w") as f:
        for i in range(n):
            amount: object = f"x{i}" if i % 10_007 == 3 else f"{i}.{i % 100:02d}"
            f.write(json.dumps({"id": i, "amount": amount, "note": f"note {i}"}) + "\n")
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
    sql = "SELECT id, amount, note FROM {} ORDER BY id"
    resumed_rows, clean_rows = rows(db_url, sql.format("k")), rows(db_url, sql.format("clean"))
    bad = len(range(3, n, 10_007))
    assert len(resumed_rows) == n - bad and resumed_rows == clean_rows
    letters = "SELECT position, line, stage FROM batchline_dead_letters WHERE job = '{}' ORDER BY 1"
    assert rows(db_url, letters.format("k")) == rows(db_url, letters.format("c"))


def test_an_unreadable_csv_line_in_a_chunk_sent_as_rows_is_a_dead_letter(
    tmp_path: Path, db_url: str
) -> None:
    # a json column sends the CSV chunk the row path whole: its short line used to be
    # mapped as a record of NULLs (a row of NULLs landed, exit 0)
    path = tmp_path / "j.csv"
    path.write_text('id,j\n1,"{""a"": 1}"\n2\n3,"[1]"\n')
    result = bl.load(str(path), db_url, table="j", types={"j": "json"})
    assert [(f.line, f.stage) for f in result.failed_items_list] == [(3, "read")]
    assert [r[0] for r in rows(db_url, "SELECT id FROM j ORDER BY id")] == [1, 3]


def test_lines_pyarrow_would_read_differently_go_the_row_reader(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_jsonl_blocks, "BLOCK_BYTES", 16)  # a block a line
    odd = [
        '{"id": 1, "n": 1, "n": 2}',  # a duplicate key: json.loads keeps the last
        '{"id": 2, "n": 1.0}',  # a float into an integer column: 1
        '{"id": 3, "n": "3"}',  # text into an integer column: converted
        '{"id": 4, "t": 4}',  # a number into a text column: "4"
        '{"id": 5, "b": 1}',  # 1 into a boolean column: true
        '{"id": 6, "x": 1}',  # a key the other lines lack
        '{"id": 7} {"id": 8}',  # two values on a line: invalid JSON
        '{"id": 9, "f": NaN}',  # NaN: kept where the database holds it
        '{"id": 10, "f": Infinity}',
        '{"id": 11, "f": 1e400}',  # past a double: infinity, as json.loads reads it
        "null",  # not an object (pyarrow crashes on it alone)
        '  {"id": 13}\t',
        '{"id": 14}\r',
        '{"id": 15, "t": "\\u00e9"}',
    ]
    plain = [f'{{"id": {i}, "n": {i}, "t": "t{i}", "b": true, "f": 0.5}}' for i in range(20, 40)]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(plain + odd + plain[:1]) + "\n")
    types = {"id": "integer", "n": "integer", "t": "text", "b": "boolean", "f": "float"}
    parsed = Parsed(monkeypatch)
    bulk, rowwise, _ = load_twice(db_url, path, monkeypatch, types=types)
    assert same(bulk, rowwise)
    assert parsed.rows >= len(plain)  # the plain lines (and the blank-padded ones)
    letters = [(line, stage) for _, line, stage, *_ in bulk["letters"]]
    assert [x for x in letters if x[1] == "read"] == [(27, "read"), (31, "read")]


def test_a_key_past_the_sample_is_refused_as_the_row_path_refuses_it(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_jsonl_blocks, "BLOCK_BYTES", 16 * 1024)
    n = 10_100  # (the sample is the first 10,000 records)
    lines = [json.dumps({"id": i, "v": i}) for i in range(n)]
    lines[10_050] = json.dumps({"id": 10_050, "v": 1, "extra": 2})
    path = tmp_path / "late.jsonl"
    path.write_text("\n".join(lines) + "\n")
    parsed = Parsed(monkeypatch)
    bulk, rowwise, _ = load_twice(db_url, path, monkeypatch)
    assert same(bulk, rowwise)
    assert parsed.rows >= n - 1_000  # all but the block with the key
    [(line, stage, message)] = [(r[1], r[2], r[4]) for r in bulk["letters"]]
    assert (line, stage) == (10_051, "map") and "unexpected column 'extra'" in message


@pytest.mark.parametrize("mode", ["upsert", "increment"])
def test_a_jsonl_upsert_or_increment_in_bulk_leaves_what_rows_leave(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(_jsonl_blocks, "BLOCK_BYTES", 1024)
    lines = [json.dumps({"id": i % 7, "qty": i, "name": f"n{i}"}) for i in range(300)]
    lines[150] = json.dumps({"id": 1, "qty": "x", "name": "bad"})  # a misfit
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    options: dict[str, Any] = (
        {"upsert": "id"} if mode == "upsert" else {"increment": "id", "columns": ["qty"]}
    )
    parsed = Parsed(monkeypatch)
    bulk, rowwise, _ = load_twice(db_url, path, monkeypatch, **options)
    assert same(bulk, rowwise)
    assert parsed.rows > 0
    assert [(r[1], r[2]) for r in bulk["letters"]] == [(151, "map")]


def test_a_lone_surrogate_is_a_dead_letter_on_both_paths(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JSON can spell half a UTF-16 pair; no database can store it: the record is
    # dead-lettered at stage map (it crashed the run at commit), the others land
    path = tmp_path / "surrogate.jsonl"
    path.write_text(
        '{"id": 1, "name": "a"}\n{"id": 2, "name": "\\ud800"}\n{"id": 3, "name": "b\\udfff"}\n'
        '{"id": 4, "name": "\\ud83d\\ude00"}\n'
    )
    bulk, rowwise, _ = load_twice(db_url, path, monkeypatch)
    assert same(bulk, rowwise)
    assert [(line, stage) for _, line, stage, *_ in bulk["letters"]] == [(2, "map"), (3, "map")]
    message = bulk["letters"][0][4]
    assert "column 'name'" in message and "lone surrogate '\\ud800'" in message
    assert json.loads(bulk["letters"][0][5]) == {"id": 2, "name": "\ud800"}  # kept, escaped
    assert [r[:2] for r in bulk["table"]] == [(1, "a"), (4, "\U0001f600")]
