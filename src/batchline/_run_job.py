"""The frame of one run: its lock, its flush thread, the job's start and end, and cleanup.

Every way of running a pipeline (``Pipeline.run``, ``arun``, a broker consumer, dead-letter
replay) comes through :func:`run_job`; the records themselves go through ``_run_loop``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._database import Session, StatementListener
from ._errors import (
    ConfigError,
    DatabaseError,
    FatalDatabaseError,
    JobLocked,
    JobSpecMismatch,
    ResumeMismatch,
)
from ._gc import fewer_collections
from ._job import FINISHED, JobRun
from ._job_lock import JobLock
from ._result import Result
from ._run_loop import AfterCommit, Numbered, run_loop
from .typing import ChunkCallback

if TYPE_CHECKING:
    from ._pipeline import MapFunction, Pipeline

__all__ = ["run_job"]

log = logging.getLogger("batchline")


def run_job(
    pipeline: Pipeline,
    source: Iterable[Any] | Numbered,
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
    after_commit: AfterCommit | None = None,
    continuing: bool = False,
    letter_key: Callable[[int], Any] | None = None,
    on_resume: Callable[[int], None] | None = None,
    on_cut: Callable[[], None] | None = None,
) -> Result:
    """Run over source items (``SourceRecord``/``ReadFailure`` or replayed letters).

    The run holds a lock (``lock_kind`` "job": its job's; "replay": the database's one
    dead-letter replay) from before it reads the checkpoint until its end.

    Core hook (streams, issue 14): ``after_commit(end)`` is called on the flush thread
    after each chunk commits; ``continuing`` runs a job whose last run finished (a broker
    consumer's job never ends: a clean stop is followed by the next start);
    ``letter_key(position)``: the ledger key each dead letter holds (``Flusher.letter_key``);
    ``on_resume(position)`` is told the checkpoint the run goes on from, before the source is
    first read; ``on_cut()`` is called each time a chunk is closed, before the next record is
    read (a source timing its own linger learns that a new chunk opens)."""
    if map is None and len(pipeline.writes) != 1:
        raise ConfigError("without a map function the pipeline must have exactly one write")
    started = time.perf_counter()
    name = job or _anonymous_job(job_prefix)
    result = Result(job=name)
    worker = ThreadPoolExecutor(1, thread_name_prefix="batchline-flush")
    session = Session(pipeline.engine, pipeline.dialect, pipeline.statement_listeners)
    lock = JobLock(
        pipeline.engine, pipeline.dialect, pipeline.state_tables, name, kind=lock_kind, wait=wait
    )
    job_run = JobRun(
        name,
        engine=pipeline.engine,
        dialect=pipeline.dialect,
        session=session,
        lock=lock,
        state_tables=pipeline.state_tables,
        retry=pipeline.retry,
        result=result,
    )
    counted = _count_statements(pipeline.statement_listeners, result)
    gc_scope = contextlib.ExitStack()
    if pipeline.tune_gc:
        gc_scope.enter_context(fewer_collections())
    try:
        if lock.by_connection:
            # taken on the session's first connection, and again on any replacement
            session.on_connect = lambda s: lock.on_connect(s, s.commit)
        else:
            lock.take_file()
        flusher, job_state = worker.submit(
            job_run.start,
            writes=pipeline.writes,
            lookups=pipeline.lookups,
            namespace=pipeline.namespace,
            isolation=pipeline.isolation,
            payload=pipeline.payload,
            fingerprint=fingerprint,
            restart=restart,
            spec=spec,
        ).result()
        flusher.on_chunk = on_chunk
        flusher.letter_key = letter_key  # core hook: streams
        if (
            job_state is not None
            and job_state.status in FINISHED
            and not restart
            and not continuing  # core hook: streams
        ):
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
        if on_resume is not None:  # core hook: streams
            on_resume(resume)
        status = run_loop(
            source,
            map,
            idempotency_key,
            resume=resume,
            engine=pipeline.engine,
            dialect=pipeline.dialect,
            listeners=pipeline.statement_listeners,
            writes=pipeline.writes,
            lookups=pipeline.lookups,
            index=pipeline.index,
            chunk_size=pipeline.chunk_size,
            chunk_seconds=pipeline.chunk_seconds,
            chunk_bytes=pipeline.chunk_bytes,
            pipelined=pipeline.pipelined,
            max_failures=pipeline.max_failures,
            flusher=flusher,
            worker=worker,
            result=result,
            after_commit=after_commit,  # core hook: streams
            on_cut=on_cut,  # core hook: streams
        )
        result.status = status
        try:
            worker.submit(job_run.finish, flusher, status).result()
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
                worker.submit(job_run.mark_failed).result()
        raise
    finally:
        worker.submit(job_run.release).result()
        worker.shutdown(wait=True)
        if pipeline._owns_engine and pipeline._engine is not None:
            # Leave no pooled connection open behind a run: the one-line form
            # ``Pipeline(url, ...).run(rows)`` never calls close().
            pipeline._engine.dispose()
        pipeline.statement_listeners[:] = [
            lst for lst in pipeline.statement_listeners if lst is not counted
        ]
        gc_scope.close()
        result.processing_time_seconds = time.perf_counter() - started


def _anonymous_job(prefix: str = "run") -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def _count_statements(listeners: list[StatementListener], result: Result) -> StatementListener:
    lock = threading.Lock()  # both threads send statements (the mapping thread reads ahead)

    def count(sql: str, rows: int) -> None:
        with lock:
            result.statements += 1

    listeners.append(count)
    return count
