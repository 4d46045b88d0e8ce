"""``Out``: what a mapping function writes through, and the per-record write list it fills.

The mapping runs once per record. ``Out`` only records what it emits (cheaply, in memory);
nothing touches the database until the chunk is flushed, so a record's writes can be
replayed against any sub-batch during isolation without running user code again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ._errors import ConfigError
from ._items import Item, Op
from ._writes import Delete, Increment, Insert, Ref, Upsert, Write

__all__ = ["Op", "Out", "WriteIndex"]


_NUMBER = (int, float, Decimal)


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

    One ``Out`` serves a whole run: the loop points it at each record's :class:`Item` in turn
    (``out.item``), and each emitted row goes straight into that item as ``(write index,
    columns, values)`` tuples, in the order the mapping gave its columns. A row is taken
    apart once, here: the flush groups rows by their column tuple and sends the value tuples
    as they are, never rebuilding a row from a dict.

    This runs once per emitted row, so it is written for speed: exact type checks before the
    general ones, and one pass over a row's values for both its size and its references.
    """

    __slots__ = ("_increments", "_index", "_inserts", "_keys", "_shapes", "item", "size")

    def __init__(self, index: WriteIndex, item: Item | None = None) -> None:
        self._index = index
        self._inserts = index.per_kind[Insert.kind]
        self._increments = index.per_kind[Increment.kind]
        self._keys = index.keys
        self._shapes: dict[tuple[str, ...], tuple[str, ...]] = {}
        #: The record whose writes are being collected.
        self.item: Item = item if item is not None else Item(0, 0, None)
        #: About how many bytes the emitted values take, summed over the records (characters
        #: of text and bytes, 16 a value besides; the loop bounds a chunk by it).
        self.size = 0

    @property
    def ops(self) -> list[Op]:
        """The current record's emitted writes."""
        return self.item.ops

    @property
    def refs(self) -> list[Ref] | None:
        """The lookup references among the current record's values, if any."""
        return self.item.refs

    def _add(self, idx: int, row: Mapping[str, Any]) -> None:
        if type(row) is dict:
            columns = tuple(row)
            values = tuple(row.values())
        elif isinstance(row, Mapping):
            columns = tuple(row)
            values = tuple([row[c] for c in columns])
        else:
            raise TypeError(f"a row must be a mapping, got {type(row).__name__}")
        # one tuple object per column shape, shared by every row of that shape
        columns = self._shapes.setdefault(columns, columns)
        for col in self._keys[idx]:
            if row.get(col) is None:
                write = self._index.writes[idx]
                raise ValueError(f"{write.describe()}: key column {col!r} is missing or empty")
        item = self.item
        item.ops.append((idx, columns, values))
        size = 16 * len(values)
        for v in values:
            t = type(v)
            if t is str:
                size += len(v)
            elif t is Ref:
                if item.refs is None:
                    item.refs = [v]
                else:
                    item.refs.append(v)
            elif t is bytes:
                size += len(v)
        self.size += size

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert ``row`` into ``table`` (declared with :class:`~batchline.Insert`)."""
        idx = self._inserts.get(table)
        self._add(self._index.find(Insert.kind, table) if idx is None else idx, row)

    def upsert(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert or update ``row`` (declared with :class:`~batchline.Upsert`)."""
        self._add(self._index.find(Upsert.kind, table), row)

    def increment(self, table: str, row: Mapping[str, Any]) -> None:
        """Add the row's increment columns to the row with its key (``Increment``)."""
        idx = self._increments.get(table)
        if idx is None:
            idx = self._index.find(Increment.kind, table)
        write = self._index.writes[idx]
        assert isinstance(write, Increment)
        for col in write.columns:
            v = row.get(col)
            t = type(v)
            if t is int or t is float or t is Decimal:
                continue
            if v is None:
                raise ValueError(f"increment {table}: column {col!r} is missing")
            if isinstance(v, bool) or not isinstance(v, _NUMBER):
                raise ValueError(f"increment {table}: column {col!r} is not a number: {v!r}")
        self._add(idx, row)

    def delete(self, table: str, key: Mapping[str, Any]) -> None:
        """Delete the row of ``table`` whose key columns equal ``key`` (``Delete``)."""
        self._add(self._index.find(Delete.kind, table), key)

    def write(self, table: str, row: Mapping[str, Any]) -> None:
        """Emit ``row`` to the only write declared for ``table``, whatever its kind."""
        idx = self._index.find(None, table)
        write = self._index.writes[idx]
        if isinstance(write, Increment):
            self.increment(table, row)
        else:
            self._add(idx, row)
