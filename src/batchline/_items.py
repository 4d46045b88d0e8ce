"""A mapped record waiting in a chunk: its position, its payload and its fate.

The rows it emitted are not kept here but in the chunk's column-shaped buffers
(``_chunk.Rows``), each row beside the record that emitted it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    The mapping ran exactly once to emit its rows (into the chunk's buffers); flushes and
    isolation only ever replay those rows, never user code. ``failure`` is set for records
    that failed before the flush (unreadable, the mapping raised, a row broke a rule or is
    too large): they only need a dead letter. Compared by identity: a chunk's buffers
    point at their records.
    """

    position: int
    line: int
    record: Any
    key: str | None = None  # idempotency ledger key (hashed)
    failure: Failure | None = None
    dead_letter_id: int | None = None  # set when the record is a replayed dead letter
    attempts: int = 1
