"""The job's life on the flush thread: from before its first chunk to after its last.

A run writes to its job's row at both ends, on the flush thread that owns its session:

- **start**: create the state tables and reflect the targets (a missing table is fatal),
  claim the job for this runner (the lock itself is taken by ``_job_lock``), then start the
  job's row, restart it, or resume it (refusing another source or spec), and build the
  :class:`~batchline._flush.Flusher` that commits the chunks;
- **end**: record how the job ended, or that it failed, and give the job back, then the
  connection (a connection lock must not return to the pool still held).

The Pipeline keeps the configuration and the run; this module keeps what happens to the job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ._database import Session, redact_url
from ._dialects import Dialect, ErrorKind, TableInfo
from ._errors import (
    BatchlineError,
    FatalDatabaseError,
    JobSpecMismatch,
    ResumeMismatch,
    TransientExhausted,
)
from ._flush import Flusher
from ._isolate import Isolation
from ._job_lock import JobLock, this_runner
from ._lookups import LookupCache
from ._payload import PayloadPolicy
from ._result import Result, Status
from ._retry import RetryPolicy, TransientFailure
from ._spec import spec_differences
from ._state import StateStore
from ._state_rows import JobState, to_json
from ._state_tables import StateTables
from ._writes import Lookup, Write

__all__ = ["FINISHED", "JobRun"]

log = logging.getLogger("batchline")

#: The statuses of a job that has nothing left to do (a later run only reports it).
FINISHED = ("success", "partial_success")


class JobRun:
    """One run's hold on its job row. Its methods run on the flush thread, which owns
    ``session``; ``lock`` is the job's lock, taken before :meth:`start`."""

    def __init__(
        self,
        name: str,
        *,
        engine: sa.Engine,
        dialect: Dialect,
        session: Session,
        lock: JobLock,
        state_tables: StateTables,
        retry: RetryPolicy,
        result: Result,
    ) -> None:
        self.name = name
        self.engine = engine
        self.dialect = dialect
        self.session = session
        self.lock = lock
        self.state_tables = state_tables
        self.retry = retry
        self.result = result

    def start(
        self,
        *,
        writes: Sequence[Write],
        lookups: Sequence[Lookup],
        namespace: str,
        isolation: Isolation,
        payload: PayloadPolicy,
        fingerprint: str | None,
        restart: bool,
        spec: Mapping[str, Any] | None,
    ) -> tuple[Flusher, JobState | None]:
        """Get the database ready and the job's row started; return the run's flusher and
        the job's state to resume from (None for a new or restarted job)."""
        name, result, session = self.name, self.result, self.session

        def before_sleep(state: Any) -> None:
            result.retries += 1
            log.warning(
                "job %s: database not ready (%s), retrying",
                name,
                state.outcome.exception() if state.outcome else "?",
            )

        try:
            for attempt in self.retry.retrying(before_sleep):
                with attempt:
                    tables = self._reflect(writes, lookups)
        except TransientFailure as exc:
            raise TransientExhausted(
                f"cannot reach {redact_url(self.engine)}: {exc}", code=exc.code, job=name
            ) from None
        state = StateStore(self.state_tables, self.dialect)
        flusher = Flusher(
            session=session,
            dialect=self.dialect,
            state=state,
            writes=writes,
            tables=tables,
            lookups=lookups,
            lookup_tables=tables,
            caches={lk: LookupCache(lk.cache_size) for lk in lookups},
            job=name,
            namespace=namespace,
            isolation=isolation,
            retry=self.retry,
            result=result,
            payload=payload,
        )
        spec_json = None if spec is None else to_json(dict(spec))
        try:
            for attempt in self.retry.retrying(before_sleep):
                with attempt:
                    job_state = self._start_job(state, fingerprint, restart, spec_json)
        except TransientFailure as exc:
            raise TransientExhausted(f"cannot start job {name!r}: {exc}", job=name) from None
        # _start_job returns no state for a new or restarted job: its counter starts at 0.
        flusher.transactions_base = 0 if job_state is None else job_state.chunks
        # read on the connection just used: the loop measures large records against it
        flusher.row_limit = self.dialect.row_limit(session)
        return flusher, job_state

    def _reflect(self, writes: Sequence[Write], lookups: Sequence[Lookup]) -> dict[str, TableInfo]:
        """Create the state tables and reflect the targets; a missing table is fatal."""
        engine, dialect, name = self.engine, self.dialect, self.name
        names = {w.table for w in writes} | {lk.table for lk in lookups}
        try:
            # The common case on one connection: the state tables are there (one catalog
            # query), then the targets. Creating any is done on the engine's own connections,
            # with this one given back first (a one-connection pool has no other).
            with engine.connect() as conn:
                ready = self.state_tables.ready(conn)
                tables = self._reflect_on(conn, names) if ready else {}
            if not ready:
                self.state_tables.create(engine)
                with engine.connect() as conn:
                    tables = self._reflect_on(conn, names)
        except BatchlineError:
            raise
        except sa.exc.DBAPIError as exc:
            c = dialect.classify(exc.orig if exc.orig is not None else exc)
            if c.kind is ErrorKind.TRANSIENT:
                raise TransientFailure(c.message, c.code, c.error_class) from None
            raise FatalDatabaseError(
                f"cannot prepare {redact_url(engine)}: {c.message}", code=c.code, job=name
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            raise FatalDatabaseError(f"cannot prepare {redact_url(engine)}: {exc}") from None
        return tables

    def _reflect_on(self, conn: sa.Connection, names: set[str]) -> dict[str, TableInfo]:
        tables: dict[str, TableInfo] = {}
        for table in names:
            try:
                tables[table] = self.dialect.reflect(conn, table)
            except sa.exc.NoSuchTableError:
                raise FatalDatabaseError(f"no such table: {table}", job=self.name) from None
        return tables

    def _start_job(
        self, state: StateStore, fingerprint: str | None, restart: bool, spec: str | None
    ) -> JobState | None:
        session, name, lock = self.session, self.name, self.lock
        session.begin()
        try:
            self.dialect.relax_commit(session)  # bookkeeping only
            runner = this_runner()
            state.claim_runner(
                session, lock.key, name, runner["host"], runner["pid"], runner["since"]
            )
            existing = state.get_job(session, name)
            if existing is not None and existing.status == "running" and not restart:
                # we hold the job, so whoever left it "running" is gone
                log.info("job %s: its last run was interrupted", name)
            if existing is None or restart:
                state.start_job(session, name, fingerprint, spec, reset=existing is not None)
            else:
                if existing.fingerprint != fingerprint and not (
                    existing.fingerprint is None or fingerprint is None
                ):
                    raise ResumeMismatch(name, existing.fingerprint, fingerprint)
                _check_spec(name, existing, fingerprint, spec)
                if existing.status not in FINISHED:
                    state.mark_running(session, name)
            session.commit()
        except Exception as exc:
            session.rollback()
            if isinstance(exc, BatchlineError):
                raise
            c = self.dialect.classify(exc)
            if c.kind is ErrorKind.TRANSIENT:
                session.discard()
                raise TransientFailure(c.message, c.code, c.error_class) from exc
            raise FatalDatabaseError(
                f"cannot start job {name!r}: {c.message}", code=c.code, job=name
            ) from exc
        return None if existing is None or restart else existing

    def finish(self, flusher: Flusher, status: Status) -> None:
        """Record the job's end and give the job back, in one transaction."""
        session, name = self.session, self.name
        try:
            for attempt in self.retry.retrying():
                with attempt:
                    try:
                        session.begin()
                        self.dialect.relax_commit(session)  # bookkeeping only
                        flusher.state.finish_job(session, name, status)
                        flusher.state.release_runner(session, self.lock.key)
                        session.commit()
                    except Exception as exc:
                        session.rollback()
                        flusher.applier.raise_for(exc, "recording the job's end")
        except TransientFailure as exc:
            # The data and checkpoint are committed; only the status is stale ("running"),
            # which a later run of the job treats as resumable.
            raise TransientExhausted(str(exc), code=exc.code, job=name) from exc

    def mark_failed(self) -> None:
        """Record that the run failed, if it holds the job."""
        session, lock = self.session, self.lock
        if not lock.held:
            return  # the job is another runner's, or nobody's: leave its row alone
        state = StateStore(self.state_tables, self.dialect)
        session.begin()
        self.dialect.relax_commit(session)  # bookkeeping only
        state.finish_job(session, self.name, "failed")
        state.release_runner(session, lock.key)
        session.commit()

    def release(self) -> None:
        """Give the job back, then the connection (a connection lock must not go back to the
        pool still held: the server would keep it for whoever borrows the connection next)."""
        session, lock = self.session, self.lock
        try:
            if lock.by_connection:
                session.rollback()  # nothing of a transaction rides on the unlock's commit
                if session.connected:
                    session.begin()  # pipelined where it can be: unlock and commit, one trip
                    lock.release(session, session.commit)
            else:
                lock.release(None)
        except Exception:
            session.discard()  # closing the connection drops its locks
        session.close()


def _check_spec(name: str, existing: JobState, fingerprint: str | None, spec: str | None) -> None:
    """Refuse to run a job again with a spec that loads something else than its own."""
    if spec is None or not existing.spec:
        return
    try:
        started = json.loads(existing.spec)
    except ValueError:
        return  # not written by batchline: nothing to hold the run to
    if not isinstance(started, dict):
        return
    differences = spec_differences(
        started,
        json.loads(spec),
        fingerprinted=existing.fingerprint is not None and fingerprint is not None,
    )
    if differences:
        raise JobSpecMismatch(name, differences)
