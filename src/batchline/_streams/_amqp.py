"""RabbitMQ (AMQP 0-9-1): a queue, acknowledged with ``multiple=True`` after commit.

A queue has no order a restart could resume from: a message not acknowledged before a crash
comes back at the head of the queue, among messages never seen. So the consumer numbers
messages itself and each record's idempotency key is its message id (the ``message_id``
property; without one, a hash of the body): the ledger, written in the chunk's transaction,
skips a message redelivered after its chunk committed (counted as a duplicate, then
acknowledged). A poison message's writes never landed, so its own key is not there; its dead
letter holds a key of its own instead (``Consumer._letter_key``, claimed with the letter in
the chunk's transaction), so one redelivered after a crash between the commit and the
acknowledgement is a duplicate too: good messages and dead letters, each exactly once.

``prefetch`` (10,000 by default) must cover the chunks in flight: the broker sends no more
while that many are unacknowledged, and the consumer acknowledges only after commit. The
chunk's last delivery tag is acknowledged with ``multiple=True``, one frame per chunk.

The connection is :mod:`._amqp_wire`'s (a consumer's part of the protocol, with deliveries
decoded in one pass; pika's codec for the rest): the consumer's thread reads, and ``ack``,
called on the flush thread, sends its frame itself.

A lost connection (the broker restarted, a network cut, a connection closed by an operator)
does not end the run: the next fetch connects again with backoff (tenacity), declares the
queue again and goes on. The broker puts every message it had delivered on the lost channel
and not seen acknowledged back in the queue; they come again on the new channel, and the
ledger skips those whose chunk committed meanwhile. A delivery tag names a message on its
channel only, so each token carries the channel's generation, and an acknowledgement for a
lost channel is dropped, never sent on the new one (where the same tag names another,
maybe uncommitted, message).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from typing import Any

from .._database import redact_url
from .._errors import ConfigError, SourceError
from ._amqp_wire import Wire, WireError
from ._source import BrokerSource, DeadMessage, Message, decode_json, raw_text

__all__ = ["RabbitSource"]

log = logging.getLogger("batchline")


class RabbitSource(BrokerSource):
    """Messages of a RabbitMQ queue.

    Args:
        url: ``amqp://user:password@host:5672/vhost`` (``%2F`` for the default vhost), or
            ``amqps://``; ``?heartbeat=N`` sets the heartbeat.
        queue: the queue; declared durable if missing.
        prefetch: unacknowledged messages the broker may send ahead (covering two chunks).
        reconnect_for: seconds to keep trying to connect again after a lost connection
            before the run fails; None (the default): until the consumer is stopped.
    """

    ordered = False
    kind = "amqp"

    def __init__(
        self,
        url: str,
        queue: str,
        *,
        prefetch: int = 10_000,
        reconnect_for: float | None = None,
    ) -> None:
        self.url = url
        self.queue = queue
        self.prefetch = prefetch
        self.reconnect_for = reconnect_for
        self._wire: Wire | None = None
        self._generation = 0  # the channel's: a delivery tag names a message on it only
        self._owner: threading.Thread | None = None
        self._depth: int | None = None
        self._depth_at = 0.0
        #: connections made after a lost one (for tests and logs)
        self.reconnects = 0

    def describe(self) -> str:
        return f"{redact_url(self.url)}#queue={self.queue}"

    def open(self, committed: int) -> None:
        try:
            import pika  # noqa: F401  (its codec and URL parsing)
        except ImportError as exc:  # pragma: no cover - the streams extra is missing
            raise ConfigError("RabbitMQ needs pika: pip install 'batchline[streams]'") from exc
        self._owner = threading.current_thread()
        try:
            self._connect()
        except (WireError, OSError) as exc:
            self.close()
            raise SourceError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc

    def _connect(self) -> None:
        # operators see which consumer a connection is (rabbitmqctl list_connections)
        wire = Wire(self.url, f"batchline:{self.queue}")
        try:
            wire.connect()
            self._depth = wire.declare(self.queue)
            self._depth_at = time.monotonic() + 1.0
            wire.consume(self.queue, self.prefetch)
        except BaseException:
            wire.close()
            raise
        self._generation += 1
        wire.generation = self._generation
        self._wire = wire  # (with its generation: the flush thread reads one reference)

    def _reconnect(self, exc: Exception) -> bool:
        """Connect again after ``exc`` lost the connection; False if the consumer was
        stopped meanwhile. Raises SourceError once ``reconnect_for`` is spent."""
        import tenacity

        log.warning("amqp %s: connection lost (%s); reconnecting", self.describe(), exc)
        self._drop()
        stopping = self.stopping or threading.Event()
        stop: Any = tenacity.stop_when_event_set(stopping)
        if self.reconnect_for is not None:
            stop = stop | tenacity.stop_after_delay(self.reconnect_for)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((WireError, OSError)),
            wait=tenacity.wait_exponential(multiplier=0.1, max=5.0) + tenacity.wait_random(0, 0.1),
            stop=stop,
            sleep=stopping.wait,  # type: ignore[arg-type]  # a stop cuts the wait short
            before_sleep=lambda state: log.warning(
                "amqp: reconnect attempt %d failed: %s",
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        try:
            retrying(self._connect)
        except (WireError, OSError) as last:
            if stopping.is_set():
                return False
            raise SourceError(f"{self.describe()}: reconnecting: {last}") from last
        self.reconnects += 1
        log.warning("amqp %s: connected again", self.describe())
        return True

    def _drop(self) -> None:
        """Forget the lost connection and what it delivered that the run loop never saw
        (the broker delivers those again)."""
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        wire = self._wire
        try:
            if wire is None:
                if not self._reconnect(WireError("not connected")):
                    return []
                wire = self._wire
                assert wire is not None
            wire.poll(0 if wire.deliveries else timeout)
            if time.monotonic() >= self._depth_at:
                self._refresh_depth(wire)
        except (WireError, OSError) as exc:
            if not self._reconnect(exc):
                return []
            return []
        deliveries = wire.deliveries
        generation = self._generation
        out: list[Message] = []
        for _ in range(min(max_count, len(deliveries))):
            tag, message_id, body = deliveries.popleft()
            out.append(self._message(generation, tag, message_id, body))
        return out

    def _message(self, generation: int, tag: int, message_id: str | None, body: bytes) -> Message:
        message_id = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
        record, error = decode_json(message_id, body)
        raw = None if record is not None else raw_text(body)
        return Message(0, message_id, record, error, raw, (generation, tag), body)

    def _refresh_depth(self, wire: Wire) -> None:
        """The queue's ready messages, asked at most once a second (a passive declare)."""
        self._depth_at = time.monotonic() + 1.0
        self._depth = wire.declare(self.queue, passive=True)

    def lag(self) -> int | None:
        """Messages not yet taken by the consumer: ready in the queue (as of the last
        second) and delivered ahead by the prefetch but not yet read."""
        wire = self._wire
        if threading.current_thread() is self._owner and wire is not None:
            with contextlib.suppress(WireError, OSError):  # on its own thread: ask now
                self._refresh_depth(wire)
        depth = self._depth
        return None if depth is None else depth + (0 if wire is None else len(wire.deliveries))

    def ack(self, tokens: list[Any]) -> None:
        # delivery tags grow on a channel: one ack of the highest covers them all; tokens
        # of an earlier channel are skipped (that channel's unacknowledged messages were
        # put back in the queue when it was lost)
        wire = self._wire
        if wire is None:
            raise SourceError("amqp: not connected")
        tags = [tag for gen, tag in tokens if gen == wire.generation]
        if tags:
            self._basic_ack(wire, max(tags))

    def _target(self, target: str) -> tuple[str, str]:
        exchange, _, key = target.partition("/")
        return exchange, key or self.queue

    def check_target(self, target: str) -> None:
        exchange, key = self._target(target)
        if not exchange and key == self.queue:
            # the default exchange routes by queue name: poison would come straight back
            raise SourceError(
                f"dead-letter target {target!r} publishes to the default exchange with the "
                f"routing key {key!r}, the queue being consumed: its poison messages would "
                "come back for ever; name another queue (/QUEUE) or an exchange"
            )
        if exchange and self._wire is not None:
            try:
                self._wire.check_exchange(exchange)
            except WireError as exc:
                raise SourceError(f"dead-letter target exchange {exchange!r}: {exc}") from exc

    def publish_dead(self, target: str, letters: list[DeadMessage]) -> None:
        """Publish each (persistent) to ``target``, ``EXCHANGE[/ROUTING_KEY]`` (the routing
        key is the queue's name by default; exchange "" is the default exchange): its
        body and message id, with headers ``x-batchline-stage`` and ``x-batchline-error``."""
        wire = self._wire
        if wire is None:
            raise SourceError("amqp: not connected")
        exchange, key = self._target(target)
        for letter in letters:
            headers = {"x-batchline-stage": letter.stage, "x-batchline-error": letter.error[:4000]}
            wire.publish(exchange, key, letter.body or b"", letter.id, headers)

    def _basic_ack(self, wire: Wire, tag: int) -> None:
        wire.ack(tag)

    def close(self) -> None:
        self._drop()
