"""Fewer cyclic garbage collections while a load runs.

Why: a chunk's records, rows and references live until the chunk commits, so they survive
the collector's young generations and are promoted to the oldest one; every few chunks that
triggers a full collection, which walks every object in the process. With CPython's default
thresholds (700, 10, 10) this measured 20-30% of a load's CPU time on the bench workload
(``bench/gc_cost.py``). None of these objects form cycles: reference counting frees them.

So while at least one ``Pipeline.run`` is running, the youngest generation's threshold is
raised to ``YOUNG_THRESHOLD`` net allocations (the setting mypy and others use), and put back
when the last run ends. Cyclic garbage is still collected, just in fewer, larger passes.
A threshold the user set higher than ours, or 0 (automatic collection off), is left alone;
so is a threshold the user changed while the run was going. ``Pipeline(tune_gc=False)``
turns this off.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["YOUNG_THRESHOLD", "fewer_collections"]

YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_runs = 0
_saved: tuple[int, int, int] | None = None  # the thresholds to put back
_ours: tuple[int, int, int] | None = None  # what we set, to tell whether the user changed it


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the young-generation threshold for the duration (reentrant, thread-safe)."""
    global _runs, _saved, _ours
    with _lock:
        if _runs == 0:
            current: tuple[int, int, int] = gc.get_threshold()
            if 0 < current[0] < YOUNG_THRESHOLD:
                _saved, _ours = current, (YOUNG_THRESHOLD, current[1], current[2])
                gc.set_threshold(*_ours)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                if _saved is not None and gc.get_threshold() == _ours:
                    gc.set_threshold(*_saved)
                _saved = _ours = None
