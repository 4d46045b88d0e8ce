"""Record sources: plain iterables and files (CSV/TSV, JSON Lines, JSON array, Parquet).

Every source yields :class:`SourceRecord` or :class:`ReadFailure` items, lazily and with flat
memory, so a file of any size streams through. A malformed record never stops the stream: it
becomes a ``ReadFailure`` (later a dead letter) carrying its position, line and raw text. Only a
file that cannot be read at all (missing, unknown format, unreadable header) raises
:class:`~batchline._errors.SourceError`.

Text formats are read as bytes and decoded one record at a time, so one bad byte costs one
record, not the file. This assumes an ASCII-compatible encoding (UTF-8, Latin-1, cp1252, ...).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from batchline._errors import SourceError

__all__ = [
    "FORMATS",
    "ArrowSource",
    "FileSource",
    "ReadFailure",
    "SourceItem",
    "SourceRecord",
    "arrow_source",
    "iter_records",
    "read_file",
]

FORMATS = ("csv", "tsv", "tbl", "jsonl", "json", "parquet")
"""The file formats :func:`read_file` understands."""

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".tbl": "tbl",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_ALIASES = {"ndjson": "jsonl", "pq": "parquet", "tab": "tsv"}

_RAW_LIMIT = 64 * 1024  # raw text kept on a failure
_BLOCK = 64 * 1024  # read size for streamed JSON arrays and fingerprints
_MAX_JSON_ELEMENT = 64 * 1024 * 1024  # one array element larger than this is refused
_PARQUET_BATCH = 8192
_SNIFF_BYTES = 64 * 1024
# Python's csv module refuses fields over 131,072 characters by default; a valid field of
# any size must load (a larger one than the database takes is dead-lettered at write).
_FIELD_LIMIT = 2**31 - 1


@dataclass(slots=True)
class SourceRecord:
    """One record read from a source.

    Attributes:
        position: 1-based ordinal among data records (header excluded); checkpoints count these.
        line: 1-based physical line where the record starts (equals ``position`` where lines
            mean nothing: iterables, JSON arrays, Parquet).
        data: the record's fields.
    """

    position: int
    line: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReadFailure:
    """A record that could not be read; it becomes a dead letter, the stream goes on.

    Attributes:
        position: as for :class:`SourceRecord`.
        line: as for :class:`SourceRecord`.
        error: why the record could not be read.
        raw: the record's raw text (undecodable bytes replaced), at most 64 KiB, when known.
    """

    position: int
    line: int
    error: str
    raw: str | None


SourceItem = SourceRecord | ReadFailure


def iter_records(records: Iterable[Mapping[str, Any]]) -> Iterator[SourceItem]:
    """Number the records of a plain iterable, so they carry positions like file records."""
    for position, item in enumerate(records, start=1):
        if type(item) is dict or isinstance(item, Mapping):  # the exact check is the cheap one
            yield SourceRecord(position, position, dict(item))
        else:
            yield ReadFailure(
                position, position, f"record is {type(item).__name__}, expected a mapping", None
            )


def read_file(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    quote: str | None = None,
    sniff: bool = False,
    names: Sequence[str] | None = None,
) -> FileSource:
    """Open a file as a record source; problems with the path itself are raised here, at once.

    Args:
        path: the file, or ``"-"`` for standard input (``format`` defaults to CSV there).
        format: one of :data:`FORMATS`; detected from the extension when omitted. A ``.gz``
            suffix is decompressed on the fly (not for Parquet). ``tbl`` is TPC-H's dbgen
            output: ``|``-delimited, each line ending in a ``|``, no header.
        encoding: text encoding of CSV/TSV/JSON files; must be ASCII-compatible.
        delimiter: CSV/TSV field delimiter, overriding the format's default.
        quote: CSV quote character (default ``"``); ``""`` reads quotes as plain text.
        sniff: guess the CSV delimiter and quote from the file's first 64 KiB (not stdin).
        names: the column names of a CSV file without a header line (then its first line
            is data); a ``tbl`` file without them has columns ``c1``, ``c2``...

    Raises:
        SourceError: the file is missing or a directory, the format is unknown, or the
            delimiter cannot be sniffed.
    """
    name = os.fspath(path)
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise SourceError(f"unknown encoding {encoding!r}") from exc
    if delimiter is not None:
        delimiter = _unescape(delimiter)
        if len(delimiter) != 1:
            raise SourceError(f"delimiter must be one character, got {delimiter!r}")
    if quote is not None and len(quote) > 1:
        raise SourceError(f"quote must be one character (or empty for none), got {quote!r}")
    options: dict[str, Any] = {"quote": quote, "names": list(names) if names else None}
    if name == "-":
        fmt = _normalize_format(format) if format is not None else "csv"
        if fmt == "parquet":
            raise SourceError("Parquet cannot be read from standard input; pass a file path")
        if sniff:
            raise SourceError("--sniff needs a file (standard input cannot be read twice)")
        return FileSource(
            name, fmt, encoding=encoding, delimiter=delimiter, compressed=False, **options
        )
    if not os.path.exists(name):
        raise SourceError(f"no such file: {name}")
    if os.path.isdir(name):
        raise SourceError(f"is a directory, not a file: {name}")
    compressed = name.lower().endswith(".gz")
    if format is not None:
        fmt = _normalize_format(format)
    else:
        stem = name[:-3] if compressed else name
        ext = os.path.splitext(stem)[1].lower()
        if ext not in _EXTENSIONS:
            raise SourceError(
                f"cannot tell the format of {name} from its extension {ext or '(none)'!r}; "
                f"pass one of {', '.join(FORMATS)}"
            )
        fmt = _EXTENSIONS[ext]
    if compressed and fmt == "parquet":
        raise SourceError(f"gzip-compressed Parquet is not supported: {name}")
    if sniff and fmt in ("csv", "tsv", "tbl") and delimiter is None:
        delimiter, sniffed_quote = _sniff(name, encoding, compressed)
        if quote is None:
            options["quote"] = sniffed_quote
    return FileSource(
        name, fmt, encoding=encoding, delimiter=delimiter, compressed=compressed, **options
    )


def _unescape(text: str) -> str:
    """``\\t`` as a tab: a delimiter given on a command line."""
    return {"\\t": "\t", "tab": "\t"}.get(text, text)


def _sniff(path: str, encoding: str, compressed: bool) -> tuple[str, str]:
    """The delimiter and quote character of a CSV file, from its first 64 KiB."""
    opener = gzip.open if compressed else open
    with opener(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    text = head.decode(encoding, errors="replace")
    if len(head) == _SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # whole lines only
    try:
        dialect = csv.Sniffer().sniff(text, delimiters=",;\t|:")
    except csv.Error as exc:
        raise SourceError(f"cannot tell the delimiter of {path} ({exc}); pass --delimiter") from exc
    return dialect.delimiter, dialect.quotechar or '"'


def _normalize_format(format: str) -> str:
    fmt = _ALIASES.get(format.lower(), format.lower())
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    return fmt


class _CountingReader:
    """Counts the bytes pulled from a binary stream, for progress without seeking."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        self.count += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)


class FileSource:
    """A file (or stdin) as an iterable of :data:`SourceItem`, read lazily and in bounded memory.

    Each iteration re-reads the file from the start (stdin can be read once).
    """

    def __init__(
        self,
        path: str,
        format: str,
        *,
        encoding: str = "utf-8",
        delimiter: str | None = None,
        compressed: bool = False,
        quote: str | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        self.path = path
        self.format = format
        self.encoding = encoding
        self.delimiter = delimiter
        self.compressed = compressed
        self.quote = quote
        self.names = list(names) if names else None
        self._counter: _CountingReader | None = None
        self._parquet_read = 0

    def __repr__(self) -> str:
        return f"FileSource({self.path!r}, format={self.format!r})"

    def __iter__(self) -> Iterator[SourceItem]:
        if self.format == "parquet":
            return self._iter_parquet()
        return self._iter_text()

    def fingerprint(self) -> str | None:
        """Identify the file cheaply (size, mtime, hash of both ends) so a resume can check it."""
        if self.path == "-":
            return None
        st = os.stat(self.path)
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            digest.update(fh.read(_BLOCK))
            if st.st_size > _BLOCK:
                fh.seek(max(_BLOCK, st.st_size - _BLOCK))
                digest.update(fh.read(_BLOCK))
        return f"{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()}"

    def arrow_schema(self) -> Any:
        """The Arrow schema a Parquet file declares (its types are used as declared); None
        for text formats, whose types are inferred."""
        if self.format != "parquet":
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_schema(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"cannot read {self.path} as Parquet: {exc}") from exc

    @property
    def size_bytes(self) -> int | None:
        """The file's size on disk, for a progress ETA; None for stdin."""
        if self.path == "-":
            return None
        return os.stat(self.path).st_size

    @property
    def bytes_read(self) -> int:
        """Approximately how many bytes of the file have been consumed so far."""
        if self.format == "parquet":
            return self._parquet_read
        return self._counter.count if self._counter is not None else 0

    # -- text formats ---------------------------------------------------------------------

    def _iter_text(self) -> Iterator[SourceItem]:
        if self.path == "-":
            raw: IO[bytes] = sys.stdin.buffer
            owned = False
        else:
            try:
                raw = open(self.path, "rb")  # noqa: SIM115 -- closed in the finally below
            except OSError as exc:
                raise SourceError(f"cannot open {self.path}: {exc.strerror}") from exc
            owned = True
        try:
            counter = _CountingReader(raw)
            self._counter = counter
            stream: _CountingReader | gzip.GzipFile = counter
            if self.compressed:
                stream = gzip.GzipFile(fileobj=counter, mode="rb")
            readline: Callable[[], bytes] = stream.readline
            read: Callable[[int], bytes] = stream.read
            if self.format in ("csv", "tsv", "tbl"):
                yield from self._iter_csv(readline)
            elif self.format == "jsonl":
                yield from self._iter_jsonl(readline)
            else:
                yield from self._iter_json_array(read)
        except (OSError, EOFError) as exc:  # e.g. a truncated or corrupt gzip stream
            raise SourceError(f"cannot read {self.path}: {exc}") from exc
        finally:
            if owned:
                raw.close()

    def _lines(self, readline: Callable[[], bytes]) -> Iterator[bytes]:
        """Physical lines as bytes, with a UTF-8 BOM removed from the first."""
        first = True
        while True:
            line = readline()
            if not line:
                return
            if first:
                first = False
                if line.startswith(codecs.BOM_UTF8) and _is_utf8(self.encoding):
                    line = line[len(codecs.BOM_UTF8) :]
            yield line

    def _iter_csv(self, readline: Callable[[], bytes]) -> Iterator[SourceItem]:
        default = {"tsv": "\t", "tbl": "|"}.get(self.format, ",")
        delimiter = self.delimiter or default
        tbl = self.format == "tbl"
        encoding = self.encoding
        # What csv.reader pulled for the record in progress: its text, and any decode error.
        pending: list[str] = []
        pending_size = 0
        pending_bytes = 0
        decode_error: list[str] = []

        def feed() -> Iterator[str]:
            nonlocal pending_size, pending_bytes  # ``pending`` is rebound only by take()
            for line in self._lines(readline):
                try:
                    text = line.decode(encoding)
                except UnicodeDecodeError as exc:
                    text = line.decode(encoding, errors="replace")
                    if not decode_error:
                        decode_error.append(_decode_message(encoding, exc, pending_bytes))
                if "\x00" in text and not decode_error:
                    # Databases refuse NUL in text; csv accepts it only from Python 3.11 on.
                    decode_error.append("record contains a NUL byte")
                pending_bytes += len(line)
                if pending_size < _RAW_LIMIT:
                    pending.append(text)
                    pending_size += len(text)
                yield text

        if csv.field_size_limit() < _FIELD_LIMIT:
            csv.field_size_limit(_FIELD_LIMIT)
        quote = '"' if self.quote is None else self.quote
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
        header: list[str] = list(self.names or ())
        if not header and tbl:  # dbgen's files have no header: c1, c2... from the first row
            header = [f"c{i + 1}" for i in range(self._first_width(delimiter, quote))]
        names_given = bool(header)
        while not header:  # blank lines before the header are skipped
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise SourceError(f"cannot read the header of {self.path}: {exc}") from exc
            _, error = take()
            if error is not None:
                raise SourceError(f"cannot read the header of {self.path}: {error}")
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise SourceError(f"duplicate column {name!r} in the header of {self.path}")
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
                yield ReadFailure(position, start, failure, "".join(lines)[:_RAW_LIMIT])
            else:
                yield SourceRecord(position, start, dict(zip(header, row)))

    def _first_width(self, delimiter: str, quote: str) -> int:
        """How many fields a ``tbl`` file's first line has, less the trailing delimiter."""
        if self.path == "-":
            raise SourceError("a tbl file on standard input needs its column names (--names)")
        opener = gzip.open if self.compressed else open
        with opener(self.path, "rb") as fh:
            line = fh.readline().decode(self.encoding, errors="replace")
        if quote:
            fields = next(csv.reader([line], delimiter=delimiter, quotechar=quote), [])
        else:
            fields = next(csv.reader([line], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])
        if fields and fields[-1] == "":
            fields.pop()
        return len(fields)

    def _iter_jsonl(self, readline: Callable[[], bytes]) -> Iterator[SourceItem]:
        position = 0
        for line_no, line in enumerate(self._lines(readline), start=1):
            if not line.strip():
                continue
            position += 1
            try:
                text = line.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raw = line[:_RAW_LIMIT].decode(self.encoding, errors="replace")
                yield ReadFailure(position, line_no, _decode_message(self.encoding, exc, 0), raw)
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield ReadFailure(
                    position,
                    line_no,
                    f"invalid JSON: {exc.msg} at column {exc.colno}",
                    text.rstrip("\r\n")[:_RAW_LIMIT],
                )
                continue
            if isinstance(value, dict):
                yield SourceRecord(position, line_no, value)
            else:
                yield ReadFailure(
                    position,
                    line_no,
                    f"record is a JSON {_json_kind(value)}, expected an object",
                    text.rstrip("\r\n")[:_RAW_LIMIT],
                )

    def _iter_json_array(self, read: Callable[[int], bytes]) -> Iterator[SourceItem]:
        """Stream the elements of a top-level array, holding about one element in memory.

        A syntax error cannot be skipped (there is no way to find the next element), so it
        ends the stream with a last ``ReadFailure``.
        """
        decoder = json.JSONDecoder()
        text_decoder = codecs.getincrementaldecoder(self.encoding)()
        buf = ""
        pos = 0
        eof = False
        byte_count = 0
        bad_offset = 0
        broken: UnicodeDecodeError | None = None

        def more(size: int = _BLOCK) -> bool:
            """Append the next block to ``buf``; False at the end of the file."""
            nonlocal buf, pos, eof, byte_count, bad_offset, broken
            if eof:
                return False
            if pos > _BLOCK:  # drop what is parsed, so the buffer stays one element wide
                buf = buf[pos:]
                pos = 0
            if broken is not None:
                raise broken
            data = read(size)
            carried = len(text_decoder.getstate()[0])
            try:
                if not data:
                    eof = True
                    buf += text_decoder.decode(b"", final=True)
                    return False
                buf += text_decoder.decode(data)
                return True
            except UnicodeDecodeError as exc:
                # Keep the good text before the bad byte; fail once the parser needs more.
                bad_offset = byte_count - carried + exc.start
                buf += exc.object[: exc.start].decode(self.encoding)
                broken = exc
                return True
            finally:
                byte_count += len(data)

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not more():
                    return

        position = 0
        in_element = False
        try:
            skip_ws()
            if pos < len(buf) and buf[pos] == "\ufeff":
                pos += 1
                skip_ws()
            if pos >= len(buf):
                raise SourceError(f"{self.path} is empty, expected a JSON array")
            if buf[pos] != "[":
                raise SourceError(
                    f"{self.path} does not hold a JSON array (it starts with {buf[pos]!r}); "
                    "use the jsonl format for one object per line"
                )
            pos += 1
            skip_ws()
            if pos < len(buf) and buf[pos] == "]":
                pos += 1
            else:
                while True:
                    position += 1
                    in_element = True
                    skip_ws()
                    size = _BLOCK
                    while True:
                        try:
                            value, end = decoder.raw_decode(buf, pos)
                        except json.JSONDecodeError as exc:
                            if eof or not _maybe_truncated(exc, len(buf)):
                                yield ReadFailure(
                                    position,
                                    position,
                                    f"invalid JSON: {exc.msg} at {_where(buf, exc.pos, pos)}",
                                    buf[pos : pos + _RAW_LIMIT],
                                )
                                return
                        else:
                            if end < len(buf) or eof:
                                break
                        if len(buf) - pos > _MAX_JSON_ELEMENT:
                            yield ReadFailure(
                                position,
                                position,
                                f"array element is larger than {_MAX_JSON_ELEMENT} characters",
                                buf[pos : pos + _RAW_LIMIT],
                            )
                            return
                        more(size)
                        size = min(size * 2, 16 * _BLOCK)  # fewer re-parses of a large element
                    if isinstance(value, dict):
                        yield SourceRecord(position, position, value)
                    else:
                        yield ReadFailure(
                            position,
                            position,
                            f"array element is a JSON {_json_kind(value)}, expected an object",
                            buf[pos:end][:_RAW_LIMIT],
                        )
                    pos = end
                    in_element = False
                    skip_ws()
                    if pos < len(buf) and buf[pos] == ",":
                        pos += 1
                        continue
                    if pos < len(buf) and buf[pos] == "]":
                        pos += 1
                        break
                    found = repr(buf[pos]) if pos < len(buf) else "end of file"
                    yield ReadFailure(
                        position + 1,
                        position + 1,
                        f"invalid JSON: expected ',' or ']' after array element {position}, "
                        f"found {found}",
                        buf[pos : pos + _RAW_LIMIT] or None,
                    )
                    return
            skip_ws()
            if pos < len(buf):
                yield ReadFailure(
                    position + 1,
                    position + 1,
                    "invalid JSON: unexpected data after the closing ']' of the array",
                    buf[pos : pos + _RAW_LIMIT],
                )
        except UnicodeDecodeError as exc:
            # The decoder cannot find the next element past bad bytes, so the stream ends here.
            position = max(position, 1) if in_element else position + 1
            yield ReadFailure(
                position,
                position,
                f"invalid {_encoding_label(self.encoding)} "
                f"(byte 0x{exc.object[exc.start]:02x} at offset {bad_offset} of the file); "
                "cannot read further",
                None,
            )

    # -- Parquet --------------------------------------------------------------------------

    def _iter_parquet(self) -> Iterator[SourceItem]:
        position = 0
        for batch in self.parquet_batches():
            for row in batch.to_pylist():
                position += 1
                yield SourceRecord(position, position, row)

    def csv_batches(self) -> Iterator[Any]:
        """A CSV/TSV/tbl file's records as record batches of text columns, each record at
        its position and line (``batchline._csv_blocks``). Each call reads the file anew."""
        from ._csv_blocks import csv_batches

        return csv_batches(self)

    def parquet_batches(self) -> Iterator[Any]:
        """The Parquet file's record batches in order, row group by row group (its records,
        as ``_iter_parquet`` numbers them; ``batchline._arrow_write`` writes them as they
        are). Each call reads the file anew."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._parquet_read = 0
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 -- closed in the finally below
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            try:
                pf = pq.ParquetFile(fh)
            except (pa.ArrowException, OSError) as exc:
                raise SourceError(f"cannot read {self.path} as Parquet: {exc}") from exc
            metadata = pf.metadata
            for group in range(metadata.num_row_groups):
                meta = metadata.row_group(group)
                group_bytes = sum(
                    meta.column(i).total_compressed_size for i in range(meta.num_columns)
                )
                try:
                    yield from pf.iter_batches(batch_size=_PARQUET_BATCH, row_groups=[group])
                except (pa.ArrowException, OSError) as exc:
                    raise SourceError(
                        f"cannot read row group {group} of {self.path}: {exc}"
                    ) from exc
                self._parquet_read += group_bytes
        finally:
            fh.close()


class ArrowSource:
    """In-process data (an Arrow table, batch or stream; a pandas or Polars DataFrame) as an
    iterable of records, batch by batch, with its schema as declared.

    pandas' missing values (NaN, None, NaT) are nulls here, as ``pyarrow.Table.from_pandas``
    reads them; the index is left out.
    """

    def __init__(self, data: Any) -> None:
        self.batches, self.schema = _arrow_batches(data)
        self._head: list[SourceItem] = []
        self._stream: Iterator[SourceItem] | None = None

    def sample(self, size: int) -> list[dict[str, Any]]:
        """Read the first ``size`` records ahead (iterating still yields them first)."""
        if self._stream is None:
            self._stream = self._items()
            self._head = list(itertools.islice(self._stream, size))
        return [item.data for item in self._head if isinstance(item, SourceRecord)]

    def __iter__(self) -> Iterator[SourceItem]:
        if self._stream is None:
            self._stream = self._items()
        head, self._head = self._head, []
        return itertools.chain(head, self._stream)

    @property
    def rereadable(self) -> bool:
        """Whether :attr:`batches` still starts at the first record (nothing read yet, or
        batches held in a list), so a run may read them as batches (``_arrow_write``)."""
        return self._stream is None or isinstance(self.batches, list)

    def _items(self) -> Iterator[SourceItem]:
        position = 0
        for batch in self.batches:
            for row in microseconds(batch).to_pylist():
                position += 1
                yield SourceRecord(position, position, row)


def microseconds(batch: Any) -> Any:
    """``batch`` with nanosecond timestamps (pandas' unit) cast to microseconds, SQL's unit,
    where no value has a nanosecond part; otherwise as it is (such a value is refused when
    coerced, never truncated)."""
    import pyarrow as pa
    import pyarrow.types as pt

    columns = list(batch.columns)
    changed = False
    for i, column in enumerate(columns):
        t = column.type
        if pt.is_timestamp(t) and t.unit == "ns":
            try:
                columns[i] = column.cast(pa.timestamp("us", t.tz))
                changed = True
            except pa.ArrowInvalid:
                pass
    if not changed:
        return batch
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _arrow_batches(data: Any) -> tuple[Iterable[Any], Any]:
    import pyarrow as pa

    module = type(data).__module__.split(".")[0]
    try:
        if module == "pandas":
            data = pa.Table.from_pandas(data, preserve_index=False)
        elif module == "polars":
            data = data.to_arrow()
    except pa.ArrowException as exc:
        # a column of mixed Python objects has no Arrow type: say which, before any table
        raise SourceError(f"cannot read the {module} DataFrame as Arrow data: {exc}") from exc
    if isinstance(data, pa.Table):
        return data.to_batches(max_chunksize=_PARQUET_BATCH), data.schema
    if isinstance(data, pa.RecordBatch):
        return [data], data.schema
    if isinstance(data, pa.RecordBatchReader):
        return data, data.schema
    raise SourceError(f"cannot read a {type(data).__name__} as Arrow data")


def arrow_source(data: Any) -> ArrowSource | None:
    """``data`` as an :class:`ArrowSource` when it is a DataFrame or Arrow data, else None
    (a plain iterable of mappings is read as it is)."""
    module = type(data).__module__.split(".")[0]
    if module in ("pandas", "polars", "pyarrow") and not isinstance(data, (list, dict)):
        return ArrowSource(data)
    return None


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _encoding_label(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "UTF-8" if name in ("utf-8", "utf-8-sig") else name


def _decode_message(encoding: str, exc: UnicodeDecodeError, base: int) -> str:
    byte = exc.object[exc.start]
    return f"invalid {_encoding_label(encoding)} (byte 0x{byte:02x} at offset {base + exc.start})"


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _maybe_truncated(exc: json.JSONDecodeError, length: int) -> bool:
    """Whether a decode error may only mean the buffer ends mid-element."""
    return exc.msg.startswith("Unterminated string") or length - exc.pos < 16


def _where(buf: str, pos: int, start: int) -> str:
    """Say where an error sits inside the element that starts at ``start``."""
    line = buf.count("\n", start, pos) + 1
    column = pos - max(buf.rfind("\n", start, pos) + 1, start) + 1
    return f"line {line} column {column} of the element"
