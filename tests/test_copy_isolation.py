"""A COPY PostgreSQL refuses at a named line is sent again without that row
(``batchline._copy_isolation``): the rows it names, and only those, go the row path, and a
load leaves exactly what the row path leaves (but for how many isolation tries it counted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchline import _arrow_write, _copy_isolation
from batchline._copy_isolation import cut_rows
from tests._schemas import execute
from tests.test_csv_arrow import load_twice

postgres = pytest.mark.postgres


class AsRows:
    """How many records went the row path (``ArrowPart.as_rows``), chunk by chunk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records: list[int] = []
        original = _arrow_write.ArrowPart.as_rows

        def as_rows(part: _arrow_write.ArrowPart) -> Any:
            chunk = original(part)
            self.records.append(len(chunk))
            return chunk

        monkeypatch.setattr(_arrow_write.ArrowPart, "as_rows", as_rows)


def without_isolation_counts(left: dict[str, Any]) -> dict[str, Any]:
    return {**left, "result": {k: v for k, v in left["result"].items() if k != "isolation_flushes"}}


DDL = "CREATE TABLE {} (id BIGINT PRIMARY KEY, qty BIGINT NOT NULL CHECK (qty > 0), note TEXT)"


def test_cut_rows_finds_each_row_end_outside_quotes() -> None:
    stream = b'1,"a\nb",x\n2,"c",y\n3,"d\n""e""\nf",z'
    cut = cut_rows(stream, 3, b'"')
    assert cut is not None
    assert [bytes(cut.piece(i, i + 1)) for i in range(3)] == [
        b'1,"a\nb",x\n', b'2,"c",y\n', b'3,"d\n""e""\nf",z'
    ]  # fmt: skip
    assert list(cut.lines) == [2, 3, 6]
    # line 3 of a statement from row 0: row 1 (lines counted) or row 2 (rows counted)
    assert cut.named(0, 3, 3) == (1, 2)
    assert cut.named(1, 3, 1) == (1, 1)  # line 1 is always the first row
    assert cut_rows(stream, 4, b'"') is None  # not the rows the chunk has: no guessing
    assert cut_rows(b"1,a\n2,b\n", 2, None) is not None


@postgres
def test_bad_rows_of_a_csv_are_left_out_of_the_copy_and_dead_lettered_as_rows(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 3_000
    lines = ["id,qty,note"]
    bad: dict[int, str] = {}  # file line -> what the database says
    for i in range(n):
        key, qty = i, 1 + i % 7
        if i in (700, 701, 2_500):
            key = i - 600  # a key already loaded
            bad[len(lines) + 1] = "duplicate key value violates unique constraint"
        if i == 1_234:
            qty = -5
            bad[len(lines) + 1] = "violates check constraint"
        lines.append(f"{key},{qty},note {i}")
    path = tmp_path / "dups.csv"
    path.write_text("\n".join(lines) + "\n")
    execute(postgres_url, DDL.format("bulk"), DDL.format("rowwise"))
    through_rows = AsRows(monkeypatch)
    bulk, rowwise, sent = load_twice(postgres_url, path, monkeypatch)
    assert without_isolation_counts(bulk) == without_isolation_counts(rowwise)
    assert {line: stage for _, line, stage, *_ in bulk["letters"]} == dict.fromkeys(bad, "write")
    for _, line, _, _, message, _ in bulk["letters"]:
        assert bad[line] in message
    assert bulk["job"] == [(n, n - 4, 4, 0, "partial_success")]
    assert len(bulk["table"]) == n - 4
    # the bulk load sent only the four bad rows the row path's way, not their chunk
    assert through_rows.records[0] == 4
    assert sent.attempts == 1


@postgres
def test_rows_after_quoted_newlines_are_named_right(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the COPY's "line" counts the newlines inside quotes (not those of its first record):
    # the rows it may mean are told apart by starting the next COPY at the first of them
    lines = ["id,qty,note"]
    bad: list[int] = []
    for i in range(400):
        note = f'"two\nlines {i}"' if i % 3 == 0 else f"note {i}"
        qty = -1 if i in (10, 11, 200) else 1
        if i in (10, 11, 200):
            bad.append(len(lines) + 1 + sum(line.count("\n") for line in lines))
        lines.append(f"{i},{qty},{note}")
    path = tmp_path / "quoted.csv"
    path.write_text("\n".join(lines) + "\n")
    execute(postgres_url, DDL.format("bulk"), DDL.format("rowwise"))
    through_rows = AsRows(monkeypatch)
    bulk, rowwise, _ = load_twice(postgres_url, path, monkeypatch)
    assert without_isolation_counts(bulk) == without_isolation_counts(rowwise)
    assert [(line, stage) for _, line, stage, *_ in bulk["letters"]] == [
        (line, "write") for line in bad
    ]
    assert through_rows.records[0] == 3


@postgres
def test_a_chunk_of_many_bad_rows_goes_the_row_path_whole(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_copy_isolation, "MAX_LEFT_OUT", 2)
    lines = ["id,qty,note"] + [f"{i},{-1 if i % 50 == 7 else 1},n" for i in range(300)]
    path = tmp_path / "many.csv"
    path.write_text("\n".join(lines) + "\n")
    execute(postgres_url, DDL.format("bulk"), DDL.format("rowwise"))
    through_rows = AsRows(monkeypatch)
    bulk, rowwise, _ = load_twice(postgres_url, path, monkeypatch)
    assert bulk == rowwise
    assert len(bulk["letters"]) == 6
    assert through_rows.records[0] == 300  # past the limit: the whole chunk as rows
