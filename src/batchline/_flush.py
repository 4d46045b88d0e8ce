"""One chunk → one transaction: ledger, lookups, writes, dead letters, checkpoint, commit.

The order inside the transaction is fixed (DESIGN.md, "flush"): ledger claim (which also
finds the duplicates) → resolve lookups → writes in declared order → claims given back by
records that failed → dead letters → job position → commit. Nothing of a batch is visible
until all of it is, and the bookkeeping can never disagree with the data because it commits
with it.

The writing itself is one try of ``_apply``; this module holds what is around it: the
transaction, retrying it when a failure is transient (tenacity), handing it to the isolation
policy (``_isolate``) when a record's data is at fault, recognising a COMMIT that landed
although its reply was lost, and counting the chunk into the Result once it has committed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import tenacity

from ._apply import Applier, Tally
from ._arrow_write import ArrowPart, ArrowWriter
from ._chunk import Chunk
from ._copy_isolation import rows_left_out
from ._database import Session
from ._dialects import Dialect, ErrorKind, RowLimit, TableInfo
from ._errors import FatalDatabaseError, JobLocked, TransientExhausted
from ._failures import DataFailure
from ._isolate import Isolation
from ._items import Failure
from ._lookups import LookupCache, LookupResolver
from ._payload import PayloadPolicy
from ._prepare import Prepared
from ._result import FailedItem, Result
from ._retry import RetryPolicy, TransientFailure
from ._state import StateStore
from ._state_rows import key_hash, to_json
from ._writes import Lookup, Write
from .typing import ChunkCallback

__all__ = ["Flusher"]

log = logging.getLogger("batchline")

_EMPTY = Chunk(())  # between chunks: the last one's rows are not kept


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
        self.state = state
        self.caches = caches
        self.lookup_tables = lookup_tables
        self.job = job
        self.isolation = isolation
        self.retry = retry
        self.payload = payload or PayloadPolicy()  # what a dead letter keeps of its record
        self.result = result
        self.resolver = LookupResolver(
            dialect=dialect, lookups=lookups, tables=lookup_tables, caches=caches, job=job
        )
        self.applier = Applier(
            session=session,
            dialect=dialect,
            state=state,
            writes=writes,
            tables=tables,
            resolver=self.resolver,
            isolation=isolation,
            namespace=namespace,
            job=job,
            result=result,
        )
        # One Retrying for the run: tenacity's objects form reference cycles, and one per
        # chunk would leave garbage only the cyclic collector frees (see _gc.py).
        # (It must not refer back to the flusher either: that cycle would hold its last
        # chunk after the run.)
        self._retrying = retry.retrying(functools.partial(_count_retry, result, job))
        #: The job's transaction counter when this run began (it counts across resumes).
        self.transactions_base = 0
        self.on_chunk: ChunkCallback | None = None  # progress: after each committed chunk
        #: What one row may take on the session's database (set once connected; _sizes.py).
        self.row_limit: RowLimit | None = None
        #: How columnar chunks are sent, when the run has them (set by the run loop).
        self.arrow_writer: ArrowWriter | None = None
        #: Core hook (streams): ``letter_key(position)``, the ledger key a dead letter of
        #: the record at ``position`` holds (a RabbitMQ message's), or None; see
        #: :meth:`_letters_once`.
        self.letter_key: Callable[[int], Any] | None = None

    # -- the entry point ----------------------------------------------------------------------
    def flush(self, chunk: Chunk, end: int, prepared: Prepared | None = None) -> None:
        """Handle a (sealed) chunk whose last record has position ``end``: one transaction,
        committed once, in which each record lands or becomes a dead letter.

        Transient failures retry the whole chunk; an ambiguous COMMIT (the connection died
        after the server got it) is recognised by the job's checkpoint.

        A columnar chunk (``chunk.arrow``) is sent in bulk; if its data fails that, or the
        chunk before had bad records, the same records go the row path below
        (``batchline._arrow_write``).
        """
        part = chunk.arrow
        if part is not None:
            # After a chunk with bad records the next one likely has some too (the row
            # path's ``dirty``): it goes as rows straight away, not in bulk first.
            if not self.applier.dirty and self._flush_arrow(part, end):
                return
            chunk, prepared = part.as_rows(), None
        pre = sorted(chunk.failures.items())  # (index, why) of records failed before the flush
        good = prepared.good if prepared is not None else chunk.good
        self.applier.prepared = prepared
        self.applier.rows = chunk
        pending: list[Tally] = []

        try:
            for attempt in self._retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1 and pending and self._landed(end):
                        log.warning("job %s: commit up to %d had landed", self.job, end)
                        break
                    pending[:] = [Tally()]
                    self._chunk_transaction(good, pre, end, pending[0])
        except TransientFailure as exc:
            raise TransientExhausted(
                f"gave up after {self.retry.attempts} attempts: {exc}", code=exc.code, job=self.job
            ) from exc
        self.applier.prepared = None
        self.applier.rows = _EMPTY
        self._count(pending[0], end, chunk)

    def _flush_arrow(self, part: ArrowPart, end: int) -> bool:
        """Send a columnar chunk in bulk in one transaction with its checkpoint; False when
        the database refused its data (rolled back: the caller sends it as rows).

        Retried and recognised after an ambiguous COMMIT as :meth:`flush` does; a fatal
        error stops the run as there.
        """
        writer = self.arrow_writer
        assert writer is not None, "a columnar chunk without the run's ArrowWriter"
        session = self.session
        n = len(part)
        tally, landed = Tally(), n
        rows = dead = part.dead_letters()
        self.applier.rows = dead
        tried = False
        try:
            for attempt in self._retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1 and tried and self._landed(end):
                        log.warning("job %s: commit up to %d had landed", self.job, end)
                        break
                    tried = True
                    try:
                        session.begin()
                        writer.send(session, part.data, part.wire)
                        # (a CSV chunk's unreadable and misfit records: dead letters here,
                        # built from a chunk of their own, with the rows the COPY left out)
                        tally, landed = Tally(), n - len(writer.left_out)
                        self.applier.rows = rows = dead
                        if writer.left_out:
                            rows = rows_left_out(self, part, writer.left_out, end, tally)
                        self._bookkeep(sorted(rows.failures.items()), tally, end, landed)
                        session.commit()
                    except Exception as exc:
                        session.rollback()
                        if self.applier.dialect.classify(exc).kind is ErrorKind.DATA:
                            log.info(
                                "job %s: records %d-%d refused in bulk (%s); sent as rows",
                                self.job,
                                part.first,
                                end,
                                self.applier.dialect.first_line(exc),
                            )
                            return False
                        self.applier.raise_for(exc, f"{writer.write.describe()} (bulk)")
        except TransientFailure as exc:
            raise TransientExhausted(
                f"gave up after {self.retry.attempts} attempts: {exc}", code=exc.code, job=self.job
            ) from exc
        self.applier.rows = _EMPTY
        self.applier.dirty = False  # a clean chunk, or one whose bad rows COPY named
        self._count(tally, end, rows, landed)
        return True

    def _chunk_transaction(
        self,
        good: Sequence[int],
        pre: list[tuple[int, Failure]],
        end: int,
        chunk: Tally,
    ) -> None:
        session, applier = self.session, self.applier
        known = applier.prepared.known if applier.prepared is not None else None
        applier.chunk = chunk
        applier.savepoints = False
        try:
            self.resolver.begin(known)
            session.begin()
            try:
                applier.commit(good, end)
                self._bookkeep(pre, chunk, end)
                session.commit()  # pipelined writes may only report a bad row here
                # records left out on the way (SQLite) are bad records all the same
                applier.dirty = any(f.stage == "write" for _, f in chunk.failures)
                return
            except DataFailure as exc:
                bad = exc
            except Exception as exc:
                try:
                    applier.raise_for(exc, "commit")
                except DataFailure as exc2:
                    bad = exc2
            # A record is bad. Start the chunk again and find it, each try under a
            # savepoint, so the whole chunk still commits once (no fsync per try).
            session.rollback()
            chunk.reset()
            self.resolver.begin(known)
            session.begin()
            applier.savepoints = True
            self.isolation.isolate(good, end, bad, applier)
            self._bookkeep(pre, chunk, end)
            session.commit()
            applier.dirty = True
        except (FatalDatabaseError, TransientFailure, JobLocked):
            session.rollback()
            raise
        except DataFailure as exc:  # after isolation: our bug, not the records'
            session.rollback()
            raise FatalDatabaseError(f"bookkeeping: {exc}", code=exc.code, job=self.job) from exc
        except Exception as exc:
            session.rollback()
            applier.raise_for(exc, "commit")
        finally:
            applier.savepoints = False

    def _bookkeep(
        self, pre: list[tuple[int, Failure]], chunk: Tally, end: int, landed: int = 0
    ) -> None:
        """Dead letters, replayed letters and the checkpoint, in the chunk's transaction:
        each failed record's letter built from the chunk's lists, for that record alone
        (``landed``: records a columnar chunk inserted in bulk)."""
        rows = self.applier.rows
        positions = rows.positions
        failures = sorted([*pre, *chunk.failures], key=lambda f: positions[f[0]])
        if self.letter_key is not None and failures:
            failures = self._letters_once(failures, positions, chunk)
        letter, ops_of, records = self.payload.letter, rows.ops_of, rows.records
        chunk.letters = []
        for item, f in failures:
            message, payload = letter(records[item], f.message, ops_of(item))
            chunk.letters.append((item, Failure(f.stage, f.error_class, message), to_json(payload)))
        self._write_dead_letters(rows, chunk.letters, [*chunk.processed, *chunk.duplicates])
        self.state.advance(
            self.session,
            self.job,
            end,
            len(chunk.processed) + landed,
            len(failures),
            len(chunk.duplicates),
        )

    def _letters_once(
        self, failures: list[tuple[int, Failure]], positions: Sequence[int], chunk: Tally
    ) -> list[tuple[int, Failure]]:
        """The failures whose message has no dead letter yet; the others are duplicates.

        A broker without an ordered position (RabbitMQ) delivers again a message whose
        chunk committed but whose acknowledgement was lost (a crash, a cut connection). Its
        good records are recognised by their ledger keys; so that a poison message is too,
        and not dead-lettered twice, each dead letter claims its message's key in the
        ledger, in the same transaction (``letter_key``: a key of its own, apart from the
        records' keys, so a corrected message under the same id still lands)."""
        letter_key = self.letter_key
        assert letter_key is not None
        keys: dict[int, str] = {}
        for item, _ in failures:
            key = letter_key(positions[item])
            if key is not None:
                keys[item] = key_hash(key)
        if not keys:
            return failures
        namespace = self.applier.namespace
        seen = self.state.ledger_claim(self.session, namespace, self.job, set(keys.values()))
        kept = []
        for item, failure in failures:
            key = keys.get(item)
            if key is not None:
                if key in seen:  # dead-lettered before, or earlier in this chunk
                    chunk.duplicates.append(item)
                    continue
                seen.add(key)
            kept.append((item, failure))
        return kept

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
            self.applier.raise_for(exc, "reading the checkpoint")
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

    def _count(self, tally: Tally, end: int, rows: Chunk = _EMPTY, landed: int = 0) -> None:
        """Count a committed chunk (its records ``rows``) into the Result, and log it: counts
        at INFO, and each dead letter at DEBUG (the only level whose lines carry record
        values). ``landed`` counts records a columnar chunk inserted in bulk."""
        res = self.result
        res.chunks_committed += 1
        res.items_processed += len(tally.processed) + landed
        res.duplicates_skipped += len(tally.duplicates)
        failed = []
        debug = log.isEnabledFor(logging.DEBUG)
        for item, failure, payload in tally.letters:
            res.items_failed += 1
            position, line = rows.positions[item], rows.lines[item]
            entry = FailedItem(position, line, failure.stage, failure.message, failure.error_class)
            failed.append(entry)
            res.add_failure(entry)
            if debug:
                log.debug(
                    "job %s: record %d (line %d) dead-lettered at stage %s: %s; payload %s",
                    self.job,
                    position,
                    line,
                    failure.stage,
                    failure.message,
                    payload,
                )
        res.records_seen += len(tally.processed) + landed + len(tally.duplicates) + len(failed)
        log.info(
            "job %s: committed records up to %d: %d loaded, %d duplicates, %d dead-lettered",
            self.job,
            end,
            len(tally.processed) + landed,
            len(tally.duplicates),
            len(failed),
        )
        for lookup, values in tally.lookups.items():
            self.caches[lookup].update(values)
        if self.on_chunk is not None:
            self.on_chunk(res, failed)

    def _write_dead_letters(
        self, rows: Chunk, letters: list[tuple[int, Failure, str]], landed: Sequence[int]
    ) -> None:
        new = []
        again = []
        replayed = rows.replayed
        for item, f, payload in letters:
            if item in replayed:
                # a replayed letter keeps the payload it has; only the reason is new
                # (and its attempts grow, in the statement)
                again.append((replayed[item], f.stage, f.error_class, f.message))
            else:
                new.append(
                    (
                        rows.positions[item],
                        rows.lines[item],
                        f.stage,
                        f.error_class,
                        f.message,
                        payload,
                        1,  # attempts
                    )
                )
        self.state.add_dead_letters(self.session, self.job, new)
        self.state.retry_dead_letters(self.session, again)
        if replayed:
            landed_ids = [replayed[it] for it in landed if it in replayed]
            if landed_ids:
                self.state.delete_dead_letters(self.session, landed_ids)
