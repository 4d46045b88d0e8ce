"""The one exception tree of batchline.

Every error batchline raises on purpose derives from :class:`BatchlineError`, so callers
can catch one class. The tree is kept shallow::

    BatchlineError
    ├── ConfigError            the pipeline or a call is wrongly set up (a user bug)
    ├── SourceError            the input cannot be opened or read at all
    ├── ResumeMismatch         a job is resumed on a different source
    ├── JobLocked              another runner holds the job (or took it over mid-run)
    ├── JobSpecMismatch        a job is run again with a different load (table, mode, keys...)
    └── DatabaseError          the database refused, and the run cannot go on
        ├── FatalDatabaseError     no such table/column, syntax, permission: stop at once
        └── TransientExhausted     a transient failure outlasted the retries

Per-record problems (a constraint violation, a bad value, a map function that raised) are
*not* exceptions to the caller: those records go to the dead letters and the run goes on.

Driver exceptions are classified in one place per dialect (``_dialects``) and re-raised as
the most specific class here with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BatchlineError",
    "ConfigError",
    "DatabaseError",
    "FatalDatabaseError",
    "JobLocked",
    "JobSpecMismatch",
    "ResumeMismatch",
    "SourceError",
    "TransientExhausted",
]


class BatchlineError(Exception):
    """Root of every error batchline raises."""


class ConfigError(BatchlineError):
    """The pipeline, a write or a call is set up wrongly; fix the code, not the data."""


class SourceError(BatchlineError):
    """The input cannot be opened or read at all (a bad single record is a dead letter)."""


class ResumeMismatch(BatchlineError):
    """A job was resumed on a source other than the one it started on."""

    def __init__(self, job: str, expected: str | None, found: str | None) -> None:
        self.job = job
        self.expected = expected
        self.found = found
        super().__init__(
            f"job {job!r} was started on a different source (fingerprint {expected}, "
            f"this source is {found}); use another job name or pass restart=True"
        )

    def __reduce__(self) -> tuple[type[ResumeMismatch], tuple[str, str | None, str | None]]:
        # Pickle by the constructor's arguments (Exception pickles ``args``, the message):
        # a Dask worker sends it back to the client this way.
        return (type(self), (self.job, self.expected, self.found))


class JobLocked(BatchlineError):
    """Another runner holds the job: two runners of one job would both apply its records.

    Attributes:
        job: the job's name.
        holder: what the holder recorded about itself (``host``, ``pid``, ``since``), when
            known.
    """

    def __init__(
        self, job: str, holder: dict[str, object] | None = None, *, message: str | None = None
    ) -> None:
        self.job = job
        self.holder = holder
        if message is None:
            message = f"job {job!r} is being run by another runner"
            if holder:
                message += (
                    f" (host {holder.get('host')}, pid {holder.get('pid')}, "
                    f"since {holder.get('since')})"
                )
            message += "; wait for it to end (wait=True, or --wait) or use another job name"
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[Callable[..., JobLocked], tuple[object, ...]]:
        # Pickled by its fields (a Dask worker sends it back to the client).
        return (_job_locked, (self.job, self.holder, self.message))


def _job_locked(job: str, holder: dict[str, object] | None, message: str) -> JobLocked:
    return JobLocked(job, holder, message=message)


class JobSpecMismatch(BatchlineError):
    """A job was run again with a load spec that writes something else than the one it
    started with (another table, mode, key, columns, column types...).

    Attributes:
        job: the job's name.
        differences: ``(key, started, given)`` for each spec key that differs: the value the
            job was started with and the one this run gave (None where a key is absent).
    """

    def __init__(self, job: str, differences: Sequence[tuple[str, Any, Any]]) -> None:
        self.job = job
        self.differences = tuple((str(k), a, b) for k, a, b in differences)
        started = ", ".join(f"{k}={a!r}" for k, a, _ in self.differences)
        given = ", ".join(f"{k}={b!r}" for k, _, b in self.differences)
        super().__init__(
            f"job {job!r} was started with {started}, this run has {given}; "
            "use another job name or pass restart=True"
        )

    def __reduce__(
        self,
    ) -> tuple[type[JobSpecMismatch], tuple[str, tuple[tuple[str, Any, Any], ...]]]:
        return (type(self), (self.job, self.differences))


class DatabaseError(BatchlineError):
    """The database refused in a way that stops the run.

    Attributes:
        code: SQLSTATE (PostgreSQL) or the driver's error number (MySQL), when known.
        job: the job that was running, when there is one.
    """

    def __init__(self, message: str, *, code: str | None = None, job: str | None = None) -> None:
        self.code = code
        self.job = job
        super().__init__(message)


class FatalDatabaseError(DatabaseError):
    """A mistake that is not the records' fault: no such table or column, syntax, permission."""


class TransientExhausted(DatabaseError):
    """A transient failure (connection lost, deadlock, locked) outlasted every retry."""
