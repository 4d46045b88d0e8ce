"""One chunk → one transaction: lookups, writes, ledger, dead letters, checkpoint, commit.

The order inside the transaction is fixed (DESIGN.md, "flush"): idempotency check →
resolve lookups → writes in declared order → ledger keys → dead letters → job position →
commit. Nothing of a batch is visible until all of it is, and the bookkeeping can never
disagree with the data because it commits with it.

A failing transaction is classified once, here, through the dialect: transient failures
are retried (tenacity); data failures are handed to the isolation policy; fatal ones stop
the run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

from ._aggregate import aggregate
from ._database import Session
from ._dialects import Classified, Dialect, ErrorKind, TableInfo
from ._errors import FatalDatabaseError, TransientExhausted
from ._isolate import DataFailure, Isolation
from ._items import Failure, Item
from ._result import FailedItem, Result
from ._retry import RetryPolicy, TransientFailure
from ._state import StateStore, to_json
from ._writes import Delete, Increment, Insert, Lookup, Ref, Upsert, Write

__all__ = ["Flusher", "LookupCache"]

log = logging.getLogger("batchline")


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


@dataclass(slots=True)
class _Tally:
    """What one transaction did, applied to the Result only once it has committed."""

    processed: list[Item] = field(default_factory=list)
    duplicates: list[Item] = field(default_factory=list)
    failures: list[tuple[Item, Failure]] = field(default_factory=list)
    lookups: dict[Lookup, dict[tuple[Any, ...], Any]] = field(default_factory=dict)


class Flusher:
    """Flushes chunks for one run. Lives on the flush thread; owns the run's session."""

    def __init__(
        self,
        *,
        session: Session,
        dialect: Dialect,
        state: StateStore,
        writes: Sequence[Write],
        tables: dict[str, TableInfo],
        lookups: Sequence[Lookup],
        lookup_tables: dict[str, TableInfo],
        caches: dict[Lookup, LookupCache],
        job: str,
        namespace: str,
        isolation: Isolation,
        retry: RetryPolicy,
        result: Result,
    ) -> None:
        self.session = session
        self.dialect = dialect
        self.state = state
        self.writes = list(writes)
        self.tables = tables
        self.lookups = list(lookups)
        self.lookup_tables = lookup_tables
        self.caches = caches
        self.job = job
        self.namespace = namespace
        self.isolation = isolation
        self.retry = retry
        self.result = result
        self._carry: list[tuple[Item, Failure]] = []  # failures awaiting a transaction
        #: The job's transaction counter when this run began (it counts across resumes).
        self.transactions_base = 0
        self._committed_end = 0

    # -- the entry point ----------------------------------------------------------------------
    def flush(self, items: Sequence[Item], end: int) -> None:
        """Handle a chunk whose last record has position ``end``; each record lands or fails."""
        good: list[Item] = []
        for item in items:
            if item.failure is not None:
                self._carry.append((item, item.failure))
            else:
                good.append(item)
        try:
            self.commit(good, end)
        except DataFailure as exc:
            self.isolation.isolate(good, end, exc, self)
        if self._carry or self._committed_end < end:
            self.commit([], end)  # dead letters of the chunk's tail, and the checkpoint

    def fail(self, item: Item, exc: DataFailure) -> None:
        """Isolation found ``item`` bad on its own: it becomes a dead letter."""
        self._carry.append((item, Failure(exc.stage, exc.error_class, exc.message)))

    # -- one transaction, retried -------------------------------------------------------------
    def commit(self, batch: Sequence[Item], end: int) -> None:
        """Commit ``batch`` and the due dead letters, advancing the checkpoint to ``end``.

        Raises DataFailure when a record's data is at fault (the caller isolates).
        """
        due = [(it, f) for it, f in self._carry if it.position <= end]
        pending: list[_Tally] = []

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.result.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "job %s: transient failure (%s), retry %d in %.2fs",
                self.job,
                exc,
                state.attempt_number,
                state.upcoming_sleep,
            )

        try:
            for attempt in self.retry.retrying(before_sleep):
                with attempt:
                    # The last attempt may have committed before the connection died (an
                    # ambiguous COMMIT): the job's transaction counter tells.
                    if (
                        attempt.retry_state.attempt_number > 1
                        and pending
                        and self._transactions() >= self._expected_transactions()
                    ):
                        log.warning("job %s: commit up to %d had landed", self.job, end)
                        break
                    pending[:] = [_Tally()]
                    self._transaction(batch, due, end, pending[0])
        except TransientFailure as exc:
            raise TransientExhausted(
                f"gave up after {self.retry.attempts} attempts: {exc}", code=exc.code, job=self.job
            ) from exc
        self._apply(pending[0], due, end)

    def _expected_transactions(self) -> int:
        return self.transactions_base + self.result.chunks_committed + 1

    def _transactions(self) -> int:
        try:
            return self.state.transactions(self.session, self.job)
        except Exception as exc:
            self._raise_classified(exc, "reading the checkpoint")
            raise  # pragma: no cover - _raise_classified always raises

    def _apply(self, tally: _Tally, due: list[tuple[Item, Failure]], end: int) -> None:
        res = self.result
        res.chunks_committed += 1
        res.items_processed += len(tally.processed)
        res.duplicates_skipped += len(tally.duplicates)
        written = {id(it) for it, _ in due}
        self._carry = [(it, f) for it, f in self._carry if id(it) not in written]
        for item, failure in [*due, *tally.failures]:
            res.items_failed += 1
            res.add_failure(
                FailedItem(
                    item.position, item.line, failure.stage, failure.message, failure.error_class
                )
            )
            log.warning(
                "job %s: record %d (line %d) dead-lettered at stage %s: %s",
                self.job,
                item.position,
                item.line,
                failure.stage,
                failure.message,
            )
        res.records_seen += (
            len(tally.processed) + len(tally.duplicates) + len(due) + len(tally.failures)
        )
        for lookup, values in tally.lookups.items():
            self.caches[lookup].update(values)
        self._committed_end = max(self._committed_end, end)

    def _raise_classified(self, exc: BaseException, where: str) -> None:
        c: Classified = self.dialect.classify(exc)
        message = f"{where}: {c.message}" if where else c.message
        if c.kind is ErrorKind.TRANSIENT:
            self.session.discard()
            raise TransientFailure(message, c.code, c.error_class) from exc
        if c.kind is ErrorKind.DATA:
            raise DataFailure(
                message,
                c.error_class,
                c.code,
                stage="lookup" if where.startswith("lookup") else "write",
            ) from exc
        raise FatalDatabaseError(
            f"{message} (stopping: this is not the records' fault)", code=c.code, job=self.job
        ) from exc

    def _transaction(
        self, batch: Sequence[Item], due: list[tuple[Item, Failure]], end: int, tally: _Tally
    ) -> None:
        session = self.session
        where = "begin"
        try:
            session.begin()
            live = list(batch)
            where = "idempotency ledger"
            live = self._drop_duplicates(live, tally)
            where = "lookup"
            resolved, live = self._resolve(live, tally)
            for index, write in enumerate(self.writes):
                where = write.describe()
                self._apply_write(index, write, live, resolved)
            where = "bookkeeping"
            tally.processed = live
            keys = [it.key for it in live if it.key is not None]
            self.state.ledger_add(session, self.namespace, self.job, keys)
            self._write_dead_letters([*due, *tally.failures], [*live, *tally.duplicates])
            self.state.advance(
                session,
                self.job,
                end,
                len(live),
                len(due) + len(tally.failures),
                len(tally.duplicates),
            )
            where = "commit"
            session.commit()
        except (DataFailure, FatalDatabaseError, TransientFailure):
            session.rollback()
            raise
        except Exception as exc:
            session.rollback()
            self._raise_classified(exc, where)

    # -- the steps ------------------------------------------------------------------------------
    def _drop_duplicates(self, live: list[Item], tally: _Tally) -> list[Item]:
        keys = [it.key for it in live if it.key is not None]
        if not keys:
            return live
        seen = self.state.ledger_existing(self.session, self.namespace, sorted(set(keys)))
        kept: list[Item] = []
        for item in live:
            if item.key is not None:
                if item.key in seen:
                    tally.duplicates.append(item)
                    continue
                seen.add(item.key)
            kept.append(item)
        return kept

    def _resolve(
        self, live: list[Item], tally: _Tally
    ) -> tuple[dict[Lookup, dict[tuple[Any, ...], Any]], list[Item]]:
        """Resolve every Ref of the batch, one lookup at a time, in one or two statements."""
        resolved: dict[Lookup, dict[tuple[Any, ...], Any]] = {}
        if not self.lookups:
            return resolved, live
        wanted: dict[Lookup, dict[tuple[Any, ...], Ref]] = {lk: {} for lk in self.lookups}
        for item in live:
            if not item.has_refs:
                continue
            for _, row in item.ops:
                for v in row.values():
                    if isinstance(v, Ref):
                        per = wanted.get(v.lookup)
                        if per is None:
                            raise FatalDatabaseError(
                                f"the mapping referred to {v.lookup!r}, which is not among the "
                                "pipeline's lookups",
                                job=self.job,
                            )
                        per.setdefault(v.key, v)  # the first record's values create the row
        missing_keys: set[tuple[Lookup, tuple[Any, ...]]] = set()
        for lookup, refs in wanted.items():
            if not refs:
                continue
            cache = self.caches[lookup].values
            values: dict[tuple[Any, ...], Any] = {}
            todo = []
            for key in refs:
                hit = cache.get(key, _MISSING)
                if hit is _MISSING:
                    todo.append(key)
                else:
                    values[key] = hit
            if todo:
                found = self._lookup_fetch(lookup, todo, refs)
                values.update(found)
                tally.lookups[lookup] = found
                for key in todo:
                    if key not in found:
                        missing_keys.add((lookup, key))
            resolved[lookup] = values
        if not missing_keys:
            return resolved, live
        kept: list[Item] = []
        for item in live:
            bad = self._missing_ref(item, missing_keys)
            if bad is None:
                kept.append(item)
            else:
                named = ", ".join(f"{c}={v!r}" for c, v in zip(bad.lookup.key, bad.key))
                tally.failures.append(
                    (
                        item,
                        Failure(
                            "lookup", "LookupMissing", f"no {bad.lookup.table} row with {named}"
                        ),
                    )
                )
        return resolved, kept

    @staticmethod
    def _missing_ref(item: Item, missing: set[tuple[Lookup, tuple[Any, ...]]]) -> Ref | None:
        if not item.has_refs:
            return None
        for _, row in item.ops:
            for v in row.values():
                if isinstance(v, Ref) and (v.lookup, v.key) in missing:
                    return v
        return None

    def _lookup_fetch(
        self, lookup: Lookup, keys: list[tuple[Any, ...]], refs: dict[tuple[Any, ...], Ref]
    ) -> dict[tuple[Any, ...], Any]:
        t = self.lookup_tables[lookup.table]
        nkey = len(lookup.key)
        rows = self.dialect.lookup_select(self.session, t, lookup.key, lookup.returns, keys)
        found = {tuple(r[:nkey]): r[nkey] for r in rows}
        if not lookup.create:
            return found
        absent = [k for k in keys if k not in found]
        if not absent:
            return found
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for key in absent:
            values = dict(zip(lookup.key, key))
            for c, v in refs[key].values.items():
                values.setdefault(c, v)
            groups.setdefault(tuple(values), []).append(tuple(values.values()))
        for cols, rows_ in groups.items():
            returned = self.dialect.lookup_insert(
                self.session, t, lookup.key, cols, lookup.returns, rows_
            )
            if returned is not None:
                found.update({tuple(r[:nkey]): r[nkey] for r in returned})
        still = [k for k in absent if k not in found]
        if still:  # created concurrently by someone else, or a driver without RETURNING
            rows = self.dialect.lookup_select(self.session, t, lookup.key, lookup.returns, still)
            found.update({tuple(r[:nkey]): r[nkey] for r in rows})
        return found

    def _apply_write(
        self,
        index: int,
        write: Write,
        live: Sequence[Item],
        resolved: dict[Lookup, dict[tuple[Any, ...], Any]],
    ) -> None:
        def resolve(ref: Ref) -> Any:
            return resolved[ref.lookup][ref.key]

        t = self.tables[write.table]
        d = self.dialect
        for cols, rows in aggregate(write, index, live, resolve):
            if not rows:
                continue
            if isinstance(write, Insert):
                d.insert(self.session, t, cols, rows)
            elif isinstance(write, Upsert):
                update = (
                    [c for c in cols if c not in write.key]
                    if write.update is None
                    else [c for c in write.update if c in cols]
                )
                d.upsert(self.session, t, write.key, cols, update, rows)
            elif isinstance(write, Increment):
                d.increment(self.session, t, write.key, cols, write.columns, rows, write.create)
            elif isinstance(write, Delete):
                d.delete(self.session, t, write.key, rows)

    def _write_dead_letters(
        self, failures: list[tuple[Item, Failure]], landed: Sequence[Item]
    ) -> None:
        new = []
        again = []
        for item, f in failures:
            if item.dead_letter_id is not None:
                again.append((item.dead_letter_id, f.stage, f.error_class, f.message))
            else:
                new.append(
                    (
                        item.position,
                        item.line,
                        f.stage,
                        f.error_class,
                        f.message,
                        to_json(item.record),
                        item.attempts,
                    )
                )
        self.state.add_dead_letters(self.session, self.job, new)
        self.state.retry_dead_letters(self.session, again)
        replayed = [it.dead_letter_id for it in landed if it.dead_letter_id is not None]
        if replayed:
            self.state.delete_dead_letters(self.session, replayed)


_MISSING: Any = object()
