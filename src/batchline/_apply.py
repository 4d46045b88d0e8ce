"""One try: a batch of a chunk's records applied inside the chunk's transaction.

A try claims the batch's keys in the idempotency ledger, skipping the records whose key it
had already, resolves the batch's lookups (``_lookups``), sends each declared write's rows in
order (``_aggregate`` builds them; the dialect sends them), and gives back the claims of
records that did not land after all. While the chunk is being isolated each try runs under
a savepoint, so a failed try is undone alone, its claims with it, and the chunk still commits
once. A failure is translated once (``_failures``); a data failure carries the record the
database named, when it named one, for the isolation policy (``_isolate``) to go on from.

What a try learns on the way (the record named, the records left out of an insert) lives in
a :class:`Try`, one per try; what the transaction's successful tries did adds up in a
:class:`Tally`, which counts into the Result only once the chunk has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ._aggregate import Resolved, RowGroup, aggregate
from ._chunk import Chunk, Rows
from ._database import Session
from ._dialects import Dialect, ErrorKind, TableInfo
from ._failures import DataFailure, translate
from ._isolate import Isolation
from ._items import Failure
from ._lookups import Found, LookupResolver
from ._prepare import Prepared
from ._result import Result
from ._state import StateStore
from ._writes import Delete, Increment, Insert, Upsert, Write

__all__ = ["Applier", "Tally", "Try"]


@dataclass(slots=True)
class Tally:
    """What one transaction did (records by index), counted only once it has committed."""

    processed: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    failures: list[tuple[int, Failure]] = field(default_factory=list)
    lookups: Found = field(default_factory=dict)
    # The chunk's dead letters as stored (message scrubbed, payload JSON), in position order;
    # set by the bookkeeping, so what is reported is what was written.
    letters: list[tuple[int, Failure, str]] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        """Add what a successful try (a whole chunk, or a part under a savepoint) did."""
        self.processed.extend(other.processed)
        self.duplicates.extend(other.duplicates)
        self.failures.extend(other.failures)
        for lookup, values in other.lookups.items():
            self.lookups.setdefault(lookup, {}).update(values)

    def reset(self) -> None:
        self.processed, self.duplicates, self.failures, self.lookups = [], [], [], {}


@dataclass(slots=True)
class Try:
    """What one try learned while it ran."""

    #: The record the database named in this try's error.
    named: int | None = None
    #: Whether it was named by the first statement of the try to write its table (see
    #: ``DataFailure.only_earlier``).
    named_only_earlier: bool = False
    #: Records left out of an insert that went on without them (see ``Applier._leave_out``).
    aside: list[tuple[int, Failure]] = field(default_factory=list)


class Applier:
    """Applies batches inside the open transaction; the ``Committer`` isolation drives.

    The flush sets, per chunk, its records' rows (``rows``); per transaction, the
    :class:`Tally` its tries add to (``chunk``), the mapping thread's work for the chunk
    (``prepared``) and whether tries run under savepoints (``savepoints``).
    """

    def __init__(
        self,
        *,
        session: Session,
        dialect: Dialect,
        state: StateStore,
        writes: Sequence[Write],
        tables: dict[str, TableInfo],
        resolver: LookupResolver,
        isolation: Isolation,
        namespace: str,
        job: str,
        result: Result,
    ) -> None:
        self.session = session
        self.dialect = dialect
        self.state = state
        self.writes = list(writes)
        self.tables = tables
        self.resolver = resolver
        self.isolation = isolation
        self.namespace = namespace
        self.job = job
        self.result = result
        self.chunk = Tally()
        self.rows = Chunk(())
        self.prepared: Prepared | None = None
        self.savepoints = False
        #: Whether the previous chunk had bad records: data that was dirty tends to stay so,
        #: so this chunk's first try already inserts in the form that names a failing row.
        self.dirty = False
        # Per write, whether it is the first statement of a try to write its table (then only
        # earlier records' rows were there when one of its rows failed).
        created = {lk.table for lk in resolver.lookups if lk.create}
        self._first_to_write = [
            w.table not in created and all(e.table != w.table for e in self.writes[:i])
            for i, w in enumerate(self.writes)
        ]

    # -- the Committer interface ---------------------------------------------------------------
    def commit(self, batch: Sequence[int], end: int) -> None:
        """Apply ``batch`` inside the chunk's transaction (under a savepoint while isolating).

        Raises DataFailure, with the batch's writes undone, when a record's data is at fault.
        """
        session = self.session
        tally = Tally()
        now = Try()
        savepoint = self.savepoints
        where = "savepoint"
        try:
            if savepoint:
                session.execute("SAVEPOINT batchline_try")
            where = "idempotency ledger"
            live = claimed = self._claim(list(batch), tally)
            where = "lookup"
            prep = self.prepared if self.prepared and batch is self.prepared.good else None
            groups = None
            resolved: Resolved = {}
            rows = self.rows.rows_for(live)
            if prep is not None and prep.groups is not None and len(live) == len(batch):
                groups = prep.groups  # every reference known, no record skipped
                resolved = prep.known  # what they were built with (for rebuilding them)
                for lookup, values in prep.fetched.items():
                    tally.lookups.setdefault(lookup, {}).update(values)
            else:
                before = len(live)
                resolved, live = self.resolver.resolve(
                    session,
                    live,
                    rows,
                    tally.lookups,
                    tally.failures,
                    reuse=savepoint,
                    # the keys the read-ahead found in the same rows, when these are all
                    wanted=prep.wanted if prep is not None and len(live) == len(batch) else None,
                )
                if len(live) != before:
                    rows = self.rows.rows_for(live)
            # A pipelined statement's error reaches us at whichever later statement reads
            # results first. A one-record try is the one whose error becomes a dead letter,
            # so there each write is waited for, and the error names the write that failed.
            alone = len(batch) == 1
            left_out = 0
            for index, write in enumerate(self.writes):
                where = write.describe()
                built = None if groups is None else groups[index]
                self._apply_write(now, index, write, rows[index], resolved, built)
                if alone:
                    session.sync()
                if len(now.aside) > left_out:
                    # records left out of this write: none of their other writes may land
                    left_out = len(now.aside)
                    gone = {it for it, _ in now.aside}
                    live = [it for it in live if it not in gone]
                    rows = self.rows.rows_for(live)
                    groups = None  # built with them; aggregate again without
            tally.failures.extend(now.aside)
            where = "idempotency ledger"
            tally.processed = live
            if (keys := self.rows.keys) is not None and len(live) != len(claimed):
                # claimed, then left out (a failed lookup or insert): their keys go back
                landed = set(live)
                back = [k for i in claimed if i not in landed and (k := keys[i]) is not None]
                self.state.ledger_release(session, self.namespace, back)
            if savepoint:
                where = "savepoint"
                session.execute("RELEASE SAVEPOINT batchline_try")
                session.sync()
        except Exception as exc:
            if self.dialect.classify(exc).kind is not ErrorKind.DATA:
                self.raise_for(exc, where, now)
            if savepoint:
                try:
                    session.leave_pipeline(exc)
                    session.execute("ROLLBACK TO SAVEPOINT batchline_try")
                    session.enter_pipeline()
                    session.execute("RELEASE SAVEPOINT batchline_try")  # pipelined: no wait
                except Exception as exc2:
                    self.raise_for(exc2, "savepoint", now)
            self.raise_for(exc, where, now)
        self.chunk.merge(tally)

    def fail(self, item: int, exc: DataFailure) -> None:
        """Isolation found ``item`` bad on its own: it becomes a dead letter."""
        self.chunk.failures.append((item, Failure(exc.stage, exc.error_class, exc.message)))

    @property
    def positions(self) -> Sequence[int]:  # the chunk's, by index: where a part ends
        return self.rows.positions

    @property
    def locates_rows(self) -> bool:
        """Whether an isolation try can name its failing record: the dialect reports the
        failing row of an insert (PostgreSQL's COPY line, SQLite row by row), and the pipeline
        has inserts."""
        return self.dialect.locates_rows and any(isinstance(w, Insert) for w in self.writes)

    @property
    def locating(self) -> bool:
        """Whether inserts go in the form that names a failing row (while isolating, or
        after a chunk that needed isolation)."""
        return self.savepoints or self.dirty

    def raise_for(self, exc: BaseException, where: str, now: Try | None = None) -> NoReturn:
        """Raise what ``exc`` means (``_failures.translate``), with what the try knows."""
        translate(
            exc,
            where,
            dialect=self.dialect,
            session=self.session,
            job=self.job,
            named=now.named if now else None,
            located=self.locating and self.locates_rows,
            only_earlier=now.named_only_earlier if now else False,
        )

    # -- the steps ------------------------------------------------------------------------------
    def _claim(self, live: list[int], tally: Tally) -> list[int]:
        """Claim the records' idempotency keys in the ledger (``StateStore.ledger_claim``);
        the records whose key was there already, or taken by an earlier record of the try,
        are duplicates, and are left out."""
        keys = self.rows.keys  # (None: the run has no key function)
        if keys is None or not (wanted := {k for k in map(keys.__getitem__, live) if k}):
            return live
        seen = self.state.ledger_claim(self.session, self.namespace, self.job, wanted)
        kept: list[int] = []
        for item in live:
            key = keys[item]
            if key is not None:
                if key in seen:
                    tally.duplicates.append(item)
                    continue
                seen.add(key)
            kept.append(item)
        return kept

    def _apply_write(
        self,
        now: Try,
        index: int,
        write: Write,
        buffers: Sequence[Rows],
        resolved: Resolved,
        groups: list[RowGroup] | None = None,
    ) -> None:
        """Send ``write``'s rows (``buffers``, those of the try's records): the row groups
        built ahead when given, otherwise aggregated here with ``resolved``."""
        t = self.tables[write.table]
        if groups is None:
            groups = aggregate(write, buffers, resolved)
        first = self._first_to_write[index]
        leaving_out = self.locating and self.dialect.locates_rows and self.isolation.leaves_out
        for cols, rows, owners in groups:
            if not rows:
                continue
            try:
                if first and leaving_out and isinstance(write, Insert) and owners is not None:
                    self._insert_leaving_out(now, write, index, t, cols, rows, owners)
                else:
                    self._send(write, t, cols, rows)
            except Exception as exc:
                if self.locating and owners is not None:
                    now.named = self._named_item(exc, owners)
                    now.named_only_earlier = first
                raise
            first = False  # the next group's rows meet this one's in the table

    def _insert_leaving_out(
        self,
        now: Try,
        write: Insert,
        index: int,
        t: TableInfo,
        cols: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        owners: Sequence[int],
    ) -> None:
        """Insert ``rows`` (emitted by ``owners``), leaving out each failing row
        ``_leave_out`` accepts.

        SQLite keeps the rows before a failing one, so its insert just goes on. Elsewhere a
        failed insert (PostgreSQL's COPY) is all or nothing: each attempt runs under a
        savepoint. The first is the plain insert, unless the last chunk had bad records.
        After it fails, where the dialect stages rows (PostgreSQL), the rest go to the server once,
        which tries each row on its own and reports every row that failed
        (``Dialect.insert_staged``): one pass, whatever the number of bad rows. Otherwise
        the rows are sent again without the bad one: an insert per bad row.
        """
        d, session = self.dialect, self.session

        def leave_out(row: int, exc: BaseException) -> bool:
            return self._leave_out(now, write, index, owners[row], exc)

        if d.skips_rows:
            d.insert_skipping(session, t, cols, rows, leave_out)
            return
        keep = list(range(len(rows)))  # the rows still to send, by index in ``rows``
        staged: list[tuple[int, BaseException]] = []  # what the staged insert reported
        # after a chunk with bad records this one most likely has some too: straight to the
        # staged insert (a plain COPY would fail at its first bad row, after all was sent)
        stage = d.stages_rows and self.dirty and len(rows) > 1
        session.execute("SAVEPOINT batchline_rows")
        while keep:
            try:
                if stage:
                    staged = d.insert_staged(session, t, cols, [rows[i] for i in keep])
                else:
                    d.insert(session, t, cols, [rows[i] for i in keep], locate=True)
                break
            except Exception as exc:
                # (a value the column cannot take fails the staging COPY the same way)
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
                stage = d.stages_rows and len(keep) > 1
        session.enter_pipeline()
        session.execute("RELEASE SAVEPOINT batchline_rows")
        # The staged rows that failed, in order, each having met the rows before it that
        # landed: as the rows would fail one at a time. Those ``_leave_out`` takes stay out;
        # at the first it does not, the try fails there (the rows after it do not matter).
        for at, failure in staged:
            failure.batchline_failed_row = keep[at]  # type: ignore[attr-defined]
            if not leave_out(keep[at], failure):
                raise failure

    def _leave_out(
        self,
        now: Try,
        write: Write,
        index: int,
        item: int,
        exc: BaseException,
    ) -> bool:
        """``item``'s row of this insert failed, and the rows before it stayed (SQLite). If
        the record's data is at fault and this row is its first write in the try, the
        record is left out (its other writes are not sent) and the insert goes on.

        Only earlier records' rows were in the table (the first statement of the try to
        write it), so the record failed as it would one record at a time, provided those
        land: if anything later fails, the try is undone, guesses included. This is the
        set-aside search of ``Bisect`` without its tries.
        """
        c = self.dialect.classify(exc)
        if c.kind is not ErrorKind.DATA:
            return False
        if sum(1 for op in self.rows.ops_of(item) if op[0] <= index) != 1:
            return False  # it already wrote something this try
        now.aside.append(
            (item, Failure("write", c.error_class, f"{write.describe()}: {c.message}"))
        )
        return True

    def _named_item(self, exc: Exception, owners: Sequence[int]) -> int | None:
        """The record whose row the database named as failing (``owners[i]`` emitted row i)."""
        row_no = self.dialect.failed_row(exc)
        return owners[row_no] if row_no is not None and 0 <= row_no < len(owners) else None

    def _send(
        self, write: Write, t: TableInfo, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        d = self.dialect
        if isinstance(write, Insert):
            # while isolating, an insert that can name its failing row does (COPY's line)
            d.insert(self.session, t, cols, rows, locate=self.locating)
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
