"""A chunk as the engine holds it: its records, and the rows they emitted, in column-shaped
buffers.

Why buffers and not a row list per record: the mapping emits a few rows per record, and the
flush sends them as one row set per declared write and column list. Kept per record, every
flush try had to walk each record's rows to regroup them (and per value, to find lookup
references and count bytes). Kept per write and column list from the moment they are
emitted (:class:`Rows`: the value tuples, in emission order, beside the record that emitted
each), the clean flush sends them as they are, and the checks that used to run per value in
``Out`` run a column at a time when the chunk closes (:meth:`Chunk.seal`): missing keys,
increments that are not numbers, lookup references, text size.

The records are kept column-wise too: a record is its index in the chunk (its ordinal), and
its position, line and payload are entries of parallel lists (:attr:`Chunk.positions`,
:attr:`Chunk.lines`, :attr:`Chunk.records`), with sparse side tables for what only some
records have (a failure before the flush, a replayed dead letter's id) and a list of
idempotency keys only when the run has a key function. Why not an object per record: the
mapping thread made one for every record (about a tenth of its time, and one more object
for the cyclic collector to track) for the sake of the rare record that fails. The flush
works with indices, and builds what a failing record needs (its dead letter, its
``FailedItem``) from these lists, for that record alone. A try over part of the chunk
(isolation) selects its records' rows with one mask per buffer (:meth:`Chunk.rows_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ._items import Failure, Op
from ._writes import Increment, Insert, Ref, Write

if TYPE_CHECKING:
    from ._arrow_write import ArrowPart

__all__ = ["Chunk", "Rows"]

_NUMBERS = frozenset({int, float, Decimal})
_SIZED = frozenset({str, bytes, bytearray})
_NONE = type(None)


class Rows:
    """The rows one declared write received with one column list, in emission order.

    ``owners[i]`` is the record (its index in the chunk) that emitted ``values[i]``;
    ``seq[i]`` its place among every row the run emitted (kept for writes whose result
    depends on the order across column lists: upserts and increments). ``types[c]`` holds
    the types seen in column ``c`` and ``refs`` the column positions where a lookup
    reference was seen (both found by :meth:`Chunk.measure`, so the checks at
    :meth:`Chunk.seal` look at a column's values only when its types say one may be wrong).
    """

    __slots__ = ("columns", "measured", "owners", "refs", "seq", "types", "values")

    def __init__(self, columns: tuple[str, ...], ordered: bool) -> None:
        self.columns = columns
        self.values: list[tuple[Any, ...]] = []
        self.owners: list[int] = []
        self.seq: list[int] | None = [] if ordered else None
        self.refs: tuple[int, ...] = ()
        self.types: list[set[type]] = [set() for _ in columns]
        self.measured = 0  # rows counted into the chunk's size so far

    def subset(self, keep: set[int]) -> Rows:
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

    Filled by the run loop and ``Out`` on the mapping thread; sealed once (:meth:`seal`)
    before it is handed to the flush, which only reads it from then on.
    """

    __slots__ = (
        "_ops",
        "arrow",
        "failures",
        "good",
        "groups",
        "keys",
        "lines",
        "positions",
        "records",
        "replayed",
        "size",
        "suspects",
        "writes",
    )

    def __init__(
        self, writes: Sequence[Write], arrow: ArrowPart | None = None, *, keyed: bool = False
    ) -> None:
        self.writes = tuple(writes)
        #: A columnar chunk's records (``batchline._arrow_write``): then the record lists
        #: and the row buffers stay empty until the flush needs them as rows
        #: (:meth:`ArrowPart.as_rows`).
        self.arrow = arrow
        #: Per record, by its index in the chunk: its position, its line, its payload
        #: (a Numbered source's positions, consecutive, are listed when the chunk closes).
        self.positions: list[int] = []
        self.lines: list[int] = []
        self.records: list[Any] = []
        #: Records that failed before the flush, by index: unreadable, the mapping raised,
        #: or a row broke a rule at :meth:`seal`. They only need a dead letter.
        self.failures: dict[int, Failure] = {}
        #: Per record, its idempotency ledger key (hashed; None if it has none), when the
        #: run has a key function; else None.
        self.keys: list[str | None] | None = [] if keyed else None
        #: Replayed dead letters, by index: the letter's id (a letter that fails again
        #: keeps it, and its attempts grow; one that lands is deleted).
        self.replayed: dict[int, int] = {}
        #: Per declared write, its buffers by column list.
        self.groups: list[dict[tuple[str, ...], Rows]] = [{} for _ in self.writes]
        #: The records that reach the flush, by index (set by :meth:`seal`).
        self.good: list[int] = []
        #: About how many bytes the measured rows' values take (:meth:`measure`).
        self.size = 0
        #: Records with a row whose text alone may exceed the database's row limit.
        self.suspects: set[int] = set()
        self._ops: dict[int, list[Op]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    # -- while collecting (mapping thread) ----------------------------------------------------
    def fail(self, item: int, why: Failure) -> None:
        """Record ``item`` failed before the flush (unreadable, or its mapping raised):
        forget the rows it emitted."""
        self.failures[item] = why
        self.discard(item)

    def discard(self, item: int) -> None:
        """Forget the rows ``item`` emitted (its mapping raised after emitting some): they
        are the last rows of their buffers."""
        for per in self.groups:
            for rows in per.values():
                owners = rows.owners
                while owners and owners[-1] == item:
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
        number) or that cannot be written (``too_large(ops)`` returns a Failure for a
        row over the database's limit), drop their rows, and list the records that go on
        to the flush (:attr:`good`)."""
        self.measure(above)
        failed: dict[int, Failure] = {}
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
                    why = too_large(self.ops_of(item))
                    if why is not None:
                        failed[item] = why
        if failed:
            self.failures.update(failed)
            self._drop(set(failed))
        self._ops = None
        everyone = range(len(self.records))
        gone = self.failures
        self.good = [i for i in everyone if i not in gone] if gone else list(everyone)

    def _drop(self, gone: set[int]) -> None:
        keep = {i for i in range(len(self.records)) if i not in gone}
        for per in self.groups:
            for cols, rows in list(per.items()):
                kept = rows.subset(keep)
                if kept.values:
                    per[cols] = kept
                else:
                    del per[cols]

    # -- what the flush reads ---------------------------------------------------------------------
    def rows_for(self, live: Sequence[int]) -> list[list[Rows]]:
        """Per declared write, the buffers holding the rows of ``live`` (records of
        :attr:`good`): the chunk's own when ``live`` is all of them, else masked copies."""
        if len(live) == len(self.good):
            return [list(per.values()) for per in self.groups]
        keep = set(live)
        return [
            [s for s in (rows.subset(keep) for rows in per.values()) if s.values]
            for per in self.groups
        ]

    def ops_of(self, item: int) -> list[Op]:
        """``item``'s rows as (write index, columns, values), buffer by buffer (not in
        emission order), for the rare record that needs them one by one (a dead letter's
        payload, a row left out of an insert, a row that may be too large)."""
        if self._ops is None:
            ops: dict[int, list[Op]] = {}
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
    write: Write, rows: Rows, keys: tuple[str, ...], failed: dict[int, Failure]
) -> None:
    """Records whose row lacks a key value: as if ``Out`` had refused the row."""
    for col in keys:
        if col not in rows.columns:
            bad: Sequence[int] = rows.owners
        else:
            at = rows.columns.index(col)
            if _NONE not in rows.types[at]:
                continue
            bad = [o for o, v in zip(rows.owners, rows.column(at)) if v is None]
        why = _map_failure(f"{write.describe()}: key column {col!r} is missing or empty")
        for owner in bad:
            failed.setdefault(owner, why)


def _check_numbers(
    write: Write, rows: Rows, adds: tuple[str, ...], failed: dict[int, Failure]
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
