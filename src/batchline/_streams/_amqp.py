"""RabbitMQ (AMQP 0-9-1, pika): a queue, acknowledged with ``multiple=True`` after commit.

A queue has no order a restart could resume from: a message not acknowledged before a crash
comes back at the head of the queue, among messages never seen. So the consumer numbers
messages itself and each record's idempotency key is its message id (the ``message_id``
property; without one, a hash of the body): the ledger, written in the chunk's transaction,
skips a message redelivered after its chunk committed (counted as a duplicate, then
acknowledged). A poison message is not in the ledger (its writes never landed), so one
redelivered after a crash between the commit and the acknowledgement is dead-lettered again:
good messages land exactly once, dead letters at least once.

``prefetch`` (10,000 by default) must cover the chunks in flight: the broker sends no more
while that many are unacknowledged, and the consumer acknowledges only after commit. The
chunk's last delivery tag is acknowledged with ``multiple=True``, one frame per chunk.

pika's ``BlockingConnection`` belongs to one thread: ``ack``, called on the flush thread, hands
the acknowledgement to the consumer's thread (``add_callback_threadsafe``), which sends it
during its next fetch or on close.

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

import collections
import contextlib
import hashlib
import logging
import threading
import time
from typing import Any

from .._database import redact_url
from .._errors import ConfigError, SourceError
from ._source import BrokerSource, Message, decode_json, raw_text

__all__ = ["RabbitSource"]

log = logging.getLogger("batchline")


class RabbitSource(BrokerSource):
    """Messages of a RabbitMQ queue.

    Args:
        url: ``amqp://user:password@host:5672/vhost`` (``%2F`` for the default vhost).
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
        self._connection: Any = None
        self._channel: Any = None
        self._probe: Any = None  # a channel of its own for the queue's depth
        self._generation = 0  # the channel's: a delivery tag names a message on it only
        self._buffer: collections.deque[Message] = collections.deque()
        self._owner: threading.Thread | None = None
        self._depth: int | None = None
        self._depth_at = 0.0
        #: connections made after a lost one (for tests and logs)
        self.reconnects = 0

    def describe(self) -> str:
        return f"{redact_url(self.url)}#queue={self.queue}"

    def open(self, committed: int) -> None:
        try:
            import pika
        except ImportError as exc:  # pragma: no cover - the streams extra is missing
            raise ConfigError("RabbitMQ needs pika: pip install 'batchline[streams]'") from exc
        try:
            self._connect()
        except pika.exceptions.AMQPError as exc:
            self.close()
            raise SourceError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        self._owner = threading.current_thread()

    def _connect(self) -> None:
        import pika

        parameters = pika.URLParameters(self.url)
        # operators see which consumer a connection is (rabbitmqctl list_connections)
        parameters.client_properties = {"connection_name": f"batchline:{self.queue}"}
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            channel.queue_declare(self.queue, durable=True)
            channel.basic_qos(prefetch_count=self.prefetch)
            generation = self._generation + 1
            channel.basic_consume(
                self.queue,
                lambda ch, method, props, body: self._on_message(generation, method, props, body),
            )
        except Exception:
            with contextlib.suppress(Exception):
                connection.close()
            raise
        self._connection, self._channel, self._probe = connection, channel, None
        self._generation = generation

    def _reconnect(self, exc: Exception) -> bool:
        """Connect again after ``exc`` lost the connection; False if the consumer was
        stopped meanwhile. Raises SourceError once ``reconnect_for`` is spent."""
        import pika
        import tenacity

        log.warning("amqp %s: connection lost (%s); reconnecting", self.describe(), exc)
        self._drop()
        stopping = self.stopping or threading.Event()
        stop: Any = tenacity.stop_when_event_set(stopping)
        if self.reconnect_for is not None:
            stop = stop | tenacity.stop_after_delay(self.reconnect_for)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(pika.exceptions.AMQPConnectionError),
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
        except pika.exceptions.AMQPError as last:
            if stopping.is_set():
                return False
            raise SourceError(f"{self.describe()}: reconnecting: {last}") from last
        self.reconnects += 1
        log.warning("amqp %s: connected again", self.describe())
        return True

    def _drop(self) -> None:
        """Forget the lost connection and what it delivered but the run loop never saw
        (the broker delivers those again)."""
        connection, self._connection, self._channel, self._probe = (
            self._connection, None, None, None)  # fmt: skip
        self._buffer.clear()
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                connection.close()

    def _on_message(self, generation: int, method: Any, properties: Any, body: bytes) -> None:
        message_id = properties.message_id or "sha256:" + hashlib.sha256(body).hexdigest()
        record, error = decode_json(message_id, body)
        raw = None if record is not None else raw_text(body)
        token = (generation, method.delivery_tag)
        self._buffer.append(Message(0, message_id, record, error, raw, token))

    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        import pika

        try:
            if self._connection is None and not self._reconnect(RuntimeError("not connected")):
                return []
            # always let pika run: it sends the acks the flush thread handed over
            self._connection.process_data_events(time_limit=0 if self._buffer else timeout)
            if time.monotonic() >= self._depth_at:
                self._refresh_depth()
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            if not self._reconnect(exc):
                return []
        out: list[Message] = []
        buffer = self._buffer
        while buffer and len(out) < max_count:
            out.append(buffer.popleft())
        return out

    def _refresh_depth(self) -> None:
        """The queue's ready messages, asked at most once a second (on a channel of its own:
        a failed passive declare closes its channel)."""
        self._depth_at = time.monotonic() + 1.0
        if self._probe is None or not self._probe.is_open:
            self._probe = self._connection.channel()
        frame = self._probe.queue_declare(self.queue, passive=True)
        self._depth = int(frame.method.message_count)

    def lag(self) -> int | None:
        """Messages not yet taken by the consumer: ready in the queue (as of the last
        second) and delivered ahead by the prefetch but not yet read."""
        if threading.current_thread() is self._owner and self._connection is not None:
            with contextlib.suppress(Exception):  # on its own thread: ask now
                self._refresh_depth()
        depth = self._depth
        return None if depth is None else depth + len(self._buffer)

    def ack(self, tokens: list[Any]) -> None:
        # delivery tags grow on a channel: one ack of the highest covers them all; tokens
        # of an earlier channel are skipped (that channel's unacknowledged messages were
        # put back in the queue when it was lost)
        generation = self._generation
        tags = [tag for gen, tag in tokens if gen == generation]
        if not tags:
            return
        last = max(tags)
        if threading.current_thread() is self._owner:
            self._ack_now(generation, last)
        else:
            connection = self._connection
            if connection is None:
                raise SourceError("amqp: not connected")
            connection.add_callback_threadsafe(lambda: self._ack_now(generation, last))

    def _ack_now(self, generation: int, tag: int) -> None:
        """On the connection's own thread: acknowledge ``tag`` and all before it, if the
        channel they came on is still the current one."""
        if generation == self._generation and self._channel is not None:
            self._basic_ack(self._channel, tag)

    def _basic_ack(self, channel: Any, tag: int) -> None:
        channel.basic_ack(tag, multiple=True)

    def close(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            if connection.is_open:
                connection.process_data_events(time_limit=0)  # the acks still queued
                connection.close()
        except Exception as exc:  # closing: what was not acked is redelivered
            log.debug("amqp: closing: %s", exc)
        self._connection = None
