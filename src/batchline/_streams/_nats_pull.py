"""JetStream pull requests kept ahead of the consumer, delivered into a plain buffer.

nats-py's ``PullSubscription.fetch`` waits for each message with a task, a timer and a
uuid of its own: at tens of thousands of messages a second that bookkeeping, on an event
loop thread sharing the GIL with the consumer, was most of a NATS consumer's cost. This
keeps the protocol's own shape instead (as the Go client's ``Consume`` does): pull requests
(``$JS.API.CONSUMER.MSG.NEXT``, ``batch`` messages, expiring after ``expires`` seconds) are
kept outstanding for about two batches, their messages arrive on an inbox subscription
with a callback that appends them to a buffer, and the consumer's thread takes them from
the buffer without a round trip through the event loop.

The buffer is bounded: a new request is made only while the messages requested and not
yet delivered plus those buffered are under one batch; the server's ``max_ack_pending``
bounds it too (acknowledgements come only after commit).

A request ends when its batch is delivered, or with a status message (408: it expired;
409: the server dropped it); one that was answered by neither (a lost connection) is
forgotten a second after it expired. The server serves requests in order, so a message
counts against the oldest open one.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from typing import Any

__all__ = ["Puller"]


class Puller:
    """Pull requests for one durable consumer, run on the client's event loop.

    ``buffer`` and ``ready`` are shared with the consumer's thread: the callback appends
    under ``ready`` and notifies, :meth:`take` waits on it.
    """

    def __init__(self, nc: Any, stream: str, durable: str, batch: int, expires: float) -> None:
        self.nc = nc
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.batch = batch
        self.expires = expires
        self.buffer: collections.deque[Any] = collections.deque()
        self.ready = threading.Condition()
        self._requests: collections.deque[list[float]] = collections.deque()  # [ends, left]
        self._pending = 0  # messages requested and not yet delivered
        self._sub: Any = None
        self._inbox = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poked: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message)
        await self._refill()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    # -- on the event loop ----------------------------------------------------------------------
    async def _on_message(self, msg: Any) -> None:
        headers = msg.headers
        if headers and "Status" in headers and not msg.data:
            if headers["Status"] != "100":  # not a heartbeat: the oldest request ended
                self._end_oldest()
        else:
            self._delivered()
            with self.ready:
                self.buffer.append(msg)
                self.ready.notify()
        if self._pending + len(self.buffer) < self.batch:
            await self._refill()

    def _delivered(self) -> None:
        self._pending -= 1
        if self._requests:
            oldest = self._requests[0]
            oldest[1] -= 1
            if oldest[1] <= 0:
                self._requests.popleft()

    def _end_oldest(self) -> None:
        if self._requests:
            self._pending -= int(self._requests.popleft()[1])

    async def _refill(self) -> None:
        """Request another batch while fewer than one batch is requested or buffered."""
        if self._sub is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._requests and self._requests[0][0] < now:  # never answered: forgotten
            self._end_oldest()
        self._pending = max(self._pending, 0)
        while self._pending + len(self.buffer) < self.batch:
            request = {"batch": self.batch, "expires": int(self.expires * 1e9)}
            await self.nc.publish(self.api, json.dumps(request).encode(), reply=self._inbox)
            self._requests.append([now + self.expires + 1.0, float(self.batch)])
            self._pending += self.batch

    def _poke(self) -> None:
        if self._sub is not None:
            self._poked = asyncio.ensure_future(self._refill())  # (kept: not collected)

    # -- on the consumer's thread ---------------------------------------------------------------
    def take(self, max_count: int, timeout: float) -> list[Any]:
        """Up to ``max_count`` buffered messages, waiting at most ``timeout`` for one."""
        buffer = self.buffer
        with self.ready:
            if not buffer:
                self.ready.wait(timeout)
            n = min(max_count, len(buffer))
            msgs = [buffer.popleft() for _ in range(n)]
        if self._loop is not None and len(buffer) < self.batch:
            # the buffer ran low (or nothing came: forget requests that expired unanswered)
            self._loop.call_soon_threadsafe(self._poke)
        return msgs
