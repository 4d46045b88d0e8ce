"""Helpers for testing code that uses batchline (and batchline itself).

``capture_statements`` records every statement a pipeline sends, so a test can assert how
many round trips a load costs without timing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ._pipeline import Pipeline

__all__ = ["CapturedStatements", "capture_statements"]


@dataclass
class CapturedStatements:
    """The statements captured so far, as (sql, rows carried) pairs."""

    statements: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, sql: str, rows: int) -> None:
        self.statements.append((sql, rows))

    def __len__(self) -> int:
        return len(self.statements)

    def matching(self, fragment: str) -> list[str]:
        """The statements whose SQL contains ``fragment`` (case-insensitive)."""
        low = fragment.lower()
        return [sql for sql, _ in self.statements if low in sql.lower()]


@contextmanager
def capture_statements(pipeline: Pipeline) -> Iterator[CapturedStatements]:
    """Capture every statement ``pipeline`` sends while the block runs."""
    captured = CapturedStatements()
    pipeline.statement_listeners.append(captured)
    try:
        yield captured
    finally:
        pipeline.statement_listeners.remove(captured)
