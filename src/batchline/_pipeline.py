"""``Pipeline``: read → map (sequential) → collect → flush, with checkpoints and resume.

The mapping runs on the caller's thread, in input order. Flushes run on one worker thread
that owns the database session, so the mapping of chunk N+1 overlaps the flush of chunk N;
at most two chunks are in memory at once, so memory does not grow with the input.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from ._chunking import ChunkSizer
from ._database import Session, StatementListener, make_engine, redact_url
from ._dialects import Dialect, ErrorKind, TableInfo, dialect_for
from ._errors import (
    BatchlineError,
    ConfigError,
    DatabaseError,
    FatalDatabaseError,
    JobLocked,
    JobSpecMismatch,
    ResumeMismatch,
    TransientExhausted,
)
from ._flush import Flusher, LookupCache
from ._gc import fewer_collections
from ._isolate import Isolation, isolation_for
from ._items import Failure, Item
from ._job_lock import JobLock, this_runner
from ._out import Out, WriteIndex
from ._payload import PayloadPolicy
from ._prepare import Prepared, Preparer
from ._result import Result, Status
from ._retry import RetryPolicy, TransientFailure
from ._sizes import measure_above, oversized
from ._sources import FileSource, ReadFailure, SourceRecord, iter_records
from ._spec import spec_differences
from ._state import JobState, StateStore, StateTables, key_hash, to_json
from ._writes import Lookup, Write
from .typing import ChunkCallback

__all__ = ["MapFunction", "Pipeline"]

log = logging.getLogger("batchline")

MapFunction = Callable[[dict[str, Any], Out], None]
_FINISHED = ("success", "partial_success")


def _anonymous_job(prefix: str = "run") -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


class Pipeline:
    """A reusable loading pipeline: where to write, what to write, how to handle failure.

    Args:
        db: a database URL (``sqlite:///file.db``, ``postgresql://…``, ``mysql://…``) or an
            SQLAlchemy ``Engine``.
        writes: the writes, applied in this order inside every flush (parents first).
        lookups: batched get-or-create lookups the mapping refers to with ``lookup.ref()``.
        chunk_size: records per flush (one transaction each). By default (None) a chunk is
            sized by time: it starts at 500 records and grows or shrinks until its flush
            takes about ``chunk_seconds`` (see ``batchline._chunking``).
        chunk_seconds: the flush time a chunk is sized for when ``chunk_size`` is None.
        chunk_bytes: also flush when a chunk's emitted values reach about this many bytes.
        fallback: ``"bisect"``, ``"sequential"`` or ``"none"``: what to do when a chunk fails
            because of its data.
        max_failures: stop the run (status ``failed``) once more records than this have failed;
            an int is a count, a float below 1 a fraction of the records seen.
        retry: how transient failures (lost connection, deadlock, locked) are retried.
        state_prefix, state_schema: where the state tables live.
        idempotency_namespace: the ledger namespace idempotency keys are recorded under.
        pipelined: overlap mapping with flushing on a worker thread.
        tune_gc: while ``run`` runs, collect cyclic garbage in fewer, larger passes (the
            process's GC threshold is raised, then put back; see ``batchline._gc``).
        dead_letter_payload: what each dead letter keeps of its record: ``"full"`` (the
            default; replay needs it), ``"keys"`` (only the fields that identify it:
            ``dead_letter_keys``, else the writes' declared key columns) or ``"none"``.
            Values the letter does not keep are also scrubbed from its message, its log
            line and ``Result.failed_items`` (see ``batchline._payload``).
        redact: fields whose values are replaced by ``"[redacted]"`` in dead letters, at any
            depth of the record, and wherever their text appears in the message.
        dead_letter_keys: with ``dead_letter_payload="keys"``, the record's top-level fields
            to keep (needed when a map function renames fields or the writes are Inserts).
    """

    def __init__(
        self,
        db: str | sa.Engine | sa.URL,
        writes: Sequence[Write] = (),
        lookups: Sequence[Lookup] = (),
        *,
        chunk_size: int | None = None,
        chunk_seconds: float = 0.2,
        chunk_bytes: int = 16 * 1024 * 1024,
        fallback: str | Isolation = "bisect",
        max_failures: int | float | None = None,
        retry: RetryPolicy | None = None,
        state_prefix: str = "batchline_",
        state_schema: str | None = None,
        idempotency_namespace: str = "default",
        pipelined: bool = True,
        tune_gc: bool = True,
        dead_letter_payload: str = "full",
        redact: Sequence[str] = (),
        dead_letter_keys: Sequence[str] | None = None,
    ) -> None:
        if not writes:
            raise ConfigError("a Pipeline needs at least one write (Insert, Upsert, ...)")
        for w in writes:
            if not isinstance(w, Write):
                raise ConfigError(f"writes must be Insert/Upsert/Increment/Delete, got {w!r}")
        for lk in lookups:
            if not isinstance(lk, Lookup):
                raise ConfigError(f"lookups must be Lookup objects, got {lk!r}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
        if not chunk_seconds > 0:
            raise ConfigError(f"chunk_seconds must be above 0, got {chunk_seconds}")
        if max_failures is not None and (
            isinstance(max_failures, bool)
            or not isinstance(max_failures, (int, float))
            or max_failures < 0
        ):
            raise ConfigError(f"max_failures must be a count or a fraction, got {max_failures!r}")
        self._db = db
        self.writes = tuple(writes)
        self.lookups = tuple(lookups)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.chunk_seconds = float(chunk_seconds)
        self.chunk_bytes = int(chunk_bytes)
        self.isolation = isolation_for(fallback)
        self.max_failures = max_failures
        self.retry = retry or RetryPolicy()
        self.state_tables = StateTables(state_prefix, state_schema)
        self.namespace = idempotency_namespace
        self.pipelined = pipelined
        self.tune_gc = tune_gc
        self.payload = PayloadPolicy.for_writes(
            dead_letter_payload, redact, dead_letter_keys, self.writes
        )
        self.index = WriteIndex(self.writes)
        #: Called with (sql, rows) for every statement sent; see ``batchline.testing``.
        self.statement_listeners: list[StatementListener] = []
        self._engine: sa.Engine | None = None
        self._owns_engine = False
        self._dialect: Dialect | None = None

    # -- engine ---------------------------------------------------------------------------------
    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine, self._owns_engine = make_engine(self._db)
        return self._engine

    @property
    def dialect(self) -> Dialect:
        if self._dialect is None:
            self._dialect = dialect_for(self.engine)
        return self._dialect

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return redact_url(self.engine)

    def close(self) -> None:
        if self._engine is not None and self._owns_engine:
            self._engine.dispose()
        self._engine = None
        self._dialect = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Engines and pools are per process: a pickled pipeline (e.g. sent to a Dask worker)
        # carries its URL and makes its own engine there.
        if isinstance(self._db, sa.Engine):
            raise ConfigError("a Pipeline built on an Engine cannot be pickled; pass a URL")
        state = self.__dict__.copy()
        state.update(_engine=None, _dialect=None, _owns_engine=False, statement_listeners=[])
        return state

    def __repr__(self) -> str:
        db = redact_url(self._db)
        writes = ", ".join(w.describe() for w in self.writes)
        size = "by time" if self.chunk_size is None else self.chunk_size
        return f"Pipeline({db!r}, writes=[{writes}], chunk_size={size})"

    # -- running ----------------------------------------------------------------------------------
    def run(
        self,
        records: Iterable[Mapping[str, Any]] | FileSource,
        map: MapFunction | None = None,
        *,
        job: str | None = None,
        idempotency_key: Callable[[dict[str, Any]], Any] | None = None,
        restart: bool = False,
        source_id: str | None = None,
        spec: Mapping[str, Any] | None = None,
        on_chunk: ChunkCallback | None = None,
        wait: bool | float = False,
    ) -> Result:
        """Load ``records`` and return a :class:`Result`.

        Args:
            records: any iterable of mappings (consumed lazily), or ``batchline.read(path)``.
            map: ``map(record, out)`` emits the record's writes; without it each record is a
                row of the pipeline's only write.
            job: a name to checkpoint under; a later run with the same name resumes after
                the last record handled. Without it the run gets a generated name.
            idempotency_key: ``fn(record)``; records whose key is in the ledger are skipped.
            restart: start a job from the beginning even if it finished or its source or spec
                changed.
            source_id: identifies an iterable source for resume checks (files have one).
            spec: JSON-able description of the load, stored with the job (the CLI uses it).
                A later run of the job must give the same spec, apart from how the records
                are read and flushed and what dead letters keep (``batchline._spec``).
            on_chunk: ``on_chunk(result, failed)`` after each committed chunk, for progress
                (see :class:`batchline.typing.ChunkCallback`).
            wait: a run holds its job from start to end (see ``batchline._job_lock``); when
                another runner holds it, ``False`` raises :class:`JobLocked` at once, ``True``
                waits for it to end, a number waits at most that many seconds.

        Raises:
            FatalDatabaseError: a mistake that is not the records' fault (missing table...).
            ResumeMismatch: ``job`` was started on another source.
            JobSpecMismatch: ``job`` was started with another spec (table, mode, keys...).
            ConfigError: the pipeline or mapping is wrongly set up.
            JobLocked: another runner holds the job (and ``wait`` ran out).
        """
        if isinstance(records, FileSource):
            fingerprint = source_id or records.fingerprint()
            source: Iterable[Any] = records
        else:
            fingerprint = source_id
            source = iter_records(records)
        return self._run_source(
            source,
            map,
            job=job,
            idempotency_key=idempotency_key,
            restart=restart,
            fingerprint=fingerprint,
            spec=spec,
            on_chunk=on_chunk,
            wait=wait,
        )

    def _run_source(
        self,
        source: Iterable[Any],
        map: MapFunction | None,
        *,
        job: str | None,
        idempotency_key: Callable[[dict[str, Any]], Any] | None,
        restart: bool = False,
        fingerprint: str | None = None,
        spec: Mapping[str, Any] | None = None,
        job_prefix: str = "run",
        on_chunk: ChunkCallback | None = None,
        wait: bool | float = False,
        lock_kind: str = "job",
    ) -> Result:
        """Run over source items (``SourceRecord``/``ReadFailure`` or replayed letters).

        The run holds a lock (``lock_kind`` "job": its job's; "replay": the database's one
        dead-letter replay) from before it reads the checkpoint until its end."""
        if map is None and len(self.writes) != 1:
            raise ConfigError("without a map function the pipeline must have exactly one write")
        started = time.perf_counter()
        name = job or _anonymous_job(job_prefix)
        result = Result(job=name)
        worker = ThreadPoolExecutor(1, thread_name_prefix="batchline-flush")
        session = Session(self.engine, self.dialect, self.statement_listeners)
        lock = JobLock(
            self.engine, self.dialect, self.state_tables, name, kind=lock_kind, wait=wait
        )
        counted = _count_statements(self.statement_listeners, result)
        gc_scope = contextlib.ExitStack()
        if self.tune_gc:
            gc_scope.enter_context(fewer_collections())
        try:
            if lock.by_connection:
                # taken on the session's first connection, and again on any replacement
                session.on_connect = lambda s: lock.on_connect(s, s.commit)
            else:
                lock.take_file()
            flusher, job_state = worker.submit(
                self._prepare, session, name, fingerprint, restart, spec, result, lock
            ).result()
            flusher.on_chunk = on_chunk
            if job_state is not None and job_state.status in _FINISHED and not restart:
                result.status = job_state.status  # type: ignore[assignment]
                result.message = (
                    f"job {name!r} already finished ({job_state.status}, {job_state.processed} "
                    f"processed, {job_state.failed} failed); nothing to do (restart=True to redo)"
                )
                return result
            resume = job_state.position if job_state is not None and not restart else 0
            result.resumed_from = resume
            if resume:
                log.info("job %s: resuming after record %d", name, resume)
            preparer = self._preparer(flusher)
            try:
                self._loop(source, map, idempotency_key, resume, flusher, preparer, worker, result)
                status = _final_status(result)
            except (TransientExhausted, _StopRun) as exc:
                result.error = str(exc)
                status = "failed"
            finally:
                preparer.close()
            result.status = status
            try:
                worker.submit(self._finish, session, flusher, name, status, lock).result()
            except DatabaseError as exc:
                result.status = "failed"
                result.error = result.error or f"could not record the job's end: {exc}"
            return result
        except BaseException as exc:
            if isinstance(exc, FatalDatabaseError):
                exc.job = name
            if not isinstance(exc, (ResumeMismatch, JobSpecMismatch, JobLocked)):
                # A refused resume touched nothing: the job keeps the state it had
                # (a finished job must not turn "failed" for being pointed at another file).
                with contextlib.suppress(Exception):
                    worker.submit(self._mark_failed, session, name, lock).result()
            raise
        finally:
            worker.submit(_release, session, lock).result()
            worker.shutdown(wait=True)
            if self._owns_engine and self._engine is not None:
                # Leave no pooled connection open behind a run: the one-line form
                # ``Pipeline(url, ...).run(rows)`` never calls close().
                self._engine.dispose()
            self.statement_listeners[:] = [
                lst for lst in self.statement_listeners if lst is not counted
            ]
            gc_scope.close()
            result.processing_time_seconds = time.perf_counter() - started

    # -- the loop -------------------------------------------------------------------------------
    def _loop(
        self,
        source: Iterable[Any],
        map_fn: MapFunction | None,
        key_fn: Callable[[dict[str, Any]], Any] | None,
        resume: int,
        flusher: Flusher,
        preparer: Preparer,
        worker: ThreadPoolExecutor,
        result: Result,
    ) -> None:
        index = self.index
        only_table = self.writes[0].table if map_fn is None else ""
        chunk: list[Item] = []
        out = Out(index)  # pointed at each record in turn
        in_flight: Future[None] | None = None
        sizer = ChunkSizer(self.chunk_size, target=self.chunk_seconds)
        chunk_size, chunk_bytes = sizer.size, self.chunk_bytes
        limit = flusher.row_limit
        measure = measure_above(limit)

        def flush(items: list[Item], prepared: Prepared) -> None:
            # on the flush thread: time the chunk, and tell whether it ran clean
            retries, isolating = result.retries, result.isolation_flushes
            began = time.perf_counter()
            flusher.flush(items, items[-1].position, prepared)
            clean = result.retries == retries and result.isolation_flushes == isolating
            sizer.observe(len(items), time.perf_counter() - began, clean=clean)

        def submit(items: list[Item]) -> Future[None]:
            nonlocal in_flight, chunk_size
            # While the previous chunk is still flushing: this chunk's lookups and rows.
            prepared = preparer.prepare(items)
            if in_flight is not None:
                in_flight.result()
                self._check_failures(result)
            fut = worker.submit(flush, items, prepared)
            if not self.pipelined:
                fut.result()
                self._check_failures(result)
            in_flight = fut
            # the next chunk: sized by the last one measured (the one before this, while
            # this one flushes)
            chunk_size = sizer.size
            return fut

        try:
            for src in source:
                position = src.position
                if position <= resume:
                    continue
                if isinstance(src, ReadFailure):
                    item = Item(
                        position, src.line, src.raw, failure=Failure("read", "ReadError", src.error)
                    )
                else:
                    data = src.data
                    out.item = item = Item(position, src.line, data)
                    if type(src) is not SourceRecord:  # a replayed dead letter
                        replayed = getattr(src, "dead_letter_id", None)
                        if replayed is not None:
                            item.dead_letter_id = replayed
                            item.attempts = getattr(src, "attempts", 1) + 1
                    before = out.size
                    try:
                        if map_fn is None:
                            out.write(only_table, data)
                        else:
                            map_fn(data, out)
                        if key_fn is not None:
                            item.key = key_hash(key_fn(data))
                    except ConfigError:
                        raise
                    except Exception as exc:  # the user's code failed this record only
                        item.failure = Failure(
                            "map", type(exc).__name__, f"{type(exc).__name__}: {exc}"
                        )
                        item.ops, item.refs = [], None  # what it emitted before it raised
                    else:
                        if out.size - before > measure and limit is not None:
                            item.failure = oversized(item, self.writes, self.dialect, limit)
                chunk.append(item)
                if len(chunk) >= chunk_size or out.size >= chunk_bytes:
                    submit(chunk)
                    chunk = []
                    out.size = 0
            if chunk:
                submit(chunk)
        except BaseException:
            if in_flight is not None:
                # Let the flush in progress finish (or fail) before the run unwinds; the
                # error already raising is the one to report.
                with contextlib.suppress(BaseException):
                    in_flight.result()
            raise
        if in_flight is not None:
            in_flight.result()
        self._check_failures(result)

    def _preparer(self, flusher: Flusher) -> Preparer:
        reader = None
        if self.lookups and self.dialect.reads_ahead and _has_second_connection(self.engine):
            reader = Session(self.engine, self.dialect, self.statement_listeners, autocommit=True)
        return Preparer(
            writes=self.writes,
            lookups=self.lookups,
            caches=flusher.caches,
            lookup_tables=flusher.lookup_tables,
            dialect=self.dialect,
            reader=reader,
        )

    def _check_failures(self, result: Result) -> None:
        limit = self.max_failures
        if limit is None:
            return
        failed = result.items_failed
        if isinstance(limit, float) and limit < 1:
            seen = max(1, result.records_seen)
            if failed / seen > limit and seen >= min(self.chunk_size or 100, 100):
                raise _StopRun(
                    f"stopped: {failed} of {seen} records failed, "
                    f"more than max_failures={limit:.0%}"
                )
        elif failed > limit:
            raise _StopRun(f"stopped: {failed} records failed, more than max_failures={int(limit)}")

    # -- on the flush thread --------------------------------------------------------------------
    def _prepare(
        self,
        session: Session,
        name: str,
        fingerprint: str | None,
        restart: bool,
        spec: Mapping[str, Any] | None,
        result: Result,
        lock: JobLock,
    ) -> tuple[Flusher, JobState | None]:
        engine, dialect = self.engine, self.dialect

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
                    tables = self._reflect(name)
        except TransientFailure as exc:
            raise TransientExhausted(
                f"cannot reach {redact_url(engine)}: {exc}", code=exc.code, job=name
            ) from None
        state = StateStore(self.state_tables, dialect)
        flusher = Flusher(
            session=session,
            dialect=dialect,
            state=state,
            writes=self.writes,
            tables=tables,
            lookups=self.lookups,
            lookup_tables=tables,
            caches={lk: LookupCache(lk.cache_size) for lk in self.lookups},
            job=name,
            namespace=self.namespace,
            isolation=self.isolation,
            retry=self.retry,
            result=result,
            payload=self.payload,
        )
        spec_json = None if spec is None else to_json(dict(spec))
        try:
            for attempt in self.retry.retrying(before_sleep):
                with attempt:
                    job_state = self._start_job(
                        session, state, name, fingerprint, restart, spec_json, lock
                    )
        except TransientFailure as exc:
            raise TransientExhausted(f"cannot start job {name!r}: {exc}", job=name) from None
        # _start_job returns no state for a new or restarted job: its counter starts at 0.
        flusher.transactions_base = 0 if job_state is None else job_state.chunks
        # read on the connection just used: the loop measures large records against it
        flusher.row_limit = dialect.row_limit(session)
        return flusher, job_state

    def _reflect(self, name: str) -> dict[str, TableInfo]:
        """Create the state tables and reflect the targets; a missing table is fatal."""
        engine, dialect = self.engine, self.dialect
        try:
            self.state_tables.create(engine)
            tables: dict[str, TableInfo] = {}
            with engine.connect() as conn:
                for table in {w.table for w in self.writes} | {lk.table for lk in self.lookups}:
                    try:
                        tables[table] = dialect.reflect(conn, table)
                    except sa.exc.NoSuchTableError:
                        raise FatalDatabaseError(f"no such table: {table}", job=name) from None
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

    def _start_job(
        self,
        session: Session,
        state: StateStore,
        name: str,
        fingerprint: str | None,
        restart: bool,
        spec: str | None,
        lock: JobLock,
    ) -> JobState | None:
        session.begin()
        try:
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
                if existing.status not in _FINISHED:
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

    def _finish(
        self, session: Session, flusher: Flusher, name: str, status: Status, lock: JobLock
    ) -> None:
        try:
            for attempt in self.retry.retrying():
                with attempt:
                    try:
                        session.begin()
                        flusher.state.finish_job(session, name, status)
                        flusher.state.release_runner(session, lock.key)
                        session.commit()
                    except Exception as exc:
                        session.rollback()
                        flusher._raise_classified(exc, "recording the job's end")
        except TransientFailure as exc:
            # The data and checkpoint are committed; only the status is stale ("running"),
            # which a later run of the job treats as resumable.
            raise TransientExhausted(str(exc), code=exc.code, job=name) from exc

    def _mark_failed(self, session: Session, name: str, lock: JobLock) -> None:
        if not lock.held:
            return  # the job is another runner's, or nobody's: leave its row alone
        state = StateStore(self.state_tables, self.dialect)
        session.begin()
        state.finish_job(session, name, "failed")
        state.release_runner(session, lock.key)
        session.commit()

    # -- dead letters -----------------------------------------------------------------------------
    def dead_letters(self) -> Any:
        """The :class:`~batchline.DeadLetters` of this pipeline's database."""
        from ._dead_letters import DeadLetters

        return DeadLetters(
            self.engine, prefix=self.state_tables.prefix, schema=self.state_tables.schema
        )


def _release(session: Session, lock: JobLock) -> None:
    """Give the job back, then the connection (a connection lock must not go back to the
    pool still held: the server would keep it for whoever borrows the connection next)."""
    try:
        if lock.by_connection:
            session.rollback()  # nothing of a transaction rides on the unlock's commit
            if session.connected:
                lock.release(session, session.commit)
        else:
            lock.release(None)
    except Exception:
        session.discard()  # closing the connection drops its locks
    session.close()


class _StopRun(Exception):
    """Internal: the failure budget is spent; stop cleanly with status failed."""


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


def _has_second_connection(engine: sa.Engine) -> bool:
    """Whether the engine's pool can lend a second connection (for reading lookups ahead)
    without making the run wait for one: not with a one-connection pool."""
    pool = engine.pool
    if isinstance(pool, (sa.pool.SingletonThreadPool, sa.pool.StaticPool)):
        return False
    if isinstance(pool, sa.pool.QueuePool):
        return pool.size() + max(0, getattr(pool, "_max_overflow", 0)) >= 2
    return True


def _final_status(result: Result) -> Status:
    if result.items_failed == 0:
        return "success"
    if result.items_processed == 0 and result.duplicates_skipped == 0:
        return "failed"
    return "partial_success"


def _count_statements(listeners: list[StatementListener], result: Result) -> StatementListener:
    lock = threading.Lock()  # both threads send statements (the mapping thread reads ahead)

    def count(sql: str, rows: int) -> None:
        with lock:
            result.statements += 1

    listeners.append(count)
    return count
