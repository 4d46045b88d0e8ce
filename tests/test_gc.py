"""The collector is tuned while a run runs, put back after, and never fights the user."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import batchline as bl
from batchline._gc import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def _run(url: str, n: int = 2000, **kw: Any) -> tuple[bl.Result, set[int]]:
    seen: set[int] = set()

    def emit(record: dict[str, Any], out: bl.Out) -> None:
        seen.add(gc.get_threshold()[0])
        out.insert("t", record)

    pipeline = bl.Pipeline(url, writes=[bl.Insert("t")], **kw)
    with pipeline.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id integer PRIMARY KEY, name text)")
    result = pipeline.run(({"id": i, "name": f"n{i}"} for i in range(n)), emit)
    return result, seen


def test_a_run_raises_the_threshold_and_puts_it_back(sqlite_url: str) -> None:
    result, seen = _run(sqlite_url)
    assert result.items_processed == 2000
    assert seen == {YOUNG_THRESHOLD}
    assert gc.get_threshold() == (700, 10, 10)


def test_tune_gc_false_leaves_the_collector_alone(sqlite_url: str) -> None:
    _, seen = _run(sqlite_url, tune_gc=False)
    assert seen == {700}


def test_a_run_collects_less_often(sqlite_url: str) -> None:
    collections = {True: 0, False: 0}
    tuned = [True]

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections[tuned[0]] += 1

    gc.callbacks.append(count)
    try:
        _run(sqlite_url, n=20_000)
        tuned[0] = False
        _run(sqlite_url.replace("test.db", "test2.db"), n=20_000, tune_gc=False)
    finally:
        gc.callbacks.remove(count)
    assert collections[True] * 10 < collections[False], collections


def test_a_higher_threshold_or_a_disabled_one_is_left_alone() -> None:
    for mine in ((100_000, 10, 10), (0, 10, 10)):
        gc.set_threshold(*mine)
        with fewer_collections():
            assert gc.get_threshold() == mine
        assert gc.get_threshold() == mine


def test_a_threshold_the_user_changes_during_a_run_is_kept() -> None:
    with fewer_collections():
        gc.set_threshold(1234, 5, 5)
    assert gc.get_threshold() == (1234, 5, 5)


def test_concurrent_runs_put_it_back_when_the_last_one_ends() -> None:
    first_in, second_out = threading.Event(), threading.Event()
    during: list[int] = []

    def other() -> None:
        with fewer_collections():
            first_in.set()
            second_out.wait(10)
            during.append(gc.get_threshold()[0])

    t = threading.Thread(target=other)
    t.start()
    assert first_in.wait(10)
    with fewer_collections():
        pass
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the other run is still going
    second_out.set()
    t.join(10)
    assert during == [YOUNG_THRESHOLD]
    assert gc.get_threshold() == (700, 10, 10)


def test_a_run_leaves_no_cyclic_garbage_per_chunk(tmp_path: Any) -> None:
    # With fewer collections, garbage that only the cyclic collector frees would pile up
    # between passes: memory would grow with the input. A run's garbage must not grow with
    # its chunks (it once held a tenacity Retrying per chunk, a reference cycle).
    def garbage(chunks: int) -> int:
        url = f"sqlite:///{tmp_path / f'g{chunks}.db'}"
        _run(url, n=10)  # tables, imports, caches: the one-time garbage
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            pipeline = bl.Pipeline(url, writes=[bl.Insert("t")], chunk_size=10)
            pipeline.run({"id": i, "name": "x"} for i in range(100, 100 + 10 * chunks))
            gc.collect()
            found = len(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        return found

    few, many = garbage(5), garbage(100)
    assert many - few < 50, (few, many)
