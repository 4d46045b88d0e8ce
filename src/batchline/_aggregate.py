"""Turn the per-record writes of a batch into one row set per declared write.

This is the "aggregate before update" rule: increments to the same key are summed and
deletes are de-duplicated. Upserts are not merged: a later upsert of a key would hide an
earlier record's bad value (a NULL in a NOT NULL column, say) and let that record's other
writes land. Instead the n-th upsert of each key goes into the n-th round, one set-based
statement per round, so each record's row reaches the database in input order; a chunk of
distinct keys is one round. This runs for every flush attempt, from the records' own
emitted rows (the chunk's buffers, masked to a sub-batch's records during isolation), so a
sub-batch gets aggregates of exactly its own records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from heapq import merge
from itertools import repeat
from operator import itemgetter
from typing import Any

from ._chunk import Rows
from ._writes import Delete, Increment, Insert, Lookup, Ref, Upsert, Write

__all__ = ["Resolved", "RowGroup", "aggregate"]

#: Rows of one write that share a column list: (columns, rows in that column order, the
#: record (its index in the chunk) of each row for an insert, else None).
RowGroup = tuple[tuple[str, ...], list[tuple[Any, ...]], list[int] | None]
#: Per lookup, key -> looked-up value, for one flush try.
Resolved = dict[Lookup, dict[tuple[Any, ...], Any]]

_WHOLE = {int}  # a column of plain ints (no bool, float or Decimal among them)


def _sorted_by_key(rows: list[tuple[Any, ...]], nkey: int) -> list[tuple[Any, ...]]:
    """Rows in key order, so concurrent writers take row locks in the same order."""
    try:
        return sorted(rows, key=itemgetter(*range(nkey)))  # (a C getter, no call per row)
    except TypeError:  # keys of mixed types: any stable total order will do
        return sorted(rows, key=lambda r: repr(r[:nkey]))


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, Decimal) and isinstance(b, float):
        return a + Decimal(repr(b))
    if isinstance(a, float) and isinstance(b, Decimal):
        return Decimal(repr(a)) + b
    return a + b


def _resolved(values: tuple[Any, ...], resolved: Resolved) -> tuple[Any, ...]:
    """``values`` with each Ref replaced by its value for this try."""
    return tuple([resolved[v.lookup][v.key] if type(v) is Ref else v for v in values])


def _value(v: Any, resolved: Resolved) -> Any:
    return resolved[v.lookup][v.key] if type(v) is Ref else v


class _Getters(dict[tuple[str, ...], Callable[[tuple[Any, ...]], Any]]):
    """Per column tuple, a C getter of the wanted columns' values (made once per shape):
    the bare value for one column, a tuple for several."""

    def __init__(self, wanted: tuple[str, ...]) -> None:
        super().__init__()
        self.wanted = wanted

    def __missing__(self, columns: tuple[str, ...]) -> Callable[[tuple[Any, ...]], Any]:
        found = self[columns] = itemgetter(*[columns.index(c) for c in self.wanted])
        return found


def _resolve_rows(
    rows: list[tuple[Any, ...]], refs: tuple[int, ...], resolved: Resolved
) -> list[tuple[Any, ...]]:
    """``rows`` with the Refs of columns ``refs`` replaced, a column at a time: the other
    columns are not gone through value by value."""
    columns = list(zip(*rows))
    for i in refs:
        columns[i] = tuple([resolved[v.lookup][v.key] if type(v) is Ref else v for v in columns[i]])
    return list(zip(*columns))


def _in_order(groups: Sequence[Rows]) -> Iterator[tuple[tuple[str, ...], tuple[Any, ...], bool]]:
    """Every row of ``groups`` as (columns, values, may hold a Ref), in emission order."""
    if len(groups) == 1:
        g = groups[0]
        return zip(repeat(g.columns), g.values, repeat(bool(g.refs)))
    streams = [zip(g.seq or (), repeat(g.columns), g.values, repeat(bool(g.refs))) for g in groups]
    return ((cols, values, refs) for _, cols, values, refs in merge(*streams))


# The loops below run once per row of every flush try: they take rows as the tuples Out made
# of them, test for Refs once per buffer, not each value, and use no comprehension per row
# (each is a function call in Python 3.11).


def aggregate(write: Write, groups: Sequence[Rows], resolved: Resolved) -> list[RowGroup]:
    """The row groups for ``write`` from its buffers ``groups`` (one per column list), ready
    to send, with each lookup reference replaced by its value in ``resolved``.

    An insert's groups are its buffers as they are (Refs resolved), with the record of each
    row; the other writes merge rows by key, so their groups name no records.
    """
    if isinstance(write, Insert):
        return [
            (g.columns, _resolve_rows(g.values, g.refs, resolved) if g.refs else g.values, g.owners)
            for g in groups
            if g.values
        ]

    keys: tuple[str, ...] = write.key_columns
    key_of = _Getters(keys)  # a key is the bare value for one key column, else a tuple
    merged: dict[Any, dict[str, Any]] = {}
    if isinstance(write, Upsert):
        rounds: list[dict[Any, dict[str, Any]]] = []
        seen: dict[Any, int] = {}
        for cols, values, refs in _in_order(groups):
            if refs:
                values = _resolved(values, resolved)
            k = key_of[cols](values)
            n = seen.get(k, 0)
            seen[k] = n + 1
            if n == len(rounds):
                rounds.append({})
            rounds[n][k] = dict(zip(cols, values))
        return [group for merged_round in rounds for group in _grouped(merged_round, keys)]

    if isinstance(write, Increment):
        if len(groups) == 1 and len(keys) == 1 and len(write.columns) == 1:
            return _one_total(write, groups[0], resolved)
        # Most rows add to a key already seen (that is the point of aggregating): only the
        # key is resolved for those, and a row is made only for a key's first record.
        add = write.columns
        add_of = _Getters(add)
        one, single = len(add) == 1, len(keys) == 1
        shapes: dict[Any, tuple[str, ...]] = {}  # key -> its first row's columns
        for cols, values, refs in _in_order(groups):
            k = key_of[cols](values)
            if refs:
                k = _value(k, resolved) if single else _resolved(k, resolved)
            cur = merged.get(k)
            if cur is None:  # the totals are summed into this copy
                merged[k] = dict(zip(cols, _resolved(values, resolved) if refs else values))
                shapes[k] = cols
                continue
            # numbers, never Refs (Chunk.seal checks)
            if one:
                c = add[0]
                a, b = cur[c], add_of[cols](values)
                cur[c] = a + b if type(a) is type(b) else _add(a, b)
            else:
                for c, b in zip(add, add_of[cols](values)):
                    a = cur[c]
                    cur[c] = a + b if type(a) is type(b) else _add(a, b)
            if cols != shapes[k]:
                # create-only columns: the first record's value wins
                for c, v in zip(cols, _resolved(values, resolved) if refs else values):
                    cur.setdefault(c, v)
    elif isinstance(write, Delete):
        for cols, values, refs in _in_order(groups):
            if refs:
                values = _resolved(values, resolved)
            row = dict(zip(cols, values))
            merged[key_of[cols](values)] = {c: row[c] for c in keys}
    else:  # pragma: no cover - every Write subclass is handled above
        raise TypeError(f"unknown write {write!r}")
    return _grouped(merged, keys)


def _one_total(write: Increment, rows: Rows, resolved: Resolved) -> list[RowGroup]:
    """The common increment (one key column, one column added, one column list), a column
    at a time: its keys resolved in one pass, then one loop that only sums."""
    cols = rows.columns
    values = rows.values
    at = cols.index(write.key[0])
    keys = list(map(itemgetter(at), values))
    if at in rows.refs:
        keys = [resolved[k.lookup][k.key] if type(k) is Ref else k for k in keys]
    n = cols.index(write.columns[0])
    adds = map(itemgetter(n), values)
    totals: dict[Any, Any]
    if rows.types[n] == _WHOLE:  # whole numbers only (Chunk.measure saw every type)
        totals = dict.fromkeys(keys, 0)
        for k, b in zip(keys, adds):
            totals[k] += b
    else:
        totals = {}
        get = totals.get
        for k, b in zip(keys, adds):
            a = get(k)
            totals[k] = b if a is None else a + b if type(a) is type(b) else _add(a, b)
    if len(cols) == 2:  # the key and the amount only: the totals are the rows
        return [((cols[at], cols[n]), _sorted_by_key(list(totals.items()), 1), None)]
    # each key's first row gives the other (create-only) columns: the first index of each
    # key, in C (walking backwards, an earlier index overwrites a later one)
    first = dict(zip(reversed(keys), reversed(range(len(keys)))))
    merged: dict[Any, dict[str, Any]] = {}
    for k, i in first.items():
        row = dict(zip(cols, _resolved(values[i], resolved) if rows.refs else values[i]))
        row[cols[n]] = totals[k]
        merged[k] = row
    return _grouped(merged, write.key)


def _grouped(
    merged: dict[tuple[Any, ...], dict[str, Any]], keys: tuple[str, ...]
) -> list[RowGroup]:
    """Rows grouped by column list, key columns first, in key order."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in merged.values():
        cols = tuple(row)
        bucket = groups.get(cols)
        if bucket is None:
            bucket = groups[cols] = []
        bucket.append(tuple(row.values()))
    out: list[RowGroup] = []
    for cols, rows in groups.items():
        pos = [cols.index(c) for c in keys]
        if pos == list(range(len(keys))):
            out.append((cols, _sorted_by_key(rows, len(keys)), None))
        else:  # key columns first, so sorting by the key prefix works
            order = pos + [i for i in range(len(cols)) if i not in pos]
            cols2 = tuple(cols[i] for i in order)
            rows2 = [tuple(r[i] for i in order) for r in rows]
            out.append((cols2, _sorted_by_key(rows2, len(keys)), None))
    return out
