"""Redis Streams: a consumer group read with ``XREADGROUP``, acknowledged with ``XACK``.

A stream ID ``ms-seq`` is ordered, so it is the record's position, encoded as one integer
(``ms * 2**20 + seq``: a BIGINT until the year 2248, and up to 1,048,576 entries in one
millisecond) and decoded back for people (:func:`stream_id`). The job's checkpoint is then
the last committed stream ID, committed with the chunk.

The group belongs to the job: the job lock makes its runner the group's only reader, so on
start every entry pending in the group (delivered to a runner that died, under whatever
consumer name) is claimed with ``XAUTOCLAIM`` and read again in ID order before new entries
(``>``): those at or below the checkpoint are acknowledged, the others loaded. After a lost
connection the consumer's pending list is read again the same way, so an entry whose
delivery reply was lost is not skipped.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .._database import redact_url
from .._errors import ConfigError, SourceError
from ._source import BrokerSource, DeadMessage, Message, decode_json, raw_text

__all__ = ["RedisStreamSource", "stream_id", "stream_position"]

log = logging.getLogger("batchline")

_REASON_LIMIT = 4000
_SEQ_BITS = 20
_SEQ_LIMIT = 1 << _SEQ_BITS


def stream_position(entry_id: str | bytes) -> int:
    """The position of stream entry ``ms-seq`` (see the module's docstring)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    ms_i, seq_i = int(ms), int(seq or 0)
    if seq_i >= _SEQ_LIMIT:
        raise SourceError(
            f"stream entry {text}: more than {_SEQ_LIMIT} entries in one millisecond "
            "cannot be ordered by batchline's position"
        )
    return (ms_i << _SEQ_BITS) | seq_i


def stream_id(position: int) -> str:
    """The stream entry ID a position stands for (``batchline jobs``, dead letters)."""
    return f"{position >> _SEQ_BITS}-{position & (_SEQ_LIMIT - 1)}"


class RedisStreamSource(BrokerSource):
    """Entries of a Redis stream, read by one consumer of a consumer group.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``).
        stream: the stream's key; created (empty) with the group if missing.
        group: the consumer group; created if missing, starting at ``start_id``.
        consumer: this reader's name in the group (default: the group's name).
        field: the entry field holding the JSON document (``format="json"``).
        format: ``"json"`` (the document in ``field``) or ``"fields"`` (the entry's own
            fields are the record, values as text).
        start_id: where a new group starts: ``"0"`` (the whole stream) or ``"$"`` (new
            entries only).
    """

    ordered = True
    kind = "redis"

    def __init__(
        self,
        url: str,
        stream: str,
        group: str,
        *,
        consumer: str | None = None,
        field: str = "data",
        format: str = "json",
        start_id: str = "0",
    ) -> None:
        if format not in ("json", "fields"):
            raise ConfigError(f"unknown message format {format!r}; expected json or fields")
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer or group
        self.field = field.encode()
        self.format = format
        self.start_id = start_id
        self._client: Any = None
        self._acker: Any = None
        self._pending: str | None = "0"  # read the pending list from here before ">"
        self._backoff = 0.0

    def describe(self) -> str:
        return f"{redact_url(self.url)}#stream={self.stream}&group={self.group}"

    def position_text(self, position: int) -> str:
        return stream_id(position)

    def _connect(self) -> Any:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the streams extra is missing
            raise ConfigError("Redis needs redis-py: pip install 'batchline[streams]'") from exc
        if self._client is None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            name = f"batchline:{self.group}:{self.consumer}"
            # The reader must not retry by itself: a read whose reply was lost has
            # delivered entries (they are pending) that a retried "XREADGROUP >" skips;
            # fetch() reads the pending list again instead. Acks are safe to retry.
            self._client = redis.Redis.from_url(
                self.url, socket_connect_timeout=5, client_name=name, retry=Retry(NoBackoff(), 0)
            )
            self._acker = redis.Redis.from_url(
                self.url, socket_connect_timeout=5, client_name=name + ":ack"
            )
        return self._client

    def open(self, committed: int) -> None:
        import redis

        client = self._connect()
        for attempt in range(30):
            try:
                try:
                    client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._claim_all()
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if attempt == 29:
                    raise SourceError(f"{redact_url(self.url)}: {exc}") from exc
                log.warning("redis %s unreachable (%s); retrying", redact_url(self.url), exc)
                time.sleep(min(2.0, 0.1 * 2**attempt))
        self._pending = "0"

    def _claim_all(self) -> None:
        """Take over every entry pending in the group (this job is its only reader)."""
        client = self._client
        cursor: Any = "0-0"
        while True:
            # JUSTID would be lighter, but redis-py then drops the cursor from the reply
            reply = client.xautoclaim(
                self.stream, self.group, self.consumer, 0, start_id=cursor, count=1000
            )
            cursor = reply[0]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:  # trimmed away while pending: nothing left to load
                client.xack(self.stream, self.group, *deleted)
            if cursor in (b"0-0", "0-0"):
                return

    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        import redis

        client = self._client
        try:
            if self._pending is not None:
                reply = client.xreadgroup(
                    self.group, self.consumer, {self.stream: self._pending}, count=max_count
                )
                entries = reply[0][1] if reply else []
                if entries:
                    self._pending = entries[-1][0]
                    self._backoff = 0.0
                    return self._messages(entries)
                self._pending = None
            reply = client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=max_count,
                block=max(1, int(timeout * 1000)),
            )
            self._backoff = 0.0
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The reply of a read may be lost with the connection: read the pending list
            # again from the start once back, so no delivered entry is skipped.
            self._pending = "0"
            self._backoff = min(2.0, max(0.1, self._backoff * 2))
            log.warning("redis: %s; reconnecting in %.1fs", exc, self._backoff)
            time.sleep(self._backoff)
            return []
        return self._messages(reply[0][1]) if reply else []

    def _messages(self, entries: list[Any]) -> list[Message]:
        out: list[Message] = []
        gone: list[Any] = []
        for entry_id, fields in entries:
            text = entry_id.decode()
            if not fields:  # deleted from the stream while pending
                gone.append(entry_id)
                continue
            position = stream_position(text)
            if self.format == "fields":
                try:
                    record: dict[str, Any] | None = {
                        k.decode(): v.decode() for k, v in fields.items()
                    }
                    error = None
                except UnicodeDecodeError as exc:
                    record, error = None, f"message {text}: not UTF-8: {exc}"
                raw = None if record is not None else raw_text(repr(fields))
            else:
                body = fields.get(self.field)
                if body is None:
                    record = None
                    error = f"message {text}: no field {self.field.decode()!r}"
                else:
                    record, error = decode_json(text, body)
                raw = None if record is not None else raw_text(body)
            out.append(Message(position, text, record, error, raw, entry_id, fields))
        if gone:
            self._acker.xack(self.stream, self.group, *gone)
        return out

    def lag(self) -> int | None:
        client = self._acker
        if client is None:
            return None
        for group in client.xinfo_groups(self.stream):
            if group.get("name") in (self.group, self.group.encode()):
                lag = group.get("lag")  # Redis 7; None when Redis cannot tell
                return None if lag is None else int(lag)
        return None

    def end(self) -> str | None:
        client = self._acker
        if client is None:
            return None
        last = client.xinfo_stream(self.stream).get("last-generated-id")
        return None if last is None else (last.decode() if isinstance(last, bytes) else last)

    def publish_dead(self, target: str, letters: list[DeadMessage]) -> None:
        """``XADD`` each to stream ``target``: its own fields, and ``batchline-id`` (the
        entry ID it had), ``batchline-stage`` and ``batchline-error``."""
        pipe = self._acker.pipeline(transaction=False)
        for letter in letters:
            fields: dict[Any, Any] = dict(letter.body or {})
            fields.update({"batchline-id": letter.id, "batchline-stage": letter.stage,
                           "batchline-error": letter.error[:_REASON_LIMIT]})  # fmt: skip
            pipe.xadd(target, fields)
        pipe.execute()

    def ack(self, tokens: list[Any]) -> None:
        # on the acking client (thread-safe, a pool; it retries a lost connection): the
        # flush thread acknowledges while this consumer's read blocks on the reader
        for start in range(0, len(tokens), 5000):
            self._acker.xack(self.stream, self.group, *tokens[start : start + 5000])

    def close(self) -> None:
        for client in (self._client, self._acker):
            if client is not None:
                client.close()
        self._client = self._acker = None
