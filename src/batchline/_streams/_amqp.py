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
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
from typing import Any

from .._database import redact_url
from .._errors import ConfigError, SourceError
from ._core import BrokerSource, Message, decode_json, raw_text

__all__ = ["RabbitSource"]

log = logging.getLogger("batchline")


class RabbitSource(BrokerSource):
    """Messages of a RabbitMQ queue.

    Args:
        url: ``amqp://user:password@host:5672/vhost`` (``%2F`` for the default vhost).
        queue: the queue; declared durable if missing.
        prefetch: unacknowledged messages the broker may send ahead (covering two chunks).
    """

    ordered = False
    kind = "amqp"

    def __init__(self, url: str, queue: str, *, prefetch: int = 10_000) -> None:
        self.url = url
        self.queue = queue
        self.prefetch = prefetch
        self._connection: Any = None
        self._channel: Any = None
        self._buffer: collections.deque[Message] = collections.deque()
        self._owner: threading.Thread | None = None

    def describe(self) -> str:
        return f"{redact_url(self.url)}#queue={self.queue}"

    def open(self, committed: int) -> None:
        try:
            import pika
        except ImportError as exc:  # pragma: no cover - the streams extra is missing
            raise ConfigError("RabbitMQ needs pika: pip install 'batchline[streams]'") from exc
        try:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
            channel = self._connection.channel()
            channel.queue_declare(self.queue, durable=True)
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.basic_consume(self.queue, self._on_message)
        except pika.exceptions.AMQPError as exc:
            self.close()
            raise SourceError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        self._channel = channel
        self._owner = threading.current_thread()

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        message_id = properties.message_id or "sha256:" + hashlib.sha256(body).hexdigest()
        record, error = decode_json(message_id, body)
        raw = None if record is not None else raw_text(body)
        self._buffer.append(Message(0, message_id, record, error, raw, method.delivery_tag))

    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        # always let pika run: it sends the acks the flush thread handed over
        self._connection.process_data_events(time_limit=0 if self._buffer else timeout)
        out: list[Message] = []
        buffer = self._buffer
        while buffer and len(out) < max_count:
            out.append(buffer.popleft())
        return out

    def ack(self, tokens: list[Any]) -> None:
        last = max(tokens)  # delivery tags grow on the channel: one ack covers them all
        if threading.current_thread() is self._owner:
            self._channel.basic_ack(last, multiple=True)
        else:
            self._connection.add_callback_threadsafe(
                lambda: self._channel.basic_ack(last, multiple=True)
            )

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
