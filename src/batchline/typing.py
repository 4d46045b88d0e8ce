"""Types for code that plugs into batchline: the mapping function's signature, and the
progress callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ._out import Out
from ._result import FailedItem, Result

__all__ = ["ChunkCallback", "IdempotencyKey", "MapFunction"]


class MapFunction(Protocol):
    """``map(record, out)``: read one record, emit its writes through ``out``.

    It runs once per record, in input order, on the caller's thread; raising fails that
    record only (stage ``map``).
    """

    def __call__(self, record: dict[str, Any], out: Out, /) -> None: ...


class IdempotencyKey(Protocol):
    """``key(record)``: a value (tuple, str, int…) that identifies the record across runs."""

    def __call__(self, record: dict[str, Any], /) -> Any: ...


class ChunkCallback(Protocol):
    """``on_chunk(result, failed)``: called after each chunk commits, on the flush thread.

    ``result`` is the run's :class:`~batchline.Result` so far (read it, do not change it);
    ``failed`` are the records that chunk dead-lettered, at every stage. Keep it quick: the
    next chunk waits for it. If it raises, the run stops there (what committed stays).
    """

    def __call__(self, result: Result, failed: Sequence[FailedItem], /) -> None: ...
