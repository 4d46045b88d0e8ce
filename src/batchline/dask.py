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

from ._dask._load_files import load_files
from ._dask._result import DistributedResult
from ._dask._run import run_partitions

__all__ = ["DistributedResult", "load_files", "run_partitions"]
