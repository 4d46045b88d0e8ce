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

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

from ._aggregate import Resolved, RowGroup, aggregate
from ._database import Session
from ._dialects import Classified, Dialect, ErrorKind, RowLimit, TableInfo
from ._errors import FatalDatabaseError, JobLocked, TransientExhausted
from ._isolate import DataFailure, Isolation
from ._items import Failure, Item
from ._payload import PayloadPolicy
from ._prepare import Prepared, split_cached, wanted_refs
from ._result import FailedItem, Result
from ._retry import RetryPolicy, TransientFailure
from ._state import StateStore, to_json
from ._writes import Delete, Increment, Insert, Lookup, Ref, Upsert, Write
from .typing import ChunkCallback

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
    # The chunk's dead letters as stored (message scrubbed, payload JSON), in position order;
    # set by the bookkeeping, so what is reported is what was written.
    letters: list[tuple[Item, Failure, str]] = field(default_factory=list)

    def merge(self, other: _Tally) -> None:
        """Add what a successful try (a whole chunk, or a part under a savepoint) did."""
        self.processed.extend(other.processed)
        self.duplicates.extend(other.duplicates)
        self.failures.extend(other.failures)
        for lookup, values in other.lookups.items():
            self.lookups.setdefault(lookup, {}).update(values)

    def reset(self) -> None:
        self.processed, self.duplicates, self.failures, self.lookups = [], [], [], {}
        self.letters = []


@dataclass(slots=True)
class _Resolution:
    """One try's lookup resolution, reused by the transaction's later tries over a part of
    its records (isolation): the rows it found exist whatever those tries do. Only kept
    when the try created no lookup rows, which a rolled-back try would take away."""

    items: set[int]  # id() of the records it resolved
    resolved: Resolved
    failed: dict[int, Failure]  # id() -> why: records referring to a key with no row
    found: dict[Lookup, dict[tuple[Any, ...], Any]]  # rows its SELECTs found (for the cache)

    def covers(self, live: Sequence[Item]) -> bool:
        ids = self.items
        return all(id(it) in ids for it in live)


def _count_retry(result: Result, job: str, state: tenacity.RetryCallState) -> None:
    result.retries += 1
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "job %s: transient failure (%s), retry %d in %.2fs",
        job,
        exc,
        state.attempt_number,
        state.upcoming_sleep,
    )


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
        payload: PayloadPolicy | None = None,
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
        self.payload = payload or PayloadPolicy()  # what a dead letter keeps of its record
        # One Retrying for the run: tenacity's objects form reference cycles, and one per
        # chunk would leave garbage only the cyclic collector frees (see _gc.py).
        # (It must not refer back to the flusher either: that cycle would hold its last
        # chunk after the run.)
        self._retrying = retry.retrying(functools.partial(_count_retry, result, job))
        self.result = result
        #: The job's transaction counter when this run began (it counts across resumes).
        self.transactions_base = 0
        self._chunk = _Tally()  # what the chunk in flight has done so far
        # Lookup rows the open transaction's SELECTs found (never rows it created, which a
        # rolled-back try takes away): isolation's later tries need not ask again.
        self._existing: dict[Lookup, dict[tuple[Any, ...], Any]] = {}
        self._prepared: Prepared | None = None  # the mapping thread's work for this chunk
        self.on_chunk: ChunkCallback | None = None  # progress: after each committed chunk
        #: What one row may take on the session's database (set once connected; _sizes.py).
        self.row_limit: RowLimit | None = None
        self._savepoints = False  # whether tries run under a savepoint (while isolating)
        # Whether the previous chunk had bad records: data that was dirty tends to stay so,
        # so this chunk's first try already inserts in the form that names a failing row.
        self._dirty = False
        self._named: Item | None = None  # the record the database named in this try's error
        self._resolution: _Resolution | None = None  # this transaction's, to reuse
        # Records this try left out of an insert and went on without (see _leave_out).
        self._aside: list[tuple[Item, Failure]] = []
        self._created = False  # whether this try created lookup rows
        # ... and whether only earlier records' rows were in its table then (see
        # DataFailure.only_earlier): per write, whether it is the first to write its table.
        self._named_only_earlier = False
        created = {lk.table for lk in lookups if lk.create}
        self._first_to_write = [
            w.table not in created and all(e.table != w.table for e in self.writes[:i])
            for i, w in enumerate(self.writes)
        ]

    # -- the entry point ----------------------------------------------------------------------
    def flush(self, items: Sequence[Item], end: int, prepared: Prepared | None = None) -> None:
        """Handle a chunk whose last record has position ``end``: one transaction, committed
        once, in which each record lands or becomes a dead letter.

        Transient failures retry the whole chunk; an ambiguous COMMIT (the connection died
        after the server got it) is recognised by the job's transaction counter.
        """
        pre = [(it, it.failure) for it in items if it.failure is not None]
        good = prepared.good if prepared is not None else [it for it in items if not it.failure]
        self._prepared = prepared
        pending: list[_Tally] = []

        try:
            for attempt in self._retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1 and pending and self._landed(end):
                        log.warning("job %s: commit up to %d had landed", self.job, end)
                        break
                    pending[:] = [_Tally()]
                    self._chunk_transaction(good, pre, end, pending[0])
        except TransientFailure as exc:
            raise TransientExhausted(
                f"gave up after {self.retry.attempts} attempts: {exc}", code=exc.code, job=self.job
            ) from exc
        self._prepared = None
        self._apply(pending[0], end)

    def _chunk_transaction(
        self,
        good: Sequence[Item],
        pre: list[tuple[Item, Failure]],
        end: int,
        chunk: _Tally,
    ) -> None:
        session = self.session
        self._chunk = chunk
        self._savepoints = False
        try:
            self._existing = self._known_rows()
            self._resolution = None
            session.begin()
            try:
                self.commit(good, end)
                self._bookkeep(pre, chunk, end)
                session.commit()  # pipelined writes may only report a bad row here
                # records left out on the way (SQLite) are bad records all the same
                self._dirty = any(f.stage == "write" for _, f in chunk.failures)
                return
            except DataFailure as exc:
                bad = exc
            except Exception as exc:
                try:
                    self._raise_classified(exc, "commit")
                except DataFailure as exc2:
                    bad = exc2
            # A record is bad. Start the chunk again and find it, each try under a
            # savepoint, so the whole chunk still commits once (no fsync per try).
            session.rollback()
            chunk.reset()
            self._existing = self._known_rows()
            self._resolution = None
            session.begin()
            self._savepoints = True
            self.isolation.isolate(good, end, bad, self)
            self._bookkeep(pre, chunk, end)
            session.commit()
            self._dirty = True
        except (FatalDatabaseError, TransientFailure):
            session.rollback()
            raise
        except DataFailure as exc:  # after isolation: our bug, not the records'
            session.rollback()
            raise FatalDatabaseError(f"bookkeeping: {exc}", code=exc.code, job=self.job) from exc
        except Exception as exc:
            session.rollback()
            self._raise_classified(exc, "commit")
        finally:
            self._savepoints = False

    def _known_rows(self) -> dict[Lookup, dict[tuple[Any, ...], Any]]:
        """Lookup rows known to exist before the transaction: those the mapping thread
        found for this chunk (a fresh copy; the transaction adds what its SELECTs find)."""
        prepared = self._prepared
        if prepared is None:
            return {}
        return {lookup: dict(values) for lookup, values in prepared.known.items()}

    def _bookkeep(self, pre: list[tuple[Item, Failure]], chunk: _Tally, end: int) -> None:
        """Dead letters, replayed letters and the checkpoint, in the chunk's transaction."""
        failures = sorted([*pre, *chunk.failures], key=lambda f: f[0].position)
        letter = self.payload.letter
        chunk.letters = []
        for item, f in failures:
            message, payload = letter(item, f.message)
            chunk.letters.append((item, Failure(f.stage, f.error_class, message), to_json(payload)))
        self._write_dead_letters(chunk.letters, [*chunk.processed, *chunk.duplicates])
        self.state.advance(
            self.session,
            self.job,
            end,
            len(chunk.processed),
            len(failures),
            len(chunk.duplicates),
        )

    # -- the Committer interface the isolation policies drive ----------------------------------
    def commit(self, batch: Sequence[Item], end: int) -> None:
        """Apply ``batch`` inside the chunk's transaction (under a savepoint while isolating).

        Raises DataFailure, with the batch's writes undone, when a record's data is at fault.
        """
        session = self.session
        tally = _Tally()
        savepoint = self._savepoints
        self._named = None
        self._named_only_earlier = False
        self._aside = []
        where = "savepoint"
        try:
            if savepoint:
                session.execute("SAVEPOINT batchline_try")
            live = list(batch)
            where = "idempotency ledger"
            live = self._drop_duplicates(live, tally)
            where = "lookup"
            prep = self._prepared if self._prepared and batch is self._prepared.good else None
            groups = None
            resolved: Resolved = {}
            if prep is not None and prep.groups is not None and len(live) == len(batch):
                groups = prep.groups  # every reference known, no record skipped
                resolved = prep.known  # what they were built with (for rebuilding them)
                for lookup, values in prep.fetched.items():
                    tally.lookups.setdefault(lookup, {}).update(values)
            else:
                resolved, live = self._resolve(live, tally)
            # A pipelined statement's error reaches us at whichever later statement reads
            # results first. A one-record try is the one whose error becomes a dead letter,
            # so there each write is waited for, and the error names the write that failed.
            alone = len(batch) == 1
            left_out = 0
            for index, write in enumerate(self.writes):
                where = write.describe()
                self._apply_write(
                    index, write, live, resolved, None if groups is None else groups[index]
                )
                if alone:
                    session.sync()
                if len(self._aside) > left_out:
                    # records left out of this write: none of their other writes may land
                    left_out = len(self._aside)
                    gone = {id(it) for it, _ in self._aside}
                    live = [it for it in live if id(it) not in gone]
                    groups = None  # built with them; aggregate again without
            tally.failures.extend(self._aside)
            where = "idempotency ledger"
            tally.processed = live
            keys = [it.key for it in live if it.key is not None]
            self.state.ledger_add(session, self.namespace, self.job, keys)
            if savepoint:
                where = "savepoint"
                session.execute("RELEASE SAVEPOINT batchline_try")
                session.sync()
        except Exception as exc:
            c: Classified = self.dialect.classify(exc)
            if c.kind is not ErrorKind.DATA:
                self._raise_classified(exc, where)
            if savepoint:
                try:
                    session.leave_pipeline(exc)
                    session.execute("ROLLBACK TO SAVEPOINT batchline_try")
                    session.enter_pipeline()
                    session.execute("RELEASE SAVEPOINT batchline_try")  # pipelined: no wait
                except Exception as exc2:
                    self._raise_classified(exc2, "savepoint")
            self._raise_classified(exc, where)
        self._chunk.merge(tally)

    def fail(self, item: Item, exc: DataFailure) -> None:
        """Isolation found ``item`` bad on its own: it becomes a dead letter."""
        self._chunk.failures.append((item, Failure(exc.stage, exc.error_class, exc.message)))

    @property
    def _locating(self) -> bool:
        """Whether inserts go in the form that names a failing row (while isolating, or
        after a chunk that needed isolation)."""
        return self._savepoints or self._dirty

    @property
    def locates_rows(self) -> bool:
        """Whether an isolation try can name its failing record: the dialect reports the
        failing row of an insert (PostgreSQL's COPY line, SQLite row by row), and the pipeline
        has inserts."""
        return self.dialect.locates_rows and any(isinstance(w, Insert) for w in self.writes)

    def _expected_transactions(self) -> int:
        return self.transactions_base + self.result.chunks_committed + 1

    def _landed(self, end: int) -> bool:
        """After a failed try: whether its COMMIT landed anyway (the reply was lost).

        The job's checkpoint tells: one more transaction than before this chunk, ending at
        ``end``, is this chunk's; as many as before, nothing landed. Anything else means
        another runner moved the job while this run's connection was down, and took its lock
        (see batchline._job_lock): this run must not go on from what it believed.
        """
        try:
            chunks, position = self.state.checkpoint(self.session, self.job)
        except Exception as exc:
            self._raise_classified(exc, "reading the checkpoint")
            raise  # pragma: no cover - _raise_classified always raises
        expected = self._expected_transactions()
        if chunks == expected and position == end:
            return True
        if chunks == expected - 1:
            return False
        raise JobLocked(
            self.job,
            message=f"job {self.job!r} moved while this run's connection was down (checkpoint "
            f"at record {position} after {chunks} transactions; this run expected {end} "
            f"after {expected}): another runner took it over; this run stops, and a later "
            "run resumes from the checkpoint",
        )

    def _apply(self, tally: _Tally, end: int) -> None:
        """Count a committed chunk into the Result, and log it: counts at INFO, and each
        dead letter at DEBUG (the only level whose lines carry record values)."""
        res = self.result
        res.chunks_committed += 1
        res.items_processed += len(tally.processed)
        res.duplicates_skipped += len(tally.duplicates)
        failed = []
        debug = log.isEnabledFor(logging.DEBUG)
        for item, failure, payload in tally.letters:
            res.items_failed += 1
            entry = FailedItem(
                item.position, item.line, failure.stage, failure.message, failure.error_class
            )
            failed.append(entry)
            res.add_failure(entry)
            if debug:
                log.debug(
                    "job %s: record %d (line %d) dead-lettered at stage %s: %s; payload %s",
                    self.job,
                    item.position,
                    item.line,
                    failure.stage,
                    failure.message,
                    payload,
                )
        res.records_seen += len(tally.processed) + len(tally.duplicates) + len(failed)
        log.info(
            "job %s: committed records up to %d: %d loaded, %d duplicates, %d dead-lettered",
            self.job,
            end,
            len(tally.processed),
            len(tally.duplicates),
            len(failed),
        )
        for lookup, values in tally.lookups.items():
            self.caches[lookup].update(values)
        if self.on_chunk is not None:
            self.on_chunk(res, failed)

    def _raise_classified(self, exc: BaseException, where: str) -> None:
        if isinstance(exc, (DataFailure, FatalDatabaseError, TransientFailure, JobLocked)):
            raise exc
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
                item=self._named,
                located=self._locating and self.locates_rows,
                only_earlier=self._named is not None and self._named_only_earlier,
            ) from exc
        raise FatalDatabaseError(
            f"{message} (stopping: this is not the records' fault)", code=c.code, job=self.job
        ) from exc

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

    def _resolve(self, live: list[Item], tally: _Tally) -> tuple[Resolved, list[Item]]:
        """Resolve every Ref of the batch, one lookup at a time, in one or two statements.

        Returns each lookup's key → value map for this try, and the records that can be
        written: those referring to a key with no row (that may not be created) fail at
        stage ``lookup``.
        """
        resolved: Resolved = {}
        if not self.lookups:
            return resolved, live
        memo = self._resolution
        if memo is not None and memo.covers(live):
            for lookup, values in memo.found.items():
                tally.lookups.setdefault(lookup, {}).update(values)
            if not memo.failed:
                return memo.resolved, live
            gone = memo.failed
            tally.failures.extend((it, gone[id(it)]) for it in live if id(it) in gone)
            return memo.resolved, [it for it in live if id(it) not in gone]
        self._created = False
        wanted = wanted_refs(live, self.lookups)
        if wanted is None:
            stray = next(
                r.lookup for it in live for r in it.refs or () if r.lookup not in self.lookups
            )
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
                    tally.lookups.setdefault(lookup, {}).update(seen)
                    todo = [k for k in todo if k not in seen]
            if todo:
                found = self._lookup_fetch(lookup, todo, refs_by_key)
                values.update(found)
                tally.lookups.setdefault(lookup, {}).update(found)
                missing = missing or len(found) < len(todo)
            resolved[lookup] = values
        kept: list[Item] = live
        failed: dict[int, Failure] = {}
        if missing:
            kept = []
            for item in live:
                bad = None
                for r in item.refs or ():
                    if r.key not in resolved[r.lookup]:
                        bad = r
                        break
                if bad is None:
                    kept.append(item)
                    continue
                named = ", ".join(f"{c}={v!r}" for c, v in zip(bad.lookup.key, bad.key))
                why = Failure("lookup", "LookupMissing", f"no {bad.lookup.table} row with {named}")
                failed[id(item)] = why
                tally.failures.append((item, why))
        if self._savepoints and not self._created:
            rows = {lookup: dict(values) for lookup, values in tally.lookups.items()}
            self._resolution = _Resolution({id(it) for it in live}, resolved, failed, rows)
        return resolved, kept

    def _lookup_fetch(
        self, lookup: Lookup, keys: list[tuple[Any, ...]], refs: dict[tuple[Any, ...], Ref]
    ) -> dict[tuple[Any, ...], Any]:
        t = self.lookup_tables[lookup.table]
        nkey = len(lookup.key)
        rows = self.dialect.lookup_select(self.session, t, lookup.key, lookup.returns, keys)
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
        resolved: Resolved,
        groups: list[RowGroup] | None = None,
    ) -> None:
        """Send ``write``'s rows for ``live``: the row groups built ahead when given,
        otherwise aggregated here with ``resolved``."""
        t = self.tables[write.table]
        if groups is None:
            groups = aggregate(write, index, live, resolved)
        first = self._first_to_write[index]
        for cols, rows in groups:
            if not rows:
                continue
            try:
                if first and isinstance(write, Insert) and self._leaving_out:
                    self._insert_leaving_out(write, index, t, cols, rows, live)
                else:
                    self._send(write, t, cols, rows)
            except Exception as exc:
                if self._locating and isinstance(write, Insert):
                    self._named = self._named_item(exc, index, cols, live)
                    self._named_only_earlier = first
                raise
            first = False  # the next group's rows meet this one's in the table

    @property
    def _leaving_out(self) -> bool:
        """Whether an insert may leave out a failing record and go on (see _leave_out)."""
        return self._locating and self.dialect.locates_rows and self.isolation.name == "bisect"

    def _insert_leaving_out(
        self,
        write: Insert,
        index: int,
        t: TableInfo,
        cols: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        live: Sequence[Item],
    ) -> None:
        """Insert ``rows``, leaving out each failing row ``_leave_out`` accepts.

        SQLite keeps the rows before a failing one, so its insert just goes on. Elsewhere a
        failed insert (PostgreSQL's COPY) is all or nothing: each attempt runs under a
        savepoint, and after a failure the rows are sent again without the bad one. That
        costs a COPY per bad row, not a whole try of the chunk.
        """
        d, session = self.dialect, self.session

        def leave_out(row: int, exc: BaseException) -> bool:
            return self._leave_out(write, index, cols, live, row, exc)

        if d.skips_rows:
            d.insert_skipping(session, t, cols, rows, leave_out)
            return
        keep = list(range(len(rows)))  # the rows still to send, by index in ``rows``
        session.execute("SAVEPOINT batchline_rows")
        while keep:
            try:
                d.insert(session, t, cols, [rows[i] for i in keep], locate=True)
                break
            except Exception as exc:
                at = d.failed_row(exc)
                if at is None or at >= len(keep):
                    raise
                exc.batchline_failed_row = keep[at]  # type: ignore[attr-defined]
                if not leave_out(keep[at], exc):
                    raise
                # out of the pipeline until done: the next COPY would only leave it again,
                # which waits for a round trip
                session.leave_pipeline(exc)
                session.execute("ROLLBACK TO SAVEPOINT batchline_rows")  # it stays, for the next
                del keep[at]
        session.enter_pipeline()
        session.execute("RELEASE SAVEPOINT batchline_rows")

    def _leave_out(
        self,
        write: Write,
        index: int,
        cols: tuple[str, ...],
        live: Sequence[Item],
        row: int,
        exc: BaseException,
    ) -> bool:
        """Row ``row`` of this insert failed, and the rows before it stayed (SQLite). If its
        record's data is at fault and this row is the record's first write in the try, the
        record is left out (its other writes are not sent) and the insert goes on.

        Only earlier records' rows were in the table (the first statement of the try to
        write it), so the record failed as it would one record at a time, provided those
        land: if anything later fails, the try is undone, guesses included. This is the
        set-aside search of ``Bisect`` without its tries.
        """
        c = self.dialect.classify(exc)
        if c.kind is not ErrorKind.DATA:
            return False
        item = self._item_of_row(index, cols, live, row)
        if item is None or sum(1 for op in item.ops if op[0] <= index) != 1:
            return False  # not found, or it already wrote something this try
        self._aside.append(
            (item, Failure("write", c.error_class, f"{write.describe()}: {c.message}"))
        )
        return True

    def _named_item(
        self, exc: Exception, index: int, cols: tuple[str, ...], live: Sequence[Item]
    ) -> Item | None:
        """The record whose row the database named as failing (rows went in item order)."""
        row_no = self.dialect.failed_row(exc)
        return None if row_no is None else self._item_of_row(index, cols, live, row_no)

    @staticmethod
    def _item_of_row(
        index: int, cols: tuple[str, ...], live: Sequence[Item], row_no: int
    ) -> Item | None:
        """The record whose row is ``row_no`` of write ``index``'s rows with ``cols``."""
        seen = 0
        for item in live:
            for idx, columns, _values in item.ops:
                if idx == index and columns == cols:
                    if seen == row_no:
                        return item
                    seen += 1
        return None

    def _send(
        self, write: Write, t: TableInfo, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        d = self.dialect
        if isinstance(write, Insert):
            # while isolating, an insert that can name its failing row does (COPY's line)
            d.insert(self.session, t, cols, rows, locate=self._locating)
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
        self, letters: list[tuple[Item, Failure, str]], landed: Sequence[Item]
    ) -> None:
        new = []
        again = []
        for item, f, payload in letters:
            if item.dead_letter_id is not None:
                # a replayed letter keeps the payload it has; only the reason is new
                again.append((item.dead_letter_id, f.stage, f.error_class, f.message))
            else:
                new.append(
                    (
                        item.position,
                        item.line,
                        f.stage,
                        f.error_class,
                        f.message,
                        payload,
                        item.attempts,
                    )
                )
        self.state.add_dead_letters(self.session, self.job, new)
        self.state.retry_dead_letters(self.session, again)
        replayed = [it.dead_letter_id for it in landed if it.dead_letter_id is not None]
        if replayed:
            self.state.delete_dead_letters(self.session, replayed)
