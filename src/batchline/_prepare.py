"""A chunk's database-free flush work, done on the mapping thread before the chunk is handed
to the flush thread.

Why: the flush thread spends most of a chunk waiting for the server (the writes, the
COMMIT). Whatever Python work it does besides waiting (collecting the chunk's lookup keys,
asking for the ones not cached, summing increments, building rows) delays that chunk's
statements. The mapping thread, meanwhile, is usually idle, waiting for the previous flush
to end. So it does that work for the next chunk while the current one flushes:

- lookup keys not in the committed cache are selected on a second, read-only connection in
  autocommit (one round trip, no snapshot held between chunks); these are rows that exist
  (committed), so the flush may use them as its own SELECT would. A lost connection costs
  one chunk's read-ahead; the next chunk reconnects;
- when every reference of the chunk is known, the row groups of every write are built.

The flush uses what was prepared only for the chunk's first try, and only while it still
holds the same records (none skipped by the idempotency ledger); isolation tries and
anything unresolved are computed in the flush, as before. On SQLite there is no round trip
to save, so nothing is selected ahead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._aggregate import Resolved, RowGroup, aggregate
from ._chunk import Chunk
from ._database import Session
from ._dialects import Dialect, ErrorKind, TableInfo
from ._lookups import Wanted, split_cached, wanted_refs
from ._writes import Lookup, Write

__all__ = ["Prepared", "Preparer"]

log = logging.getLogger("batchline")

# A lost connection (a restart, a failover) is not a reason to read ahead no more for the
# rest of a long load; the same failure on consecutive chunks is.
READER_GIVES_UP_AFTER = 3


@dataclass(slots=True)
class Prepared:
    """What the mapping thread worked out for one chunk."""

    good: list[int]  # the records that reached the flush (mapped without error), by index
    known: Resolved  # lookup values known to exist: from the cache or a read ahead
    fetched: Resolved  # of those, the ones read ahead (for the cache, once committed)
    groups: list[list[RowGroup]] | None  # per write, when every reference is known
    #: Per lookup, the distinct keys the records refer to (so the flush, when it must
    #: resolve them, does not go through the chunk's references again).
    wanted: Wanted | None = None


class Preparer:
    """Prepares chunks on the mapping thread (see the module's docstring)."""

    def __init__(
        self,
        *,
        writes: Sequence[Write],
        lookups: Sequence[Lookup],
        caches: dict[Lookup, Any],
        lookup_tables: dict[str, TableInfo],
        dialect: Dialect,
        reader: Session | None,
    ) -> None:
        self.writes = list(writes)
        self.lookups = list(lookups)
        self.caches = caches
        self.lookup_tables = lookup_tables
        self.dialect = dialect
        self.reader = reader
        self.reader_failures = 0

    def prepare(self, chunk: Chunk) -> Prepared:
        good = chunk.good
        rows = chunk.rows_for(good)
        known: Resolved = {}
        fetched: Resolved = {}
        complete = True
        wanted = wanted_refs(rows, self.lookups) if self.lookups else {}
        if wanted is None:  # the flush reports the stray lookup
            return Prepared(good, known, fetched, None)  # (wanted None: the flush re-finds)
        for lookup, refs_by_key in wanted.items():
            values, todo = split_cached(refs_by_key, self.caches[lookup].values)
            if todo:
                fetched[lookup] = ahead = self._read_ahead(lookup, todo)
                values.update(ahead)
                complete = complete and len(values) == len(refs_by_key)
            known[lookup] = values
        groups = None
        if complete:
            groups = [aggregate(w, rows[i], known) for i, w in enumerate(self.writes)]
        return Prepared(good, known, fetched, groups, wanted)

    def _read_ahead(self, lookup: Lookup, keys: list[tuple[Any, ...]]) -> dict[Any, Any]:
        reader = self.reader
        if reader is None:
            return {}
        t = self.lookup_tables[lookup.table]
        nkey = len(lookup.key)
        try:
            # autocommit: one round trip, and no snapshot or lock held between chunks
            rows = self.dialect.lookup_select(reader, t, lookup.key, lookup.returns, keys)
        except Exception as exc:  # only an optimisation: the flush will look them up
            reader.discard()  # the next chunk reconnects
            self.reader_failures += 1
            transient = self.dialect.classify(exc).kind is ErrorKind.TRANSIENT
            if not transient or self.reader_failures >= READER_GIVES_UP_AFTER:
                log.debug("reading lookups ahead stopped (%s); the flush looks them up", exc)
                self.reader = None
            return {}
        self.reader_failures = 0
        return {tuple(r[:nkey]): r[nkey] for r in rows}

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
