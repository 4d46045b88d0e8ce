"""What to do when a batch fails because of its data: find the bad records, keep the rest.

Each policy is a small object with one method. They drive a ``Committer`` (the flusher):
``commit(batch, end)`` applies a part of the chunk under a savepoint of the chunk's one
transaction and raises :class:`DataFailure` (with that part undone) when a record is at
fault; ``fail(item, exc)`` turns a record found bad on its own into a dead letter. A record
is its index in the chunk; ``positions`` gives its position (where a part ends). Parts
are always tried left to right, so when two records conflict the earlier one wins, as it
would applying them one at a time. The chunk still commits once, with its checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._errors import ConfigError
from ._failures import DataFailure

__all__ = ["Bisect", "Isolation", "NoIsolation", "Sequential", "isolation_for"]


class Committer(Protocol):
    def commit(self, batch: Sequence[int], end: int) -> None: ...

    def fail(self, item: int, exc: DataFailure) -> None: ...

    @property
    def positions(self) -> Sequence[int]:
        """The chunk's records' positions, by index."""
        ...

    @property
    def locates_rows(self) -> bool:
        """Whether a failed try can name the failing record (see ``DataFailure.item``)."""
        ...

    @property
    def result(self) -> _Counts: ...


class _Counts(Protocol):
    isolation_flushes: int


class Isolation(Protocol):
    """A fallback policy for a failed batch."""

    name: str
    #: Whether the flush may leave a failing record out of an insert and go on (the
    #: shortcut of ``Bisect``'s set-aside search; see ``_apply.Applier._leave_out``).
    leaves_out: bool

    def isolate(self, items: Sequence[int], end: int, exc: DataFailure, to: Committer) -> None: ...


def _try(to: Committer, batch: Sequence[int], end: int) -> DataFailure | None:
    to.result.isolation_flushes += 1
    try:
        to.commit(batch, end)
    except DataFailure as exc:
        return exc
    return None


def _index(items: Sequence[int], item: int | None) -> int | None:
    if item is None:
        return None
    try:
        return items.index(item)
    except ValueError:
        return None


class Bisect:
    """Split the failed batch in halves until each bad record stands alone: ~2·k·log2(n/k).

    Where the failing row is known (PostgreSQL's COPY reports its line; SQLite inserts row
    by row while isolating), the search goes straight to it instead. Most such records never
    get here: the flusher leaves a record out of the insert when the failing row is its first
    write of the try, and the try goes on. When the row failed with only earlier records'
    rows in its table, the record is set aside and the rest tried at once: one try per bad
    record (``_set_aside``). Otherwise the records before it are committed in one try, it
    is tried alone, and the search goes on after it: about three tries per bad record. In
    all of these, a guess is only kept once a try that depends on it lands.
    """

    name = "bisect"
    leaves_out = True

    def isolate(self, items: Sequence[int], end: int, exc: DataFailure, to: Committer) -> None:
        self._split(items, end, exc, to)

    def _split(
        self, items: Sequence[int], end: int, exc: DataFailure | None, to: Committer
    ) -> None:
        if not items:
            return
        if len(items) == 1:
            if exc is None:
                exc = _try(to, items, end)
            if exc is not None:
                to.fail(items[0], exc)
            return
        at = _index(items, exc.item) if exc is not None else None
        if at is None and to.locates_rows and (exc is None or not exc.located):
            # Ask the database which row: the batch fails again, and this time says where.
            exc = _try(to, items, end)
            if exc is None:
                return
            at = _index(items, exc.item)
        if at is not None:
            assert exc is not None
            if exc.only_earlier:
                self._set_aside(items, at, end, exc, to)
            else:
                self._around(items, at, end, to)
            return
        mid = len(items) // 2
        left, right = items[:mid], items[mid:]
        left_end = to.positions[left[-1]]
        left_exc = _try(to, left, left_end)
        if left_exc is not None:
            self._split(left, left_end, left_exc, to)
            right_exc = _try(to, right, end)
            if right_exc is not None:
                self._split(right, end, right_exc, to)
        else:
            # The whole failed and its left half did not: the fault is on the right, so
            # split it straight away rather than paying for a flush that would fail.
            self._split(right, end, None, to)

    def _set_aside(
        self, items: Sequence[int], at: int, end: int, exc: DataFailure, to: Committer
    ) -> None:
        """``items[at]`` failed with only the records before it in its table: set it aside
        and try all the others at once, setting aside each record named the same way.

        When a try lands, every record before each one set aside landed with it, so each
        failed exactly as it would have one record at a time: they become dead letters,
        one try per bad record. A failure that cannot be pinned on a record that way (a
        later write failed) undoes the guesses: the search starts again from the first
        named record, verifying each step (``_around``).
        """
        first = at
        aside: list[tuple[int, DataFailure]] = []
        rest = list(items)
        failure: DataFailure | None = exc
        while failure is not None:
            aside.append((rest.pop(at), failure))
            if not rest:
                break
            failure = _try(to, rest, end)
            if failure is None:
                break
            named = _index(rest, failure.item)
            if named is None or not failure.only_earlier or named < at:
                # (a record before the last one set aside failing now would change the
                # ground it failed on: not a case to guess in)
                self._around(items, first, end, to)
                return
            at = named
        for item, why in aside:
            to.fail(item, why)

    def _around(self, items: Sequence[int], at: int, end: int, to: Committer) -> None:
        """``items[at]`` was named as failing: commit what is before it, try it alone, go on."""
        left, named, right = items[:at], items[at], items[at + 1 :]
        if left:
            left_end = to.positions[left[-1]]
            left_exc = _try(to, left, left_end)
            if left_exc is not None:
                self._split(left, left_end, left_exc, to)
        named_exc = _try(to, [named], to.positions[named] if right else end)
        if named_exc is not None:
            to.fail(named, named_exc)
        if right:
            self._split(right, end, None, to)


class Sequential:
    """Retry the failed batch one record per transaction (the seed's fallback)."""

    name = "sequential"
    leaves_out = False

    def isolate(self, items: Sequence[int], end: int, exc: DataFailure, to: Committer) -> None:
        for i, item in enumerate(items):
            item_end = end if i == len(items) - 1 else to.positions[item]
            failure = _try(to, [item], item_end)
            if failure is not None:
                to.fail(item, failure)


class NoIsolation:
    """Fail the whole batch: every record of it is dead-lettered with the batch's error."""

    name = "none"
    leaves_out = False

    def isolate(self, items: Sequence[int], end: int, exc: DataFailure, to: Committer) -> None:
        chunk_exc = DataFailure(
            f"batch failed (fallback='none'): {exc.message}",
            exc.error_class,
            exc.code,
            stage=exc.stage,
        )
        for item in items:
            to.fail(item, chunk_exc)


_POLICIES: dict[str, type[Bisect] | type[Sequential] | type[NoIsolation]] = {
    "bisect": Bisect,
    "sequential": Sequential,
    "none": NoIsolation,
}


def isolation_for(fallback: str | Isolation) -> Isolation:
    if not isinstance(fallback, str):
        return fallback
    cls = _POLICIES.get(fallback)
    if cls is None:
        raise ConfigError(f"fallback must be one of {sorted(_POLICIES)}, not {fallback!r}")
    return cls()
