"""CSV files read as Arrow batches (``batchline._csv_blocks``): the row reader's records,
positions, lines and read failures, whatever the block size, quoting or encoding."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from batchline._csv_blocks import META, csv_batches, csv_sample
from batchline._sources import SourceRecord, read_file


def from_batches(path: Path, size: int, **options: Any) -> list[tuple[Any, ...]]:
    out = []
    for batch in csv_batches(read_file(path, **options), size):
        for row in batch.to_pylist():
            position, line, error, raw = (row.pop(m) for m in META)
            out.append((position, line, error, raw if error else None, None if error else row))
    return out


def from_rows(path: Path, **options: Any) -> list[tuple[Any, ...]]:
    return [
        (
            item.position,
            item.line,
            getattr(item, "error", None),
            getattr(item, "raw", None),
            item.data if isinstance(item, SourceRecord) else None,
        )
        for item in read_file(path, **options)
    ]


CASES = {
    "quoted_newlines.csv": 'a,b\n1,2\n3,"x\ny"\n\n5,6\n7\n8,9\n"q""r",z\n10,11',
    "crlf_blank.csv": 'a,b\r\n1,2\r\n3,4\r\n\r\n5,"6\n\n7"\r\n',
    "bad_byte.csv": "a,b\n1,2\n3,\xff\n4,5\n",
    "unterminated.csv": 'a,b\n1,"unterminated\n2,3\n4,5\n',
    "dbgen.tbl": "1|x|\n2|y|\n3|z|\n",
    "stray_quote.csv": 'a,b\n"a"b,c\n1,2\n1,2\x00\n',
    "wide_short.csv": "a,b\n1,2\n1,2,3\n4\n5,6\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("size", [1, 3, 7, 64, 1 << 20])
def test_batches_hold_the_row_readers_records_lines_and_failures(
    tmp_path: Path, name: str, size: int
) -> None:
    path = tmp_path / name
    path.write_bytes(CASES[name].encode("latin-1"))
    assert from_batches(path, size) == from_rows(path)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("size", [0, 1, 2, 4, 100])
@pytest.mark.parametrize("block", [5, 1 << 20])
def test_the_sample_is_the_row_readers_records_among_its_first_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, size: int, block: int
) -> None:
    """``csv_sample`` (what a load infers kinds from) reads what the row reader's first
    ``size`` items hold, read failures left out, as ``_load.sample_source`` did, from one
    block or several."""
    monkeypatch.setattr("batchline._csv_blocks.BLOCK_BYTES", block)
    path = tmp_path / name
    path.write_bytes(CASES[name].encode("latin-1"))
    items = list(read_file(path))[:size]
    expected = [item.data for item in items if isinstance(item, SourceRecord)]
    assert csv_sample(read_file(path), size) == expected


def test_a_semicolon_latin1_file_reads_as_the_row_reader_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_bytes("name;city\nJosé;Zürich\nLéa;Genève\n".encode("latin-1"))
    options = {"delimiter": ";", "encoding": "latin-1"}
    got = from_batches(path, 8, **options)
    assert got == from_rows(path, **options)
    assert [r[4] for r in got] == [
        {"name": "José", "city": "Zürich"},
        {"name": "Léa", "city": "Genève"},
    ]


@pytest.mark.parametrize("seed", range(40))
def test_random_files_read_as_the_row_reader_reads_them(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    pieces = ["a", "1", ",", '"', "\n", "\r\n", "\r", " ", "é", "\x00", "", "x,y\n", "2,3\n"]
    body = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 200)))
    encoding = rnd.choice(["utf-8", "latin-1"])
    path = tmp_path / "r.csv"
    path.write_bytes(("x,y\n" + body).encode(encoding))
    expected = from_rows(path, encoding=encoding)
    for size in (1, 5, 17, 4096):
        assert from_batches(path, size, encoding=encoding) == expected


def test_plain_blocks_are_parsed_by_arrow_and_numbered_by_line(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n" + "".join(f"{i},v{i}\n" for i in range(1000)))
    batches = list(csv_batches(read_file(path), 1000))
    assert len(batches) > 5  # several blocks
    rows = [r for b in batches for r in b.to_pylist()]
    assert [r[META[0]] for r in rows] == list(range(1, 1001))
    assert [r[META[1]] for r in rows] == list(range(2, 1002))
    assert rows[-1]["b"] == "v999"


def test_a_gzipped_file_and_a_bom_read_as_the_row_reader_reads_them(tmp_path: Path) -> None:
    import gzip

    text = "\ufeffa,b\n" + "".join(f"{i},x{i}\n" for i in range(300))
    plain, packed = tmp_path / "bom.csv", tmp_path / "bom.csv.gz"
    plain.write_text(text, encoding="utf-8")
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        assert from_batches(path, 256) == from_rows(path)
    headless = tmp_path / "headless.csv"
    headless.write_text("\ufeff1,x\n2,y\n", encoding="utf-8")
    got = from_batches(headless, 1 << 20, names=["a", "b"])
    assert got == from_rows(headless, names=["a", "b"])
    assert got[0][4] == {"a": "1", "b": "x"}


def test_quoted_fields_without_newlines_are_read_by_arrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchline._csv_blocks as blocks

    path = tmp_path / "quoted.csv"
    body = "".join(f'{i},"say ""{i}"", ok","",plain {i}\n' for i in range(500))
    path.write_text("a,b,c,d\n" + body + '7,"x\ny",z,w\n' + '8,"a"b,c,d\n')
    expected = from_rows(path)
    taken = []
    original = blocks._FastReader._plainly_quoted

    def spy(self: Any, block: bytes, n: int) -> bool:
        taken.append(original(self, block, n))
        return taken[-1]

    monkeypatch.setattr(blocks._FastReader, "_plainly_quoted", spy)
    assert from_batches(path, 2048) == expected
    assert True in taken and False in taken  # both readers ran
    assert expected[0][4] == {"a": "0", "b": 'say "0", ok', "c": "", "d": "plain 0"}
    assert expected[-1][2] is not None  # "a"b: the row reader's strict error, at its line
