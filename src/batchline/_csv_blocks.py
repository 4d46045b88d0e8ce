"""A CSV/TSV/tbl file read as Arrow record batches, every record still at its position and line.

Why: the row reader (``FileSource._iter_csv``) costs a Python list, a dict and a
``SourceRecord`` per record. Here the file is cut into byte blocks at newline boundaries and
each block becomes one record batch of text columns:

- a block with no NUL, blank line or lone carriage return, whose quoted fields (if any)
  are whole fields with no newline inside (checked line by line with RE2), is parsed by
  pyarrow's CSV reader, in C; each of its lines is one record, so line numbers are the
  block's first line plus the row number, checked against the block's newline count;
- any other block (a quoted newline, a stray quote, a row pyarrow refuses: wrong field
  count, bad bytes) is read by the row reader itself, so its records, line numbers and read
  failures are exactly the row path's. A quoted field that runs past the block's end pulls
  the lines it needs from the stream.

Each batch holds the header's columns (text, ``''`` for an empty field, as the row reader
gives them) and four columns of its own (:data:`META`): the record's position, its first
line, and for a record that could not be read its error and raw text (those rows' fields
are null). Positions count every record, read or not, so batches cover positions without a
gap and a resume skips records by count as for Parquet.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from ._csv_lines import Stream, plain_lines
from ._errors import SourceError

if TYPE_CHECKING:
    from ._sources import FileSource, SourceItem

__all__ = [
    "BLOCK_BYTES",
    "META",
    "csv_batches",
    "csv_blocks",
    "csv_sample",
    "opened",
]

#: Bytes read per block: one record batch each (a chunk may take several, or part of one).
BLOCK_BYTES = 4 * 1024 * 1024
#: The columns a batch carries besides the file's: position, line, read error, raw text.
META = ("\x00position", "\x00line", "\x00error", "\x00raw")


@contextmanager
def opened(source: FileSource) -> Iterator[Any]:
    """``source``'s bytes as a binary stream (decompressed, and counted for
    ``bytes_read``); failures to open or read it raised as ``SourceError``, the file
    closed at the end. The frame of every block reader (CSV here, ``_jsonl_blocks``)."""
    from ._source_items import _CountingReader

    try:
        raw = open(source.path, "rb")  # noqa: SIM115 -- closed in the finally below
    except OSError as exc:
        raise SourceError(f"cannot open {source.path}: {exc.strerror}") from exc
    try:
        counter = _CountingReader(raw)
        source._counter = counter
        yield gzip.GzipFile(fileobj=counter, mode="rb") if source.compressed else counter
    except (OSError, EOFError) as exc:
        raise SourceError(f"cannot read {source.path}: {exc}") from exc
    finally:
        raw.close()


def csv_batches(source: FileSource, size: int | None = None) -> Iterator[Any]:
    """The records of ``source`` (a CSV, TSV or tbl file, not stdin) as record batches of
    text columns plus :data:`META`, in order, a block of ``size`` bytes (default
    :data:`BLOCK_BYTES`) each. Each call reads the file anew."""
    for batch, _ in csv_blocks(source, size):
        yield batch


def csv_sample(source: FileSource, size: int) -> list[dict[str, str]]:
    """The records (not read failures) among the first ``size`` records of ``source``, as
    the row reader would give them: what a load infers its column kinds from.

    Why not the row reader itself: its Python list, dict and ``SourceRecord`` per record
    cost a tenth of a second for the 10,000 a load samples, and the load then reads the same
    lines again in blocks; here the first block(s) are parsed in C and only the sample's
    dicts are built (``to_pylist``)."""
    import pyarrow as pa

    taken: list[Any] = []
    left = size
    for batch, _ in csv_blocks(source):
        part = batch.slice(0, left)
        taken.append(part)
        left -= part.num_rows
        if left <= 0:
            break
    if not taken:
        return []
    table = pa.Table.from_batches(taken)
    read = table.filter(table.column(META[2]).is_null())  # a read failure has its error
    return cast("list[dict[str, str]]", read.drop_columns(list(META)).to_pylist())


def csv_blocks(source: FileSource, size: int | None = None) -> Iterator[tuple[Any, bytes | None]]:
    """:func:`csv_batches`, each batch with the block of the file it holds, as UTF-8 bytes
    of whole lines (no header), when pyarrow's reader read it as one batch of one record a
    line (else None): the text ``_csv_copy`` may hand to PostgreSQL's ``COPY`` as it is."""
    import pyarrow as pa

    size = size or BLOCK_BYTES
    with opened(source) as stream:
        delimiter = source.delimiter or {"tsv": "\t", "tbl": "|"}.get(source.format, ",")
        quote = '"' if source.quote is None else source.quote
        header, lines = _header(source, stream, delimiter, quote)
        if not header:
            return  # an empty file
        blocks = Stream(stream, size)
        if lines == 0 and _is_utf8(source.encoding):
            blocks.drop_bom()  # (no header line was read: the first data line may hold it)
        schema = pa.schema(
            [pa.field(n, pa.string()) for n in header]
            + [pa.field(META[0], pa.int64()), pa.field(META[1], pa.int64())]
            + [pa.field(META[2], pa.string()), pa.field(META[3], pa.string())]
        )
        rows = _RowReader(source, header)
        fast = _FastReader(source, header, delimiter, quote)
        position = 0
        while True:
            block = blocks.block()
            if not block:
                return
            text: bytes | None = None
            read = fast.read(block, position, lines)
            if read is not None:
                table, text = read
                used = table.num_rows  # one record a line
            else:
                table, used = rows.read(block, blocks.readline, position, lines, schema)
            lines += used
            position += table.num_rows
            if table.num_rows:
                batches = table.cast(schema).to_batches()
                if len(batches) != 1:
                    text = None
                for batch in batches:
                    yield batch, text


def _header(source: FileSource, stream: Any, delimiter: str, quote: str) -> tuple[list[str], int]:
    """The column names and how many lines they took, as the row reader reads them."""
    if source.names:
        return list(source.names), 0
    if source.format == "tbl":
        return [f"c{i + 1}" for i in range(source._first_width(delimiter, quote))], 0
    lines = 0

    def feed() -> Iterator[str]:
        nonlocal lines
        while True:
            line = stream.readline()
            if not line:
                return
            if lines == 0 and line.startswith(codecs.BOM_UTF8) and _is_utf8(source.encoding):
                line = line[len(codecs.BOM_UTF8) :]
            lines += 1
            try:
                yield line.decode(source.encoding)
            except UnicodeDecodeError as exc:
                raise SourceError(f"cannot read the header of {source.path}: {exc}") from exc

    if quote:
        reader = csv.reader(feed(), delimiter=delimiter, quotechar=quote, strict=True)
    else:
        reader = csv.reader(feed(), delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)
    header: list[str] = []
    while not header:
        try:
            header = next(reader)
        except StopIteration:
            return [], lines
        except csv.Error as exc:
            raise SourceError(f"cannot read the header of {source.path}: {exc}") from exc
    if len(set(header)) != len(header):
        raise SourceError(f"duplicate column in the header of {source.path}")
    return header, lines


class _FastReader:
    """A block pyarrow's reader can take whole: one record per line. A block with quotes
    is taken only when every line is a row of fields each either quoted whole (a quote
    doubled inside, no newline) or free of quotes (:meth:`_plainly_quoted`, RE2 over the
    block's lines): there pyarrow's reader and the row reader's ``csv`` (strict) read the
    same fields; anything else (a quoted newline, ``"a"b``, ``a"b``) goes the row reader."""

    def __init__(self, source: FileSource, header: list[str], delimiter: str, quote: str):
        self.header = header
        self.delimiter = delimiter
        self.quote = quote.encode("ascii") if quote else b""
        self.encoding = source.encoding
        self.utf8 = _is_utf8(source.encoding)
        self.tbl = source.format == "tbl"
        if quote:
            d, q = (f"\\x{{{ord(c):x}}}" for c in (delimiter, quote))
            field = f"(?:{q}(?:[^{q}\\n]|{q}{q})*{q}|[^{q}{d}\\r\\n]*)"
            self.line = f"^{field}(?:{d}{field})*$"

    def _plainly_quoted(self, block: bytes, n: int) -> bool:
        """Whether each of the block's ``n`` lines matches :attr:`line` (see the class)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        if b"\x01" in block:
            return False  # (the one-column read below splits on it)
        try:
            lines = pacsv.read_csv(
                pa.py_buffer(block),
                read_options=pacsv.ReadOptions(
                    column_names=["line"], use_threads=False, block_size=len(block) + 1
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter="\x01",
                    quote_char=False,
                    double_quote=False,
                    escape_char=False,
                    newlines_in_values=False,
                    ignore_empty_lines=False,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={"line": pa.string()}, strings_can_be_null=False
                ),
            ).column(0)
        except (pa.ArrowInvalid, UnicodeError):
            return False
        return len(lines) == n and bool(pc.all(pc.match_substring_regex(lines, self.line)).as_py())

    def read(self, block: bytes, position: int, line: int) -> tuple[Any, bytes] | None:
        """The block as a table, with its text as UTF-8; None when the row reader must
        read it."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        n = plain_lines(block) if self.header else None
        if n is None:
            return None
        if not self.utf8:
            try:
                block = block.decode(self.encoding).encode("utf-8")
            except UnicodeError:
                return None
        quoted = bool(self.quote) and self.quote in block
        if quoted and not self._plainly_quoted(block, n):
            return None
        names = [*self.header, "\x00end"] if self.tbl else self.header
        try:
            table = pacsv.read_csv(
                pa.py_buffer(block),
                read_options=pacsv.ReadOptions(
                    column_names=names, use_threads=False, block_size=len(block) + 1
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    quote_char=self.quote.decode("ascii") if quoted else False,
                    double_quote=quoted,
                    escape_char=False,
                    newlines_in_values=False,
                    ignore_empty_lines=False,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    check_utf8=True,
                ),
            )
        except (pa.ArrowInvalid, UnicodeError):
            return None  # a row of another width, bad bytes...: the row reader says which
        if table.num_rows != n:
            return None
        if self.tbl:
            import pyarrow.compute as pc

            end = table.column("\x00end")
            if pc.any(pc.cast(pc.binary_length(end), pa.bool_())).as_py():  # (not "")
                return None
            table = table.drop_columns(["\x00end"])
        nulls = pa.nulls(n, pa.string())
        table = table.append_column(META[0], _numbers(position + 1, n))
        table = table.append_column(META[1], _numbers(line + 1, n))
        return table.append_column(META[2], nulls).append_column(META[3], nulls), block


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _numbers(first: int, n: int) -> Any:
    """``first`` … ``first + n - 1`` as an int64 array, over numpy's ``arange`` (pyarrow
    brings numpy; without it, over an ``array.array``, a hundred times slower)."""
    import pyarrow as pa

    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        import array

        values: Any = array.array("q", range(first, first + n))
    else:
        values = np.arange(first, first + n, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(values)])


class _RowReader:
    """A block read by the row reader (``FileSource._iter_csv``): its exact records, lines and
    read failures, numbered on from the blocks before."""

    def __init__(self, source: FileSource, header: list[str]) -> None:
        from ._sources import FileSource

        self.header = header
        # the same file read with these names: no header line is read again
        self.inner = FileSource(
            source.path,
            source.format,
            encoding=source.encoding,
            delimiter=source.delimiter,
            quote=source.quote,
            names=header,
        )
        self.inner.bom = False  # a block starts mid-file

    def read(
        self,
        block: bytes,
        more: Callable[[], bytes],
        position: int,
        line: int,
        schema: Any,
    ) -> tuple[Any, int]:
        import pyarrow as pa

        from ._sources import ReadFailure

        buf = io.BytesIO(block)
        taken = 0

        def readline() -> bytes:
            nonlocal taken
            data = buf.readline()
            if not data:
                data = more()  # a quoted field runs on past the block
            if data:
                taken += 1
            return data

        width = len(self.header)
        columns: list[list[Any]] = [[] for _ in range(width + 4)]
        items = cast("Generator[SourceItem, None, None]", self.inner._iter_csv(readline))
        for item in items:
            if isinstance(item, ReadFailure):
                values: list[Any] = [None] * width + [None, None, item.error, item.raw]
            else:
                values = [*item.data.values(), None, None, None, None]
            values[width] = position + item.position
            values[width + 1] = line + item.line
            for column, value in zip(columns, values):
                column.append(value)
            if buf.tell() >= len(block):
                break  # the block's lines are read, and a record just ended
        items.close()
        arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema)]
        return pa.Table.from_arrays(arrays, schema=schema), taken
