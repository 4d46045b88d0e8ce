"""Chunks sized by time (``_chunking``): the policy alone, then through a real run."""

from __future__ import annotations

import sqlalchemy as sa

import batchline as bl
from batchline._chunking import ChunkSizer


def test_a_pinned_size_never_changes() -> None:
    sizer = ChunkSizer(250)
    sizer.observe(250, 10.0, clean=True)
    sizer.observe(250, 0.0001, clean=True)
    assert sizer.size == 250


def test_a_timed_size_moves_toward_the_target_at_most_four_times_up_or_half_down() -> None:
    sizer = ChunkSizer(target=0.2, start=500)
    sizer.observe(500, 0.01, clean=True)  # 20x too fast: four times, no more
    assert sizer.size == 2000
    sizer.observe(2000, 0.2, clean=True)  # on target
    assert sizer.size == 2000
    sizer.observe(2000, 0.25, clean=True)  # a bit slow: 1,600
    assert sizer.size == 1600
    sizer.observe(1600, 0.1, clean=True)  # 2x too fast
    assert sizer.size == 3200
    sizer.observe(3200, 30.0, clean=True)  # far too slow: halves, no more
    assert sizer.size == 1600


def test_a_timed_size_stays_between_floor_and_ceiling() -> None:
    sizer = ChunkSizer(target=0.2, start=500, floor=100, ceiling=1500)
    for _ in range(5):
        sizer.observe(sizer.size, 0.0001, clean=True)
    assert sizer.size == 1500
    for _ in range(10):
        sizer.observe(sizer.size, 100.0, clean=True)
    assert sizer.size == 100


def test_chunks_that_retried_or_isolated_or_were_a_short_tail_are_not_measured() -> None:
    sizer = ChunkSizer(target=0.2, start=500)
    sizer.observe(500, 100.0, clean=False)
    sizer.observe(20, 100.0, clean=True)
    assert sizer.size == 500


def _sizes(url: str, records: int, **kwargs: object) -> list[int]:
    """The record count of each committed chunk of a run of ``records``."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    pipeline = bl.Pipeline(engine, writes=[bl.Insert("t")], **kwargs)  # type: ignore[arg-type]
    seen: list[int] = []

    def on_chunk(result: bl.Result, failed: object) -> None:
        seen.append(result.records_seen - sum(seen))

    result = pipeline.run(({"id": i} for i in range(1, records + 1)), on_chunk=on_chunk)
    engine.dispose()
    assert result.status == "success" and result.items_processed == records
    return seen


# The size of the chunk after next is set when a chunk has been measured: the mapping of
# chunk N+1 runs while chunk N flushes, so the first two chunks both have the start's 500.


def test_by_default_chunks_grow_while_their_flush_is_quicker_than_the_target(
    sqlite_url: str,
) -> None:
    sizes = _sizes(sqlite_url, 8000, chunk_seconds=60.0)  # a target no flush comes near
    assert sizes[:4] == [500, 500, 2000, 5000]  # up to fourfold a step, to the ceiling


def test_by_default_chunks_shrink_while_their_flush_is_slower_than_the_target(
    sqlite_url: str,
) -> None:
    sizes = _sizes(sqlite_url, 2000, chunk_seconds=1e-9)  # a target every flush misses
    assert sizes[:5] == [500, 500, 250, 125, 100]
    assert min(sizes[:-1]) == 100  # the floor (the last chunk is what was left)


def test_chunk_size_pins_the_count(sqlite_url: str) -> None:
    assert _sizes(sqlite_url, 1000, chunk_size=100, chunk_seconds=60.0) == [100] * 10
