"""Record sources: every format streams, numbers its records, and turns bad input into failures."""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchline._errors import SourceError
from batchline._sources import (
    FileSource,
    ReadFailure,
    SourceItem,
    SourceRecord,
    iter_records,
    read_file,
)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def records(items: list[SourceItem]) -> list[SourceRecord]:
    return [item for item in items if isinstance(item, SourceRecord)]


def failures(items: list[SourceItem]) -> list[ReadFailure]:
    return [item for item in items if isinstance(item, ReadFailure)]


# -- plain iterables ------------------------------------------------------------------------


def test_iter_records_numbers_positions_and_lines_from_one() -> None:
    items = list(iter_records([{"a": 1}, {"a": 2}]))
    assert items == [SourceRecord(1, 1, {"a": 1}), SourceRecord(2, 2, {"a": 2})]


def test_iter_records_turns_a_non_mapping_into_a_failure_and_goes_on() -> None:
    items = list(iter_records([{"a": 1}, ["not", "a", "dict"], {"a": 3}]))  # type: ignore[list-item]
    assert items[1] == ReadFailure(2, 2, "record is list, expected a mapping", None)
    assert items[2] == SourceRecord(3, 3, {"a": 3})


def test_iter_records_is_lazy() -> None:
    def endless() -> Iterator[dict[str, int]]:
        n = 0
        while True:
            n += 1
            yield {"n": n}

    stream = iter_records(endless())
    assert next(stream) == SourceRecord(1, 1, {"n": 1})


# -- read_file: opening -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.TSV", "tsv"),
        ("a.tab", "tsv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", "json"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.csv.gz", "csv"),
    ],
)
def test_read_file_detects_the_format_from_the_extension(
    tmp_path: Path, name: str, fmt: str
) -> None:
    assert read_file(write(tmp_path / name, "")).format == fmt


def test_read_file_takes_a_forced_format_over_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "data.txt", '{"a": 1}\n')
    source = read_file(path, "jsonl")
    assert source.format == "jsonl"
    assert list(source) == [SourceRecord(1, 1, {"a": 1})]


def test_read_file_refuses_an_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"extension '\.xlsx'"):
        read_file(write(tmp_path / "data.xlsx", ""))


def test_read_file_refuses_an_unknown_forced_format(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unknown format 'xml'"):
        read_file(write(tmp_path / "data.csv", ""), "xml")


def test_read_file_raises_at_once_for_a_missing_file_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceError, match=r"nope\.csv"):
        read_file(missing)


def test_read_file_refuses_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(SourceError, match="directory"):
        read_file(folder)


def test_file_source_is_a_file_source_with_path_and_format(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "x\n1\n")
    source = read_file(path)
    assert isinstance(source, FileSource)
    assert source.path == str(path)
    assert source.size_bytes == 4


# -- CSV --------------------------------------------------------------------------------------


def test_csv_header_gives_keys_and_values_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,name,qty\n1,apple,\n2,pear,3\n")
    assert list(read_file(path)) == [
        SourceRecord(1, 2, {"id": "1", "name": "apple", "qty": ""}),
        SourceRecord(2, 3, {"id": "2", "name": "pear", "qty": "3"}),
    ]


def test_csv_line_is_where_a_multiline_quoted_record_starts(tmp_path: Path) -> None:
    text = 'id,note\n1,"two\nlines"\n2,"three\nlong\nlines"\n3,plain\n'
    items = list(read_file(write(tmp_path / "a.csv", text)))
    assert [(i.position, i.line) for i in items] == [(1, 2), (2, 4), (3, 7)]
    assert records(items)[1].data["note"] == "three\nlong\nlines"


def test_csv_wrong_field_count_is_a_failure_naming_expected_and_found(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a,b,c,d\n1,2,3,4\n1,2,3,4,5\n1,2\n5,6,7,8\n")
    items = list(read_file(path))
    assert failures(items) == [
        ReadFailure(2, 3, "expected 4 fields, found 5", "1,2,3,4,5\n"),
        ReadFailure(3, 4, "expected 4 fields, found 2", "1,2\n"),
    ]
    assert [r.position for r in records(items)] == [1, 4]


def test_csv_bad_utf8_fails_only_its_own_record(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"id,name\n1,ok\n2,caf\xff\n3,fine\n")
    items = list(read_file(path))
    bad = failures(items)
    assert len(bad) == 1
    assert bad[0].position == 2 and bad[0].line == 3
    assert bad[0].error == "invalid UTF-8 (byte 0xff at offset 5)"
    assert bad[0].raw == "2,caf\ufffd\n"
    assert [r.data["name"] for r in records(items)] == ["ok", "fine"]


def test_csv_bad_utf8_inside_a_multiline_record_counts_offset_from_the_record(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "a.csv", b'id,note\n1,"ab\nc\xffd"\n2,x\n')
    items = list(read_file(path))
    assert items[0] == ReadFailure(
        1, 2, "invalid UTF-8 (byte 0xff at offset 7)", '1,"ab\nc\ufffdd"\n'
    )
    assert items[1] == SourceRecord(2, 4, {"id": "2", "note": "x"})


def test_csv_nul_byte_is_a_failure(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"a,b\n1,x\x00y\n2,z\n")
    items = list(read_file(path))
    assert items[0] == ReadFailure(1, 2, "record contains a NUL byte", "1,x\x00y\n")
    assert items[1] == SourceRecord(2, 3, {"a": "2", "b": "z"})


def test_csv_unterminated_quote_at_end_of_file_is_a_failure(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'a,b\n1,x\n2,"never closed\nmore\n')
    items = list(read_file(path))
    assert items[0] == SourceRecord(1, 2, {"a": "1", "b": "x"})
    assert isinstance(items[1], ReadFailure)
    assert items[1].line == 3
    assert "unexpected end of data" in items[1].error
    assert items[1].raw == '2,"never closed\nmore\n'


def test_csv_stray_text_after_a_closing_quote_is_a_failure_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "a.csv", 'a,b\n"x"y,1\n2,3\n')
    items = list(read_file(path))
    assert isinstance(items[0], ReadFailure)
    assert items[0].error.startswith("malformed CSV:")
    assert items[1] == SourceRecord(2, 3, {"a": "2", "b": "3"})


def test_csv_strips_a_utf8_bom_from_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"\xef\xbb\xbfid,name\n1,x\n")
    assert list(read_file(path)) == [SourceRecord(1, 2, {"id": "1", "name": "x"})]


def test_csv_skips_blank_lines_but_counts_them_in_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a,b\n\n1,2\n\n\n3,4\n")
    assert [(i.position, i.line) for i in read_file(path)] == [(1, 3), (2, 6)]


def test_csv_handles_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'a,b\r\n1,"x\r\ny"\r\n2,z\r\n')
    items = list(read_file(path))
    assert items == [
        SourceRecord(1, 2, {"a": "1", "b": "x\r\ny"}),
        SourceRecord(2, 4, {"a": "2", "b": "z"}),
    ]


def test_csv_skips_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "\n\na,b\n1,2\n")
    assert list(read_file(path)) == [SourceRecord(1, 4, {"a": "1", "b": "2"})]


def test_csv_header_with_bad_utf8_is_a_source_error(tmp_path: Path) -> None:
    source = read_file(write(tmp_path / "a.csv", b"a,\xffb\n1,2\n"))
    with pytest.raises(SourceError, match="header"):
        list(source)


def test_csv_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert list(read_file(write(tmp_path / "a.csv", ""))) == []


def test_csv_duplicate_header_names_are_refused(tmp_path: Path) -> None:
    source = read_file(write(tmp_path / "a.csv", "a,b,a\n1,2,3\n"))
    with pytest.raises(SourceError, match="duplicate column 'a'"):
        list(source)


def test_csv_custom_delimiter_and_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "name;city\nJos\xe9;Malm\xf6\n".encode("latin-1"))
    items = list(read_file(path, delimiter=";", encoding="latin-1"))
    assert items == [SourceRecord(1, 2, {"name": "José", "city": "Malmö"})]


def test_tsv_splits_on_tabs(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "a\tb\n1,5\tx y\n")
    assert list(read_file(path)) == [SourceRecord(1, 2, {"a": "1,5", "b": "x y"})]


def test_gzip_compressed_csv_is_decompressed(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert list(read_file(path)) == [SourceRecord(1, 2, {"a": "1", "b": "2"})]


def test_csv_memory_stays_flat_on_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("id,name,amount,note\n")
        for i in range(60_000):
            fh.write(f'{i},name-{i},{i * 1.5:.2f},"a note, with a comma\nand {"x" * 100}"\n')
    source = read_file(path)
    size = source.size_bytes
    assert size is not None and size > 8_000_000
    tracemalloc.start()  # slows reading ~15x, so the file is kept to a few MB
    try:
        count = sum(1 for item in source if isinstance(item, SourceRecord))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000
    assert peak < 2 * 1024 * 1024  # far below the file, let alone its records as dicts
    assert source.bytes_read == size


def test_csv_source_can_be_iterated_twice(tmp_path: Path) -> None:
    source = read_file(write(tmp_path / "a.csv", "a\n1\n2\n"))
    assert list(source) == list(source)


# -- JSON Lines -------------------------------------------------------------------------------


def test_jsonl_reads_one_object_per_line_keeping_types(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"a": 1, "b": true}\n{"a": 2.5, "b": null}\n')
    assert list(read_file(path)) == [
        SourceRecord(1, 1, {"a": 1, "b": True}),
        SourceRecord(2, 2, {"a": 2.5, "b": None}),
    ]


def test_jsonl_skips_blank_lines_but_counts_them_in_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '\n{"a": 1}\n   \n\n{"a": 2}\n')
    assert [(i.position, i.line) for i in read_file(path)] == [(1, 2), (2, 5)]


def test_jsonl_invalid_json_is_a_failure_with_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"a": 1}\n{"a": 1 "b": 2}\n{"a": 3}\n')
    items = list(read_file(path))
    assert items[1] == ReadFailure(
        2, 2, "invalid JSON: Expecting ',' delimiter at column 9", '{"a": 1 "b": 2}'
    )
    assert items[2] == SourceRecord(3, 3, {"a": 3})


def test_jsonl_non_object_is_a_failure(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '[1, 2]\n"text"\n{"a": 1}\n')
    items = list(read_file(path))
    assert items[0] == ReadFailure(1, 1, "record is a JSON array, expected an object", "[1, 2]")
    assert items[1] == ReadFailure(2, 2, "record is a JSON string, expected an object", '"text"')
    assert items[2] == SourceRecord(3, 3, {"a": 1})


def test_jsonl_bad_utf8_fails_only_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'{"a": "\xfe"}\n{"a": "ok"}\n')
    items = list(read_file(path))
    assert items[0] == ReadFailure(
        1, 1, "invalid UTF-8 (byte 0xfe at offset 7)", '{"a": "\ufffd"}\n'
    )
    assert items[1] == SourceRecord(2, 2, {"a": "ok"})


def test_jsonl_strips_a_bom_on_the_first_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'\xef\xbb\xbf{"a": 1}\n')
    assert list(read_file(path)) == [SourceRecord(1, 1, {"a": 1})]


# -- JSON array -------------------------------------------------------------------------------


def test_json_array_yields_each_object(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '[\n {"a": 1},\n {"a": "x", "b": [1, 2]}\n]\n')
    assert list(read_file(path)) == [
        SourceRecord(1, 1, {"a": 1}),
        SourceRecord(2, 2, {"a": "x", "b": [1, 2]}),
    ]


def test_json_empty_array_yields_nothing(tmp_path: Path) -> None:
    assert list(read_file(write(tmp_path / "a.json", " [ ] "))) == []


def test_json_array_element_that_is_not_an_object_is_a_failure(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '[{"a": 1}, 42, "s", {"a": 2}]')
    items = list(read_file(path))
    assert items[1] == ReadFailure(2, 2, "array element is a JSON number, expected an object", "42")
    assert items[2] == ReadFailure(
        3, 3, "array element is a JSON string, expected an object", '"s"'
    )
    assert items[3] == SourceRecord(4, 4, {"a": 2})


def test_json_array_syntax_error_ends_the_stream_with_a_failure(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '[{"a": 1}, {"a": 2 "b": 3}, {"a": 4}]')
    items = list(read_file(path))
    assert items[0] == SourceRecord(1, 1, {"a": 1})
    assert len(items) == 2
    assert isinstance(items[1], ReadFailure)
    assert items[1].position == 2
    assert items[1].error.startswith("invalid JSON: Expecting ',' delimiter at line 1 column 9")


def test_json_array_missing_comma_between_elements_is_a_failure(tmp_path: Path) -> None:
    items = list(read_file(write(tmp_path / "a.json", '[{"a": 1} {"a": 2}]')))
    assert items[0] == SourceRecord(1, 1, {"a": 1})
    assert isinstance(items[1], ReadFailure)
    assert "expected ',' or ']'" in items[1].error
    assert len(items) == 2


def test_json_array_truncated_file_is_a_failure(tmp_path: Path) -> None:
    items = list(read_file(write(tmp_path / "a.json", '[{"a": 1}, {"a": "unfinis')))
    assert items[0] == SourceRecord(1, 1, {"a": 1})
    assert isinstance(items[1], ReadFailure)
    assert "Unterminated string" in items[1].error


def test_json_trailing_garbage_after_the_array_is_a_failure(tmp_path: Path) -> None:
    items = list(read_file(write(tmp_path / "a.json", '[{"a": 1}] extra')))
    assert items[0] == SourceRecord(1, 1, {"a": 1})
    assert isinstance(items[1], ReadFailure)
    assert "after the closing" in items[1].error


def test_json_that_is_not_an_array_is_a_source_error(tmp_path: Path) -> None:
    source = read_file(write(tmp_path / "a.json", '{"a": 1}'))
    with pytest.raises(SourceError, match="does not hold a JSON array"):
        list(source)


def test_json_array_bad_utf8_ends_the_stream_with_a_failure(tmp_path: Path) -> None:
    items = list(read_file(write(tmp_path / "a.json", b'[{"a": 1}, {"a": "\xff"}]')))
    assert items[0] == SourceRecord(1, 1, {"a": 1})
    assert isinstance(items[1], ReadFailure)
    assert items[1].position == 2
    assert items[1].error.startswith("invalid UTF-8 (byte 0xff at offset 18")
    assert len(items) == 2


def test_json_array_bad_utf8_between_elements_fails_the_next_position(tmp_path: Path) -> None:
    items = list(read_file(write(tmp_path / "a.json", b'[{"a": 1},\xff {"a": 2}]')))
    assert items[0] == SourceRecord(1, 1, {"a": 1})
    assert isinstance(items[1], ReadFailure)
    assert items[1].position == 2
    assert "offset 10" in items[1].error


def test_json_array_elements_split_across_read_blocks_are_whole(tmp_path: Path) -> None:
    rows = [{"i": i, "text": "x" * (i % 700), "n": i * 1.25, "u": "é\u20ac"} for i in range(3000)]
    path = write(tmp_path / "a.json", json.dumps(rows, indent=1))
    items = list(read_file(path))
    assert [i.data for i in records(items)] == rows
    assert [i.position for i in items] == list(range(1, 3001))


def test_json_array_streams_without_reading_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("w") as fh:
        fh.write("[")
        for i in range(100_000):
            fh.write(("," if i else "") + json.dumps({"id": i, "pad": "p" * 40}))
        fh.write("]")
    source = read_file(path)
    size = source.size_bytes
    assert size is not None and size > 5_000_000
    stream = iter(source)
    first = next(stream)
    assert first == SourceRecord(1, 1, {"id": 0, "pad": "p" * 40})
    assert source.bytes_read < size / 20
    tracemalloc.start()
    try:
        count = 1 + sum(1 for _ in stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 5 * 1024 * 1024
    assert source.bytes_read == size


# -- Parquet ----------------------------------------------------------------------------------


def test_parquet_reads_every_row_group_in_order_with_types(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    table = pa.table(
        {
            "id": list(range(10)),
            "price": [Decimal(f"{i}.50") for i in range(10)],
            "at": [datetime(2026, 1, 1, i, tzinfo=timezone.utc) for i in range(10)],
            "name": [f"n{i}" if i % 3 else None for i in range(10)],
        }
    )
    pq.write_table(table, path, row_group_size=3)
    assert pq.ParquetFile(path).metadata.num_row_groups == 4
    source = read_file(path)
    items = list(source)
    assert [(i.position, i.line) for i in items] == [(n, n) for n in range(1, 11)]
    assert records(items)[4].data == {
        "id": 4,
        "price": Decimal("4.50"),
        "at": datetime(2026, 1, 1, 4, tzinfo=timezone.utc),
        "name": "n4",
    }
    assert source.bytes_read > 0


def test_parquet_that_is_not_parquet_is_a_source_error(tmp_path: Path) -> None:
    source = read_file(write(tmp_path / "a.parquet", b"not parquet at all"))
    with pytest.raises(SourceError, match="as Parquet"):
        list(source)


# -- stdin ------------------------------------------------------------------------------------


def test_stdin_defaults_to_csv_and_has_no_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"a,b\n1,2\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    source = read_file("-")
    assert source.format == "csv"
    assert source.fingerprint() is None
    assert source.size_bytes is None
    assert list(source) == [SourceRecord(1, 2, {"a": "1", "b": "2"})]
    assert source.bytes_read == 8


def test_stdin_with_a_given_format(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b'{"a": 1}\nnope\n'))
    monkeypatch.setattr(sys, "stdin", stdin)
    items = list(read_file("-", "jsonl"))
    assert items[0] == SourceRecord(1, 1, {"a": 1})
    assert isinstance(items[1], ReadFailure)


def test_stdin_cannot_be_parquet() -> None:
    with pytest.raises(SourceError, match="standard input"):
        read_file("-", "parquet")


# -- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_changes_with_content(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a\n" + "1\n" * 100_000)
    source = read_file(path)
    first = source.fingerprint()
    assert first is not None and first == source.fingerprint()
    stat = path.stat()
    write(path, "a\n" + "1\n" * 99_999 + "2\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime
    assert source.fingerprint() != first


def test_json_array_element_larger_than_a_read_block_is_whole(tmp_path: Path) -> None:
    rows = [{"a": 1}, {"big": "z" * 300_000, "list": list(range(20_000))}, {"a": 3}]
    items = list(read_file(write(tmp_path / "a.json", json.dumps(rows))))
    assert [i.data for i in records(items)] == rows
