"""The combined outcome of a partitioned run, summed over its partitions' Results.

Why a module of its own: :class:`DistributedResult` is what ``batchline.dask`` hands back and
what the command line renders; it depends on nothing of Dask, so it can be read and tested
without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._result import MAX_FAILED_ITEMS, Result, Status

__all__ = ["DistributedResult"]


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
