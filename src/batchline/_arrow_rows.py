"""An Arrow chunk's records as the row path builds a chunk of them: for a chunk whose columns
the bulk path cannot write exactly, or one the database refused in bulk (then isolation
finds the bad records and dead-letters them, as for any row chunk)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._chunk import Chunk
from ._errors import ConfigError
from ._items import DeadRow, Failure, Op
from ._out import Out, WriteIndex
from ._writes import Write

if TYPE_CHECKING:
    from ._arrow_write import ArrowPart

__all__ = ["rows_chunk"]


def rows_chunk(
    part: ArrowPart,
    writes: Sequence[Write],
    index: WriteIndex,
    above: int,
    too_large: Callable[[list[Op]], Failure | None] | None,
    map_fn: Callable[[dict[str, Any], Out], None] | None = None,
) -> Chunk:
    """``part``'s records as the row path builds a chunk of them (see ``_run_loop._loop``):
    each at its position in the chunk's record lists, mapped (or written as it is) through
    ``Out``, then sealed. A map function that raises fails its record alone."""
    chunk = Chunk(writes)
    out = Out(index, chunk)
    if part.raw is not None:
        _raw_rows(part, chunk, out, map_fn)
        chunk.seal(above, too_large)
        return chunk
    table = writes[0].table
    rows = part.data.to_pylist()
    if part.positions is not None:  # (some rows of a chunk: ArrowPart.subset)
        chunk.positions = list(part.positions)
    else:
        chunk.positions = list(range(part.first, part.first + len(rows)))
    chunk.lines = chunk.positions  # (a row's line is its position; the lists are not grown)
    chunk.records = rows
    for item, row in enumerate(rows):
        out.item = item
        try:
            if map_fn is None:
                out.write(table, row)
            else:
                map_fn(row, out)
        except ConfigError:
            raise
        except Exception as exc:  # the mapping failed this record only, as in _loop
            chunk.fail(item, Failure("map", type(exc).__name__, f"{type(exc).__name__}: {exc}"))
    chunk.seal(above, too_large)
    return chunk


def _raw_rows(
    part: ArrowPart, chunk: Chunk, out: Out, map_fn: Callable[[dict[str, Any], Out], None] | None
) -> None:
    """A CSV or JSON Lines chunk's records as the row path reads and maps them
    (``_run_loop._loop``): its dead letters as found when it was converted, every other
    record mapped anew (a JSON Lines record from its line)."""
    from ._csv_blocks import META
    from ._jsonl_blocks import SLOW
    from ._jsonl_convert import record_of

    assert map_fn is not None, "a CSV chunk without the load's map"
    known = {dead.position: dead for dead in part.failed}
    positions, lines, records = chunk.positions, chunk.lines, chunk.records
    for item, row in enumerate(part.raw.to_pylist()):
        position, line = row.pop(META[0]), row.pop(META[1])
        error = row[META[2]]
        if row.pop(SLOW, None) is not None and error is None:
            row = record_of(row)  # a JSON Lines record: its line, as the row path reads it
        else:
            text = row.pop(META[3])
            del row[META[2]]
        positions.append(position)
        lines.append(line)
        failed = known.get(position)
        if failed is None and error is not None:  # (a chunk convert sent whole)
            failed = DeadRow(position, line, text, Failure("read", "ReadError", error))
        if failed is not None:
            records.append(failed.record)
            chunk.fail(item, failed.failure)
            continue
        records.append(row)
        out.item = item
        try:
            map_fn(row, out)
        except ConfigError:
            raise
        except Exception as exc:
            chunk.fail(item, Failure("map", type(exc).__name__, f"{type(exc).__name__}: {exc}"))
