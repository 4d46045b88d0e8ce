"""Retry policy for transient database failures, built on tenacity.

The policy is a small value object; ``sleep`` is injectable so tests of the retry path
take no time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity

__all__ = ["RetryPolicy", "TransientFailure"]


class TransientFailure(Exception):
    """Internal: a transaction failed for a reason worth retrying (connection, deadlock…)."""

    def __init__(self, message: str, code: str | None, error_class: str) -> None:
        super().__init__(message)
        self.code = code
        self.error_class = error_class


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a transaction up to ``attempts`` times, backing off exponentially with jitter."""

    attempts: int = 6
    initial: float = 0.05
    maximum: float = 5.0
    jitter: float = 0.1
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def retrying(
        self, before_sleep: Callable[[tenacity.RetryCallState], None] | None = None
    ) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.attempts)),
            wait=tenacity.wait_exponential(multiplier=self.initial, max=self.maximum)
            + tenacity.wait_random(0, self.jitter),
            retry=tenacity.retry_if_exception_type(TransientFailure),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
