"""Arrow data written as Arrow: a chunk that is a slice of record batches, flushed in bulk.

Why: an Arrow table or DataFrame loaded with no map function used to become one dict per
row (``ArrowSource._items``), one tuple per row in the chunk's buffers (and its payload in
the chunk's record list), and
the dialect then sent those tuples. None of that is needed when each record is only a row
of the pipeline's one ``Insert``: the chunk can stay columnar (:class:`ArrowPart`, held by
:attr:`batchline._chunk.Chunk.arrow`), and the flush can hand the columns to the database's
bulk path in the chunk's own transaction, beside the checkpoint (``Flusher._flush_arrow``).
An ``Upsert`` or ``Increment`` chunk takes the same path into a staging table, which one
set-based statement (per upsert round) then merges into the target (``_arrow_merge``):

- PostgreSQL: ``COPY … FROM STDIN (FORMAT csv)``, fed with the bytes Arrow's CSV writer
  produces in C, on batchline's own session connection;
- SQLite: ``executemany`` over tuples zipped from each column's ``to_pylist()`` (built
  in C), adapted as the row path adapts them;
- MySQL/MariaDB: ``LOAD DATA LOCAL INFILE`` of text Arrow compute builds, refused (and
  redone as rows) when the server reports any warning or takes fewer rows.

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
from functools import partial
from typing import Any, Protocol, cast

from ._arrow_forms import (
    MYSQL_FORMAT,
    for_postgres,
    for_sqlite,
    mysql_exact,
    mysql_text,
    pg_targets,
    sqlite_exact,
    sqlite_native,
)
from ._arrow_merge import ArrowMerge
from ._chunk import Chunk
from ._csv_copy import CopyText
from ._database import Session
from ._dialects import Dialect, TableInfo
from ._items import DeadRow
from ._out import Out
from ._sources import ArrowSource, FileSource, microseconds
from ._writes import Increment, Insert, Lookup, Upsert, Write

__all__ = [
    "ArrowExact",
    "ArrowPart",
    "ArrowWriter",
    "arrow_batches",
    "arrow_writer",
    "is_csv",
    "is_jsonl",
]


class ArrowWriter:
    """How one run writes Arrow chunks: its table, and the bulk form for its database."""

    def __init__(
        self,
        dialect: Dialect,
        table: TableInfo,
        write: Insert | Upsert | Increment,
        unchanged: Callable[[Any], bool] | None = None,
    ) -> None:
        self.dialect = dialect
        self.table = table
        self.write = write
        #: An upsert's or increment's staging and merge (``_arrow_merge``); None: inserts.
        self.merge = None if isinstance(write, Insert) else ArrowMerge(dialect, table, write)
        self.postgres = dialect.name == "postgresql"
        self.mysql = dialect.name in ("mysql", "mariadb")
        #: Whether LOAD DATA LOCAL INFILE works here (until the server says it does not).
        self.local_infile = self.mysql
        #: Whether :meth:`wire` is built on the mapping thread, while the chunk before
        #: flushes. Not for SQLite: its wire is Python values (``to_pylist``, which holds
        #: the GIL for a whole column at a time), and ``executemany`` on the flush thread
        #: needs the GIL for every row; built there, in :meth:`send`, the two take turns
        #: instead of the flush waiting out each column (measured: 5.3 s against 6.1 s,
        #: median of 5 interleaved lineitem loads into SQLite on a busy machine).
        self.wire_ahead = dialect.name != "sqlite"
        #: The map function's own check (``ArrowExact``), when there is one.
        self.unchanged = unchanged
        #: Rows of the last :meth:`send` its COPY left out (``_copy_isolation``), by index.
        self.left_out: list[int] = []

    def exact(self, data: Any, converted: bool = False) -> bool:
        """Whether every column of ``data`` (a ``pyarrow.Table``) goes the bulk path without a
        value changing (see the module's docstring); if not, the chunk goes the row path.
        ``converted``: the map function made ``data`` itself (CSV, ``_csv_convert``), so
        it is what the map would emit."""
        import pyarrow.compute as pc
        import pyarrow.types as pt

        if not converted and self.unchanged is not None and not self.unchanged(data):
            return False
        columns = self.table.columns
        for field, column in zip(data.schema, data.columns):
            if field.name not in columns:
                return False  # the row path reports it (no such column), as before
            if self.postgres:
                if columns[field.name].upper() not in pg_targets(field.type):
                    return False
            elif self.mysql:
                if not mysql_exact(field.type, columns[field.name]):
                    return False
                if (
                    pt.is_floating(field.type)
                    and column.null_count < len(column)
                    and pc.any(pc.or_(pc.is_nan(column), pc.is_inf(column))).as_py()
                ):
                    return False  # MySQL holds neither: the row path dead-letters them
            elif not sqlite_exact(field.type):
                return False
            elif (
                pt.is_floating(field.type)
                and column.null_count < len(column)
                and pc.any(pc.is_nan(column)).as_py()
            ):
                return False  # SQLite stores a NaN as NULL: the row path dead-letters it
        return self.merge is None or self.merge.exact(data)

    def wire(self, data: Any) -> Any:
        r"""``data`` in the form :meth:`send` sends it: built ahead, on the mapping thread
        while the chunk before flushes (``_arrow_loop``), so the flush only sends it.

        PostgreSQL: the CSV bytes for ``COPY`` (Arrow's writer). Every text value quoted
        (Arrow's "needed" quotes strings always), a null left empty and unquoted:
        PostgreSQL's CSV reads that as NULL, and a quoted "" as the empty string. Quoted, a
        text can never be the end-of-data marker "\." either, and no number, date or time
        can be it. MySQL: the text of the ``LOAD DATA`` file (``mysql_text``). SQLite:
        each column's Python values (``to_pylist``, in C)."""
        if self.postgres:
            import pyarrow as pa
            import pyarrow.csv as pacsv

            sink = pa.BufferOutputStream()
            options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
            pacsv.write_csv(for_postgres(data), sink, options)
            return memoryview(sink.getvalue())
        if self.mysql:
            return mysql_text(data) if self.local_infile else None
        data = for_sqlite(data)
        return [column.to_pylist() for column in data.columns], data.schema.types

    def send(self, session: Session, data: Any, wire: Any = None) -> None:
        """Write every row of ``data`` inside the session's open transaction (``wire``:
        its :meth:`wire`, when built ahead): inserted, or staged and merged (upserts and
        increments, :attr:`merge`)."""
        self.left_out = []
        if self.merge is not None:
            self.merge.send(session, data, wire, self.load)
        else:
            self.load(session, data, wire, self.table)

    def load(self, session: Session, data: Any, wire: Any, table: TableInfo) -> None:
        """Insert every row of ``data`` into ``table`` (the target, or a staging table)."""
        if wire is None:
            wire = self.wire(data)
        names = data.schema.names
        if self.mysql:
            self._send_mysql(session, data, wire, table)
            return
        if self.postgres:
            if isinstance(wire, CopyText):  # a CSV file's own text (_csv_copy)
                columns, options = self.dialect.columns_sql(wire.columns), wire.options
                sql = f"COPY {table.sql} ({columns}) FROM STDIN ({options})"
                pieces, quote = list(wire.blocks), wire.quote
            else:
                columns = self.dialect.columns_sql(names)
                sql = f"COPY {table.sql} ({columns}) FROM STDIN (FORMAT csv)"
                pieces, quote = [wire], b'"'
            if table is not self.table:  # a staging table: its merge fails, not the COPY
                session.copy_data(sql, pieces, data.num_rows)
                return
            from ._copy_isolation import copy_leaving_out, copy_line

            self.left_out = copy_leaving_out(
                session,
                sql,
                pieces,
                data.num_rows,
                quote=quote,
                line_of=partial(copy_line, self.dialect),
            )
            return
        columns, types = wire
        if all(sqlite_native(t) for t in types):
            # ints, floats (no NaN: see exact), text and NULL only: sqlite3 binds them as
            # they are, so the rows go straight to executemany, with no list of all the
            # parameters built in Python (the multi-row INSERT's cost here)
            marks = ", ".join(["?"] * len(names))
            sql = (
                f"INSERT INTO {table.sql} ({self.dialect.columns_sql(names)}) "  # noqa: S608
                f"VALUES ({marks})"
            )
            session.execute_each(sql, zip(*columns), data.num_rows)
            return
        rows = list(zip(*columns))
        self.dialect.insert(session, table, names, rows)

    def _send_mysql(
        self, session: Session, data: Any, text: bytes | None, table: TableInfo
    ) -> None:
        """``LOAD DATA LOCAL INFILE`` from a file of the chunk's text (``mysql_text``),
        which must take every row without a warning: with LOCAL, MySQL turns a bad value
        or a duplicate key into a warning (a value changed, a row skipped), so a chunk
        with any is refused (``ValueError``: a data failure, the chunk goes as rows).
        Where the connection cannot send a local file (an engine made without
        ``client_flag=CLIENT.LOCAL_FILES``, a server with ``local_infile`` off), the rows
        go as the dialect's multi-row INSERT instead."""
        import os
        import tempfile

        names = data.schema.names
        if self.local_infile and text is not None:
            fd, path = tempfile.mkstemp(prefix="batchline-", suffix=".csv")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(text)
                sql = (
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {table.sql} {MYSQL_FORMAT} "
                    f"({self.dialect.columns_sql(names)})"
                )
                try:
                    taken, warnings = session.load_local(sql, path, data.num_rows)
                except Exception as exc:
                    number = exc.args[0] if exc.args else None
                    if number not in _NO_LOCAL_INFILE:
                        raise
                    self.local_infile = False
                else:
                    if warnings or taken != data.num_rows:
                        shown = session.query("SHOW WARNINGS LIMIT 1")
                        first = f" (first: {shown[0][2]})" if shown else ""
                        raise ValueError(
                            f"LOAD DATA took {taken} of {data.num_rows} rows with {warnings} "
                            f"warnings{first}"
                        )
                    return
            finally:
                os.unlink(path)
        rows = list(zip(*(column.to_pylist() for column in data.columns)))
        self.dialect.insert(session, table, names, rows)


#: MySQL errors that say LOAD DATA LOCAL is not allowed on this connection or server.
_NO_LOCAL_INFILE = frozenset({1148, 2068, 3948, 4166})


class ArrowPart:
    """A chunk's records as Arrow columns: ``data`` (a ``pyarrow.Table``) holds the records
    at positions ``first`` … ``first + len - 1``, one row each, in order.

    A CSV chunk (``_csv_blocks``) also keeps ``raw``, its records as read (text columns,
    positions, lines, read errors), for the row path; there ``data`` holds the rows that
    convert, and ``failed`` the records already dead letters (unreadable, or a value that
    does not fit its column), written in the same transaction."""

    __slots__ = ("_end", "_rows", "data", "failed", "first", "positions", "raw", "wire")

    def __init__(
        self,
        data: Any,
        first: int,
        rows: Callable[[ArrowPart], Chunk],
        *,
        raw: Any = None,
        failed: Sequence[DeadRow] = (),
        end: int | None = None,
    ) -> None:
        self.data = data
        self.first = first
        self._rows = rows
        self.raw = raw
        self.failed = list(failed)
        self._end = end
        #: The form the bulk path sends (``ArrowWriter.wire``), when built ahead.
        self.wire: Any = None
        #: Each row's position, where they do not run on from ``first``
        #: (``_copy_isolation.left_out_part``).
        self.positions: list[int] | None = None

    def __len__(self) -> int:
        return int(self.data.num_rows)

    @property
    def end(self) -> int:
        """The position of the last record."""
        return self._end if self._end is not None else self.first + len(self) - 1

    def dead_letters(self) -> Chunk:
        """The records already dead letters (``failed``), as a chunk holding only them: what
        the flush builds their letters from, in the bulk chunk's transaction."""
        dead = Chunk(())
        for i, (position, line, record, why) in enumerate(self.failed):
            dead.positions.append(position)
            dead.lines.append(line)
            dead.records.append(record)
            dead.fail(i, why)
        return dead

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
    :class:`ArrowExact`), one ``Insert``, ``Upsert`` or ``Increment`` and nothing else (no
    lookup, no idempotency key), on PostgreSQL, SQLite or MySQL/MariaDB; else None (the
    row path)."""
    if batches_of(source) is None:
        return None
    unchanged = getattr(map_fn, "arrow_unchanged", None)
    if map_fn is not None and unchanged is None:
        return None
    if (is_csv(source) or is_jsonl(source)) and getattr(map_fn, "arrow_convert", None) is None:
        return None  # text columns: only the load's map converts them
    if key_fn is not None or lookups or len(writes) != 1:
        return None
    write = writes[0]
    if type(write) not in (Insert, Upsert, Increment) or dialect.name not in (
        "postgresql",
        "sqlite",
        "mysql",
        "mariadb",
    ):
        return None
    table = tables.get(write.table)
    if table is None:
        return None
    if isinstance(write, (Upsert, Increment)) and not dialect.merges(table, write.key):
        return None  # (a MySQL key with no unique index: the row path refuses it)
    return ArrowWriter(dialect, table, cast("Insert | Upsert | Increment", write), unchanged)


def batches_of(source: Any, columns: Any = None) -> Iterable[Any] | None:
    """``source``'s record batches, from its first record, when it is Arrow data that can
    still be read from there, or a Parquet, CSV or JSON Lines file (read as ``columns``,
    the load's ``ColumnSpec`` list); else None."""
    if isinstance(source, ArrowSource):
        return source.batches if source.rereadable else None
    if isinstance(source, FileSource) and source.format == "parquet" and source.path != "-":
        return source.parquet_batches()
    if is_csv(source):
        return cast("Iterable[Any]", source.csv_blocks())  # (batch, text) pairs
    if is_jsonl(source):
        from ._jsonl_blocks import jsonl_blocks

        return jsonl_blocks(getattr(source, "inner", source), columns or [])  # (batch, None)
    return None


def is_csv(source: Any) -> bool:
    """Whether ``source`` is a CSV/TSV/tbl file (not stdin): read as text batches
    (``_csv_blocks``), converted by the load's map (``_csv_convert``)."""
    return (
        isinstance(source, FileSource)
        and source.format in ("csv", "tsv", "tbl")
        and source.path != "-"
    )


def is_jsonl(source: Any) -> bool:
    """Whether ``source`` is a JSON Lines file (not stdin): read as typed batches
    (``_jsonl_blocks``), converted by the load's map (``_jsonl_convert``)."""
    return isinstance(source, FileSource) and source.format == "jsonl" and source.path != "-"


def arrow_batches(
    source: Any, resume: int, columns: Any = None
) -> Iterator[tuple[Any, int, bytes | None]]:
    """The source's record batches (:func:`batches_of`) after position ``resume``, each
    with the position of its first row (nanosecond timestamps cast to microseconds where
    exact, as ``ArrowSource`` reads them) and, for a CSV file, the text of the block it
    holds whole (``_csv_blocks.csv_blocks``; None for a block a resume starts inside)."""
    batches = batches_of(source, columns)
    assert batches is not None
    csv = is_csv(source) or is_jsonl(source)
    position = 0
    for item in batches:
        batch, text = item if csv else (item, None)
        n = batch.num_rows
        if position + n <= resume:
            position += n
            continue
        skip = max(0, resume - position)
        part = batch.slice(skip) if skip else batch
        if part.num_rows:
            yield microseconds(part), position + skip + 1, None if skip else text
        position += n
