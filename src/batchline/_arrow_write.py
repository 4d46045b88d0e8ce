"""Arrow data written as Arrow: a chunk that is a slice of record batches, flushed in bulk.

Why: an Arrow table or DataFrame loaded with no map function used to become one dict per
row (``ArrowSource._items``), one tuple per row in the chunk's buffers (and its payload in
the chunk's record list), and
the dialect then sent those tuples. None of that is needed when each record is only a row
of the pipeline's one ``Insert``: the chunk can stay columnar (:class:`ArrowPart`, held by
:attr:`batchline._chunk.Chunk.arrow`), and the flush can hand the columns to the database's
bulk path in the chunk's own transaction, beside the checkpoint (``Flusher._flush_arrow``):

- PostgreSQL: ``COPY … FROM STDIN (FORMAT csv)``, fed with the bytes Arrow's CSV writer
  produces in C, on batchline's own session connection;
- SQLite: the dialect's multi-row ``INSERT`` over tuples zipped from each column's
  ``to_pylist()`` (built in C), adapted as the row path adapts them.

Only where it is exact (:meth:`ArrowWriter.exact`): the bulk path is taken for a chunk only
when every column's Arrow type has a text form (PostgreSQL) or Python form (SQLite) that the
database reads back as the very value the row path stores, into a column of a type known to
read it so. Anything else (binary, lists, structs, nanosecond timestamps with a part below a
microsecond, a float NaN on SQLite, a target column of another type) goes the row path,
chunk by chunk, as before.

When a bulk chunk fails because of its data (a CHECK, NOT NULL, a duplicate key), its
transaction is rolled back and the same records go the row path (:meth:`ArrowPart.as_rows`):
``Out``, the chunk's row buffers, isolation and dead letters, exactly as if they had never
been columnar. So the failure contract is the row path's, and the bulk path only ever
commits a chunk all of whose rows landed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from ._chunk import Chunk
from ._database import Session
from ._dialects import Dialect, TableInfo
from ._errors import ConfigError
from ._items import Failure, Op
from ._out import Out, WriteIndex
from ._sources import ArrowSource, FileSource, microseconds
from ._writes import Insert, Lookup, Write

__all__ = ["ArrowExact", "ArrowPart", "ArrowWriter", "arrow_batches", "arrow_writer"]

#: PostgreSQL column types (as ``TableInfo`` reflects them) that read each Arrow type's CSV
#: text back as the value the row path stores (psycopg sends the same value as its own
#: text; the server parses either with the column's input function).
_PG_INTEGER = frozenset({"SMALLINT", "INTEGER", "BIGINT", "NUMERIC"})
_PG_FLOAT = frozenset({"DOUBLE PRECISION", "REAL"})
_PG_TEXT = frozenset({"TEXT", "VARCHAR"})


def _pg_targets(t: Any) -> frozenset[str]:
    """The PostgreSQL column types an Arrow column of type ``t`` may be copied into as CSV
    text without changing its value; empty when it must go the row path."""
    import pyarrow.types as pt

    if pt.is_integer(t):
        return _PG_INTEGER
    if pt.is_float32(t) or pt.is_float64(t):
        # sent as float64 (see _for_postgres): the shortest text that reads back as the same
        # double, as Python's repr, which is what psycopg sends
        return _PG_FLOAT
    if pt.is_decimal(t):
        return frozenset({"NUMERIC"})
    if pt.is_boolean(t):
        return frozenset({"BOOLEAN"})
    if pt.is_string(t) or pt.is_large_string(t):
        return _PG_TEXT
    if pt.is_date(t):
        return frozenset({"DATE"})
    if pt.is_timestamp(t) and t.unit != "ns":
        # microseconds at most: what both PostgreSQL and Python's datetime hold
        if t.tz is None:
            return frozenset({"TIMESTAMP WITHOUT TIME ZONE"})
        return frozenset({"TIMESTAMP WITH TIME ZONE"})
    return frozenset()


def _sqlite_exact(t: Any) -> bool:
    """Whether an Arrow column of type ``t`` goes the SQLite bulk path. Its values are the
    Python values the row path gets from the same batch (``to_pylist``), bound by the same
    dialect code, so the gate is only about what the row path was tested to keep."""
    import pyarrow.types as pt

    return bool(
        pt.is_integer(t)
        or pt.is_float32(t)
        or pt.is_float64(t)
        or pt.is_decimal(t)
        or pt.is_boolean(t)
        or pt.is_string(t)
        or pt.is_large_string(t)
        or pt.is_date(t)
        or (pt.is_timestamp(t) and t.unit != "ns")
    )


class ArrowWriter:
    """How one run writes Arrow chunks: its table, and the bulk form for its database."""

    def __init__(
        self,
        dialect: Dialect,
        table: TableInfo,
        write: Insert,
        unchanged: Callable[[Any], bool] | None = None,
    ) -> None:
        self.dialect = dialect
        self.table = table
        self.write = write
        self.postgres = dialect.name == "postgresql"
        #: The map function's own check (``ArrowExact``), when there is one.
        self.unchanged = unchanged

    def exact(self, data: Any) -> bool:
        """Whether every column of ``data`` (a ``pyarrow.Table``) goes the bulk path without a
        value changing (see the module's docstring); if not, the chunk goes the row path."""
        import pyarrow.compute as pc
        import pyarrow.types as pt

        if self.unchanged is not None and not self.unchanged(data):
            return False
        columns = self.table.columns
        for field, column in zip(data.schema, data.columns):
            if field.name not in columns:
                return False  # the row path reports it (no such column), as before
            if self.postgres:
                if columns[field.name].upper() not in _pg_targets(field.type):
                    return False
            elif not _sqlite_exact(field.type):
                return False
            elif (
                pt.is_floating(field.type)
                and column.null_count < len(column)
                and pc.any(pc.is_nan(column)).as_py()
            ):
                return False  # SQLite stores a NaN as NULL: the row path dead-letters it
        return True

    def send(self, session: Session, data: Any) -> None:
        """Insert every row of ``data`` inside the session's open transaction."""
        names = data.schema.names
        if self.postgres:
            import pyarrow as pa
            import pyarrow.csv as pacsv

            sink = pa.BufferOutputStream()
            options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
            pacsv.write_csv(_for_postgres(data), sink, options)
            # Every value quoted, a null left empty and unquoted: PostgreSQL's CSV reads
            # that as NULL, and a quoted "" as the empty string. Quoted, a value can never
            # be the end-of-data marker "\." either.
            sql = (
                f"COPY {self.table.sql} ({self.dialect.columns_sql(names)}) FROM STDIN (FORMAT csv)"
            )
            session.copy_data(sql, memoryview(sink.getvalue()), data.num_rows)
            return
        columns = [column.to_pylist() for column in _for_sqlite(data).columns]
        rows = list(zip(*columns))
        self.dialect.insert(session, self.table, names, rows)


def _for_postgres(data: Any) -> Any:
    """``data`` with float32 columns widened to float64: Arrow writes a float32 as
    the shortest text of the float32 (``0.1``), the row path sends the Python float it
    became (``0.10000000149011612``); both must be the same number to a float8 column."""
    import pyarrow as pa
    import pyarrow.types as pt

    columns = list(data.columns)
    changed = False
    for i, column in enumerate(columns):
        t = column.type
        if pt.is_floating(t) and not pt.is_float64(t):
            columns[i] = column.cast(pa.float64())
            changed = True
    return pa.Table.from_arrays(columns, names=data.schema.names) if changed else data


def _for_sqlite(data: Any) -> Any:
    """``data`` with the columns whose Python values the SQLite dialect would turn into
    text or integers one by one (``_adapt_value``) turned so by Arrow, in C, to the same
    text: a decimal to its ``str()`` (both write the exponent form by the same rule, the
    General Decimal Arithmetic's to-scientific-string), a date to its ISO form, a naive
    timestamp to ``isoformat(" ")`` (microseconds shown only when there are some), a
    boolean to 0/1. Zone-aware timestamps stay Python values: their text carries the
    offset of the value's own zone, which Arrow's cast does not write."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    columns = list(data.columns)
    changed = False
    for i, column in enumerate(columns):
        t = column.type
        if pt.is_decimal(t) or pt.is_date(t):
            columns[i] = column.cast(pa.string())
        elif pt.is_boolean(t):
            columns[i] = column.cast(pa.int64())
        elif pt.is_timestamp(t) and t.tz is None:
            text = column.cast(pa.timestamp("us")).cast(pa.string())
            columns[i] = pc.replace_substring_regex(text, pattern=r"\.000000$", replacement="")
        else:
            continue
        changed = True
    return pa.Table.from_arrays(columns, names=data.schema.names) if changed else data


class ArrowPart:
    """A chunk's records as Arrow columns: ``data`` (a ``pyarrow.Table``) holds the records
    at positions ``first`` … ``first + len - 1``, one row each, in order."""

    __slots__ = ("_rows", "data", "first")

    def __init__(self, data: Any, first: int, rows: Callable[[ArrowPart], Chunk]) -> None:
        self.data = data
        self.first = first
        self._rows = rows

    def __len__(self) -> int:
        return int(self.data.num_rows)

    @property
    def end(self) -> int:
        """The position of the last record."""
        return self.first + len(self) - 1

    def as_rows(self) -> Chunk:
        """The same records as a sealed row chunk: each at its position, its row emitted
        through ``Out`` as the row path does, for the row path to flush (and isolate)."""
        return self._rows(self)


class ArrowExact(Protocol):
    """A map function that may be skipped for Arrow data (the load's ``LoadMap``): it
    says, per chunk, whether it would write each record unchanged as the row of the only
    write, so the chunk's columns can be written as they are."""

    def __call__(self, record: dict[str, Any], out: Out) -> None: ...

    def arrow_unchanged(self, data: Any) -> bool:
        """Whether mapping each row of ``data`` (a ``pyarrow.Table``) would emit it as it
        is (same columns, same values) and fail none."""
        ...


def arrow_writer(
    source: Any,
    map_fn: Any,
    key_fn: Any,
    writes: Sequence[Write],
    lookups: Sequence[Lookup],
    dialect: Dialect,
    tables: dict[str, TableInfo],
) -> ArrowWriter | None:
    """The run's writer when its chunks may be columnar: Arrow data (re-readable from its
    first batch) or a Parquet file, no map function (or one that says when it changes nothing:
    :class:`ArrowExact`), one ``Insert`` and nothing else (no lookup, no idempotency
    key), on PostgreSQL or SQLite; else None (the row path)."""
    if batches_of(source) is None:
        return None
    unchanged = getattr(map_fn, "arrow_unchanged", None)
    if map_fn is not None and unchanged is None:
        return None
    if key_fn is not None or lookups or len(writes) != 1:
        return None
    write = writes[0]
    if type(write) is not Insert or dialect.name not in ("postgresql", "sqlite"):
        return None
    table = tables.get(write.table)
    return None if table is None else ArrowWriter(dialect, table, write, unchanged)


def batches_of(source: Any) -> Iterable[Any] | None:
    """``source``'s record batches, from its first record, when it is Arrow data that can
    still be read from there, or a Parquet file; else None."""
    if isinstance(source, ArrowSource):
        return source.batches if source.rereadable else None
    if isinstance(source, FileSource) and source.format == "parquet" and source.path != "-":
        return source.parquet_batches()
    return None


def arrow_batches(source: Any, resume: int) -> Iterator[tuple[Any, int]]:
    """The source's record batches (:func:`batches_of`) after position ``resume``, each
    with the position of its first row (nanosecond timestamps cast to microseconds where
    exact, as ``ArrowSource`` reads them)."""
    batches = batches_of(source)
    assert batches is not None
    position = 0
    for batch in batches:
        n = batch.num_rows
        if position + n <= resume:
            position += n
            continue
        skip = max(0, resume - position)
        part = batch.slice(skip) if skip else batch
        if part.num_rows:
            yield microseconds(part), position + skip + 1
        position += n


def rows_chunk(
    part: ArrowPart,
    writes: Sequence[Write],
    index: WriteIndex,
    above: int,
    too_large: Callable[[list[Op]], Failure | None] | None,
    map_fn: Callable[[dict[str, Any], Out], None] | None = None,
) -> Chunk:
    """``part``'s records as the row path builds a chunk of them (see ``_run_loop._loop``):
    each at its position in the chunk's record lists, mapped (or written as it is) through
    ``Out``, then sealed. A map function that raises fails its record alone."""
    chunk = Chunk(writes)
    out = Out(index, chunk)
    table = writes[0].table
    rows = part.data.to_pylist()
    chunk.positions = list(range(part.first, part.first + len(rows)))
    chunk.lines = chunk.positions  # (a row's line is its position; the lists are not grown)
    chunk.records = rows
    for item, row in enumerate(rows):
        out.item = item
        try:
            if map_fn is None:
                out.write(table, row)
            else:
                map_fn(row, out)
        except ConfigError:
            raise
        except Exception as exc:  # the mapping failed this record only, as in _loop
            chunk.fail(item, Failure("map", type(exc).__name__, f"{type(exc).__name__}: {exc}"))
    chunk.seal(above, too_large)
    return chunk
