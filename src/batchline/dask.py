"""Partitioned loads on Dask (``dask.distributed``): one job per partition, exactly once each.

When one process is not enough, the input is split into partitions (the partitions of a Dask
bag or dataframe, or one file each) and every partition runs ``pipeline.run`` on a worker as
its own job, ``<job>/<00000>``, with its own checkpoint in the target database. A worker that
dies mid-partition loses nothing: its open transaction is rolled back by the database, Dask
reschedules the task (a task whose worker died is retried up to the scheduler's
``allowed-failures``; one that raised, up to ``retries`` times) and the retry resumes after the
partition's last committed chunk instead of repeating its writes.

The pipeline travels to the workers by pickle, without its engine: each task builds its own
engine and connection pool on the worker and disposes of it at the end. So a pipeline must be
built from a URL, not an Engine. While a partition runs, it holds its job as every run does
(``batchline._job_lock``: an advisory lock, ``GET_LOCK``, or a file lock for SQLite), and a
retried attempt waits for it, so two attempts of the same partition never write side by side,
even when the scheduler wrongly declared a worker dead that is still running.

Increments and upserts from different workers to the same keys take row locks in key order
(rows are sorted by key within each chunk), and deadlocks are retried as transient failures,
so concurrent partitions do not fail on lock order.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import glob
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from ._database import Session, make_engine
from ._errors import (
    BatchlineError,
    ConfigError,
    DatabaseError,
    JobSpecMismatch,
    SourceError,
    TransientExhausted,
)
from ._job_lock import JobLock
from ._pipeline import MapFunction, Pipeline
from ._result import MAX_FAILED_ITEMS, Result, Status
from ._sources import read_file
from ._state import StateStore
from ._state_rows import JobState

if TYPE_CHECKING:
    from distributed import Client, Future

    from ._infer import ColumnSpec

__all__ = ["DistributedResult", "load_files", "run_partitions"]

log = logging.getLogger("batchline")

_MAX_JOB = 240  # the jobs table holds 255 characters; "/00000" and a margin are added


@dataclass(slots=True)
class DistributedResult:
    """The combined outcome of a partitioned run; ``partitions`` holds each partition's Result.

    Counts are the partitions' sums. :func:`run_partitions` takes each partition's counts
    from what its job row says this call committed, not from the Result of the attempt that
    finished it: an attempt on a worker that died returns nothing, and the retry that resumed
    after it counts only its own part. ``status`` is ``success`` when every partition succeeded,
    ``failed`` when every partition failed or any stopped early (its ``error`` is set), else
    ``partial_success``. ``processing_time_seconds`` is the wall time of the distributed run
    (cluster start-up excluded), so ``records_per_second`` is the cluster's throughput.
    """

    job: str
    partitions: list[Result] = field(default_factory=list)
    processing_time_seconds: float = 0.0

    def _sum(self, name: str) -> int:
        return sum(int(getattr(r, name)) for r in self.partitions)

    @property
    def status(self) -> Status:
        parts = self.partitions
        if all(r.status == "success" for r in parts):
            return "success"
        if all(r.status == "failed" for r in parts) or any(
            r.status == "failed" and r.error for r in parts
        ):
            return "failed"
        return "partial_success"

    @property
    def items_processed(self) -> int:
        return self._sum("items_processed")

    @property
    def items_failed(self) -> int:
        return self._sum("items_failed")

    @property
    def duplicates_skipped(self) -> int:
        return self._sum("duplicates_skipped")

    @property
    def records_seen(self) -> int:
        return self._sum("records_seen")

    @property
    def records_per_second(self) -> float:
        if self.processing_time_seconds <= 0:
            return 0.0
        return self.records_seen / self.processing_time_seconds

    @property
    def error(self) -> str | None:
        errors = [f"{r.job}: {r.error}" for r in self.partitions if r.error]
        return "; ".join(errors) if errors else None

    @property
    def failed_items(self) -> list[dict[str, Any]] | None:
        """Failed records of all partitions (at most 1000), each naming its partition's job."""
        items: list[dict[str, Any]] = []
        for r in self.partitions:
            for f in r.failed_items_list:
                if len(items) >= MAX_FAILED_ITEMS:
                    return items
                items.append({"job": r.job, **f.to_dict()})
        return items or None

    def to_dict(self) -> dict[str, Any]:
        """The keys of :meth:`Result.to_dict`, summed over partitions, plus ``partitions``."""
        failed = self.failed_items
        truncated = any(r.failed_items_truncated for r in self.partitions) or (
            failed is not None and len(failed) < self.items_failed
        )
        messages = [f"{r.job}: {r.message}" for r in self.partitions if r.message]
        return {
            "status": self.status,
            "items_processed": self.items_processed,
            "items_failed": self.items_failed,
            "failed_items": failed,
            "failed_items_truncated": truncated,
            "processing_time_seconds": round(self.processing_time_seconds, 6),
            "duplicates_skipped": self.duplicates_skipped,
            "records_seen": self.records_seen,
            "resumed_from": self._sum("resumed_from"),
            "chunks_committed": self._sum("chunks_committed"),
            "retries": self._sum("retries"),
            "isolation_flushes": self._sum("isolation_flushes"),
            "statements": self._sum("statements"),
            "records_per_second": round(self.records_per_second, 1),
            "job": self.job,
            "error": self.error,
            "message": "; ".join(messages) if messages else None,
            "partitions": [r.to_dict() for r in self.partitions],
        }

    def __repr__(self) -> str:
        return (
            f"DistributedResult(status={self.status!r}, job={self.job!r}, "
            f"partitions={len(self.partitions)}, processed={self.items_processed}, "
            f"failed={self.items_failed}, seconds={self.processing_time_seconds:.3f})"
        )


# -- running partitions ---------------------------------------------------------------------------


def run_partitions(
    pipeline: Pipeline,
    partitions: Any,
    map: MapFunction | None = None,
    *,
    job: str,
    idempotency_key: Callable[[dict[str, Any]], Any] | None = None,
    client: Client | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = 3,
    spec: Mapping[str, Any] | None = None,
    format: str | None = None,
    timeout: float | None = None,
    restart: bool = False,
) -> DistributedResult:
    """Run ``pipeline`` over each partition on a Dask cluster, each as job ``<job>/<i:05d>``.

    Args:
        pipeline: built from a database URL (it is pickled to the workers without an engine).
        partitions: a Dask bag (a partition is a list of dicts), a Dask dataframe (a partition
            becomes ``to_dict("records")``, missing values as None), a list of file paths or a
            glob string (each file is one partition, read on the worker with
            :func:`batchline.read`, so its fingerprint guards the resume), or a list of record
            lists.
        map: the map function, as for :meth:`Pipeline.run`; it must pickle (a module-level
            function or a lambda; cloudpickle carries it).
        job: the base job name; partition ``i`` checkpoints as ``f"{job}/{i:05d}"``, so the
            same call again resumes (or skips) every partition.
        idempotency_key: as for :meth:`Pipeline.run`; the ledger is shared by all partitions.
        client: a connected ``distributed.Client`` to use (left open).
        scheduler: else the address of a scheduler to connect to (``tcp://host:8786``).
        workers: else the number of worker processes of a local cluster started for this call
            (default 2; one thread each) and closed afterwards.
        retries: how often Dask re-runs a partition whose task raised. A task whose worker
            died is rescheduled by the scheduler (``distributed.scheduler.allowed-failures``).
        spec: JSON-able description stored with every partition's job.
        format: the file format for file partitions (default: from each file's extension).
        timeout: give up waiting after this many seconds (TimeoutError); the partitions not
            yet started are cancelled, and the same call later resumes every partition.
        restart: start every partition's job over (as ``Pipeline.run(restart=True)``). The
            job rows and dead letters are dropped once, all together under their jobs' locks,
            before any partition starts, so a partition Dask retries still resumes rather
            than starting over again.

    Raises:
        ConfigError, SourceError, ResumeMismatch, JobSpecMismatch, FatalDatabaseError: as
            :meth:`Pipeline.run` raises them, from the first partition that raised, once every
            partition has ended. These are not retried: a retry cannot fix them.
        JobLocked: with ``restart``, another runner is running one of the partitions; none
            was dropped or started.
        TimeoutError: ``timeout`` passed before every partition ended.
    """
    if not job or len(job) > _MAX_JOB:
        raise ConfigError(f"job must be a name of 1 to {_MAX_JOB} characters, got {job!r}")
    if retries < 0:
        raise ConfigError(f"retries must be 0 or more, got {retries}")
    _check_picklable(pipeline, map, idempotency_key)
    kind, parts = _partitions(partitions)
    if not parts:  # nothing to run: no cluster to start
        return DistributedResult(job=job)
    spec_dict = dict(spec) if spec is not None else None
    with _connected(client, scheduler, workers) as dask_client:
        started = time.perf_counter()
        names = [f"{job}/{i:05d}" for i in range(len(parts))]
        # The job rows before the partitions run (dropped first for a restart): what each
        # partition commits in this call is its row afterwards minus this.
        before = _jobs_before(dask_client, pipeline, job, names, restart)
        futures = _submit(
            dask_client,
            kind,
            parts,
            pipeline,
            map,
            names,
            idempotency_key,
            retries,
            spec_dict,
            format,
        )
        results, raised = _collect(dask_client, futures, names, timeout)
        elapsed = time.perf_counter() - started
        if raised is None and before is not None:
            results = _committed(dask_client, pipeline, names, results, before)
    if raised is not None:
        raise raised
    return DistributedResult(job=job, partitions=results, processing_time_seconds=elapsed)


def _partitions(partitions: Any) -> tuple[str, list[Any]]:
    """Classify the input: ("files", paths) | ("delayed", Delayed parts) | ("records", lists)."""
    if isinstance(partitions, (str, os.PathLike)):
        return "files", _expand(os.fspath(partitions))
    from dask.base import is_dask_collection

    if is_dask_collection(partitions):
        import dask.bag

        if isinstance(partitions, dask.bag.Bag):
            return "delayed", list(partitions.to_delayed())  # type: ignore[no-untyped-call]
        try:
            import dask.dataframe
        except ImportError:  # pragma: no cover - dask[dataframe] comes with the dask extra
            dataframe_type: tuple[type, ...] = ()
        else:
            dataframe_type = (dask.dataframe.DataFrame,)
        if isinstance(partitions, dataframe_type):
            frame: Any = partitions
            return "delayed", list(frame.to_delayed())
        raise ConfigError(
            f"cannot partition a {type(partitions).__name__}; pass a Dask bag or dataframe, "
            "a list of files or a glob"
        )
    if isinstance(partitions, Sequence):
        items = list(partitions)
        if all(isinstance(p, (str, os.PathLike)) for p in items):
            return "files", [os.fspath(p) for p in items]
        if all(isinstance(p, Iterable) and not isinstance(p, (str, bytes)) for p in items):
            return "records", [list(p) for p in items]
    raise ConfigError(
        f"cannot partition {type(partitions).__name__}; pass a Dask bag or dataframe, a list "
        "of files, a glob, or a list of record lists"
    )


def _expand(pattern: str) -> list[str]:
    """The files a glob (or a directory) names, sorted so partition numbers are stable."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*")
    files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not files:
        raise SourceError(f"no files match {pattern!r}")
    return files


def _check_picklable(pipeline: Pipeline, map: Any, key: Any) -> None:
    """Fail here, with a clear message, rather than inside Dask's serialization."""
    import cloudpickle  # type: ignore[import-untyped]  # comes with dask; no stubs

    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"run_partitions needs a Pipeline, got {type(pipeline).__name__}")
    cloudpickle.dumps(pipeline)  # raises ConfigError for a pipeline built on an Engine
    for what, obj in (("map function", map), ("idempotency_key", key)):
        try:
            cloudpickle.dumps(obj)
        except Exception as exc:
            raise ConfigError(
                f"the {what} cannot be sent to Dask workers ({type(exc).__name__}: {exc}); "
                "use a module-level function or a picklable callable"
            ) from exc


@contextlib.contextmanager
def _connected(client: Client | None, scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """The client to use: the caller's, one to ``scheduler``, or a local cluster's."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    # distributed's constructors are untyped; the ignores below say only that.
    if scheduler is not None:
        with Client(scheduler) as own:  # type: ignore[no-untyped-call]
            yield own
        return
    n = 2 if workers is None else int(workers)
    if n < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            # ":0": a free port for the scheduler's HTTP server, never a clash on 8787
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as local,  # type: ignore[no-untyped-call]
    ):
        yield local


def _submit(
    client: Client,
    kind: str,
    parts: list[Any],
    pipeline: Pipeline,
    map: MapFunction | None,
    names: list[str],
    key: Callable[[dict[str, Any]], Any] | None,
    retries: int,
    spec: dict[str, Any] | None,
    format: str | None,
) -> list[Future[Any]]:
    # A fresh key per call: Dask hands back the cached result of a key it still holds, and a
    # second call must run (and resume or skip) the partitions anew.
    prefix = f"batchline-{uuid.uuid4().hex[:12]}"
    if kind == "delayed":
        from dask.delayed import delayed

        tasks = [
            delayed(_run_records, pure=False)(pipeline, part, map, name, key, spec)
            for part, name in zip(parts, names)
        ]
        futures: list[Future[Any]] = client.compute(tasks, retries=retries)  # type: ignore[no-untyped-call]
        return futures
    fn: Callable[..., Any] = _run_file if kind == "files" else _run_records
    extra: tuple[Any, ...] = (format,) if kind == "files" else ()
    return [
        client.submit(
            fn,
            pipeline,
            part,
            map,
            name,
            key,
            spec,
            *extra,
            key=f"{prefix}-{i:05d}",
            pure=False,
            retries=retries,
        )
        for i, (part, name) in enumerate(zip(parts, names))
    ]


def _collect(
    client: Client, futures: list[Future[Any]], names: list[str], timeout: float | None
) -> tuple[list[Result], BaseException | None]:
    """Every partition's Result, once all have ended; the first deliberate error, if any.

    Each future is waited on through its own client (``distributed.wait`` would use the
    process's default client, which need not be the one the caller passed).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    results: list[Result] = []
    raised: BaseException | None = None
    for fut, name in zip(futures, names):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            value = fut.result(timeout=left)
        except Exception as exc:
            if not fut.done():  # type: ignore[no-untyped-call]
                _give_up(client, futures, names, timeout)
            # The task failed for good: retries spent, or its workers kept dying.
            value = Result(job=name, status="failed", error=f"{type(exc).__name__}: {exc}")
        if isinstance(value, _Raised):
            raised = raised or value.error
            value = Result(job=name, status="failed", error=str(value.error))
        results.append(value)
    return results, raised


def _jobs_before(
    client: Client, pipeline: Pipeline, job: str, names: list[str], restart: bool
) -> dict[str, JobState] | None:
    """The partitions' job rows before they run (None when they cannot be read: then the
    partitions meet the same trouble, and report it, themselves)."""
    try:
        jobs: dict[str, JobState] = _on_a_worker(client, _partition_jobs, pipeline, names, restart)
    except BatchlineError:
        raise  # JobLocked: a partition to restart is running elsewhere
    except Exception as exc:
        if restart:  # the partitions would resume: not what was asked
            message = f"cannot restart the partitions of {job!r}: {exc}"
            raise DatabaseError(message, job=job) from exc
        log.warning("could not read the partitions' job rows (%s); counts are per attempt", exc)
        return None
    return jobs


def _committed(
    client: Client,
    pipeline: Pipeline,
    names: list[str],
    results: list[Result],
    before: Mapping[str, JobState],
) -> list[Result]:
    """Each partition's Result with the counts its job row says this call committed."""
    try:
        after: dict[str, JobState] = _on_a_worker(client, _partition_jobs, pipeline, names, False)
    except Exception as exc:  # the load is done; only its figures are less exact
        log.warning("could not read the partitions' job rows (%s); counts are per attempt", exc)
        return results
    return [_as_committed(r, before.get(r.job), after.get(r.job)) for r in results]


def _as_committed(result: Result, before: JobState | None, after: JobState | None) -> Result:
    """``result`` with the counts of what its job committed between ``before`` and ``after``."""
    if after is None:  # the partition never started its job
        return result
    processed = after.processed - (before.processed if before else 0)
    failed = after.failed - (before.failed if before else 0)
    duplicates = after.duplicates - (before.duplicates if before else 0)
    if (processed, failed, duplicates) == (
        result.items_processed,
        result.items_failed,
        result.duplicates_skipped,
    ):
        return result
    status: Status = result.status  # a run stopped early stays failed
    if status != "failed" and failed:
        status = "partial_success" if processed or duplicates else "failed"
    start = before.position if before else 0
    return dataclasses.replace(
        result,
        status=status,
        items_processed=processed,
        items_failed=failed,
        duplicates_skipped=duplicates,
        records_seen=after.position - start,
        resumed_from=start,
        chunks_committed=after.chunks - (before.chunks if before else 0),
        failed_items_list=list(result.failed_items_list),
        # A dead attempt's failures are in the dead letters, not in this list.
        failed_items_truncated=result.failed_items_truncated
        or len(result.failed_items_list) < failed,
    )


def _give_up(
    client: Client, futures: list[Future[Any]], names: list[str], timeout: float | None
) -> NoReturn:
    pending = [n for f, n in zip(futures, names) if not f.done()]  # type: ignore[no-untyped-call]
    client.cancel(futures)  # type: ignore[no-untyped-call]
    shown = ", ".join(pending[:5]) + (", ..." if len(pending) > 5 else "")
    raise TimeoutError(
        f"{len(pending)} of {len(names)} partitions had not ended after {timeout} s ({shown}); "
        "running them again resumes each from its checkpoint"
    )


def _on_a_worker(client: Client, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, run on a worker: workers reach the database, the client need not."""
    return client.submit(fn, *args, pure=False).result()


# -- on the worker ------------------------------------------------------------------------------


def _partition_jobs(pipeline: Pipeline, names: list[str], forget: bool) -> dict[str, JobState]:
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
class _Raised:
    """A partition raised a BatchlineError that a retry cannot fix; the client re-raises it."""

    error: BatchlineError


def _run_records(
    pipeline: Pipeline,
    part: Any,
    map: MapFunction | None,
    job: str,
    key: Callable[[dict[str, Any]], Any] | None,
    spec: dict[str, Any] | None,
) -> Result | _Raised:
    """Worker task: one in-memory partition (list of dicts or a pandas DataFrame)."""
    return _guarded(pipeline, job, lambda p: p.run(_records(part), map, **_kw(job, key, spec)))


def _run_file(
    pipeline: Pipeline,
    path: str,
    map: MapFunction | None,
    job: str,
    key: Callable[[dict[str, Any]], Any] | None,
    spec: dict[str, Any] | None,
    format: str | None,
) -> Result | _Raised:
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


def _guarded(pipeline: Pipeline, job: str, run: Callable[[Pipeline], Result]) -> Result | _Raised:
    # A copy: its own engine (made here, in this worker process), disposed of at the end.
    local = copy.copy(pipeline)
    try:
        return run(local)
    except BatchlineError as exc:
        if isinstance(exc, TransientExhausted):
            raise  # worth a retry by Dask: the checkpoint is intact
        return _Raised(exc)
    finally:
        local.close()


def _records(part: Any) -> Iterable[Mapping[str, Any]]:
    """A partition's records; a pandas DataFrame's missing values become None."""
    if hasattr(part, "to_dict") and hasattr(part, "columns"):
        frame = part.astype(object).where(part.notna(), None)
        records: list[dict[str, Any]] = frame.to_dict("records")
        return records
    if isinstance(part, Iterable):
        return part
    raise ConfigError(f"a partition must hold records, got {type(part).__name__}")


# -- the command line's distributed load -------------------------------------------------------


def load_files(
    pattern: str | Sequence[str],
    *,
    db: str,
    table: str,
    spec: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Client | None = None,
    job: str | None = None,
    chunk_size: int | None = None,
    upsert_key: str | Sequence[str] | None = None,
    max_failures: int | float | None = None,
    retries: int = 3,
    timeout: float | None = None,
    restart: bool = False,
) -> DistributedResult:
    """Load every file ``pattern`` names into ``table``, one file per Dask task.

    This is ``batchline load 'data/*.csv' --table T --dask ADDRESS | --workers N``. The load
    is the one the single-process command does (the same spec, pipeline, coercion and
    idempotency key, from ``batchline._load``): the table is created on the client first
    if missing, from the column kinds inferred over the first 1000 records of the first file,
    and those kinds are stored in the spec every partition coerces with.

    Args:
        pattern: a glob (``data/*.csv``, ``data/**/*.jsonl``), a directory, or a list of files.
        db: the database URL.
        table: the target table.
        spec: the load spec as ``batchline load`` makes it (``_load.make_spec``: ``format``,
            ``mode``, ``key``, ``columns``, ``chunk_size``, ``idempotency_key``, ``fallback``,
            and ``schema`` once known); default: a plain insert.
        scheduler, workers, client, retries, timeout: as for :func:`run_partitions`.
        job: the base job name; by default one derived from the table and the files, so the
            same command again resumes (or skips) instead of loading twice.
        chunk_size: records per flush (overrides ``spec["chunk_size"]``).
        upsert_key: upsert on this key (overrides ``spec["mode"]`` and ``spec["key"]``).
        max_failures: per partition, as for :class:`~batchline.Pipeline`.
        restart: start every partition over, as for :func:`run_partitions`.

    Raises:
        SourceError: no file matches, or the table is missing and the first file is empty.
        ConfigError: the spec is inconsistent (a key that is not a column...).
        JobSpecMismatch: ``job`` was started with another table, mode, key or columns
            (checked before the table is made).
    """
    from ._dead_letters import DeadLetters
    from ._load import (
        idempotency_for_spec,
        make_spec,
        map_for_spec,
        pipeline_for_spec,
        resume_spec,
        sample_records,
        sample_source,
    )

    files = _expand(pattern) if isinstance(pattern, str) else [os.fspath(p) for p in pattern]
    if not files:
        raise SourceError("no files to load")
    if spec is None:
        label = pattern if isinstance(pattern, str) else files[0]
        load = make_spec(file=label, format=None, table=table, mode="insert")
    else:
        load = dict(spec)
    load["table"] = table
    if chunk_size is not None:
        load["chunk_size"] = int(chunk_size)
    if upsert_key is not None:
        load["mode"] = "upsert"
        load["key"] = [upsert_key] if isinstance(upsert_key, str) else list(upsert_key)
    fmt = load.get("format")
    if job is None:
        digest = hashlib.sha256("\n".join(os.path.abspath(f) for f in files).encode())
        job = f"load-{table}-{digest.hexdigest()[:10]}"[:_MAX_JOB]
    if not restart:
        # Every partition was started with the same load; the first one speaks for the job.
        with DeadLetters(db) as letters:
            first = letters.job(f"{job}/{0:05d}")
        try:
            resume_spec(first, load)
        except JobSpecMismatch as exc:
            raise JobSpecMismatch(job, exc.differences) from None
    from ._infer import columns_from_arrow

    first_file = read_file(files[0], fmt)
    sample = sample_records(sample_source(first_file))
    schema = first_file.arrow_schema()  # Parquet declares its types; they are used as declared
    declared = columns_from_arrow(schema) if schema is not None else None
    _ensure_table(db, load, sample, declared)  # fills load["schema"], the kinds coerced to
    pipeline = pipeline_for_spec(db, load, max_failures=max_failures)
    return run_partitions(
        pipeline,
        files,
        map_for_spec(load),
        job=job,
        idempotency_key=idempotency_for_spec(load),
        client=client,
        scheduler=scheduler,
        workers=workers,
        retries=retries,
        spec=load,
        format=fmt,
        timeout=timeout,
        restart=restart,
    )


def _ensure_table(
    db: str,
    spec: dict[str, Any],
    sample: Sequence[Mapping[str, Any]],
    declared: Sequence[ColumnSpec] | None = None,
) -> None:
    from ._load import ensure_table

    engine, _ = make_engine(db)
    try:
        ensure_table(engine, spec, sample, declared=declared)
    finally:
        engine.dispose()
