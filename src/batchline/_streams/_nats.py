"""NATS JetStream: a durable pull consumer; the stream sequence is the record's position.

The stream sequence is ordered, so it is the position as it is, and the job's checkpoint
is the last committed sequence, committed with the chunk.

The durable consumer belongs to the job (its lock makes the runner the consumer's only
reader). On start it is made anew to deliver from the sequence after the checkpoint: the
messages a dead runner had been delivered but not acknowledged would otherwise come back
only after their ``AckWait``, after newer ones, and a redelivered message below a newer
committed position would look committed. From then on it delivers in order; a message
redelivered later (a flush that outlasted ``AckWait``) is at or below what was handed on
and is recognised by its sequence.

Acknowledgement is ``AckPolicy.ALL``: acknowledging the last message of a committed chunk
acknowledges every one before it, one publish per chunk (``ack_wait`` is kept well above a
flush, 60 s by default, and ``max_ack_pending`` above two chunks).

nats-py is asyncio: the client runs on an event loop in a thread of its own, and the
consumer's calls wait on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._database import redact_url
from .._errors import ConfigError, SourceError
from ._source import BrokerSource, Message, decode_json, raw_text

__all__ = ["JetStreamSource"]

log = logging.getLogger("batchline")

T = TypeVar("T")


class JetStreamSource(BrokerSource):
    """Messages of a JetStream stream, read by a durable pull consumer.

    Args:
        url: ``nats://[user:password@]host:4222`` (several servers: comma-separated).
        stream: the stream; created if missing, on ``subject`` (default: the stream's name).
        durable: the durable consumer's name (made anew on each start, see the module).
        subject: the subject a missing stream is created on, and the consumer's filter.
        ack_wait: seconds before the server redelivers an unacknowledged message.
        max_ack_pending: messages delivered and not yet acknowledged, at most.
    """

    ordered = True
    kind = "nats"

    def __init__(
        self,
        url: str,
        stream: str,
        durable: str,
        *,
        subject: str | None = None,
        ack_wait: float = 60.0,
        max_ack_pending: int = 20_000,
    ) -> None:
        self.url = url
        self.stream = stream
        self.durable = durable
        self.subject = subject
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._sub: Any = None

    def describe(self) -> str:
        return f"{redact_url(self.url)}#stream={self.stream}&durable={self.durable}"

    # -- the event loop thread ----------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="batchline-nats", daemon=True)
        self._thread.start()

    # -- the source ---------------------------------------------------------------------------
    def open(self, committed: int) -> None:
        try:
            import nats  # noqa: F401
        except ImportError as exc:  # pragma: no cover - the streams extra is missing
            raise ConfigError("NATS needs nats-py: pip install 'batchline[streams]'") from exc
        self._start_loop()
        try:
            self._call(self._open(committed))
        except Exception as exc:
            self.close()
            raise SourceError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc

    async def _open(self, committed: int) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        servers = [s.strip() for s in self.url.split(",")]
        self._nc = await nats.connect(
            servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        js = self._nc.jetstream()
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(name=self.stream, subjects=[self.subject or self.stream])
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(self.stream, self.durable)
        start: dict[str, Any] = {"deliver_policy": DeliverPolicy.ALL}
        if committed:
            start = {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": committed + 1,
            }
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
            filter_subject=self.subject,
            **start,
        )
        await js.add_consumer(self.stream, config)
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        msgs = self._call(self._fetch(max_count, max(timeout, 0.01)), timeout=timeout + 30)
        out = []
        for msg in msgs:
            seq = int(msg.metadata.sequence.stream)
            text = str(seq)
            record, error = decode_json(text, msg.data)
            out.append(
                Message(seq, text, record, error, None if record else raw_text(msg.data), msg)
            )
        return out

    async def _fetch(self, max_count: int, timeout: float) -> list[Any]:
        import nats.errors

        try:
            msgs: list[Any] = await self._sub.fetch(max_count, timeout=timeout)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            # nothing came (nats-py raises asyncio's own on some paths of a short fetch)
            return []
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
            log.warning("nats: %s; waiting for the connection", e)
            await asyncio.sleep(0.2)
            return []
        return msgs

    def lag(self) -> int | None:
        if self._nc is None or self._loop is None:
            return None
        info = self._call(self._nc.jetstream().consumer_info(self.stream, self.durable), 5)
        return int(info.num_pending)

    def end(self) -> str | None:
        if self._nc is None or self._loop is None:
            return None
        info = self._call(self._nc.jetstream().stream_info(self.stream), 5)
        return f"seq {int(info.state.last_seq)}"

    def ack(self, tokens: list[Any]) -> None:
        # AckPolicy.ALL: the last (highest) one acknowledges all before it
        self._call(self._ack(tokens[-1]))

    async def _ack(self, msg: Any) -> None:
        await msg.ack()
        await self._nc.flush(timeout=10)

    async def _close(self) -> None:
        # acks are sent already (each waited for a flush); a drain would wait for the
        # pull subscription's pending request to expire
        try:
            await self._nc.flush(timeout=5)
        finally:
            await self._nc.close()

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._nc is not None:
            try:
                self._call(self._close(), timeout=15)
            except Exception as exc:  # closing: nothing left to save
                log.debug("nats: closing: %s", exc)
            self._nc = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None
