"""A chunk as the engine holds it: its records, and the rows they emitted, in column-shaped
buffers.

Why buffers and not a row list per record: the mapping emits a few rows per record, and the
flush sends them as one row set per declared write and column list. Kept per record, every
flush try had to walk each record's rows to regroup them (and per value, to find lookup
references and count bytes). Kept per write and column list from the moment they are
emitted (:class:`Rows`: the value tuples, in emission order, beside the record that emitted
each), the clean flush sends them as they are, and the checks that used to run per value in
``Out`` run a column at a time when the chunk closes (:meth:`Chunk.seal`): missing keys,
increments that are not numbers, lookup references, text size. A record stays an
:class:`~batchline._items.Item` (its position, line, payload and fate), and a try over part
of the chunk (isolation) selects its records' rows with one mask per buffer
(:meth:`Chunk.rows_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ._items import Failure, Item, Op
from ._writes import Increment, Insert, Ref, Write

if TYPE_CHECKING:
    from ._arrow_write import ArrowPart

__all__ = ["Chunk", "Rows"]

_NUMBERS = frozenset({int, float, Decimal})
_SIZED = frozenset({str, bytes, bytearray})
_NONE = type(None)


class Rows:
    """The rows one declared write received with one column list, in emission order.

    ``owners[i]`` is the record that emitted ``values[i]``; ``seq[i]`` its place among every
    row the run emitted (kept for writes whose result depends on the order across column
    lists: upserts and increments). ``types[c]`` holds the types seen in column ``c`` and
    ``refs`` the column positions where a lookup reference was seen (both found by
    :meth:`Chunk.measure`, so the checks at :meth:`Chunk.seal` look at a column's values
    only when its types say one may be wrong).
    """

    __slots__ = ("columns", "measured", "owners", "refs", "seq", "types", "values")

    def __init__(self, columns: tuple[str, ...], ordered: bool) -> None:
        self.columns = columns
        self.values: list[tuple[Any, ...]] = []
        self.owners: list[Item] = []
        self.seq: list[int] | None = [] if ordered else None
        self.refs: tuple[int, ...] = ()
        self.types: list[set[type]] = [set() for _ in columns]
        self.measured = 0  # rows counted into the chunk's size so far

    def subset(self, keep: set[Item]) -> Rows:
        """These rows of the records in ``keep`` (one mask, no per-row Python)."""
        mask = list(map(keep.__contains__, self.owners))
        out = Rows(self.columns, self.seq is not None)
        out.values = list(compress(self.values, mask))
        out.owners = list(compress(self.owners, mask))
        if self.seq is not None:
            out.seq = list(compress(self.seq, mask))
        out.refs = self.refs
        out.types = self.types  # (a superset of the part's: its checks were done)
        out.measured = len(out.values)
        return out

    def column(self, i: int) -> list[Any]:
        return list(map(itemgetter(i), self.values))

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Rows({self.columns}, {len(self.values)} rows)"


class Chunk:
    """One chunk's records and their rows (see the module's docstring).

    Filled by ``Out`` on the mapping thread; sealed once (:meth:`seal`) before it is handed
    to the flush, which only reads it from then on.
    """

    __slots__ = (
        "_ops",
        "arrow",
        "failed",
        "good",
        "groups",
        "items",
        "size",
        "suspects",
        "writes",
    )

    def __init__(self, writes: Sequence[Write], arrow: ArrowPart | None = None) -> None:
        self.writes = tuple(writes)
        #: A columnar chunk's records (``batchline._arrow_write``): then :attr:`items` and
        #: the row buffers stay empty until the flush needs them as rows
        #: (:meth:`ArrowPart.as_rows`).
        self.arrow = arrow
        self.items: list[Item] = []
        #: How many of :attr:`items` failed before their rows were collected (the loop
        #: counts them: unreadable, or the mapping raised).
        self.failed = 0
        #: Per declared write, its buffers by column list.
        self.groups: list[dict[tuple[str, ...], Rows]] = [{} for _ in self.writes]
        #: The records that reach the flush (set by :meth:`seal`).
        self.good: list[Item] = []
        #: About how many bytes the measured rows' values take (:meth:`measure`).
        self.size = 0
        #: Records with a row whose text alone may exceed the database's row limit.
        self.suspects: set[Item] = set()
        self._ops: dict[Item, list[Op]] | None = None

    # -- while collecting (mapping thread) ----------------------------------------------------
    def discard(self, item: Item) -> None:
        """Forget the rows ``item`` emitted (its mapping raised after emitting some): they
        are the last rows of their buffers."""
        for per in self.groups:
            for rows in per.values():
                owners = rows.owners
                while owners and owners[-1] is item:
                    owners.pop()
                    rows.values.pop()
                    if rows.seq is not None:
                        rows.seq.pop()
                rows.measured = min(rows.measured, len(owners))

    def measure(self, above: int) -> int:
        """Count the rows emitted since the last call into :attr:`size` and return it.

        A value counts 16 bytes, plus its characters or bytes for text and binary, as
        ``Out`` counted it per value before (the chunk's memory bound). Rows whose text
        alone exceeds ``above`` make their records :attr:`suspects`, measured exactly at
        :meth:`seal`. Works a column at a time: one pass in C per column for types and
        lengths, Python only for a column that mixes text with other values.
        """
        for per in self.groups:
            for rows in per.values():
                start = rows.measured
                n = len(rows.values)
                if start == n:
                    continue
                rows.measured = n
                new = rows.values[start:] if start else rows.values
                ncols = len(rows.columns)
                self.size += 16 * ncols * (n - start)
                lengths: list[list[int]] = []
                refs = set(rows.refs)
                seen = rows.types
                for i in range(ncols):
                    column = list(map(itemgetter(i), new))  # (faster than zip(*new))
                    types = set(map(type, column))
                    seen[i] |= types
                    if Ref in types:
                        refs.add(i)
                    if not types & _SIZED:
                        continue
                    if types <= _SIZED:
                        sizes = list(map(len, column))
                    else:
                        sizes = [len(v) if type(v) in _SIZED else 0 for v in column]
                    self.size += sum(sizes)
                    lengths.append(sizes)
                if len(refs) != len(rows.refs):
                    rows.refs = tuple(sorted(refs))
                if lengths and sum(map(max, lengths)) > above:
                    per_row = list(map(sum, zip(*lengths)))
                    owners = rows.owners[start:]
                    self.suspects.update(o for o, s in zip(owners, per_row) if s > above)
        return self.size

    # -- when it closes -------------------------------------------------------------------------
    def seal(self, above: int, too_large: Any = None) -> None:
        """Close the chunk: measure what is left, fail the records whose rows break a rule
        ``Out`` no longer checks per value (a missing key, an increment that is not a
        number) or that cannot be written (``too_large(item, ops)`` returns a Failure for a
        row over the database's limit), drop their rows, and list the records that go on
        to the flush (:attr:`good`)."""
        self.measure(above)
        failed: dict[Item, Failure] = {}
        for write, per in zip(self.writes, self.groups):
            keys = write.key_columns
            adds = write.columns if isinstance(write, Increment) else ()
            for rows in per.values():
                if keys:
                    _check_keys(write, rows, keys, failed)
                if adds:
                    _check_numbers(write, rows, adds, failed)
        if too_large is not None and self.suspects:
            for item in self.suspects:
                if item not in failed:
                    why = too_large(item, self.ops_of(item))
                    if why is not None:
                        failed[item] = why
        if failed:
            for item, why in failed.items():
                item.failure = why
            self._drop(set(failed))
        self._ops = None
        if failed or self.failed:
            self.good = [it for it in self.items if it.failure is None]
        else:
            self.good = self.items

    def _drop(self, gone: set[Item]) -> None:
        keep = {it for it in self.items if it not in gone}
        for per in self.groups:
            for cols, rows in list(per.items()):
                kept = rows.subset(keep)
                if kept.values:
                    per[cols] = kept
                else:
                    del per[cols]

    # -- what the flush reads ---------------------------------------------------------------------
    def rows_for(self, live: Sequence[Item]) -> list[list[Rows]]:
        """Per declared write, the buffers holding the rows of ``live`` (records of
        :attr:`good`): the chunk's own when ``live`` is all of them, else masked copies."""
        if len(live) == len(self.good):
            return [list(per.values()) for per in self.groups]
        keep = set(live)
        return [
            [s for s in (rows.subset(keep) for rows in per.values()) if s.values]
            for per in self.groups
        ]

    def ops_of(self, item: Item) -> list[Op]:
        """``item``'s rows as (write index, columns, values), buffer by buffer (not in
        emission order), for the rare record that needs them one by one (a dead letter's
        payload, a row left out of an insert, a row that may be too large)."""
        if self._ops is None:
            ops: dict[Item, list[Op]] = {}
            for index, per in enumerate(self.groups):
                for cols, rows in per.items():
                    for owner, values in zip(rows.owners, rows.values):
                        found = ops.get(owner)
                        if found is None:
                            ops[owner] = [(index, cols, values)]
                        else:
                            found.append((index, cols, values))
            self._ops = ops
        return self._ops.get(item, [])


def _check_keys(
    write: Write, rows: Rows, keys: tuple[str, ...], failed: dict[Item, Failure]
) -> None:
    """Records whose row lacks a key value: as if ``Out`` had refused the row."""
    for col in keys:
        if col not in rows.columns:
            bad: Sequence[Item] = rows.owners
        else:
            at = rows.columns.index(col)
            if _NONE not in rows.types[at]:
                continue
            bad = [o for o, v in zip(rows.owners, rows.column(at)) if v is None]
        why = _map_failure(f"{write.describe()}: key column {col!r} is missing or empty")
        for owner in bad:
            failed.setdefault(owner, why)


def _check_numbers(
    write: Write, rows: Rows, adds: tuple[str, ...], failed: dict[Item, Failure]
) -> None:
    """Records whose increment is not a number (``bool`` is not one either)."""
    for col in adds:
        if col not in rows.columns:
            why = _map_failure(f"increment {write.table}: column {col!r} is missing")
            for owner in rows.owners:
                failed.setdefault(owner, why)
            continue
        at = rows.columns.index(col)
        if rows.types[at] <= _NUMBERS:
            continue
        for owner, v in zip(rows.owners, rows.column(at)):
            if type(v) in _NUMBERS:
                continue
            if v is None:
                message = f"increment {write.table}: column {col!r} is missing"
            else:
                message = f"increment {write.table}: column {col!r} is not a number: {v!r}"
            failed.setdefault(owner, _map_failure(message))


def _map_failure(message: str) -> Failure:
    return Failure("map", "ValueError", f"ValueError: {message}")


def ordered(write: Write) -> bool:
    """Whether a write's rows keep their place among all emitted rows (see ``Rows.seq``)."""
    return not isinstance(write, Insert)
