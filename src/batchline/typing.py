"""Types for code that plugs into batchline: the mapping function's signature."""

from __future__ import annotations

from typing import Any, Protocol

from ._out import Out

__all__ = ["IdempotencyKey", "MapFunction"]


class MapFunction(Protocol):
    """``map(record, out)``: read one record, emit its writes through ``out``.

    It runs once per record, in input order, on the caller's thread; raising fails that
    record only (stage ``map``).
    """

    def __call__(self, record: dict[str, Any], out: Out, /) -> None: ...


class IdempotencyKey(Protocol):
    """``key(record)``: a value (tuple, str, int…) that identifies the record across runs."""

    def __call__(self, record: dict[str, Any], /) -> Any: ...
