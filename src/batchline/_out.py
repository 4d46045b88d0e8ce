"""``Out``: what a mapping function writes through, into the chunk's row buffers.

The mapping runs once per record. ``Out`` only records what it emits (cheaply, in memory);
nothing touches the database until the chunk is flushed, so a record's writes can be
replayed against any sub-batch during isolation without running user code again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._chunk import Chunk, Rows, ordered
from ._errors import ConfigError
from ._writes import Delete, Increment, Insert, Upsert, Write

__all__ = ["Out", "Row", "WriteIndex"]

#: A row as the mapping emits it: column → value, or (with ``columns=``) a tuple of values.
Row = Mapping[str, Any] | tuple[Any, ...]


def _values_of(row: Any) -> tuple[Any, ...]:
    """A ``columns=`` row given as another sequence than a tuple (a list, say)."""
    if isinstance(row, (Mapping, str, bytes)) or not isinstance(row, Iterable):
        raise TypeError(
            f"with columns= a row is a tuple of values in that order, not {type(row).__name__}"
        )
    return tuple(row)


class WriteIndex:
    """Finds the declared write a mapping means by table name and kind, once, up front."""

    __slots__ = ("by_table", "keys", "per_kind", "writes")

    def __init__(self, writes: Sequence[Write]) -> None:
        self.writes = tuple(writes)
        self.by_table: dict[str, list[int]] = {}
        # kind -> table -> index: what Out's methods look up per record (no tuple to build)
        self.per_kind: dict[str, dict[str, int]] = {
            k: {} for k in (Insert.kind, Upsert.kind, Increment.kind, Delete.kind)
        }
        for i, w in enumerate(self.writes):
            tables = self.per_kind.setdefault(w.kind, {})
            if w.table in tables:
                raise ConfigError(f"{w.describe()} is declared twice")
            tables[w.table] = i
            self.by_table.setdefault(w.table, []).append(i)
        self.keys = tuple(w.key_columns for w in self.writes)

    def find(self, kind: str | None, table: str) -> int:
        if kind is not None:
            idx = self.per_kind[kind].get(table)
            if idx is None:
                declared = ", ".join(w.describe() for w in self.writes) or "none"
                raise ConfigError(
                    f"the mapping emitted {kind} {table!r}, but no such write is declared "
                    f"(declared: {declared})"
                )
            return idx
        found = self.by_table.get(table, [])
        if len(found) != 1:
            raise ConfigError(
                f"the mapping wrote to {table!r}: "
                + ("no write is declared for it" if not found else "several writes match")
            )
        return found[0]


class Out:
    """Collects the writes records emit; handed to the mapping function.

    One ``Out`` serves a whole run: the loop points it at each chunk (``out.chunk``) and each
    record (``out.item``, its index in the chunk) in turn, and each emitted row goes straight
    into the chunk's buffer for its write and column list (:class:`~batchline._chunk.Rows`)
    as a tuple of its values, in the order the mapping gave its columns, beside the index of
    the record that emitted it. A row is taken apart once, here; the flush sends the buffers
    as they are.

    This runs once per emitted row, so it does the least it can: the checks that need a
    row's values (a key present, an increment a number) run a column at a time when the
    chunk closes (``Chunk.seal``), and fail the record there, at stage ``map``, as if the
    call had raised.
    """

    __slots__ = (
        "_buffers",
        "_increments",
        "_index",
        "_inserts",
        "_kinds",
        "_ordered",
        "_seq",
        "chunk",
        "item",
    )

    def __init__(self, index: WriteIndex, chunk: Chunk | None = None) -> None:
        self._index = index
        self._kinds = index.per_kind
        # the two kinds a hot loop emits, looked up without a call to ``_find``
        self._inserts = index.per_kind[Insert.kind]
        self._increments = index.per_kind[Increment.kind]
        self._ordered = tuple(ordered(w) for w in index.writes)
        self._seq = 0
        #: The chunk being filled.
        self.chunk: Chunk = chunk if chunk is not None else Chunk(index.writes)
        self._buffers = self.chunk.groups
        #: The record whose writes are being collected: its index in the chunk.
        self.item = 0

    def start(self, chunk: Chunk) -> None:
        """Collect into ``chunk`` from now on."""
        self.chunk = chunk
        self._buffers = chunk.groups

    def _add(self, idx: int, row: Row, columns: tuple[str, ...] | None = None) -> None:
        if columns is not None:  # values already in column order: the hot loop's form
            values = row if type(row) is tuple else _values_of(row)
            if len(values) != len(columns):
                raise ValueError(
                    f"a row of {len(values)} values for the {len(columns)} columns {columns}"
                )
        elif type(row) is dict:
            columns = tuple(row)
            values = tuple(row.values())
        elif isinstance(row, Mapping):
            columns = tuple(row)
            values = tuple([row[c] for c in columns])
        else:
            raise TypeError(
                f"a row must be a mapping (or a tuple with columns=), got {type(row).__name__}"
            )
        rows = self._buffers[idx].get(columns)
        if rows is None:
            rows = self._buffers[idx][columns] = Rows(columns, self._ordered[idx])
        rows.values.append(values)
        rows.owners.append(self.item)
        seq = rows.seq
        if seq is not None:
            self._seq += 1
            seq.append(self._seq)

    def _find(self, kind: str, table: str) -> int:
        idx = self._kinds[kind].get(table)
        return self._index.find(kind, table) if idx is None else idx

    # Each method takes a row as a mapping of column to value, or, with ``columns=`` (a tuple
    # of column names, best made once), as a tuple of values in that order: the cheaper form
    # for a hot loop, which builds no dict for the row and takes none apart.
    def insert(self, table: str, row: Row, *, columns: tuple[str, ...] | None = None) -> None:
        """Insert ``row`` into ``table`` (declared with :class:`~batchline.Insert`)."""
        idx = self._inserts.get(table)
        if idx is None:
            idx = self._find(Insert.kind, table)
        # the hot loop's rows, inline: a dict, or a tuple with its columns, into a buffer
        # that exists (inserts keep no sequence)
        elif columns is None:
            if type(row) is dict:
                rows = self._buffers[idx].get(tuple(row))
                if rows is not None:
                    rows.values.append(tuple(row.values()))
                    rows.owners.append(self.item)
                    return
        elif type(row) is tuple and len(row) == len(columns):
            rows = self._buffers[idx].get(columns)
            if rows is not None:
                rows.values.append(row)
                rows.owners.append(self.item)
                return
        self._add(idx, row, columns)

    def upsert(self, table: str, row: Row, *, columns: tuple[str, ...] | None = None) -> None:
        """Insert or update ``row`` (declared with :class:`~batchline.Upsert`)."""
        self._add(self._find(Upsert.kind, table), row, columns)

    def increment(self, table: str, row: Row, *, columns: tuple[str, ...] | None = None) -> None:
        """Add the row's increment columns to the row with its key (``Increment``)."""
        idx = self._increments.get(table)
        if idx is None:
            idx = self._find(Increment.kind, table)
        elif columns is None:  # inline, as for insert (an increment keeps its sequence)
            if type(row) is dict:
                rows = self._buffers[idx].get(tuple(row))
                if rows is not None:
                    rows.values.append(tuple(row.values()))
                    rows.owners.append(self.item)
                    self._seq = seq = self._seq + 1
                    rows.seq.append(seq)  # type: ignore[union-attr]
                    return
        elif type(row) is tuple and len(row) == len(columns):
            rows = self._buffers[idx].get(columns)
            if rows is not None:
                rows.values.append(row)
                rows.owners.append(self.item)
                self._seq = seq = self._seq + 1
                rows.seq.append(seq)  # type: ignore[union-attr]
                return
        self._add(idx, row, columns)

    def delete(self, table: str, key: Row, *, columns: tuple[str, ...] | None = None) -> None:
        """Delete the row of ``table`` whose key columns equal ``key`` (``Delete``)."""
        self._add(self._find(Delete.kind, table), key, columns)

    def write(self, table: str, row: Row, *, columns: tuple[str, ...] | None = None) -> None:
        """Emit ``row`` to the only write declared for ``table``, whatever its kind."""
        self._add(self._index.find(None, table), row, columns)
