"""The broker consumer: a long-running ``Pipeline`` run over a broker's messages.

A :class:`BrokerSource` hides one broker (Redis Streams, NATS JetStream, RabbitMQ) behind
four calls: ``open``, ``fetch``, ``ack``, ``close``. :class:`Consumer` turns it into the
engine's source and keeps the two rules the broker adds to a load:

- **Acknowledge only what committed.** Messages are acknowledged from the engine's
  ``after_commit(end)`` hook, once the chunk holding them has committed, never before; a
  crash at any instant leaves every uncommitted message unacknowledged, so the broker
  delivers it again.
- **Apply a redelivered message once.** Where the broker numbers messages in order (a Redis
  stream ID, a JetStream stream sequence) that number *is* the record's position, so the
  job's checkpoint, committed in each chunk's transaction, is the last committed broker
  position: a redelivered message at or below it is acknowledged and not applied again.
  Where it does not (RabbitMQ), the idempotency ledger keys each record on its message id,
  so a redelivery is skipped as a duplicate (in the chunk's transaction too); each dead
  letter holds a ledger key of its own, so a poison message is dead-lettered once too.

Micro-batching: the engine closes a chunk when it is full; the consumer also closes it (the
run loop's ``FLUSH_NOW``) once its first message has waited ``linger``, so a quiet stream's
messages wait at most ``linger`` plus one flush. The clock starts when the chunk takes its
first message (the run loop tells the consumer of every chunk it closes, ``on_cut``): timed
from anything earlier, a busy stream's chunks would be cut short every ``linger``, and those
collected while a slow flush held the run loop back would be cut at one fetch. One more cut
ends a burst without waiting out ``linger``: when the chunk holds at least ``BURST`` (500)
messages, the flush is idle and the broker sends nothing for ``CAUGHT_UP`` (10 ms), the
chunk goes now; a trickle's chunks stay under that and keep waiting for company. Backpressure
comes from the engine: while a chunk flushes and the next is full, the run loop does not
ask for more, so nothing is fetched and memory holds at most two chunks and one fetch.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._errors import ConfigError
from .._metrics import ConsumerMetrics
from .._pipeline import MapFunction, Pipeline
from .._result import FailedItem, Result
from .._run_loop import FLUSH_NOW
from .._sources import ReadFailure, SourceRecord
from ._acks import Acks
from ._lag import LagRecorder
from ._source import BrokerSource, DeadMessage, Message, broker_position, decode_json

__all__ = ["BrokerSource", "Consumer", "Message", "broker_position", "decode_json"]

log = logging.getLogger("batchline")

#: Seconds a fetch waits, once the open chunk is worth flushing and the flush is idle,
#: before the consumer takes the broker's silence for the end of a burst and flushes.
CAUGHT_UP = 0.01
#: Messages that make a chunk worth flushing at the end of a burst: enough to spread a
#: transaction's fixed cost (its round trips, the commit). A trickle's chunks stay under
#: it, and wait for linger to gather company.
BURST = 500


class Consumer:
    """Consume a broker into the pipeline's tables until :meth:`stop` (or a signal).

    Args:
        pipeline: where and what to write.
        source: the broker (``RedisStreamSource``, ``JetStreamSource``, ``RabbitSource``).
        map: ``map(record, out)``, or None when each message is a row of the only write.
        job: the job (checkpoint, dead letters, lock) the consumer runs as; one job per
            consumer group / durable consumer / queue.
        linger: seconds a chunk's first message may wait before the chunk is flushed.
        fetch_size: messages asked of the broker at once.
        idempotency_key: for unordered brokers only: ``fn(record)`` replacing the message
            id as the ledger key.
        spec, wait, on_chunk: as for :meth:`Pipeline.run`.
        metrics: a :class:`~batchline._metrics.ConsumerMetrics` (Prometheus,
            OpenTelemetry) told of each committed chunk; None (the default) costs nothing.
        dead_letter_target: also re-publish each dead-lettered message to this target
            of the broker (a Redis stream, a NATS subject, a RabbitMQ
            ``EXCHANGE[/ROUTING_KEY]``) with its id, stage and reason, once its dead
            letter committed and before it is acknowledged. A notice, not the record: one
            whose publish fails is logged and still acknowledged (the dead-letter table
            has it), and after a crash between commit and publish it is not sent (on
            RabbitMQ the poison message comes back, but as a duplicate: its dead letter
            had committed).
        lag_interval: seconds between two records of the broker's lag and end position in
            the job's row (``batchline jobs``; see ``_lag``), taken after a chunk commits
            and when the consumer stops; None: never. Only a job started with a ``spec``
            has the row to keep them in.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        source: BrokerSource,
        map: MapFunction | None = None,
        *,
        job: str,
        linger: float = 0.2,
        fetch_size: int = 500,
        idempotency_key: Callable[[dict[str, Any]], Any] | None = None,
        spec: dict[str, Any] | None = None,
        wait: bool | float = False,
        on_chunk: Any = None,
        metrics: ConsumerMetrics | None = None,
        dead_letter_target: str | None = None,
        lag_interval: float | None = 1.0,
    ) -> None:
        if not linger > 0:
            raise ConfigError(f"linger must be above 0, got {linger}")
        if fetch_size < 1:
            raise ConfigError(f"fetch_size must be at least 1, got {fetch_size}")
        if idempotency_key is not None and source.ordered:
            raise ConfigError(
                f"{source.kind}: messages are deduplicated by their position; "
                "idempotency_key applies to unordered brokers (RabbitMQ)"
            )
        self.pipeline = pipeline
        self.source = source
        self.map = map
        self.job = job
        self.linger = float(linger)
        self.fetch_size = int(fetch_size)
        self.user_key = idempotency_key
        self.spec = spec
        self.wait = wait
        self.on_chunk = on_chunk
        self._stop = threading.Event()
        source.stopping = self._stop
        self._acks: Acks | None = None
        self._current: tuple[dict[str, Any], str] | None = None
        #: Set once the source is open and the consumer waits for messages.
        self.ready = threading.Event()
        self.result: Result | None = None
        self._ended = False
        self.metrics = metrics
        self.dead_letter_target = dead_letter_target
        #: with a dead-letter target: (position, id, body) of each message not yet committed
        self._bodies: collections.deque[tuple[int, str, Any]] | None = None
        self._failed: list[FailedItem] = []  # the failures of the chunk committing now
        if dead_letter_target is not None:
            self._bodies = collections.deque()
        #: unordered brokers: the message id of each position not yet committed, for the
        #: ledger key its dead letter holds (``_letter_key``)
        self._ids: dict[int, str] | None = None if source.ordered else {}
        self._pruned = 0  # the positions up to here are gone from _ids
        self._lag = None
        if lag_interval is not None and spec is not None:
            tables = pipeline.state_tables
            self._lag = LagRecorder(pipeline.engine, tables.jobs, job, source, lag_interval)
        #: with metrics: (position, arrival) of each message not yet committed
        self._arrivals: collections.deque[tuple[int, float]] | None = None
        self._chunk_counts: tuple[int, Sequence[FailedItem], int, int] | None = None
        self._seen = (0, 0, 0)  # records_seen, duplicates, retries at the last chunk
        self._checkpoint = 0  # the job's, as the run found it (``_resumed``)
        self._cuts = self._commits = 0  # chunks closed, and committed (flush idle: equal)
        if metrics is not None:
            metrics.lag = source.lag
            self._arrivals = collections.deque()

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the chunk being collected, commit and acknowledge it, then return from
        :meth:`run` (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    @property
    def acked(self) -> int:
        """Messages acknowledged after their chunk committed, each counted once (a
        redelivery of a message committed earlier is acknowledged but not counted)."""
        return 0 if self._acks is None else self._acks.acked

    def wait_acked(self, count: int, timeout: float | None = None) -> bool:
        """Wait until :attr:`acked` reaches ``count``; False if ``timeout`` passed first or
        the run ended short of it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.ready.wait(timeout):
            return False
        acks = self._acks
        if acks is None:
            return False
        with acks.changed:
            while acks.acked < count and not self._ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                acks.changed.wait(left)
        return acks.acked >= count

    # -- running ------------------------------------------------------------------------------
    def run(self) -> Result:
        """Consume until stopped; return the run's Result (its status covers this run)."""
        key_fn = None if self.source.ordered else self._message_key
        on_chunk = self.on_chunk
        if self.metrics is not None or self._bodies is not None:
            on_chunk = self._count_chunk
        try:
            result = self.pipeline._run_source(
                self._records(),
                self.map,
                job=self.job,
                idempotency_key=key_fn,
                fingerprint=self.source.describe(),
                spec=self.spec,
                on_chunk=on_chunk,
                wait=self.wait,
                after_commit=self._after_commit,
                continuing=True,
                letter_key=None if self._ids is None else self._letter_key,
                on_resume=self._resumed,
                on_cut=self._cut,
            )
        finally:
            if self._acks is not None:
                self._acks.retry_failed()
                if self._lag is not None:
                    self._lag.record()
            self.source.close()
            if self._acks is not None:
                with self._acks.changed:
                    self._ended = True
                    self._acks.changed.notify_all()
        self.result = result
        return result

    def _after_commit(self, end: int) -> None:
        self._commits += 1  # (every cut chunk commits, or the run ends)
        # metrics first, then acks: whoever waits for the acks finds the chunk counted
        if self.metrics is not None and self._chunk_counts is not None:
            arrivals, oldest = self._arrivals, None
            while arrivals and arrivals[0][0] <= end:
                arrived = arrivals.popleft()[1]
                oldest = arrived if oldest is None else oldest
            records, failed, duplicates, retries = self._chunk_counts
            self._chunk_counts = None
            self.metrics.chunk(
                records=records,
                failed=failed,
                duplicates=duplicates,
                retries=retries,
                latency=None if oldest is None else time.monotonic() - oldest,
            )
        if self._bodies is not None:
            self._publish_dead(end)
        ids = self._ids
        if ids is not None:
            for position in range(self._pruned + 1, end + 1):
                ids.pop(position, None)
            self._pruned = max(self._pruned, end)
        if self._acks is not None:
            self._acks.commit(end)
        if self._lag is not None:
            self._lag.maybe()

    def _publish_dead(self, end: int) -> None:
        """Re-publish the dead letters of the chunk ending at ``end`` (just committed)."""
        bodies, failed = self._bodies, self._failed
        assert bodies is not None
        self._failed = []
        held = {}
        while bodies and bodies[0][0] <= end:
            position, id, body = bodies.popleft()
            held[position] = (id, body)
        letters = [
            DeadMessage(*held[f.position], f.stage, f.error) for f in failed if f.position in held
        ]
        if not letters:
            return
        assert self.dead_letter_target is not None
        try:
            self.source.publish_dead(self.dead_letter_target, letters)
        except Exception as exc:  # a notice: the dead-letter table has them
            log.warning("could not re-publish %d dead letter(s): %s", len(letters), exc)

    def _count_chunk(self, result: Result, failed: Sequence[FailedItem]) -> None:
        # on the flush thread, just before _after_commit of the same chunk
        if self._bodies is not None:
            self._failed = list(failed)
        if self.metrics is None:
            if self.on_chunk is not None:
                self.on_chunk(result, failed)
            return
        seen, duplicates, retries = self._seen
        self._seen = (result.records_seen, result.duplicates_skipped, result.retries)
        self._chunk_counts = (
            result.records_seen - seen,
            list(failed),
            result.duplicates_skipped - duplicates,
            result.retries - retries,
        )
        if self.on_chunk is not None:
            self.on_chunk(result, failed)

    def _message_key(self, record: dict[str, Any]) -> Any:
        # Called by the run loop right after mapping the record the generator yielded last.
        current = self._current
        if self.user_key is not None:
            return self.user_key(record)
        if current is None or current[0] is not record:
            raise ConfigError("internal: the message key was asked for another record")
        return (self.source.kind, current[1])

    def _letter_key(self, position: int) -> Any:
        """The ledger key the dead letter of the message at ``position`` holds (on the flush
        thread, before its chunk commits): a message delivered again after its dead letter
        committed is then a duplicate, not a second dead letter. Its own key, apart from
        the message's record key (``_message_key``): a corrected message under the same id
        still lands."""
        ids = self._ids
        message_id = None if ids is None else ids.get(position)
        return None if message_id is None else ("dead letter", self.source.kind, message_id)

    def _resumed(self, position: int) -> None:
        # core hook, on the mapping thread before the first fetch: the job's checkpoint,
        # read by the run after it took the job (so it cannot move)
        self._checkpoint = position

    def _cut(self) -> None:
        # core hook, on the mapping thread: the run loop closed a chunk (full, or told to);
        # the next message opens a new one, and its linger starts then
        self._cuts += 1

    def _records(self) -> Iterator[Any]:
        """The engine's source: decoded messages, with ``FLUSH_NOW`` when the open chunk's
        first message has waited ``linger``, or when the broker has nothing more for a
        moment while the flush is idle and the chunk holds at least ``BURST`` messages."""
        source = self.source
        committed = self._pruned = self._checkpoint
        acks = self._acks = Acks(source, committed)
        source.open(committed)
        if self.dead_letter_target is not None:
            source.check_target(self.dead_letter_target)
        self.ready.set()
        ordered = source.ordered
        last = committed  # the highest position handed to the run loop
        linger = self.linger
        idle = min(linger, 0.25)  # how long a fetch waits while no chunk is open
        enough = BURST  # a chunk worth flushing without waiting out linger
        caught_up = min(linger, CAUGHT_UP)
        oldest: float | None = None  # when the open chunk took its first message
        taken = 0  # messages in the open chunk
        cuts = self._cuts
        monotonic = time.monotonic
        arrivals = self._arrivals
        ids = self._ids
        while not self._stop.is_set():
            if oldest is None:
                timeout = idle
            else:
                timeout = oldest + linger - monotonic()
                if timeout <= 0:
                    oldest, taken = None, 0
                    yield FLUSH_NOW
                    cuts = self._cuts
                    continue
                if taken >= enough:  # (looking again every CAUGHT_UP while a flush runs)
                    timeout = min(timeout, caught_up)
            messages = source.fetch(self.fetch_size, timeout)
            if not messages:
                if oldest is not None and taken >= enough and self._cuts == self._commits:
                    # the broker has nothing more right now and the flush is idle: waiting
                    # out linger would only delay these (the end of a burst)
                    oldest, taken = None, 0
                    yield FLUSH_NOW
                    cuts = self._cuts
                continue
            fresh: list[Message] = []
            for m in messages:
                if ordered:
                    if m.position <= last:
                        # delivered again: committed, or in a chunk on its way; either
                        # way not applied twice
                        acks.redelivered(m.position, m.token)
                        continue
                    last = m.position
                else:
                    last += 1
                    m.position = last
                    if ids is not None:
                        ids[last] = m.id
                fresh.append(m)
            # registered before the run loop sees any of them: their chunk may commit soon
            acks.extend(fresh)
            now = monotonic()
            if arrivals is not None:
                arrivals.extend((m.position, now) for m in fresh)
            if self._bodies is not None:
                self._bodies.extend((m.position, m.id, m.body) for m in fresh)
            for m in fresh:
                if oldest is None:
                    oldest = monotonic()
                if m.record is None:
                    yield ReadFailure(m.position, m.position, m.error or "undecodable", m.raw)
                else:
                    self._current = (m.record, m.id)
                    yield SourceRecord(m.position, m.position, m.record)
                taken += 1
                if self._cuts != cuts:  # that message filled the chunk: a new one opens
                    cuts = self._cuts
                    oldest, taken = None, 0
        log.info("job %s: stopping: the last chunk commits, then the consumer ends", self.job)
