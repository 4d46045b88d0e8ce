"""Turn the per-record writes of a batch into one row set per declared write.

This is the "aggregate before update" rule: increments to the same key are summed and
deletes are de-duplicated. Upserts are not merged: a later upsert of a key would hide an
earlier record's bad value (a NULL in a NOT NULL column, say) and let that record's other
writes land. Instead the n-th upsert of each key goes into the n-th round, one set-based
statement per round, so each record's row reaches the database in input order; a chunk of
distinct keys is one round. This runs for every flush attempt, from the records' own
emitted writes, so a sub-batch during isolation gets aggregates of exactly its own records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from ._items import Item
from ._writes import Delete, Increment, Insert, Lookup, Ref, Upsert, Write

__all__ = ["Resolved", "RowGroup", "aggregate"]

#: Rows of one write that share a column list: (columns, rows in that column order).
RowGroup = tuple[tuple[str, ...], list[tuple[Any, ...]]]
#: Per lookup, key -> looked-up value, for one flush try.
Resolved = dict[Lookup, dict[tuple[Any, ...], Any]]


def _sorted_by_key(rows: list[tuple[Any, ...]], nkey: int) -> list[tuple[Any, ...]]:
    """Rows in key order, so concurrent writers take row locks in the same order."""
    try:
        return sorted(rows, key=lambda r: r[:nkey])
    except TypeError:  # keys of mixed types: any stable total order will do
        return sorted(rows, key=lambda r: repr(r[:nkey]))


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, Decimal) and isinstance(b, float):
        return a + Decimal(repr(b))
    if isinstance(a, float) and isinstance(b, Decimal):
        return Decimal(repr(a)) + b
    return a + b


def _resolved(row: dict[str, Any], resolved: Resolved) -> dict[str, Any]:
    """A copy of ``row`` with each Ref replaced by its value for this try."""
    return {k: (resolved[v.lookup][v.key] if type(v) is Ref else v) for k, v in row.items()}


def _value(v: Any, resolved: Resolved) -> Any:
    return resolved[v.lookup][v.key] if type(v) is Ref else v


def _key_of(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(keys) == 1:
        (only,) = keys
        return lambda row: (row[only],)
    return lambda row: tuple([row[c] for c in keys])


# The loops below run once per row of every flush try: they test ``item.refs`` once per
# record, not each value, and build rows with comprehensions rather than generators.


def aggregate(
    write: Write, index: int, items: Sequence[Item], resolved: Resolved
) -> list[RowGroup]:
    """The row groups for ``write`` (declared at ``index``) over ``items``, ready to send,
    with each lookup reference replaced by its value in ``resolved``."""
    if isinstance(write, Insert):
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for item in items:
            plain = item.refs is None
            for idx, row in item.ops:
                if idx != index:
                    continue
                cols = tuple(row)
                bucket = groups.get(cols)
                if bucket is None:
                    bucket = groups[cols] = []
                if plain:
                    bucket.append(tuple(row.values()))
                else:
                    bucket.append(
                        tuple(
                            [
                                resolved[v.lookup][v.key] if type(v) is Ref else v
                                for v in row.values()
                            ]
                        )
                    )
        return list(groups.items())

    keys: tuple[str, ...] = write.key_columns
    key_of = _key_of(keys)
    if isinstance(write, Upsert):
        rounds: list[dict[tuple[Any, ...], dict[str, Any]]] = []
        seen: dict[tuple[Any, ...], int] = {}
        for item in items:
            plain = item.refs is None
            for idx, row in item.ops:
                if idx != index:
                    continue
                if not plain:
                    row = _resolved(row, resolved)
                k = key_of(row)
                n = seen.get(k, 0)
                seen[k] = n + 1
                if n == len(rounds):
                    rounds.append({})
                rounds[n][k] = row
        return [group for merged_round in rounds for group in _grouped(merged_round, keys)]

    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    if isinstance(write, Increment):
        # Most rows add to a key already seen (that is the point of aggregating): only the
        # key is resolved for those, and the row is copied only for a key's first record.
        add = write.columns
        only = keys[0] if len(keys) == 1 else None
        for item in items:
            plain = item.refs is None
            for idx, row in item.ops:
                if idx != index:
                    continue
                if plain:
                    k = key_of(row)
                elif only is not None:
                    v = row[only]
                    k = (resolved[v.lookup][v.key] if type(v) is Ref else v,)
                else:
                    k = tuple([_value(row[c], resolved) for c in keys])
                cur = merged.get(k)
                if cur is None:  # the totals are summed into this copy
                    merged[k] = row.copy() if plain else _resolved(row, resolved)
                    continue
                for c in add:  # numbers, never Refs (Out.increment checks)
                    a, b = cur[c], row[c]
                    cur[c] = a + b if type(a) is type(b) else _add(a, b)
                if row.keys() != cur.keys():  # create-only columns: first record's value wins
                    for c, v in (row if plain else _resolved(row, resolved)).items():
                        cur.setdefault(c, v)
    elif isinstance(write, Delete):
        for item in items:
            plain = item.refs is None
            for idx, row in item.ops:
                if idx != index:
                    continue
                if not plain:
                    row = _resolved(row, resolved)
                merged[key_of(row)] = {c: row[c] for c in keys}
    else:  # pragma: no cover - every Write subclass is handled above
        raise TypeError(f"unknown write {write!r}")
    return _grouped(merged, keys)


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
            out.append((cols, _sorted_by_key(rows, len(keys))))
        else:  # key columns first, so sorting by the key prefix works
            order = pos + [i for i in range(len(cols)) if i not in pos]
            cols2 = tuple(cols[i] for i in order)
            rows2 = [tuple(r[i] for i in order) for r in rows]
            out.append((cols2, _sorted_by_key(rows2, len(keys))))
    return out
