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
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from batchline._errors import SourceError

from ._arrow_source import ArrowSource, arrow_source, microseconds
from ._csv_rows import csv_items, first_width
from ._json_array import json_array_items
from ._source_items import (
    RAW_LIMIT,
    ReadFailure,
    SourceItem,
    SourceRecord,
    _CountingReader,
    decode_message,
    is_utf8,
    iter_records,
    json_kind,
)

__all__ = [
    "FORMATS",
    "ArrowSource",
    "FileSource",
    "ReadFailure",
    "SourceItem",
    "SourceRecord",
    "arrow_source",
    "iter_records",
    "microseconds",
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

_BLOCK = 64 * 1024  # read size for fingerprints
_PARQUET_BATCH = 8192
_SNIFF_BYTES = 64 * 1024


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
        #: Whether the stream starts at the file's start (where a UTF-8 BOM is dropped).
        self.bom = True

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
        first = self.bom
        while True:
            line = readline()
            if not line:
                return
            if first:
                first = False
                if line.startswith(codecs.BOM_UTF8) and is_utf8(self.encoding):
                    line = line[len(codecs.BOM_UTF8) :]
            yield line

    def _iter_csv(self, readline: Callable[[], bytes]) -> Iterator[SourceItem]:
        return csv_items(self, readline)

    def _first_width(self, delimiter: str, quote: str) -> int:
        return first_width(self, delimiter, quote)

    def _iter_jsonl(self, readline: Callable[[], bytes]) -> Iterator[SourceItem]:
        position = 0
        for line_no, line in enumerate(self._lines(readline), start=1):
            if not line.strip():
                continue
            position += 1
            try:
                text = line.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raw = line[:RAW_LIMIT].decode(self.encoding, errors="replace")
                yield ReadFailure(position, line_no, decode_message(self.encoding, exc, 0), raw)
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield ReadFailure(
                    position,
                    line_no,
                    f"invalid JSON: {exc.msg} at column {exc.colno}",
                    text.rstrip("\r\n")[:RAW_LIMIT],
                )
                continue
            if isinstance(value, dict):
                yield SourceRecord(position, line_no, value)
            else:
                yield ReadFailure(
                    position,
                    line_no,
                    f"record is a JSON {json_kind(value)}, expected an object",
                    text.rstrip("\r\n")[:RAW_LIMIT],
                )

    def _iter_json_array(self, read: Callable[[int], bytes]) -> Iterator[SourceItem]:
        return json_array_items(self, read)

    # -- Parquet --------------------------------------------------------------------------

    def _iter_parquet(self) -> Iterator[SourceItem]:
        position = 0
        for batch in self.parquet_batches():
            for row in batch.to_pylist():
                position += 1
                yield SourceRecord(position, position, row)

    def csv_blocks(self) -> Iterator[tuple[Any, bytes | None]]:
        """A CSV/TSV/tbl file's records as record batches of text columns, each record at
        its position and line, with the text of the block each batch holds when it has one
        (``batchline._csv_blocks.csv_blocks``). Each call reads the file anew."""
        from ._csv_blocks import csv_blocks

        return csv_blocks(self)

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
