"""Event streams: the broker sources and their position helpers, for ``import batchline.streams``.

The consumer itself is ``batchline.Consumer`` (and ``Pipeline.consumer`` / ``Pipeline.arun``
for asyncio); this module adds what only broker code needs: turning a Redis job's position or
dead letter's position back into the stream ID (:func:`stream_id`) and the other way round,
and the base class for a source of your own (:class:`BrokerSource`, :class:`Message`,
:class:`DeadMessage`).
"""

from __future__ import annotations

from ._streams import (
    BrokerSource,
    Consumer,
    DeadMessage,
    JetStreamSource,
    Message,
    RabbitSource,
    RedisStreamSource,
    broker_position,
    stream_id,
    stream_position,
)

__all__ = [
    "BrokerSource",
    "Consumer",
    "DeadMessage",
    "JetStreamSource",
    "Message",
    "RabbitSource",
    "RedisStreamSource",
    "broker_position",
    "stream_id",
    "stream_position",
]
