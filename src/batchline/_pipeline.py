"""``Pipeline``: read → map (sequential) → collect → flush, with checkpoints and resume.

The mapping runs on the caller's thread, in input order. Flushes run on one worker thread
that owns the database session, so the mapping of chunk N+1 overlaps the flush of chunk N;
at most two chunks are in memory at once, so memory does not grow with the input.

This module holds the configuration and the ways to run it; ``_run_job`` holds the frame of
a run (its lock, flush thread, and cleanup). A record's way from :meth:`Pipeline.run` to
COMMIT: ``_run_job`` → ``_job_lock`` (one runner per job) → ``_job`` (on the flush thread:
state tables, the job's row) → ``_run_loop`` (read, map through ``_out`` into ``_chunk``,
cut chunks as ``_chunking`` sizes them) → ``_prepare`` (lookups read ahead) → ``_handoff``
→ ``_flush`` (the chunk's transaction, retried) → ``_apply`` (one try: ``_lookups``
resolved, rows built by ``_aggregate``, sent by ``_dialects``; errors through
``_failures``) → ``_isolate`` (when a record is bad) → ``_state`` and ``_payload`` (ledger,
dead letters, checkpoint) → COMMIT → ``_job`` (the job's end).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._database import StatementListener, make_engine, redact_url
from ._dialects import Dialect, dialect_for
from ._errors import (
    ConfigError,
)
from ._isolate import Isolation, isolation_for
from ._out import Out, WriteIndex
from ._payload import PayloadPolicy
from ._result import Result
from ._retry import RetryPolicy
from ._run_job import run_job
from ._run_loop import Numbered
from ._sources import ArrowSource, FileSource, arrow_source
from ._state_tables import StateTables
from ._writes import Lookup, Write
from .typing import ChunkCallback

if TYPE_CHECKING:
    from ._async import AsyncConsumer
    from ._streams import BrokerSource

__all__ = ["MapFunction", "Pipeline"]

log = logging.getLogger("batchline")

MapFunction = Callable[[dict[str, Any], Out], None]


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
        records: Iterable[Mapping[str, Any]] | FileSource | ArrowSource | Any,
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
            records: any iterable of mappings (consumed lazily), ``batchline.read(path)``, or
                in-process data: a pandas or Polars DataFrame, an Arrow table, record batch
                or batch reader (read batch by batch; pandas' NaN/None/NaT are nulls).
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
        arrow = records if isinstance(records, ArrowSource) else arrow_source(records)
        if isinstance(records, FileSource):
            fingerprint = source_id or records.fingerprint()
            source: Iterable[Any] | Numbered = records
        elif arrow is not None:
            fingerprint = source_id
            source = arrow
        else:
            fingerprint = source_id
            source = Numbered(records)
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

    async def arun(
        self,
        records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
        map: Any = None,
        *,
        job: str | None = None,
        idempotency_key: Callable[[dict[str, Any]], Any] | None = None,
        linger: float | None = None,
        restart: bool = False,
        source_id: str | None = None,
        spec: Mapping[str, Any] | None = None,
        on_chunk: ChunkCallback | None = None,
        wait: bool | float = False,
    ) -> Result:
        """:meth:`run` for asyncio: the engine runs on threads of its own, so the event loop
        never waits on the database (see ``batchline._async``).

        Args:
            records: an async iterable (or a plain iterable) of mappings, taken one at a time
                as the engine asks for them.
            map: ``map(record, out)`` or ``async def map(record, out)``: an async map runs
                on this loop (it may await), one record at a time, in order.
            linger: flush a chunk once its first record waited this many seconds (for an
                iterable that trickles); None waits for full chunks.
            job, idempotency_key, restart, source_id, spec, on_chunk, wait: as for :meth:`run`.
        """
        from ._async import arun

        return await arun(
            self,
            records,
            map,
            linger=linger,
            job=job,
            idempotency_key=idempotency_key,
            source_id=source_id,
            restart=restart,
            spec=spec,
            on_chunk=on_chunk,
            wait=wait,
        )

    def consumer(
        self,
        source: BrokerSource,
        map: Any = None,
        *,
        job: str,
        linger: float = 0.2,
        fetch_size: int = 500,
        idempotency_key: Callable[[dict[str, Any]], Any] | None = None,
    ) -> AsyncConsumer:
        """A broker consumer for an asyncio application: ``async with pipeline.consumer(
        bl.RedisStreamSource(url, "orders", "loaders"), job="orders") as c: ...``.

        It runs on a thread of its own from the block's start to its end (which commits and
        acknowledges the chunk in hand); ``map`` may be sync or async (run on the loop).
        See :class:`batchline.Consumer` for the arguments.
        """
        from ._async import consumer

        return consumer(
            self,
            source,
            map,
            job=job,
            linger=linger,
            fetch_size=fetch_size,
            idempotency_key=idempotency_key,
        )

    #: Run over source items (``SourceRecord``/``ReadFailure`` or replayed letters): the frame
    #: of every run, shared by run(), arun(), the consumers and dead-letter replay.
    _run_source = run_job

    # -- dead letters -----------------------------------------------------------------------------
    def dead_letters(self) -> Any:
        """The :class:`~batchline.DeadLetters` of this pipeline's database."""
        from ._dead_letters import DeadLetters

        return DeadLetters(
            self.engine, prefix=self.state_tables.prefix, schema=self.state_tables.schema
        )
