"""Running partitions on a Dask cluster: connect, submit one task a partition, wait, gather.

Why a module of its own: this is the client's side of :func:`batchline.dask.run_partitions`
(what the cluster is, how tasks are keyed and retried, how a timeout cancels them); what a
task does on its worker is ``_worker``, and how the counts are taken from the job rows is
``_committed``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .._errors import ConfigError
from .._pipeline import MapFunction, Pipeline
from .._result import Result
from ._committed import committed_results, jobs_before
from ._partitions import MAX_JOB, check_picklable, partitions_of
from ._result import DistributedResult
from ._worker import Raised, run_file, run_records

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["run_partitions"]


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
    if not job or len(job) > MAX_JOB:
        raise ConfigError(f"job must be a name of 1 to {MAX_JOB} characters, got {job!r}")
    if retries < 0:
        raise ConfigError(f"retries must be 0 or more, got {retries}")
    check_picklable(pipeline, map, idempotency_key)
    kind, parts = partitions_of(partitions)
    if not parts:  # nothing to run: no cluster to start
        return DistributedResult(job=job)
    spec_dict = dict(spec) if spec is not None else None
    with _connected(client, scheduler, workers) as dask_client:
        started = time.perf_counter()
        names = [f"{job}/{i:05d}" for i in range(len(parts))]
        # The job rows before the partitions run (dropped first for a restart): what each
        # partition commits in this call is its row afterwards minus this.
        before = jobs_before(dask_client, pipeline, job, names, restart)
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
            results = committed_results(dask_client, pipeline, names, results, before)
    if raised is not None:
        raise raised
    return DistributedResult(job=job, partitions=results, processing_time_seconds=elapsed)


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
            delayed(run_records, pure=False)(pipeline, part, map, name, key, spec)
            for part, name in zip(parts, names)
        ]
        futures: list[Future[Any]] = client.compute(tasks, retries=retries)  # type: ignore[no-untyped-call]
        return futures
    fn: Callable[..., Any] = run_file if kind == "files" else run_records
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
        if isinstance(value, Raised):
            raised = raised or value.error
            value = Result(job=name, status="failed", error=str(value.error))
        results.append(value)
    return results, raised


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
