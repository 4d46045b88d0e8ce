"""The outcome of a run: counts, failed records, and how the database work went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FailedItem", "Result", "Status"]

Status = Literal["success", "partial_success", "failed"]

#: ``Result.failed_items`` keeps at most this many entries so memory stays flat on a run with
#: millions of bad records; every one of them is in the dead-letter table regardless.
MAX_FAILED_ITEMS = 1000


@dataclass(frozen=True, slots=True)
class FailedItem:
    """One record that did not land: where it was, at which stage, and why."""

    position: int
    line: int
    stage: str  # "read" | "map" | "lookup" | "write"
    error: str
    error_class: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "position": self.position,
            "stage": self.stage,
            "error": self.error,
            "error_class": self.error_class,
        }


@dataclass(slots=True)
class Result:
    """What ``Pipeline.run`` returns; ``to_dict()`` carries the seed's keys and more."""

    job: str
    status: Status = "success"
    items_processed: int = 0  # records whose writes committed
    items_failed: int = 0  # records dead-lettered (read, map, lookup or write stage)
    duplicates_skipped: int = 0  # records skipped because their idempotency key was seen
    records_seen: int = 0  # records this run handled (excludes those skipped by resume)
    resumed_from: int = 0  # the job position this run started after
    chunks_committed: int = 0
    retries: int = 0
    isolation_flushes: int = 0
    statements: int = 0
    processing_time_seconds: float = 0.0
    error: str | None = None  # why the run stopped early, when it did
    message: str | None = None  # a note for people, e.g. "job already finished"
    failed_items_list: list[FailedItem] = field(default_factory=list)
    failed_items_truncated: bool = False

    @property
    def failed_items(self) -> list[FailedItem] | None:
        return self.failed_items_list or None

    @property
    def records_per_second(self) -> float:
        if self.processing_time_seconds <= 0:
            return 0.0
        return self.records_seen / self.processing_time_seconds

    def add_failure(self, item: FailedItem) -> None:
        if len(self.failed_items_list) < MAX_FAILED_ITEMS:
            self.failed_items_list.append(item)
        else:
            self.failed_items_truncated = True

    def to_dict(self) -> dict[str, Any]:
        failed = self.failed_items
        return {
            "status": self.status,
            "items_processed": self.items_processed,
            "items_failed": self.items_failed,
            "failed_items": None if failed is None else [f.to_dict() for f in failed],
            "failed_items_truncated": self.failed_items_truncated,
            "processing_time_seconds": round(self.processing_time_seconds, 6),
            "duplicates_skipped": self.duplicates_skipped,
            "records_seen": self.records_seen,
            "resumed_from": self.resumed_from,
            "chunks_committed": self.chunks_committed,
            "retries": self.retries,
            "isolation_flushes": self.isolation_flushes,
            "statements": self.statements,
            "records_per_second": round(self.records_per_second, 1),
            "job": self.job,
            "error": self.error,
            "message": self.message,
        }

    def __repr__(self) -> str:
        return (
            f"Result(status={self.status!r}, job={self.job!r}, processed={self.items_processed}, "
            f"failed={self.items_failed}, duplicates={self.duplicates_skipped}, "
            f"seconds={self.processing_time_seconds:.3f})"
        )
