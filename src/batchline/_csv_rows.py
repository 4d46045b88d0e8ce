"""The row reader of CSV/TSV/tbl files: one record at a time, from a stream of lines.

Lines are read as bytes and decoded one record at a time, so one bad byte costs one record
(a :class:`ReadFailure` with its line and raw text), not the file. ``_csv_blocks`` hands it
the blocks pyarrow cannot read exactly.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ._errors import SourceError
from ._source_items import RAW_LIMIT, ReadFailure, SourceItem, SourceRecord, decode_message

if TYPE_CHECKING:
    from ._sources import FileSource

__all__ = ["csv_items", "first_width"]

# Python's csv module refuses fields over 131,072 characters by default; a valid field of
# any size must load (a larger one than the database takes is dead-lettered at write).
_FIELD_LIMIT = 2**31 - 1


def csv_items(source: FileSource, readline: Callable[[], bytes]) -> Iterator[SourceItem]:
    """The records of a CSV/TSV/tbl stream, one at a time (``FileSource``'s row reader)."""
    default = {"tsv": "\t", "tbl": "|"}.get(source.format, ",")
    delimiter = source.delimiter or default
    tbl = source.format == "tbl"
    encoding = source.encoding
    # What csv.reader pulled for the record in progress: its text, and any decode error.
    pending: list[str] = []
    pending_size = 0
    pending_bytes = 0
    decode_error: list[str] = []

    def feed() -> Iterator[str]:
        nonlocal pending_size, pending_bytes  # ``pending`` is rebound only by take()
        for line in source._lines(readline):
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError as exc:
                text = line.decode(encoding, errors="replace")
                if not decode_error:
                    decode_error.append(decode_message(encoding, exc, pending_bytes))
            if "\x00" in text and not decode_error:
                # Databases refuse NUL in text; csv accepts it only from Python 3.11 on.
                decode_error.append("record contains a NUL byte")
            pending_bytes += len(line)
            if pending_size < RAW_LIMIT:
                pending.append(text)
                pending_size += len(text)
            yield text

    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    quote = '"' if source.quote is None else source.quote
    if quote:
        reader = csv.reader(feed(), delimiter=delimiter, quotechar=quote, strict=True)
    else:
        reader = csv.reader(feed(), delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)

    def take() -> tuple[list[str], str | None]:
        """Hand over the record's lines and decode error, and start the next record."""
        nonlocal pending, pending_size, pending_bytes
        lines = pending
        error = decode_error[0] if decode_error else None
        pending = []
        decode_error.clear()
        pending_size = pending_bytes = 0
        return lines, error

    # The header: a file that has none is empty; one we cannot read makes the file unreadable.
    header: list[str] = list(source.names or ())
    if not header and tbl:  # dbgen's files have no header: c1, c2... from the first row
        header = [f"c{i + 1}" for i in range(first_width(source, delimiter, quote))]
    names_given = bool(header)
    while not header:  # blank lines before the header are skipped
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(f"cannot read the header of {source.path}: {exc}") from exc
        _, error = take()
        if error is not None:
            raise SourceError(f"cannot read the header of {source.path}: {error}")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise SourceError(f"duplicate column {name!r} in the header of {source.path}")
        seen.add(name)
    width = len(header)

    position = 0
    last_line = 0 if names_given else reader.line_num
    while True:
        start = last_line + 1
        failure: str | None = None
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            failure = f"malformed CSV: {exc}"
            row = []
        last_line = reader.line_num
        lines, error = take()
        if failure is None and not row:
            continue  # a blank line
        position += 1
        if tbl and len(row) == width + 1 and row[-1] == "":
            row.pop()  # the "|" that ends each dbgen line
        if error is not None:  # a decode error or NUL explains a csv.Error too
            failure = error
        if failure is None and len(row) != width:
            failure = f"expected {width} fields, found {len(row)}"
        if failure is not None:
            yield ReadFailure(position, start, failure, "".join(lines)[:RAW_LIMIT])
        else:
            yield SourceRecord(position, start, dict(zip(header, row)))


def first_width(source: FileSource, delimiter: str, quote: str) -> int:
    """How many fields a ``tbl`` file's first line has, less the trailing delimiter."""
    if source.path == "-":
        raise SourceError("a tbl file on standard input needs its column names (--names)")
    opener = gzip.open if source.compressed else open
    with opener(source.path, "rb") as fh:
        line = fh.readline().decode(source.encoding, errors="replace")
    if quote:
        fields = next(csv.reader([line], delimiter=delimiter, quotechar=quote), [])
    else:
        fields = next(csv.reader([line], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])
    if fields and fields[-1] == "":
        fields.pop()
    return len(fields)
