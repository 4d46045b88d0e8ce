"""Each partition's counts as its job row says this call committed, not as an attempt saw them.

Why: an attempt on a worker that died returns nothing, and the retry that resumed after it
counts only its own part; the job rows, read on a worker before and after the partitions
run, hold what was really committed. Reading them before is also where a restart drops the
partitions' jobs, all together, before any partition starts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import BatchlineError, DatabaseError
from .._pipeline import Pipeline
from .._result import Result, Status
from .._state_rows import JobState
from ._worker import partition_jobs

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["as_committed", "committed_results", "jobs_before"]

log = logging.getLogger("batchline")


def jobs_before(
    client: Client, pipeline: Pipeline, job: str, names: list[str], restart: bool
) -> dict[str, JobState] | None:
    """The partitions' job rows before they run (None when they cannot be read: then the
    partitions meet the same trouble, and report it, themselves)."""
    try:
        jobs: dict[str, JobState] = _on_a_worker(client, partition_jobs, pipeline, names, restart)
    except BatchlineError:
        raise  # JobLocked: a partition to restart is running elsewhere
    except Exception as exc:
        if restart:  # the partitions would resume: not what was asked
            message = f"cannot restart the partitions of {job!r}: {exc}"
            raise DatabaseError(message, job=job) from exc
        log.warning("could not read the partitions' job rows (%s); counts are per attempt", exc)
        return None
    return jobs


def committed_results(
    client: Client,
    pipeline: Pipeline,
    names: list[str],
    results: list[Result],
    before: Mapping[str, JobState],
) -> list[Result]:
    """Each partition's Result with the counts its job row says this call committed."""
    try:
        after: dict[str, JobState] = _on_a_worker(client, partition_jobs, pipeline, names, False)
    except Exception as exc:  # the load is done; only its figures are less exact
        log.warning("could not read the partitions' job rows (%s); counts are per attempt", exc)
        return results
    return [as_committed(r, before.get(r.job), after.get(r.job)) for r in results]


def as_committed(result: Result, before: JobState | None, after: JobState | None) -> Result:
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


def _on_a_worker(client: Client, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, run on a worker: workers reach the database, the client need not."""
    return client.submit(fn, *args, pure=False).result()
