"""The statement interface a dialect writes through, apart from the dialects themselves.

A dialect's methods take an :class:`Executor` (``batchline._database.Session`` is the one the
runs use) and never a driver connection of their own, so every statement goes through the
session: counted, pipelined where the driver pipelines, retried with its chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Executor"]


class Executor:
    """The statement interface a dialect writes through (implemented by the session).

    It counts statements, so tests and the benchmark can see how many reach the database.
    """

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def copy_rows(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def execute_each(self, sql: str, rows: Iterable[Sequence[Any]], count: int) -> None:
        """Run ``sql`` once per row of ``rows`` (the driver's ``executemany``), taking
        the rows one at a time; ``count`` is how many there are, for the listeners."""
        raise NotImplementedError

    @property
    def driver_connection(self) -> Any:
        raise NotImplementedError

    # Where statements are pipelined (psycopg), what was sent is waited for here; elsewhere
    # each statement has been waited for already, so these do nothing.
    def sync(self) -> None:
        """Wait for every statement sent so far, raising the first one's error."""

    def leave_pipeline(self, exc: BaseException | None = None) -> None:
        """Stop pipelining, dropping what an aborted pipeline holds after ``exc``."""

    def enter_pipeline(self) -> None:
        """Pipeline again, inside the current transaction."""
