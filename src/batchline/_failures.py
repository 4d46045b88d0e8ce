"""A driver's exception, translated once into what batchline does about it.

Each dialect classifies its driver's errors (SQLSTATE classes, MySQL error numbers, SQLite
messages) into transient, data or fatal (``Dialect.classify``). This module turns that class
into the exception the flush acts on:

- transient → :class:`~batchline._retry.TransientFailure`: the connection is thrown away and
  the chunk retried;
- data → :class:`DataFailure`: the batch is undone and its bad records are found
  (``_isolate``), carrying the record the database named, when it named one;
- fatal → :class:`~batchline.FatalDatabaseError`: the run stops, nothing is dead-lettered.

Exceptions that are already one of these (or a :class:`~batchline.JobLocked`) pass through.
"""

from __future__ import annotations

from typing import NoReturn

from ._database import Session
from ._dialects import Dialect, ErrorKind
from ._errors import FatalDatabaseError, JobLocked
from ._retry import TransientFailure

__all__ = ["DataFailure", "translate"]


class DataFailure(Exception):
    """Internal: a transaction failed because some record's data is bad."""

    def __init__(
        self,
        message: str,
        error_class: str,
        code: str | None = None,
        *,
        stage: str = "write",
        item: int | None = None,
        located: bool = False,
        only_earlier: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_class = error_class
        self.code = code
        self.stage = stage
        #: The record (its index in the chunk) the database named as the failing one,
        #: when it can say (COPY's line; SQLite's row count).
        self.item = item
        #: Whether the failed try could have named it (so ``item is None`` means another
        #: write failed, not that the question was not asked).
        self.located = located
        #: Whether ``item`` failed in the first statement of the try to write its table, so
        #: only rows of the records before it were there: the records after it did not
        #: cause the failure.
        self.only_earlier = only_earlier


def translate(
    exc: BaseException,
    where: str,
    *,
    dialect: Dialect,
    session: Session,
    job: str,
    named: int | None = None,
    located: bool = False,
    only_earlier: bool = False,
) -> NoReturn:
    """Raise what ``exc``, raised while doing ``where``, means for the run.

    Args:
        named, located, only_earlier: for a data failure, what the try knows of the record
            at fault (see :class:`DataFailure`).
    """
    if isinstance(exc, (DataFailure, FatalDatabaseError, TransientFailure, JobLocked)):
        raise exc
    c = dialect.classify(exc)
    message = f"{where}: {c.message}" if where else c.message
    if c.kind is ErrorKind.TRANSIENT:
        session.discard()
        raise TransientFailure(message, c.code, c.error_class) from exc
    if c.kind is ErrorKind.DATA:
        raise DataFailure(
            message,
            c.error_class,
            c.code,
            stage="lookup" if where.startswith("lookup") else "write",
            item=named,
            located=located,
            only_earlier=named is not None and only_earlier,
        ) from exc
    raise FatalDatabaseError(
        f"{message} (stopping: this is not the records' fault)", code=c.code, job=job
    ) from exc
