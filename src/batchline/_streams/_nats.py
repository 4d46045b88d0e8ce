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

Messages come from pull requests kept ahead of the consumer (``_nats_pull``). Each delivery
has the consumer's own sequence, one more than the last: a jump means messages were lost on
the way (a connection lost while they were sent). The JetStream sequence of what follows is
then above messages never received, and ``AckPolicy.ALL`` would acknowledge them with it; so
the consumer is made anew from the sequence after the last message handed on, dropping what
came after the gap (and the same after a reconnect, to be safe).

Acknowledgement is ``AckPolicy.ALL``: acknowledging the last message of a committed chunk
acknowledges every one before it, one publish per chunk (``ack_wait`` is kept well above a
flush, 60 s by default, and ``max_ack_pending`` above two chunks).

nats-py is asyncio: the client runs on an event loop in a thread of its own; the consumer's
thread takes messages from the pull buffer and waits on the loop only to acknowledge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._database import redact_url
from .._errors import ConfigError, SourceError
from ._nats_pull import Puller
from ._source import BrokerSource, DeadMessage, Message, decode_json, raw_text

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
        pull_batch: messages asked for by one pull request (about two are kept open).
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
        pull_batch: int = 1000,
    ) -> None:
        self.url = url
        self.stream = stream
        self.durable = durable
        self.subject = subject
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.pull_batch = pull_batch
        self._nc: Any = None
        self._puller: Puller | None = None
        self._returned = 0  # the highest stream sequence fetch() returned
        self._delivered = 0  # the last consumer sequence received
        self._restart = False  # make the consumer anew (a gap, a reconnect)
        #: times the consumer was made anew after a gap or a reconnect (tests, logs)
        self.restarts = 0

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
        from nats.js.errors import NotFoundError

        servers = [s.strip() for s in self.url.split(",")]

        async def reconnected() -> None:
            self._restart = True

        self._nc = await nats.connect(
            servers=servers,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            reconnected_cb=reconnected,
        )
        js = self._nc.jetstream()
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(name=self.stream, subjects=[self.subject or self.stream])
        await self._start_consumer(committed)

    async def _start_consumer(self, after: int) -> None:
        """(Re)make the durable consumer to deliver from stream sequence ``after + 1``."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        js = self._nc.jetstream()
        if self._puller is not None:
            await self._puller.stop()
            self._puller = None
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(self.stream, self.durable)
        start: dict[str, Any] = {"deliver_policy": DeliverPolicy.ALL}
        if after:
            start = {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": after + 1,
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
        self._returned, self._delivered = after, 0
        puller = Puller(self._nc, self.stream, self.durable, self.pull_batch, expires=5.0)
        await puller.start()
        self._puller = puller

    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        if self._restart:
            self._restart = False
            self.restarts += 1
            log.warning("nats: consumer made anew after sequence %d", self._returned)
            try:
                self._call(self._start_consumer(self._returned))
            except Exception as exc:  # the connection is not back yet: try again later
                log.warning("nats: %s; retrying", exc)
                self._restart = True
                self.restarts -= 1
                time.sleep(min(timeout, 0.5))
                return []
        puller = self._puller
        assert puller is not None
        out = []
        for msg in puller.take(max_count, max(timeout, 0)):
            tokens = msg.reply.split(".")
            if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<n>.<sseq>.<cseq>.<ts>.<left>
                seq, delivery = int(tokens[5]), int(tokens[6])
            else:  # the longer form, with a domain and account
                meta = msg.metadata
                seq, delivery = int(meta.sequence.stream), int(meta.sequence.consumer)
            if delivery > self._delivered + 1:
                # deliveries between were lost: nothing after them may be handed on (or
                # acknowledged with them); start again after the last one handed on
                self._restart = True
                break
            self._delivered = max(self._delivered, delivery)  # (a redelivery keeps its own)
            self._returned = max(self._returned, seq)
            text = str(seq)
            record, error = decode_json(text, msg.data)
            out.append(
                Message(
                    seq, text, record, error, None if record else raw_text(msg.data), msg, msg.data
                )
            )
        return out

    def lag(self) -> int | None:
        if self._nc is None or self._loop is None:
            return None
        info = self._call(self._nc.jetstream().consumer_info(self.stream, self.durable), 5)
        # not yet delivered, and delivered ahead by the pull requests but not yet read
        puller = self._puller
        return int(info.num_pending) + (0 if puller is None else len(puller.buffer))

    def end(self) -> str | None:
        if self._nc is None or self._loop is None:
            return None
        info = self._call(self._nc.jetstream().stream_info(self.stream), 5)
        return f"seq {int(info.state.last_seq)}"

    def publish_dead(self, target: str, letters: list[DeadMessage]) -> None:
        """Publish each to subject ``target`` (a stream on it keeps them): its body, with
        headers ``Batchline-Id`` (its stream sequence), ``Batchline-Stage`` and
        ``Batchline-Error``."""

        async def send() -> None:
            for letter in letters:
                headers = {"Batchline-Id": letter.id, "Batchline-Stage": letter.stage,
                           "Batchline-Error": " ".join(letter.error.split())[:4000]}  # fmt: skip
                await self._nc.publish(target, letter.body or b"", headers=headers)
            await self._nc.flush(timeout=10)

        self._call(send())

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
            if self._puller is not None:
                await self._puller.stop()
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
