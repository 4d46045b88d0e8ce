"""The tasks that run on a Dask worker: one partition's run, and the partitions' job rows.

Why a module of its own: these functions are pickled by reference and imported by the worker
processes, so they must not need the client's state; each one builds its pipeline's engine in
the worker process (a copy of the pipeline) and disposes of it at the end.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._database import Session
from .._errors import BatchlineError, ConfigError, TransientExhausted
from .._job_lock import JobLock
from .._pipeline import MapFunction, Pipeline
from .._result import Result
from .._sources import read_file
from .._state import StateStore
from .._state_rows import JobState

__all__ = ["Raised", "partition_jobs", "records_of", "run_file", "run_records"]


def partition_jobs(pipeline: Pipeline, names: list[str], forget: bool) -> dict[str, JobState]:
    """Worker task: the job rows of the partitions ``names``; with ``forget``, drop them first
    (with their dead letters), so that every partition starts over.

    The jobs are dropped all together, holding every one's lock as a run would hold it: when
    another runner is running one of them, :class:`JobLocked` is raised and none is dropped.
    """
    local = copy.copy(pipeline)
    locks: list[JobLock] = []
    try:
        local.state_tables.create(local.engine)
        store = StateStore(local.state_tables, local.dialect)
        session = Session(local.engine, local.dialect)
        try:
            for name in names if forget else ():
                lock = JobLock(local.engine, local.dialect, local.state_tables, name)
                if lock.by_connection:
                    lock.on_connect(session, session.commit)
                else:
                    lock.take_file()
                locks.append(lock)
            session.begin()
            for name in names if forget else ():
                store.forget_job(session, name)
            wanted = set(names)
            jobs = {j.name: j for j in store.list_jobs(session) if j.name in wanted}
            session.commit()
        finally:
            session.rollback()
            for lock in locks:
                # should this fail, disposing of the engine below closes the connection
                # and the server drops its locks with it
                with contextlib.suppress(Exception):
                    lock.release(session if lock.by_connection else None, session.commit)
            session.close()
        return jobs
    finally:
        local.close()


@dataclass(frozen=True)
class Raised:
    """A partition raised a BatchlineError that a retry cannot fix; the client re-raises it."""

    error: BatchlineError


def run_records(
    pipeline: Pipeline,
    part: Any,
    map: MapFunction | None,
    job: str,
    key: Callable[[dict[str, Any]], Any] | None,
    spec: dict[str, Any] | None,
) -> Result | Raised:
    """Worker task: one in-memory partition (list of dicts or a pandas DataFrame)."""
    return _guarded(pipeline, job, lambda p: p.run(records_of(part), map, **_kw(job, key, spec)))


def run_file(
    pipeline: Pipeline,
    path: str,
    map: MapFunction | None,
    job: str,
    key: Callable[[dict[str, Any]], Any] | None,
    spec: dict[str, Any] | None,
    format: str | None,
) -> Result | Raised:
    """Worker task: one file, read on the worker so its fingerprint guards the resume."""
    if spec is not None and "file" in spec:  # a load spec: name this partition's file
        spec = {**spec, "file": os.path.abspath(path)}
    return _guarded(
        pipeline, job, lambda p: p.run(read_file(path, format), map, **_kw(job, key, spec))
    )


def _kw(job: str, key: Any, spec: dict[str, Any] | None) -> dict[str, Any]:
    # An attempt Dask starts again waits for the one it replaces (a worker declared dead
    # may still be running it) to give the partition's job back.
    return {"job": job, "idempotency_key": key, "spec": spec, "wait": True}


def _guarded(pipeline: Pipeline, job: str, run: Callable[[Pipeline], Result]) -> Result | Raised:
    # A copy: its own engine (made here, in this worker process), disposed of at the end.
    local = copy.copy(pipeline)
    try:
        return run(local)
    except BatchlineError as exc:
        if isinstance(exc, TransientExhausted):
            raise  # worth a retry by Dask: the checkpoint is intact
        return Raised(exc)
    finally:
        local.close()


def records_of(part: Any) -> Iterable[Mapping[str, Any]]:
    """A partition's records; a pandas DataFrame's missing values become None."""
    if hasattr(part, "to_dict") and hasattr(part, "columns"):
        frame = part.astype(object).where(part.notna(), None)
        records: list[dict[str, Any]] = frame.to_dict("records")
        return records
    if isinstance(part, Iterable):
        return part
    raise ConfigError(f"a partition must hold records, got {type(part).__name__}")
