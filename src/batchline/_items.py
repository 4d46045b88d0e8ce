"""What the engine says of a chunk's records besides their rows: why one failed, and its
rows one by one.

A record itself is no object: it is its index in its chunk, whose lists hold its position,
line and payload (``_chunk.Chunk``). The rows it emitted are in the chunk's column-shaped
buffers (``_chunk.Rows``), each row beside the index of the record that emitted it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["DeadRow", "Failure", "Op"]

#: One emitted row: (index of the declared write, its columns, its values in that order).
Op = tuple[int, tuple[str, ...], tuple[Any, ...]]


@dataclass(slots=True)
class Failure:
    """Why a record did not land; becomes a dead letter and a ``FailedItem``."""

    stage: str  # "read" | "map" | "lookup" | "write"
    error_class: str
    message: str


class DeadRow(NamedTuple):
    """A record that failed before it was a chunk's record at all (a CSV line the Arrow path
    could not read, or whose value does not fit its column): what its dead letter needs."""

    position: int
    line: int
    record: Any
    failure: Failure
