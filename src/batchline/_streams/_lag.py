"""A consumer's lag and the broker's end position, kept in its job's row for ``batchline jobs``.

The job row keeps no broker URL (it would keep its credentials), so ``batchline jobs``
cannot ask the broker itself. The consumer does: after a chunk commits (at most once per
``interval``) and when it stops, it asks the broker what is left for it (Redis ``XINFO``
``lag`` and the stream's last entry ID, JetStream ``num_pending`` and the stream's last
sequence, RabbitMQ's ready messages from a passive declare) and stores the answer in the
job's spec under ``broker_state``: ``{"lag": n, "end": "...", "at": "<UTC time>"}``.

This is an observation, not a checkpoint: it is written in a transaction of its own after
the chunk's, and a failure to ask or to write is logged and skipped.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import sqlalchemy as sa

from .._state_rows import now_iso
from ._source import BrokerSource

__all__ = ["STATE_KEY", "LagRecorder"]

log = logging.getLogger("batchline")

STATE_KEY = "broker_state"


class LagRecorder:
    """Asks ``source`` for its lag and end, and writes them into job ``job``'s spec."""

    def __init__(
        self, engine: sa.Engine, jobs: sa.Table, job: str, source: BrokerSource, interval: float
    ) -> None:
        self.engine, self.jobs, self.job, self.source = engine, jobs, job, source
        self.interval = interval
        self._next = 0.0
        self.last: dict[str, Any] | None = None

    def maybe(self) -> None:
        """Record, unless the last record is younger than ``interval``."""
        if time.monotonic() >= self._next:
            self.record()

    def record(self) -> None:
        self._next = time.monotonic() + self.interval
        try:
            state = {"lag": self.source.lag(), "end": self.source.end(), "at": now_iso()}
            self._write(state)
        except Exception as exc:  # an observation: never the run's failure
            log.warning("job %s: could not record the broker's lag: %s", self.job, exc)
            return
        self.last = state

    def _write(self, state: dict[str, Any]) -> None:
        jobs = self.jobs
        with self.engine.begin() as conn:
            text = conn.execute(sa.select(jobs.c.spec).where(jobs.c.name == self.job)).scalar()
            try:
                spec = json.loads(text) if text else {}
            except ValueError:
                return  # not batchline's: leave it
            if not isinstance(spec, dict):
                return
            spec[STATE_KEY] = state
            conn.execute(
                sa.update(jobs).where(jobs.c.name == self.job).values(spec=json.dumps(spec))
            )
