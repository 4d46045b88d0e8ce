"""The loop for Arrow data written in bulk: chunks cut from record batches, no object per record.

Taken instead of ``_run_loop``'s when ``_arrow_write.arrow_writer`` says the bulk path can
write the source (Arrow data into one ``Insert``, no map function or one that leaves the
values unchanged, no lookups, no idempotency key). Chunks are slices of the source's record
batches, handed to the flush thread like row chunks (``_handoff``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._arrow_rows import rows_chunk
from ._arrow_write import ArrowPart, ArrowWriter, arrow_batches, is_csv, is_jsonl
from ._chunk import Chunk
from ._csv_blocks import META
from ._csv_copy import CsvCopy, csv_copy
from ._dialects import Dialect
from ._handoff import Handoff
from ._items import Failure, Op
from ._out import WriteIndex
from ._prepare import Prepared, Preparer
from ._sizes import measure_above, oversized
from ._writes import Write
from .typing import MapFunction

__all__ = ["BULK_CEILING", "ROW_CEILING", "arrow_loop"]

#: The most records a chunk written in bulk (``_arrow_write``) takes when sized by time.
BULK_CEILING = 50_000
#: ... and one that follows a chunk with bad records, which goes as rows (``ChunkSizer``'s).
ROW_CEILING = 5_000


def arrow_loop(
    source: Any,
    map_fn: MapFunction | None,
    resume: int,
    *,
    writer: ArrowWriter,
    writes: Sequence[Write],
    index: WriteIndex,
    dialect: Dialect,
    chunk_bytes: int,
    preparer: Preparer,
    handoff: Handoff,
) -> None:
    """``_run_loop``'s loop for Arrow data into one ``Insert`` with no map function (or one that
    leaves the chunk unchanged, ``_arrow_write.ArrowExact``): chunks are
    slices of the source's record batches (``Chunk.arrow``), cut at the count the sizer
    gives (or ``chunk_bytes``), never with an object per record. A chunk whose columns
    the bulk path cannot write exactly (``ArrowWriter.exact``) becomes a row chunk here,
    on the mapping thread, as ``_loop`` would have built it; one the database refuses in
    bulk becomes one on the flush thread (``Flusher.flush``)."""
    import pyarrow as pa

    flusher, sizer = handoff.flusher, handoff.sizer
    limit = flusher.row_limit
    above = measure_above(limit)

    def too_large(ops: list[Op]) -> Failure | None:
        assert limit is not None
        return oversized(ops, writes, dialect, limit)

    def as_rows(part: ArrowPart) -> Chunk:
        return rows_chunk(part, writes, index, above, None if limit is None else too_large, map_fn)

    blocks = is_csv(source) or is_jsonl(source)
    convert = getattr(map_fn, "arrow_convert", None) if blocks else None
    # a clean CSV block may go to PostgreSQL as its own text (_csv_copy): chunks of whole blocks
    whole = convert is not None and writer.postgres and is_csv(source)
    copy: list[CsvCopy | None] = []  # (made from the first chunk's header)

    def submit(slices: list[Any], first: int, texts: list[bytes | None]) -> None:
        data = pa.Table.from_batches(slices)
        converted = None
        if convert is not None:  # CSV text: converted here, the misfits dead letters
            raw = data
            converted = convert(raw, dialect.name)
            data = converted.data if converted.exact else raw.slice(0, 0)
            last = raw.column(META[0])[-1].as_py()
            part = ArrowPart(data, first, as_rows, raw=raw, failed=converted.failed, end=last)
        else:
            part = ArrowPart(data, first, as_rows)
        prepared: Prepared | None = None
        if converted is not None and not converted.exact:
            closed = as_rows(part)
            prepared = preparer.prepare(closed)
        elif writer.exact(data, converted=True) if converted else writer.exact(data):
            closed = Chunk(writes, arrow=part)
            if whole and not copy:
                header = [n for n in part.raw.schema.names if n not in META]
                specs = getattr(map_fn, "columns", None)
                empty = getattr(map_fn, "empty_text", "empty")
                copy.append(csv_copy(source, specs, empty, header, dialect, writer.table))
            text = copy[0].wire(texts, part.raw, converted) if copy and copy[0] else None
            # (here, while the chunk before flushes)
            if text is not None:
                part.wire = text
            elif writer.wire_ahead:
                part.wire = writer.wire(data)
        else:
            closed = as_rows(part)  # the row path, as _loop builds it
            prepared = preparer.prepare(closed)
        handoff.submit(closed, part.end, prepared)

    try:
        slices: list[Any] = []
        texts: list[bytes | None] = []
        first = 0
        n = 0
        columns = getattr(map_fn, "columns", None)  # (a JSON Lines file is read as these)
        for batch, start, text in arrow_batches(source, resume, columns):
            if slices and batch.schema != slices[0].schema:
                # (a batch whose nanoseconds did not cast) a chunk holds one schema
                submit(slices, first, texts)
                slices, texts, n = [], [], 0
            offset = 0
            per_row = _row_bytes(batch)
            while offset < batch.num_rows:
                if not slices:
                    first = start + offset
                size = max(1, min(sizer.size, chunk_bytes // per_row))
                rows = sizer.pinned is None and flusher.applier.dirty
                if rows:
                    # (read while the flush thread may change it: only a size is at stake)
                    # the chunk will go as rows (Flusher.flush): sized as the row path's
                    size = min(size, ROW_CEILING)
                take = min(max(1, size - n), batch.num_rows - offset)
                if whole and text is not None and offset == 0 and not rows:
                    # the whole block, so that its text may go as it is (not past the
                    # ceiling: the row path may have to redo the chunk)
                    take = batch.num_rows if batch.num_rows <= BULK_CEILING else take
                slices.append(batch.slice(offset, take) if take < batch.num_rows else batch)
                texts.append(text if take == batch.num_rows else None)
                offset += take
                n += take
                if n >= size:
                    submit(slices, first, texts)
                    slices, texts, n = [], [], 0
        if slices:
            submit(slices, first, texts)
    except BaseException:
        handoff.abandon()
        raise
    handoff.wait()
    handoff.budget.check(handoff.result)


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
