"""Handing closed chunks to the flush thread: one in flight while the next is collected.

Both loops that cut chunks (records mapped into row buffers, ``_run_loop``; Arrow batches
written in bulk, ``_arrow_loop``) hand them over the same way: wait for the chunk in flight
before sending the next (so at most two are in memory), time each flush for the chunk sizer
(only a clean one counts), tell a broker consumer what committed (``after_commit``), and
check the failure budget (``max_failures``) after each.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ._chunk import Chunk
from ._chunking import ChunkSizer
from ._flush import Flusher
from ._prepare import Prepared
from ._result import Result

__all__ = ["AfterCommit", "FailureBudget", "Handoff", "StopRun"]

#: ``after_commit(end)``: called on the flush thread once the chunk whose last record has
#: position ``end`` has committed (a broker consumer acknowledges its messages up to ``end``).
AfterCommit = Callable[[int], None]


class StopRun(Exception):
    """The failure budget is spent: the run stops cleanly with status failed."""


class FailureBudget:
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
                raise StopRun(
                    f"stopped: {failed} of {seen} records failed, "
                    f"more than max_failures={limit:.0%}"
                )
        elif failed > limit:
            raise StopRun(f"stopped: {failed} records failed, more than max_failures={int(limit)}")


class Handoff:
    """Sends each closed chunk to the flush thread; see the module's docstring.

    Args:
        pipelined: let the next chunk be collected while this one flushes (else each
            :meth:`submit` waits for its own flush).
    """

    def __init__(
        self,
        *,
        flusher: Flusher,
        sizer: ChunkSizer,
        budget: FailureBudget,
        worker: ThreadPoolExecutor,
        pipelined: bool,
        result: Result,
        after_commit: AfterCommit | None = None,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self.flusher = flusher
        self.sizer = sizer
        self.budget = budget
        self.worker = worker
        self.pipelined = pipelined
        self.result = result
        self.after_commit = after_commit
        self.on_cut = on_cut
        self._in_flight: Future[None] | None = None

    def _flush(self, closed: Chunk, end: int, prepared: Prepared | None) -> None:
        # on the flush thread: time the chunk, and tell whether it ran clean
        result = self.result
        retries, isolating = result.retries, result.isolation_flushes
        began = time.perf_counter()
        self.flusher.flush(closed, end, prepared)
        clean = result.retries == retries and result.isolation_flushes == isolating
        # (a chunk refused in bulk is isolated as rows: not clean, not measured)
        n = len(closed.arrow) if closed.arrow is not None else len(closed)
        self.sizer.observe(n, time.perf_counter() - began, clean=clean)
        if self.after_commit is not None:  # core hook: streams
            self.after_commit(end)

    def submit(self, closed: Chunk, end: int, prepared: Prepared | None) -> None:
        """Hand ``closed`` (its last record at position ``end``) to the flush thread, once
        the chunk before it has committed."""
        self.wait()
        future = self.worker.submit(self._flush, closed, end, prepared)
        self._in_flight = future
        if not self.pipelined:
            self.wait()
        if self.on_cut is not None:  # core hook: streams (the next record opens a chunk)
            self.on_cut()

    def wait(self) -> None:
        """Wait for the chunk in flight (raising what its flush raised), then check the
        failure budget."""
        future, self._in_flight = self._in_flight, None
        if future is not None:
            future.result()
            self.budget.check(self.result)

    def abandon(self) -> None:
        """The run is unwinding with an error: let the flush in progress finish (or fail)
        first; the error already raising is the one to report."""
        future, self._in_flight = self._in_flight, None
        if future is not None:
            with contextlib.suppress(BaseException):
                future.result()
