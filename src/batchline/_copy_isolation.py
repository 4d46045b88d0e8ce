"""A bulk ``COPY`` the database refuses, sent again without the row it names.

Why: when PostgreSQL refused a chunk's ``COPY`` (a duplicate key, a CHECK, NOT NULL, a text
too long), the whole chunk, up to 50,000 records, was rolled back and redone through the row
path (``ArrowPart.as_rows``): a Python dict, a map call and a tuple per record, then a staged
pass on the server. But the error says where it stopped: its context reads ``COPY t, line
1234``. So the chunk is sent again without that row: the rows before it, then the rows
after it, each part under a savepoint and handled the same way when it fails. Each
left-out row then goes the row path on its own, in the same transaction
(``Flusher._rows_left_out``), where it lands or becomes the very dead letter the row path
would have made of it (stage, line, reason). So a chunk with a few bad rows
costs a few more ``COPY`` statements, not the row path for all of its rows.

Which rows are known good: none, but for the one named. A CHECK, NOT NULL or a bad value
fails as its line is read, but a duplicate key only when the rows buffered before it are
written (PostgreSQL's COPY inserts up to 1,000 rows at a time): a row before the one named
may still hold a duplicate. So the rows before it are sent again first, each statement
under a savepoint, and any failure there is handled the same way; then the rows after it.
The row named is bad whatever else lands: a value its own checks refuse, or a key that
a row before it (or one in the table) already took, a row that did land.

How a line names a row: ``COPY``'s line counter is not a row counter. PostgreSQL counts a
newline inside a quoted field too, but not in the first record of the statement, and the
failing record's own newlines count before the error is raised; other versions may count
otherwise. So the stream is cut into rows first (:func:`cut_rows`: a newline outside
quotes ends a row; the cut must give exactly the chunk's row count, else nothing is
guessed), and line N of a statement that began at row s names a row i only when no way of
counting says otherwise: every count gives a number between i - s + 1 (rows) and the
number of physical lines up to the end of row i. When one row fits (always, where no field
holds a newline), it is left out; when several may, the rows before the first of them are
sent, and the next statement starts at it, where line 1 is unambiguous.

Only data errors that name a line are handled here: anything else (a transient or fatal
error, a deferred constraint or foreign key checked at the end of the statement, no line)
is raised as it is, and the flush handles the chunk as before. After :data:`MAX_LEFT_OUT`
rows (at least; a share of the chunk above that) the chunk's data is taken to be bad
throughout, and the error is raised too: the row path isolates such a chunk for less than
a ``COPY`` per bad row.

How much is sent again: a try after a failure sends a window of rows, not the whole rest
(the server reads, and drops, everything after the failing line), doubled each time it
lands, so a chunk with k bad rows sends about its own bytes plus a few windows per bad row.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._database import Session
from ._dialects import Dialect, ErrorKind

if TYPE_CHECKING:
    from ._apply import Tally
    from ._arrow_write import ArrowPart
    from ._chunk import Chunk
    from ._flush import Flusher

__all__ = [
    "MAX_LEFT_OUT",
    "CopyRows",
    "copy_leaving_out",
    "copy_line",
    "cut_rows",
    "left_out_part",
    "rows_left_out",
]

#: Rows a chunk's COPY may leave out before the chunk goes the row path whole; a chunk of
#: n rows may leave out ``max(MAX_LEFT_OUT, n // LEFT_OUT_SHARE)``. 0: never (as before).
MAX_LEFT_OUT = 8
LEFT_OUT_SHARE = 500
#: The fewest rows a try after a failure sends.
MIN_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class CopyRows:
    """A COPY stream cut into rows: ``ends[i]`` is the offset just past row i (its newline),
    ``lines[i]`` the physical lines from the start of the stream to the end of row i."""

    stream: memoryview
    ends: Sequence[int]
    lines: Sequence[int]

    def __len__(self) -> int:
        return len(self.ends)

    def piece(self, start: int, stop: int) -> memoryview:
        """The bytes of rows ``start`` … ``stop - 1``."""
        return self.stream[self.ends[start - 1] if start else 0 : self.ends[stop - 1]]

    def named(self, start: int, stop: int, line: int) -> tuple[int, int] | None:
        """The rows a statement that sent rows ``start`` … ``stop - 1`` may have meant by
        ``line``: the first and the last that fit some way of counting (see the module's
        docstring); None when none does."""
        base = self.lines[start - 1] if start else 0
        first = bisect.bisect_left(self.lines, base + line, lo=start, hi=stop)
        last = min(start + line - 1, stop - 1)
        return (first, last) if first <= last else None


def cut_rows(stream: Any, rows: int, quote: bytes | None) -> CopyRows | None:
    """``stream`` (COPY's CSV bytes, quoted with ``quote``, doubled to escape it) cut into
    its ``rows`` rows, or None when the cut does not give exactly that many.

    Found with Arrow compute over the bytes, not a Python loop: a newline ends a row when
    an even number of quotes comes before it (counted in bytes that wrap at 256, which
    keeps the count's parity). Where there are as many newlines as rows, every one ends a
    row, and the quotes are not counted at all."""
    import pyarrow as pa
    import pyarrow.compute as pc

    view = memoryview(stream).cast("B")
    size = len(view)
    if not size or not rows:
        return None
    data = pa.Array.from_buffers(pa.uint8(), size, [None, pa.py_buffer(view)])
    newlines = pc.indices_nonzero(pc.equal(data, 10))
    count = len(newlines)
    terminated = view[size - 1] == 10
    if count == rows - (0 if terminated else 1) or not quote:
        ends = newlines.to_pylist()
        lines = list(range(1, count + 1))
    else:
        quotes = pc.cumulative_sum(pc.cast(pc.equal(data, quote[0]), pa.uint8()))
        outside = pc.equal(pc.bit_wise_and(pc.take(quotes, newlines), 1), 0)
        at = pc.indices_nonzero(outside)  # (each row's newline, by its index among all)
        ends = pc.take(newlines, at).to_pylist()
        lines = [i + 1 for i in at.to_pylist()]
    ends = [e + 1 for e in ends]
    if not terminated:
        ends.append(size)
        lines.append(count + 1)
    if len(ends) != rows or ends[-1] != size:
        return None
    return CopyRows(view, ends, lines)


def copy_leaving_out(
    session: Session,
    sql: str,
    pieces: Sequence[Any],
    rows: int,
    *,
    quote: bytes | None,
    line_of: Callable[[BaseException], int | None],
) -> list[int]:
    """``COPY`` (``sql``) the ``rows`` rows of ``pieces`` (CSV bytes, in order) inside the
    open transaction, which holds nothing else yet, leaving out each row the database
    names as failing (see the module's docstring); returns the rows left out, by index,
    in order.

    ``line_of(exc)``: the line a data error names (1-based), or None for any other error.
    An error it gives no line for, or one past the chunk's limit, is raised, the
    transaction to be rolled back by the caller.
    """
    try:
        session.copy_data(sql, list(pieces), rows)
        return []
    except Exception as exc:
        refused = exc
        line = line_of(exc)
        if line is None or MAX_LEFT_OUT <= 0:
            raise
    cut = cut_rows(pieces[0] if len(pieces) == 1 else b"".join(pieces), rows, quote)
    if cut is None:
        raise refused
    limit = max(MAX_LEFT_OUT, rows // LEFT_OUT_SHARE)
    # the refused COPY aborted the transaction, and it held nothing else: begin it again
    session.rollback()
    session.begin()
    left_out: list[int] = []
    todo = [(0, rows)]  # ranges of rows still to send, the next one last
    start, stop = 0, rows  # the rows the refused statement sent
    failed = 0
    window = MIN_WINDOW
    while True:
        if line is not None:
            failed += 1
            named = cut.named(start, stop, line)
            if named is None or len(left_out) >= limit or failed > 2 * limit:
                raise refused
            first, last = named
            end = todo.pop()[1]
            if first == last:  # that row is bad whatever else lands
                left_out.append(first)
                if first + 1 < end:
                    todo.append((first + 1, end))
            elif first > start:
                todo.append((first, end))  # starting there, it will be line 1
            else:  # the first row sent, or one after it: the first alone says which
                todo += [(first + 1, end), (first, first + 1)]
            if start < first:  # sent again first: these rows may be bad too (see above)
                todo.append((start, first))
            window = max(MIN_WINDOW, 2 * (first - start))
        if not todo:
            return sorted(left_out)
        start, end = todo[-1]
        stop = min(end, start + window)
        session.execute("SAVEPOINT batchline_copy")
        try:
            session.copy_data(sql, cut.piece(start, stop), stop - start)
        except Exception as exc:
            line = line_of(exc)
            if line is None:
                raise
            session.leave_pipeline(exc)
            session.execute("ROLLBACK TO SAVEPOINT batchline_copy")
            session.execute("RELEASE SAVEPOINT batchline_copy")
            session.enter_pipeline()
            continue
        session.execute("RELEASE SAVEPOINT batchline_copy")
        line = None
        if stop < end:
            todo[-1] = (stop, end)
        else:
            todo.pop()
        window *= 2


def copy_line(dialect: Dialect, exc: BaseException) -> int | None:
    """The line of the COPY stream a data error names (1-based), else None. Not for a
    foreign key: it is checked when the statement ends, whatever line it names."""
    if dialect.classify(exc).kind is not ErrorKind.DATA:
        return None
    if getattr(exc, "sqlstate", None) == "23503":
        return None
    row = dialect.reported_row(exc)
    return None if row is None else row + 1


def left_out_part(part: ArrowPart, rows: Sequence[int]) -> ArrowPart:
    """The records of ``part`` at ``rows`` (indices into its data, in order) and those
    already dead letters: what the row path flushes when the COPY left those rows out."""
    from ._arrow_write import ArrowPart

    out = ArrowPart(part.data.take(rows), part.first, part._rows, end=part.end)
    if part.raw is None:
        out.positions = [part.first + r for r in rows]
        return out
    from ._csv_blocks import META

    # (data holds the records of raw that are not dead letters already, in order)
    dead = {d.position for d in part.failed}
    at = part.raw.column(META[0]).to_pylist()
    read = [i for i, p in enumerate(at) if p not in dead] if dead else range(len(at))
    keep = sorted({read[r] for r in rows} | {i for i, p in enumerate(at) if p in dead})
    out.raw, out.failed = part.raw.take(keep), part.failed
    return out


def rows_left_out(
    flusher: Flusher, part: ArrowPart, left_out: list[int], end: int, tally: Tally
) -> Chunk:
    """The rows ``flusher``'s bulk COPY left out, through its row path, in the chunk's
    transaction: tried together, then isolated, under savepoints, so each lands or becomes
    the dead letter the row path makes of it. Returns them (with the chunk's records
    already dead letters) as the row chunk the letters are built from."""
    from ._failures import DataFailure

    rows = left_out_part(part, left_out).as_rows()
    applier = flusher.applier
    applier.rows, applier.chunk, applier.savepoints = rows, tally, True
    try:
        flusher.resolver.begin(None)
        if rows.good:
            try:
                applier.commit(rows.good, end)
            except DataFailure as bad:
                flusher.isolation.isolate(rows.good, end, bad, applier)
    finally:
        applier.savepoints = False
    return rows
