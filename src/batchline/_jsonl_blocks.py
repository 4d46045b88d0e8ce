"""A JSON Lines file read as Arrow record batches, every record still at its position and line.

Why: the row reader (``FileSource._iter_jsonl``) costs a ``json.loads`` dict and a
``SourceRecord`` per line. Here the file is cut into blocks of whole lines
(``_csv_lines.Stream``), and a block is parsed by pyarrow's JSON reader, in C, with an
explicit schema of the load's columns, each of the Arrow type whose values ``json.loads``
would give and ``coerce_record`` would read the same (:func:`jsonl_schema`: int64, float64,
bool, string). pyarrow takes a block only when it is safe to say each line is one record
with the row path's meaning:

- UTF-8, no NUL, no carriage return but before a newline, and every line an object alone
  (``{`` … ``}`` between blanks, checked with RE2, then as many rows as lines: two values
  on a line make more). A blank line, a non-object line, a bad line: the row reader;
- pyarrow refuses the rest (checked for pyarrow 26): invalid JSON, a duplicate key, a key
  no column has, a value of another JSON type than its column's (a number in a text
  column, ``"1"`` or ``1.0`` or ``true`` in an integer one), an integer over 64 bits, a
  number past a double's range, a lone surrogate. Then the row reader reads the block;
- where both read a value and could differ, they do not: decimal text to the nearest double
  (``0.1``, ``-0.0``, ``1e-400``), an integer into a float column (``float(int)``), NaN
  and Infinity. An integer of -2**63 (which ``coerce_record`` refuses) is marked slow.

Each batch holds the columns and :data:`META` (position, line, read error, and the line's
text for every record that was read), plus :data:`SLOW`: true for a record whose values
only Python may say (read by the row reader, or marked slow); ``_jsonl_convert`` coerces
those from their text, as the row path does. Positions count every record, read or not.
"""

from __future__ import annotations

import array
import codecs
import io
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._arrow_values import bool_scalar
from ._csv_blocks import BLOCK_BYTES, META, _is_utf8, _numbers, opened
from ._csv_lines import Stream

if TYPE_CHECKING:
    from ._infer import ColumnSpec
    from ._sources import FileSource

__all__ = ["SLOW", "jsonl_blocks", "jsonl_schema"]

#: A bool column: the record's values are Python's to read (from its text, META[3]).
SLOW = "\x00slow"
#: A line pyarrow may read as one object alone (RE2; a line has no newline).
_OBJECT_LINE = r"^[ \t]*\{.*\}[ \t]*\r?$"
_INT64_MIN = -(2**63)


def jsonl_schema(columns: Sequence[ColumnSpec]) -> Any:
    """The Arrow schema a block is read with: each column of the type whose values
    ``json.loads`` gives and ``coerce_record`` keeps or reads as the row path does; text
    for the kinds Arrow converts from text (decimal, date, timestamp); None when a column
    has no such type (binary, JSON): then every block goes the row reader."""
    import pyarrow as pa

    types = {
        "integer": pa.int64(),
        "float": pa.float64(),
        "boolean": pa.bool_(),
        "text": pa.string(),
        "decimal": pa.string(),
        "date": pa.string(),
        "timestamp": pa.string(),
    }
    fields = []
    for c in columns:
        if c.kind not in types:
            return None
        fields.append(pa.field(c.name, types[c.kind]))
    return pa.schema(fields)


def jsonl_blocks(
    source: FileSource, columns: Sequence[ColumnSpec], size: int | None = None
) -> Iterator[tuple[Any, None]]:
    """The records of ``source`` (a JSON Lines file, not stdin) as record batches of
    ``columns`` (:func:`jsonl_schema`) plus :data:`META` and :data:`SLOW`, in order, one per
    block of ``size`` bytes (default :data:`BLOCK_BYTES`); each with None (no text for
    ``COPY``), as ``csv_blocks`` pairs them. Each call reads the file anew."""
    import pyarrow as pa

    typed = jsonl_schema(columns)
    names = [c.name for c in columns]
    schema = pa.schema(
        [pa.field(c.name, typed.field(c.name).type if typed else pa.null()) for c in columns]
        + [pa.field(META[0], pa.int64()), pa.field(META[1], pa.int64())]
        + [pa.field(META[2], pa.string()), pa.field(META[3], pa.string())]
        + [pa.field(SLOW, pa.bool_())]
    )
    with opened(source) as stream:
        blocks = Stream(stream, size or BLOCK_BYTES)
        utf8 = _is_utf8(source.encoding)
        if utf8:
            blocks.drop_bom()
        rows = _RowReader(source, names, schema)
        position = line = 0
        while True:
            block = blocks.block()
            if not block:
                return
            table = _fast(block, typed, schema, position, line) if utf8 and typed else None
            if table is None:
                table = rows.read(block, position, line)
            line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            position += table.num_rows
            for batch in table.to_batches():
                yield batch, None


def _fast(block: bytes, typed: Any, schema: Any, position: int, line: int) -> Any:
    """The block read by pyarrow (see the module's docstring), or None: the row reader's."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pajson

    if b"\x00" in block or block.count(b"\r") != block.count(b"\r\n"):
        return None
    body = block[:-1] if block.endswith(b"\n") else block
    # (built over the block's buffer: pa.array of a list would import pandas, once a process)
    offsets = pa.py_buffer(array.array("q", [0, len(body)]))
    whole = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(body)])
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid:
        return None  # not UTF-8
    lines = pc.split_pattern(whole, "\n").flatten()
    n = len(lines)
    if not pc.all(pc.match_substring_regex(lines, _OBJECT_LINE)).as_py():
        return None  # (also keeps a lone non-object line, which crashes pyarrow, away)
    try:
        table = pajson.read_json(
            pa.py_buffer(block),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1),
            parse_options=pajson.ParseOptions(
                explicit_schema=typed,
                unexpected_field_behavior="error",
                newlines_in_values=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeError):
        return None
    if table.num_rows != n or table.schema != typed:
        return None
    slow: Any = None
    for column, field in zip(table.columns, typed):
        if pa.types.is_int64(field.type) and pc.min(column).as_py() == _INT64_MIN:
            low = pc.fill_null(pc.equal(column, pc.min(column)), bool_scalar(False))
            slow = low if slow is None else pc.or_(slow, low)
    table = table.append_column(META[0], _numbers(position + 1, n))
    table = table.append_column(META[1], _numbers(line + 1, n))
    table = table.append_column(META[2], pa.nulls(n, pa.string()))
    table = table.append_column(META[3], lines)
    flags = slow if slow is not None else pa.repeat(bool_scalar(False), n)
    return table.append_column(SLOW, flags).cast(schema)


class _RowReader:
    """A block read by the row reader (``FileSource._iter_jsonl``): its exact records, lines
    and read failures, numbered on from the blocks before; every record slow, kept as its
    line's text."""

    def __init__(self, source: FileSource, names: list[str], schema: Any) -> None:
        from ._sources import FileSource

        self.inner = FileSource(source.path, "jsonl", encoding=source.encoding)
        self.inner.bom = False  # (dropped from the stream already)
        self.names = names
        self.schema = schema
        self.encoding = source.encoding

    def read(self, block: bytes, position: int, line: int) -> Any:
        import pyarrow as pa

        from ._sources import ReadFailure

        buf = io.BytesIO(block)
        last = b""

        def readline() -> bytes:
            nonlocal last
            last = buf.readline()
            return last

        meta: list[list[Any]] = [[], [], [], []]
        for item in self.inner._iter_jsonl(readline):
            if isinstance(item, ReadFailure):
                error, text = item.error, item.raw
            else:  # (a record's line decoded: _iter_jsonl did so)
                error, text = None, codecs.decode(last, self.encoding)
            for column, value in zip(meta, (position + item.position, line + item.line)):
                column.append(value)
            meta[2].append(error)
            meta[3].append(text)
        n = len(meta[0])
        fields = list(self.schema)
        arrays = [pa.nulls(n, f.type) for f in fields[: len(self.names)]]
        arrays += [pa.array(c, type=f.type) for c, f in zip(meta, fields[len(self.names) :])]
        arrays.append(pa.repeat(bool_scalar(True), n))
        return pa.Table.from_arrays(arrays, schema=self.schema)
