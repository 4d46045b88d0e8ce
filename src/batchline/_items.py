"""A mapped record waiting in a chunk: its position, its payload and the writes it emitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._writes import Ref

__all__ = ["Failure", "Item", "Op"]

#: One emitted row: (index of the declared write, its columns, its values in that order).
Op = tuple[int, tuple[str, ...], tuple[Any, ...]]


@dataclass(slots=True)
class Failure:
    """Why a record did not land; becomes a dead letter and a ``FailedItem``."""

    stage: str  # "read" | "map" | "lookup" | "write"
    error_class: str
    message: str


@dataclass(slots=True, eq=False)
class Item:
    """One record of a chunk.

    The mapping ran exactly once to produce ``ops``; flushes and isolation only ever replay
    these ops, never user code. ``failure`` is set for records that failed before the
    flush (unreadable, or the mapping raised): they only need a dead letter.
    """

    position: int
    line: int
    record: Any
    ops: list[Op] = field(default_factory=list)
    key: str | None = None  # idempotency ledger key (hashed)
    refs: list[Ref] | None = None  # the lookup references among the ops' values
    failure: Failure | None = None
    dead_letter_id: int | None = None  # set when the record is a replayed dead letter
    attempts: int = 1
