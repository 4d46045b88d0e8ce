"""Batched get-or-create: a batch's lookup references resolved in one or two statements.

A mapping refers to a lookup row with ``lookup.ref(...)`` (a :class:`~batchline.Ref`, no
I/O). For a batch of records, each lookup's distinct keys are gathered from the Ref columns
of its rows (:func:`wanted_refs`),
those in the committed cache are taken from it (:func:`split_cached`), the rest are selected
in one statement and, with ``create=True``, the missing ones inserted in one more
(:class:`LookupResolver`). The mapping thread reads keys ahead with the same helpers
(``_prepare``); the flush resolves in its transaction whatever is still unknown.

The cache only ever holds rows of committed transactions (``LookupCache.update`` is called
once a chunk has committed): a row created by a transaction that rolled back must not be
referred to later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._aggregate import Resolved
from ._chunk import Rows
from ._database import Session
from ._dialects import Dialect, TableInfo
from ._errors import FatalDatabaseError
from ._items import Failure
from ._writes import Lookup, Ref

__all__ = ["Found", "LookupCache", "LookupResolver", "Wanted", "split_cached", "wanted_refs"]

#: Per lookup, key -> value.
Found = dict[Lookup, dict[tuple[Any, ...], Any]]


class LookupCache:
    """Committed lookup results (key → value), bounded; only filled after a commit."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self.values: dict[tuple[Any, ...], Any] = {}

    def update(self, new: dict[tuple[Any, ...], Any]) -> None:
        if not self.size:
            return
        if len(self.values) + len(new) > self.size:
            # Drop the older half: cheap, and hot keys come straight back.
            keep = list(self.values.items())[len(self.values) // 2 :]
            self.values = dict(keep)
        self.values.update(new)


#: Per lookup, the distinct keys a batch refers to, each with the first Ref to it.
Wanted = dict[Lookup, dict[tuple[Any, ...], Ref]]


def wanted_refs(rows: Sequence[Sequence[Rows]], lookups: Sequence[Lookup]) -> Wanted | None:
    """Per lookup, the distinct keys a batch's rows refer to (first Ref per key, whose values
    create a missing row); ``None`` if a row refers to a lookup the pipeline lacks. Only
    the columns where a Ref was seen are gone through (``Rows.refs``)."""
    wanted: Wanted = {lk: {} for lk in lookups}
    for per_write in rows:
        for buffer in per_write:
            for i in buffer.refs:
                column = buffer.column(i)
                # one look per distinct object (hot keys share one Ref), found in C
                for r in dict(zip(map(id, column), column)).values():
                    if type(r) is not Ref:
                        continue
                    per = wanted.get(r.lookup)
                    if per is None:
                        return None
                    if r.key not in per:
                        per[r.key] = r
    return wanted


def _refs_of(rows: Sequence[Sequence[Rows]]) -> Iterator[tuple[int, Ref]]:
    """Every (record's index, Ref) of a batch's rows, a buffer's Ref columns at a time."""
    for per_write in rows:
        for buffer in per_write:
            for i in buffer.refs:
                for owner, r in zip(buffer.owners, buffer.column(i)):
                    if type(r) is Ref:
                        yield owner, r


def split_cached(
    keys: Iterable[tuple[Any, ...]], cache: dict[tuple[Any, ...], Any]
) -> tuple[dict[tuple[Any, ...], Any], list[tuple[Any, ...]]]:
    """The values of ``keys`` found in ``cache``, and the keys it lacks (in order)."""
    values: dict[tuple[Any, ...], Any] = {}
    todo = []
    for key in keys:
        hit = cache.get(key, _MISSING)
        if hit is _MISSING:
            todo.append(key)
        else:
            values[key] = hit
    return values, todo


_MISSING: Any = object()


@dataclass(slots=True)
class _Resolution:
    """One try's lookup resolution, reused by the transaction's later tries over a part of
    its records (isolation): the rows it found exist whatever those tries do. Only kept
    when the try created no lookup rows, which a rolled-back try would take away."""

    items: set[int]  # the records it resolved (their indices in the chunk)
    resolved: Resolved
    failed: dict[int, Failure]  # index -> why: records referring to a key with no row
    found: Found  # rows its SELECTs found (for the cache)

    def covers(self, live: Sequence[int]) -> bool:
        return self.items.issuperset(live)


class LookupResolver:
    """Resolves batches' references inside one chunk's transaction after another.

    Per transaction (:meth:`begin`) it remembers the rows its SELECTs found (never rows it
    created, which a rolled-back try takes away), so isolation's later tries need not ask
    again, and, while isolating, a whole try's resolution to reuse for its parts.
    """

    def __init__(
        self,
        *,
        dialect: Dialect,
        lookups: Sequence[Lookup],
        tables: dict[str, TableInfo],
        caches: dict[Lookup, LookupCache],
        job: str,
    ) -> None:
        self.dialect = dialect
        self.lookups = list(lookups)
        self.tables = tables
        self.caches = caches
        self.job = job
        self._existing: Found = {}
        self._resolution: _Resolution | None = None
        self._created = False  # whether the last resolve created lookup rows

    def begin(self, known: Found | None) -> None:
        """A transaction starts; ``known`` rows exist before it (read ahead)."""
        self._existing = {lookup: dict(values) for lookup, values in (known or {}).items()}
        self._resolution = None

    def resolve(
        self,
        session: Session,
        live: list[int],
        rows: Sequence[Sequence[Rows]],
        found: Found,
        failures: list[tuple[int, Failure]],
        *,
        reuse: bool,
        wanted: Wanted | None = None,
    ) -> tuple[Resolved, list[int]]:
        """Resolve every Ref of ``live`` (whose rows are ``rows``), one lookup at a time, in
        one or two statements.

        Rows the database returned are added to ``found`` (for the cache, once committed).
        Returns each lookup's key → value map for this try, and the records that can be
        written: those referring to a key with no row (that may not be created) are added
        to ``failures`` at stage ``lookup``. With ``reuse`` (isolating, under savepoints),
        a resolution is kept for the transaction's later tries over part of its records.
        ``wanted``: the keys ``rows`` refer to, when the caller found them already.
        """
        resolved: Resolved = {}
        if not self.lookups:
            return resolved, live
        memo = self._resolution
        if memo is not None and memo.covers(live):
            for lookup, values in memo.found.items():
                found.setdefault(lookup, {}).update(values)
            if not memo.failed:
                return memo.resolved, live
            gone = memo.failed
            failures.extend((it, gone[it]) for it in live if it in gone)
            return memo.resolved, [it for it in live if it not in gone]
        self._created = False
        if wanted is None:
            wanted = wanted_refs(rows, self.lookups)
        if wanted is None:
            stray = next(r.lookup for _, r in _refs_of(rows) if r.lookup not in self.lookups)
            raise FatalDatabaseError(
                f"the mapping referred to {stray!r}, which is not among the pipeline's lookups",
                job=self.job,
            )
        missing = False
        for lookup, refs_by_key in wanted.items():
            values, todo = split_cached(refs_by_key, self.caches[lookup].values)
            existing = self._existing.get(lookup)
            if todo and existing:
                seen = {k: existing[k] for k in todo if k in existing}
                if seen:
                    values.update(seen)
                    found.setdefault(lookup, {}).update(seen)
                    todo = [k for k in todo if k not in seen]
            if todo:
                fetched = self._fetch(session, lookup, todo, refs_by_key)
                values.update(fetched)
                found.setdefault(lookup, {}).update(fetched)
                missing = missing or len(fetched) < len(todo)
            resolved[lookup] = values
        kept: list[int] = live
        failed: dict[int, Failure] = {}
        if missing:
            for item, bad in _refs_of(rows):
                if bad.key in resolved[bad.lookup] or item in failed:
                    continue
                named = ", ".join(f"{c}={v!r}" for c, v in zip(bad.lookup.key, bad.key))
                failed[item] = Failure(
                    "lookup", "LookupMissing", f"no {bad.lookup.table} row with {named}"
                )
            kept = [it for it in live if it not in failed]
            failures.extend((it, failed[it]) for it in live if it in failed)
        if reuse and not self._created:
            copied = {lookup: dict(values) for lookup, values in found.items()}
            self._resolution = _Resolution(set(live), resolved, failed, copied)
        return resolved, kept

    def _fetch(
        self,
        session: Session,
        lookup: Lookup,
        keys: list[tuple[Any, ...]],
        refs: dict[tuple[Any, ...], Ref],
    ) -> dict[tuple[Any, ...], Any]:
        t = self.tables[lookup.table]
        nkey = len(lookup.key)
        rows = self.dialect.lookup_select(session, t, lookup.key, lookup.returns, keys)
        found = {tuple(r[:nkey]): r[nkey] for r in rows}
        self._existing.setdefault(lookup, {}).update(found)
        if not lookup.create:
            return found
        absent = [k for k in keys if k not in found]
        if not absent:
            return found
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for key in absent:
            values = dict(zip(lookup.key, key))
            for c, v in (refs[key].values or {}).items():
                values.setdefault(c, v)
            groups.setdefault(tuple(values), []).append(tuple(values.values()))
        self._created = True
        for cols, rows_ in groups.items():
            returned = self.dialect.lookup_insert(
                session, t, lookup.key, cols, lookup.returns, rows_
            )
            if returned is not None:
                found.update({tuple(r[:nkey]): r[nkey] for r in returned})
        still = [k for k in absent if k not in found]
        if still:  # created concurrently by someone else, or a driver without RETURNING
            rows = self.dialect.lookup_select(session, t, lookup.key, lookup.returns, still)
            found.update({tuple(r[:nkey]): r[nkey] for r in rows})
        return found
