"""The run loop: read → map → collect into chunks → hand each chunk to the flush thread.

It runs on the caller's thread, in input order. A record becomes an index into its chunk's
record lists (its position, line and payload; how it failed, if it was unreadable or the map
function raised), and what its mapping emits goes into the chunk's row buffers
(:class:`~batchline._chunk.Chunk`), which check and measure it a column at a time. Chunks
close on a record count (:class:`~batchline._chunking.ChunkSizer`) or on their bytes. While
chunk N flushes on the worker thread, the loop maps chunk N+1 and reads its lookups ahead
(``_prepare``), so at most two chunks are in memory at once. After each flush it checks the
failure budget (``max_failures``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

import sqlalchemy as sa

from ._arrow_loop import BULK_CEILING, arrow_loop
from ._arrow_write import arrow_writer
from ._chunk import Chunk
from ._chunking import ChunkSizer
from ._database import Session, StatementListener
from ._dialects import Dialect
from ._errors import ConfigError, TransientExhausted
from ._flush import Flusher
from ._handoff import AfterCommit, FailureBudget, Handoff, StopRun
from ._items import Failure, Op
from ._out import Out, WriteIndex
from ._prepare import Preparer
from ._result import Result, Status
from ._sizes import measure_above, oversized
from ._sources import ReadFailure, SourceRecord
from ._state_rows import key_hash
from ._writes import Lookup, Write
from .typing import MapFunction

__all__ = ["FLUSH_NOW", "AfterCommit", "Numbered", "run_loop"]

# -- core hook: streams (issue 14) ---------------------------------------------------------------
#: Yielded by a source between records to close the chunk being collected now, and hand it to
#: the flush thread, however few records it holds: a broker consumer yields it when the oldest
#: message of the chunk has waited its ``linger``, so an idle stream's messages do not wait for
#: a full chunk. Ignored when the chunk is empty.
FLUSH_NOW: Any = object()
# -- end core hook -------------------------------------------------------------------------------


def run_loop(
    source: Iterable[Any] | Numbered,
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
    on_cut: Callable[[], None] | None = None,  # core hook: streams
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
    budget = FailureBudget(max_failures, chunk_size)
    writer = arrow_writer(source, map_fn, key_fn, writes, lookups, dialect, flusher.applier.tables)
    # A bulk chunk holds no object per record, so it may grow past the row path's 5,000
    # (still bounded by chunk_bytes); one refused in bulk becomes that many row records,
    # hence a ceiling still.
    ceiling = {} if writer is None else {"ceiling": BULK_CEILING}
    handoff = Handoff(
        flusher=flusher,
        sizer=ChunkSizer(chunk_size, target=chunk_seconds, **ceiling),
        budget=budget,
        worker=worker,
        pipelined=pipelined,
        result=result,
        after_commit=after_commit,  # core hook: streams
        on_cut=on_cut,  # core hook: streams
    )
    try:
        if writer is not None:
            flusher.arrow_writer = writer
            arrow_loop(
                source,
                map_fn,
                resume,
                writer=writer,
                writes=writes,
                index=index,
                dialect=dialect,
                chunk_bytes=chunk_bytes,
                preparer=preparer,
                handoff=handoff,
            )
        else:
            _loop(
                source,
                map_fn,
                key_fn,
                resume,
                writes=writes,
                index=index,
                dialect=dialect,
                chunk_bytes=chunk_bytes,
                preparer=preparer,
                handoff=handoff,
            )
        return _final_status(result)
    except (TransientExhausted, StopRun) as exc:
        result.error = str(exc)
        return "failed"
    finally:
        preparer.close()


def _loop(
    source: Iterable[Any] | Numbered,
    map_fn: MapFunction | None,
    key_fn: Callable[[dict[str, Any]], Any] | None,
    resume: int,
    *,
    writes: Sequence[Write],
    index: WriteIndex,
    dialect: Dialect,
    chunk_bytes: int,
    preparer: Preparer,
    handoff: Handoff,
) -> None:
    only = index.find(None, writes[0].table) if map_fn is None else 0  # no map: the one write
    keyed = key_fn is not None
    chunk = Chunk(writes, keyed=keyed)
    out = Out(index, chunk)  # pointed at each chunk and record in turn
    sizer = handoff.sizer
    chunk_size = sizer.size
    limit = handoff.flusher.row_limit
    above = measure_above(limit)
    check_at = 1  # the record count at which the chunk's bytes are next measured

    def too_large(ops: list[Op]) -> Failure | None:
        assert limit is not None
        return oversized(ops, writes, dialect, limit)

    def close(closed: Chunk, last: int) -> Chunk:
        """Hand ``closed`` (``last``: the position of its last record) to the flush; collect
        into a new chunk from now on."""
        nonlocal chunk_size
        if numbered:  # consecutive positions, each its own line: listed once, in C
            closed.positions = closed.lines = list(range(last + 1 - len(closed), last + 1))
        else:
            last = closed.positions[-1]
        # While the previous chunk is still flushing: this chunk's checks, lookups and rows.
        closed.seal(above, None if limit is None else too_large)
        prepared = preparer.prepare(closed)
        handoff.submit(closed, last, prepared)
        # the next chunk: sized by the last one measured (the one before this, while this
        # one flushes)
        chunk_size = sizer.size
        fresh = Chunk(writes, keyed=keyed)
        out.start(fresh)
        return fresh

    numbered = isinstance(source, Numbered)
    position = resume
    # (a Numbered source's records before ``resume`` are skipped in C, never looked at)
    records = islice(source.records, resume, None) if isinstance(source, Numbered) else source
    # A record is its index in the chunk (``n`` before it is counted): its position, line
    # and payload go to the chunk's lists (a Numbered source's positions, which are
    # consecutive, only when it closes), what only some records have to its side tables.
    n = 0
    positions, lines, payloads, keys = chunk.positions, chunk.lines, chunk.records, chunk.keys
    try:
        for src in records:
            if numbered and type(src) is dict:  # the common record: no object made for it
                position += 1
                payloads.append(src)
                data = src
            else:
                if src is FLUSH_NOW:  # core hook: streams (a linger expired)
                    if n:
                        chunk = close(chunk, position)
                        positions, lines, payloads = chunk.positions, chunk.lines, chunk.records
                        keys = chunk.keys
                        n = 0
                        check_at = 1
                    continue
                if numbered:  # another mapping (copied), or not a mapping at all
                    position += 1
                    src = _numbered(src, position)
                position = src.position
                if position <= resume:
                    continue
                if not numbered:
                    positions.append(position)
                    lines.append(src.line)
                if isinstance(src, ReadFailure):
                    payloads.append(src.raw)
                    chunk.failures[n] = Failure("read", "ReadError", src.error)
                    if keys is not None:
                        keys.append(None)
                    data = _UNREAD
                else:
                    data = src.data
                    payloads.append(data)
                    if type(src) is not SourceRecord:  # a replayed dead letter
                        replayed = getattr(src, "dead_letter_id", None)
                        if replayed is not None:
                            chunk.replayed[n] = replayed
            if data is not _UNREAD:
                out.item = n
                try:
                    if map_fn is None:
                        out._add(only, data)  # the one write, found once
                    else:
                        map_fn(data, out)
                    if keys is not None and key_fn is not None:
                        keys.append(key_hash(key_fn(data)))
                except ConfigError:
                    raise
                except Exception as exc:  # the user's code failed this record only
                    # (and forget what it emitted before it raised)
                    chunk.fail(
                        n, Failure("map", type(exc).__name__, f"{type(exc).__name__}: {exc}")
                    )
                    if keys is not None:
                        keys.append(None)
            n += 1
            if n < chunk_size:
                if n < check_at:
                    continue
                # the chunk's bytes, measured every few records: often enough to stay near
                # ``chunk_bytes`` whatever a record weighs (see _next_check)
                size = chunk.measure(above)
                if size < chunk_bytes:
                    check_at = n + _next_check(size, n, chunk_bytes)
                    continue
            chunk = close(chunk, position)
            positions, lines, payloads, keys = (
                chunk.positions,
                chunk.lines,
                chunk.records,
                chunk.keys,
            )
            n = 0
            check_at = 1
        if n:
            close(chunk, position)
    except BaseException:
        handoff.abandon()
        raise
    handoff.wait()
    handoff.budget.check(handoff.result)


class Numbered:
    """A plain iterable of records (mappings), numbered by the run loop as it goes: its
    n-th record has position and line n.

    Why not a :class:`SourceRecord` per record, as files give: that is an object, and a
    generator step, per record, where a ``dict`` needs neither. A dict record is passed to
    the mapping as it is (not copied): it is kept, by reference, until its chunk commits,
    as its dead letter's payload should it fail. Another mapping is copied into a dict; a
    value that is no mapping becomes a dead letter at stage ``read``.
    """

    __slots__ = ("records",)

    def __init__(self, records: Iterable[Any]) -> None:
        self.records = records


def _numbered(record: Any, position: int) -> SourceRecord | ReadFailure:
    """A :class:`Numbered` record that is not a dict, at ``position``."""
    if isinstance(record, Mapping):
        return SourceRecord(position, position, dict(record))
    return ReadFailure(
        position, position, f"record is {type(record).__name__}, expected a mapping", None
    )


#: A record the loop did not map (it could not be read).
_UNREAD: Any = object()


def _next_check(size: int, n: int, limit: int) -> int:
    """How many records to map before measuring the chunk again: half the records that
    would fill what is left of ``limit`` at the average size so far (so a chunk of large
    records is measured nearly every record, and stops close to its bound), at most 256."""
    average = max(1, size // n)
    return max(1, min(256, (limit - size) // (2 * average)))


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
