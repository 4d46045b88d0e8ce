"""Acknowledgements after commit: the messages of each chunk, held until it committed."""

from __future__ import annotations

import bisect
import logging
import threading
from typing import Any

from ._source import BrokerSource, Message

__all__ = ["Acks"]

log = logging.getLogger("batchline")


class Acks:
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
