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
  so a redelivery is skipped as a duplicate (in the chunk's transaction too).

Micro-batching: the engine closes a chunk when it is full; the consumer also closes it (the
run loop's ``FLUSH_NOW``) once its oldest message has waited ``linger``, so a quiet stream's
messages wait at most ``linger`` plus one flush. Backpressure comes from the engine: while
a chunk flushes and the next is full, the run loop does not ask for more, so nothing is
fetched and memory holds at most two chunks and one fetch.
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from .._metrics import ConsumerMetrics
from .._pipeline import MapFunction, Pipeline
from .._result import FailedItem, Result
from .._run_loop import FLUSH_NOW
from .._sources import ReadFailure, SourceRecord

__all__ = ["BrokerSource", "Consumer", "Message", "broker_position", "decode_json"]

log = logging.getLogger("batchline")

_RAW_LIMIT = 64 * 1024


@dataclass(slots=True)
class Message:
    """One delivered message, as a source hands it over.

    Attributes:
        position: where the broker puts it in its order (a stream sequence, an encoded
            Redis stream ID), or 0 where the broker has none (the consumer numbers it).
        id: the broker's own name for it, as people read it (``"1764-0"``, ``"17"``, a
            message id); dead letters of unreadable messages quote it.
        record: the decoded record, or None when it could not be decoded.
        error: why it could not be decoded (then ``record`` is None).
        raw: its raw text, kept for the dead letter of an undecodable message.
        token: what the source needs to acknowledge it.
    """

    position: int
    id: str
    record: dict[str, Any] | None
    error: str | None
    raw: str | None
    token: Any


def decode_json(id: str, body: bytes | str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object from a message body, or why not (the message becomes a dead letter)."""
    if body is None:
        return None, f"message {id}: no body"
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"message {id}: invalid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"message {id}: JSON {type(value).__name__}, expected an object"
    return value, None


def raw_text(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body[:_RAW_LIMIT].decode("utf-8", errors="replace")
    return body[:_RAW_LIMIT]


def broker_position(spec: Any, position: int) -> str | None:
    """A consumer job's checkpoint as its broker names it (``batchline jobs``): the last
    committed Redis stream ID or JetStream sequence; None for other jobs, and for RabbitMQ,
    whose queue has no position (the ledger holds the message ids there)."""
    if not isinstance(spec, dict) or spec.get("command") != "consume":
        return None
    if spec.get("broker") == "redis":
        from ._redis import stream_id

        return stream_id(position) if position else "-"
    if spec.get("broker") == "nats":
        return f"seq {position}" if position else "-"
    return None


class BrokerSource(ABC):
    """One broker's side of a consumer. ``fetch`` is called from the consumer's thread;
    ``ack`` may be called from the flush thread, so each source makes it safe there."""

    #: Whether ``Message.position`` is the broker's order (resume by position); else the
    #: consumer numbers messages and dedups by the idempotency ledger on the message id.
    ordered: bool = True
    #: The kind of broker, for the job's spec and metrics ("redis", "nats", "amqp").
    kind: str = ""

    @abstractmethod
    def describe(self) -> str:
        """What is consumed (URL without password, stream, group): the job's fingerprint."""

    @abstractmethod
    def open(self, committed: int) -> None:
        """Connect, create the group/consumer if missing, and get ready to deliver what
        follows position ``committed`` (the job's checkpoint) and whatever is pending."""

    @abstractmethod
    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        """Up to ``max_count`` messages, waiting at most ``timeout`` seconds for the first."""

    @abstractmethod
    def ack(self, tokens: list[Any]) -> None:
        """Acknowledge these messages (they are committed or were already)."""

    @abstractmethod
    def close(self) -> None:
        """Send what is still buffered (acks) and disconnect."""

    def position_text(self, position: int) -> str:
        """A position as the broker writes it (for ``batchline jobs`` and dead letters)."""
        return str(position)

    def lag(self) -> int | None:
        """Messages in the broker not yet delivered to this consumer, when the broker says
        so cheaply and from any thread; None otherwise (read by metrics only)."""
        return None


class _Acks:
    """Messages waiting for the commit of their chunk, in position order.

    ``commit(end)`` runs on the flush thread after the chunk ending at ``end`` committed: it
    acknowledges every message at or below ``end``. An acknowledgement that fails (the
    broker's connection dropped) is sent again with the next chunk's, and once more when the
    consumer stops; should it never get through, the message is redelivered to the next run
    and recognised as committed. ``acked`` counts each message once.
    """

    def __init__(self, source: BrokerSource, committed: int) -> None:
        self.source = source
        self.committed = committed
        self._lock = threading.Lock()
        self._positions: list[int] = []
        self._tokens: list[Any] = []
        self._retry: list[Any] = []  # committed; their acknowledgement failed
        self.acked = 0
        self.changed = threading.Condition(self._lock)

    def redelivered(self, position: int, token: Any) -> None:
        """A message delivered again, at or below the last one handed to the run loop. At
        or below the checkpoint it is committed: acknowledged (again) now. Above, its first
        delivery is in a chunk on its way, whose acknowledgement covers it (the same
        stream entry; JetStream's ``AckPolicy.ALL``)."""
        with self._lock:
            committed = position <= self.committed
        if committed:
            self._send([token], fresh=False)

    def extend(self, messages: list[Message]) -> None:
        """Messages the run loop will see, in increasing position, each above the last
        one added (one lock for a whole fetch)."""
        if not messages:
            return
        with self._lock:
            self._positions.extend([m.position for m in messages])
            self._tokens.extend([m.token for m in messages])

    def commit(self, end: int) -> None:
        with self._lock:
            self.committed = max(self.committed, end)
            n = bisect.bisect_right(self._positions, end)
            tokens = self._retry + self._tokens[:n]
            self._retry = []
            del self._positions[:n], self._tokens[:n]
        if tokens:
            self._send(tokens, fresh=True)

    def retry_failed(self) -> None:
        """Send the acknowledgements that failed once more (the consumer is stopping)."""
        with self._lock:
            tokens, self._retry = self._retry, []
        if tokens:
            self._send(tokens, fresh=True)

    def _send(self, tokens: list[Any], *, fresh: bool) -> None:
        try:
            self.source.ack(tokens)
        except Exception as exc:
            log.warning("could not acknowledge %d message(s) (%s); retrying", len(tokens), exc)
            if fresh:
                with self._lock:
                    self._retry = tokens + self._retry
            return
        if fresh:
            with self._lock:
                self.acked += len(tokens)
                self.changed.notify_all()


class Consumer:
    """Consume a broker into the pipeline's tables until :meth:`stop` (or a signal).

    Args:
        pipeline: where and what to write.
        source: the broker (``RedisStreamSource``, ``JetStreamSource``, ``RabbitSource``).
        map: ``map(record, out)``, or None when each message is a row of the only write.
        job: the job (checkpoint, dead letters, lock) the consumer runs as; one job per
            consumer group / durable consumer / queue.
        linger: seconds a chunk's oldest message may wait before the chunk is flushed.
        fetch_size: messages asked of the broker at once.
        idempotency_key: for unordered brokers only: ``fn(record)`` replacing the message
            id as the ledger key.
        spec, wait, on_chunk: as for :meth:`Pipeline.run`.
        metrics: a :class:`~batchline._metrics.ConsumerMetrics` (Prometheus,
            OpenTelemetry) told of each committed chunk; None (the default) costs nothing.
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
        self._acks: _Acks | None = None
        self._current: tuple[dict[str, Any], str] | None = None
        #: Set once the source is open and the consumer waits for messages.
        self.ready = threading.Event()
        self.result: Result | None = None
        self._ended = False
        self.metrics = metrics
        #: with metrics: (position, arrival) of each message not yet committed
        self._arrivals: collections.deque[tuple[int, float]] | None = None
        self._chunk_counts: tuple[int, Sequence[FailedItem], int, int] | None = None
        self._seen = (0, 0, 0)  # records_seen, duplicates, retries at the last chunk
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
        on_chunk = self.on_chunk if self.metrics is None else self._count_chunk
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
            )
        finally:
            if self._acks is not None:
                self._acks.retry_failed()
            self.source.close()
            if self._acks is not None:
                with self._acks.changed:
                    self._ended = True
                    self._acks.changed.notify_all()
        self.result = result
        return result

    def _after_commit(self, end: int) -> None:
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
        if self._acks is not None:
            self._acks.commit(end)

    def _count_chunk(self, result: Result, failed: Sequence[FailedItem]) -> None:
        # on the flush thread, just before _after_commit of the same chunk
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

    def _committed(self) -> int:
        """The job's checkpoint, read after the run took the job (so it cannot move)."""
        from .._dead_letters import DeadLetters

        tables = self.pipeline.state_tables
        letters = DeadLetters(self.pipeline.engine, prefix=tables.prefix, schema=tables.schema)
        job = letters.job(self.job)
        return 0 if job is None else job.position

    def _records(self) -> Iterator[Any]:
        """The engine's source: decoded messages, with ``FLUSH_NOW`` when a linger expires."""
        source = self.source
        committed = self._committed()
        acks = self._acks = _Acks(source, committed)
        source.open(committed)
        self.ready.set()
        ordered = source.ordered
        last = committed  # the highest position handed to the run loop
        linger = self.linger
        idle = min(linger, 0.25)  # how long a fetch waits while no chunk is open
        oldest: float | None = None  # when the first message after the last cut arrived
        monotonic = time.monotonic
        arrivals = self._arrivals
        while not self._stop.is_set():
            if oldest is None:
                timeout = idle
            else:
                timeout = oldest + linger - monotonic()
                if timeout <= 0:
                    oldest = None
                    yield FLUSH_NOW
                    continue
            messages = source.fetch(self.fetch_size, timeout)
            if not messages:
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
                fresh.append(m)
            # registered before the run loop sees any of them: their chunk may commit soon
            acks.extend(fresh)
            now = monotonic()
            if oldest is None and fresh:
                oldest = now
            if arrivals is not None:
                arrivals.extend((m.position, now) for m in fresh)
            for m in fresh:
                if m.record is None:
                    yield ReadFailure(m.position, m.position, m.error or "undecodable", m.raw)
                else:
                    self._current = (m.record, m.id)
                    yield SourceRecord(m.position, m.position, m.record)
        log.info("job %s: stopping: the last chunk commits, then the consumer ends", self.job)
