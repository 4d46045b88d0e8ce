"""The run loop: read → map → collect into chunks → hand each chunk to the flush thread.

It runs on the caller's thread, in input order. A record becomes an :class:`Item` (or how it
failed: unreadable, the map function raised), and what its mapping emits goes into the
chunk's row buffers (:class:`~batchline._chunk.Chunk`), which check and measure it a column
at a time. Chunks close on a record count (:class:`~batchline._chunking.ChunkSizer`) or on
their bytes. While chunk N flushes on the worker thread, the loop maps chunk N+1 and reads
its lookups ahead (``_prepare``), so at most two chunks are in memory at once. After each
flush it checks the failure budget (``max_failures``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from ._arrow_write import ArrowPart, ArrowWriter, arrow_batches, arrow_writer, rows_chunk
from ._chunk import Chunk
from ._chunking import ChunkSizer
from ._database import Session, StatementListener
from ._dialects import Dialect
from ._errors import ConfigError, TransientExhausted
from ._flush import Flusher
from ._items import Failure, Item, Op
from ._out import Out, WriteIndex
from ._prepare import Prepared, Preparer
from ._result import Result, Status
from ._sizes import measure_above, oversized
from ._sources import ReadFailure, SourceRecord
from ._state import key_hash
from ._writes import Lookup, Write
from .typing import MapFunction

__all__ = ["BULK_CEILING", "FLUSH_NOW", "run_loop"]

# -- core hook: streams (issue 14) ---------------------------------------------------------------
#: Yielded by a source between records to close the chunk being collected now, and hand it to
#: the flush thread, however few records it holds: a broker consumer yields it when the oldest
#: message of the chunk has waited its ``linger``, so an idle stream's messages do not wait for
#: a full chunk. Ignored when the chunk is empty.
FLUSH_NOW: Any = object()
#: ``after_commit(end)``: called on the flush thread once the chunk whose last record has
#: position ``end`` has committed (a broker consumer acknowledges its messages up to ``end``).
AfterCommit = Callable[[int], None]
# -- end core hook -------------------------------------------------------------------------------

#: The most records a chunk written in bulk (``_arrow_write``) takes when sized by time.
BULK_CEILING = 50_000
#: ... and one that follows a chunk with bad records, which goes as rows (``ChunkSizer``'s).
ROW_CEILING = 5_000


def run_loop(
    source: Iterable[Any],
    map_fn: MapFunction | None,
    key_fn: Callable[[dict[str, Any]], Any] | None,
    *,
    resume: int,
    engine: sa.Engine,
    dialect: Dialect,
    listeners: list[StatementListener],
    writes: Sequence[Write],
    lookups: Sequence[Lookup],
    index: WriteIndex,
    chunk_size: int | None,
    chunk_seconds: float,
    chunk_bytes: int,
    pipelined: bool,
    max_failures: int | float | None,
    flusher: Flusher,
    worker: ThreadPoolExecutor,
    result: Result,
    after_commit: AfterCommit | None = None,  # core hook: streams
) -> Status:
    """Load the records after position ``resume``; return the run's status.

    A spent retry budget or failure budget ends the run as ``failed``, with ``result.error``
    saying why; other errors propagate once the chunk in flight has finished.

    Args:
        engine, dialect, listeners: for the read-ahead's own connection, when there is one.
        chunk_size: records per chunk, or None to size chunks by time (``chunk_seconds``).
        chunk_bytes: also close a chunk when its emitted values reach this many bytes.
        pipelined: let the next chunk map while this one flushes.
        max_failures: the failure budget (a count, or a fraction of the records seen).
    """
    reader = None
    if lookups and dialect.reads_ahead and _has_second_connection(engine):
        reader = Session(engine, dialect, listeners, autocommit=True)
    preparer = Preparer(
        writes=writes,
        lookups=lookups,
        caches=flusher.caches,
        lookup_tables=flusher.lookup_tables,
        dialect=dialect,
        reader=reader,
    )
    budget = _FailureBudget(max_failures, chunk_size)
    writer = arrow_writer(source, map_fn, key_fn, writes, lookups, dialect, flusher.applier.tables)
    try:
        if writer is not None:
            flusher.arrow_writer = writer
            _arrow_loop(
                source,
                map_fn,
                resume,
                writer=writer,
                writes=writes,
                index=index,
                dialect=dialect,
                # A bulk chunk holds no object per record, so it may grow past the row
                # path's 5,000 (still bounded by chunk_bytes); one refused in bulk becomes
                # that many row records, hence a ceiling still.
                sizer=ChunkSizer(chunk_size, target=chunk_seconds, ceiling=BULK_CEILING),
                chunk_bytes=chunk_bytes,
                pipelined=pipelined,
                budget=budget,
                flusher=flusher,
                preparer=preparer,
                worker=worker,
                result=result,
            )
            return _final_status(result)
        _loop(
            source,
            map_fn,
            key_fn,
            resume,
            writes=writes,
            index=index,
            dialect=dialect,
            sizer=ChunkSizer(chunk_size, target=chunk_seconds),
            chunk_bytes=chunk_bytes,
            pipelined=pipelined,
            budget=budget,
            flusher=flusher,
            preparer=preparer,
            worker=worker,
            result=result,
            after_commit=after_commit,  # core hook: streams
        )
        return _final_status(result)
    except (TransientExhausted, _StopRun) as exc:
        result.error = str(exc)
        return "failed"
    finally:
        preparer.close()


def _loop(
    source: Iterable[Any],
    map_fn: MapFunction | None,
    key_fn: Callable[[dict[str, Any]], Any] | None,
    resume: int,
    *,
    writes: Sequence[Write],
    index: WriteIndex,
    dialect: Dialect,
    sizer: ChunkSizer,
    chunk_bytes: int,
    pipelined: bool,
    budget: _FailureBudget,
    flusher: Flusher,
    preparer: Preparer,
    worker: ThreadPoolExecutor,
    result: Result,
    after_commit: AfterCommit | None = None,  # core hook: streams
) -> None:
    only = index.find(None, writes[0].table) if map_fn is None else 0  # no map: the one write
    chunk = Chunk(writes)
    items = chunk.items
    out = Out(index, chunk)  # pointed at each chunk and record in turn
    in_flight: Future[None] | None = None
    chunk_size = sizer.size
    limit = flusher.row_limit
    above = measure_above(limit)
    check_at = 1  # the record count at which the chunk's bytes are next measured

    def too_large(item: Item, ops: list[Op]) -> Failure | None:
        assert limit is not None
        return oversized(ops, writes, dialect, limit)

    def flush(closed: Chunk, prepared: Prepared) -> None:
        # on the flush thread: time the chunk, and tell whether it ran clean
        retries, isolating = result.retries, result.isolation_flushes
        began = time.perf_counter()
        flusher.flush(closed, closed.items[-1].position, prepared)
        clean = result.retries == retries and result.isolation_flushes == isolating
        sizer.observe(len(closed.items), time.perf_counter() - began, clean=clean)
        if after_commit is not None:  # core hook: streams
            after_commit(closed.items[-1].position)

    def submit(closed: Chunk) -> Future[None]:
        nonlocal in_flight, chunk_size
        # While the previous chunk is still flushing: this chunk's checks, lookups and rows.
        closed.seal(above, None if limit is None else too_large)
        prepared = preparer.prepare(closed)
        if in_flight is not None:
            in_flight.result()
            budget.check(result)
        fut = worker.submit(flush, closed, prepared)
        if not pipelined:
            fut.result()
            budget.check(result)
        in_flight = fut
        # the next chunk: sized by the last one measured (the one before this, while
        # this one flushes)
        chunk_size = sizer.size
        return fut

    def close(closed: Chunk) -> tuple[Chunk, list[Item]]:
        """Hand ``closed`` to the flush; collect into a new chunk from now on."""
        submit(closed)
        fresh = Chunk(writes)
        out.start(fresh)
        return fresh, fresh.items

    try:
        for src in source:
            if src is FLUSH_NOW:  # core hook: streams (a linger expired)
                if items:
                    chunk, items = close(chunk)
                    check_at = 1
                continue
            position = src.position
            if position <= resume:
                continue
            if isinstance(src, ReadFailure):
                item = Item(
                    position, src.line, src.raw, failure=Failure("read", "ReadError", src.error)
                )
                chunk.failed += 1
            else:
                data = src.data
                out.item = item = Item(position, src.line, data)
                if type(src) is not SourceRecord:  # a replayed dead letter
                    replayed = getattr(src, "dead_letter_id", None)
                    if replayed is not None:
                        item.dead_letter_id = replayed
                        item.attempts = getattr(src, "attempts", 1) + 1
                try:
                    if map_fn is None:
                        out._add(only, data)  # the one write, found once
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
                    chunk.discard(item)  # what it emitted before it raised
                    chunk.failed += 1
            items.append(item)
            n = len(items)
            if n < chunk_size:
                if n < check_at:
                    continue
                # the chunk's bytes, measured every few records: often enough to stay near
                # ``chunk_bytes`` whatever a record weighs (see _next_check)
                size = chunk.measure(above)
                if size < chunk_bytes:
                    check_at = n + _next_check(size, n, chunk_bytes)
                    continue
            chunk, items = close(chunk)
            check_at = 1
        if items:
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
    budget.check(result)


def _arrow_loop(
    source: Any,
    map_fn: MapFunction | None,
    resume: int,
    *,
    writer: ArrowWriter,
    writes: Sequence[Write],
    index: WriteIndex,
    dialect: Dialect,
    sizer: ChunkSizer,
    chunk_bytes: int,
    pipelined: bool,
    budget: _FailureBudget,
    flusher: Flusher,
    preparer: Preparer,
    worker: ThreadPoolExecutor,
    result: Result,
) -> None:
    """:func:`_loop` for Arrow data into one ``Insert`` with no map function (or one that
    leaves the chunk unchanged, ``_arrow_write.ArrowExact``): chunks are
    slices of the source's record batches (``Chunk.arrow``), cut at the count the sizer
    gives (or ``chunk_bytes``), never with an object per record. A chunk whose columns
    the bulk path cannot write exactly (``ArrowWriter.exact``) becomes a row chunk here,
    on the mapping thread, as ``_loop`` would have built it; one the database refuses in
    bulk becomes one on the flush thread (``Flusher.flush``)."""
    import pyarrow as pa

    limit = flusher.row_limit
    above = measure_above(limit)

    def too_large(item: Item, ops: list[Op]) -> Failure | None:
        assert limit is not None
        return oversized(ops, writes, dialect, limit)

    def as_rows(part: ArrowPart) -> Chunk:
        return rows_chunk(part, writes, index, above, None if limit is None else too_large, map_fn)

    in_flight: Future[None] | None = None

    def flush(closed: Chunk, end: int, prepared: Prepared | None) -> None:
        retries, isolating = result.retries, result.isolation_flushes
        began = time.perf_counter()
        flusher.flush(closed, end, prepared)
        clean = result.retries == retries and result.isolation_flushes == isolating
        # (a chunk refused in bulk is isolated as rows: not clean, not measured)
        n = len(closed.arrow) if closed.arrow is not None else len(closed.items)
        sizer.observe(n, time.perf_counter() - began, clean=clean)

    def submit(slices: list[Any], first: int) -> None:
        nonlocal in_flight
        data = pa.Table.from_batches(slices)
        part = ArrowPart(data, first, as_rows)
        prepared: Prepared | None = None
        if writer.exact(data):
            closed = Chunk(writes, arrow=part)
        else:
            closed = as_rows(part)  # the row path, as _loop builds it
            prepared = preparer.prepare(closed)
        if in_flight is not None:
            in_flight.result()
            budget.check(result)
        fut = worker.submit(flush, closed, part.end, prepared)
        if not pipelined:
            fut.result()
            budget.check(result)
        in_flight = fut

    try:
        slices: list[Any] = []
        first = 0
        n = 0
        for batch, start in arrow_batches(source, resume):
            if slices and batch.schema != slices[0].schema:
                # (a batch whose nanoseconds did not cast) a chunk holds one schema
                submit(slices, first)
                slices, n = [], 0
            offset = 0
            per_row = _row_bytes(batch)
            while offset < batch.num_rows:
                if not slices:
                    first = start + offset
                size = max(1, min(sizer.size, chunk_bytes // per_row))
                if sizer.pinned is None and flusher.applier.dirty:
                    # (read while the flush thread may change it: only a size is at stake)
                    # the chunk will go as rows (Flusher.flush): sized as the row path's
                    size = min(size, ROW_CEILING)
                take = min(size - n, batch.num_rows - offset)
                slices.append(batch.slice(offset, take))
                offset += take
                n += take
                if n >= size:
                    submit(slices, first)
                    slices, n = [], 0
        if slices:
            submit(slices, first)
    except BaseException:
        if in_flight is not None:
            with contextlib.suppress(BaseException):
                in_flight.result()
        raise
    if in_flight is not None:
        in_flight.result()
    budget.check(result)


def _row_bytes(batch: Any) -> int:
    """About what a row of ``batch`` weighs as ``Chunk.measure`` counts it: 16 bytes a
    value, plus the bytes of its text."""
    import pyarrow.types as pt

    text = sum(
        int(c.nbytes)
        for c in batch.columns
        if pt.is_string(c.type) or pt.is_large_string(c.type) or pt.is_binary(c.type)
    )
    return max(1, 16 * int(batch.num_columns) + text // max(1, int(batch.num_rows)))


def _next_check(size: int, n: int, limit: int) -> int:
    """How many records to map before measuring the chunk again: half the records that
    would fill what is left of ``limit`` at the average size so far (so a chunk of large
    records is measured nearly every record, and stops close to its bound), at most 256."""
    average = max(1, size // n)
    return max(1, min(256, (limit - size) // (2 * average)))


class _FailureBudget:
    """Stops the run once more records failed than ``max_failures`` allows."""

    def __init__(self, max_failures: int | float | None, chunk_size: int | None) -> None:
        self.limit = max_failures
        self.chunk_size = chunk_size  # a fraction is judged after this many records (≤ 100)

    def check(self, result: Result) -> None:
        limit = self.limit
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


def _has_second_connection(engine: sa.Engine) -> bool:
    """Whether the engine's pool can lend a second connection (for reading lookups ahead)
    without making the run wait for one: not with a one-connection pool."""
    pool = engine.pool
    if isinstance(pool, (sa.pool.SingletonThreadPool, sa.pool.StaticPool)):
        return False
    if isinstance(pool, sa.pool.QueuePool):
        return pool.size() + max(0, getattr(pool, "_max_overflow", 0)) >= 2
    return True


class _StopRun(Exception):
    """Internal: the failure budget is spent; stop cleanly with status failed."""


def _final_status(result: Result) -> Status:
    if result.items_failed == 0:
        return "success"
    if result.items_processed == 0 and result.duplicates_skipped == 0:
        return "failed"
    return "partial_success"
