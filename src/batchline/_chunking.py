"""How many records go into a chunk: pinned, or sized by the time a transaction takes.

The seed's "500 records at most" exists so that one transaction never runs long enough to
time out or hold locks for long. A fixed count serves that badly both ways: over a network
500 small records are a few milliseconds of work, so the per-chunk costs (round trips, the
COMMIT's fsync, the checkpoint) dominate; and 500 wide records can take seconds. So by
default a chunk grows or shrinks until its flush takes about ``target`` seconds, starting at
``start`` records, growing at most fourfold and shrinking at most by half from one chunk
to the next (a chunk well under its target is good evidence, so a short run reaches full
size in two steps; one too slow is cut back more carefully), and never above ``ceiling``
records (a mapped record holds about a kilobyte of Python
objects until its chunk commits, and two chunks are in memory at once: 5,000 keeps a run
under 80 MiB, and past a few thousand rows a chunk the per-commit cost is already amortised).
Only clean chunks are measured: a chunk that retried or isolated bad records took
longer for reasons a smaller chunk would not fix. ``chunk_size=N`` pins the count; the
pipeline's ``chunk_bytes`` still bounds a chunk's memory either way, and the dialects split
statements at the database's parameter and packet limits.
"""

from __future__ import annotations

__all__ = ["ChunkSizer"]


class ChunkSizer:
    """Chooses the next chunk's record count from how long the last clean ones took.

    Args:
        pinned: a fixed count (``chunk_size=N``), or None to size by time.
        target: the flush time, in seconds, a chunk is sized for.
        start: the first chunk's count when sizing by time.
        floor, ceiling: the counts a timed chunk stays between.
    """

    __slots__ = ("_size", "ceiling", "floor", "pinned", "target")

    def __init__(
        self,
        pinned: int | None = None,
        *,
        target: float = 0.2,
        start: int = 500,
        floor: int = 100,
        ceiling: int = 5_000,
    ) -> None:
        self.pinned = pinned
        self.target = target
        self.floor = floor
        self.ceiling = ceiling
        self._size = pinned if pinned is not None else start

    @property
    def size(self) -> int:
        """The record count to cut the next chunk at."""
        return self._size

    def observe(self, records: int, seconds: float, *, clean: bool) -> None:
        """A chunk of ``records`` took ``seconds`` to flush; ``clean`` if it needed no retry
        and no isolation."""
        if self.pinned is not None or not clean or records <= 0:
            return
        if records < min(self.floor, self._size):
            return  # a few records (the input's tail) say more about round trips than rows
        per_record = max(seconds, 1e-6) / records
        ideal = int(self.target / per_record)
        low, high = self._size // 2, self._size * 4
        self._size = max(self.floor, min(self.ceiling, high, max(low, ideal)))
