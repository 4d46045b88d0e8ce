"""Event streams (issue 14): batchline as a long-running broker consumer.

``_core`` holds what every broker shares (the consumer, linger, ack-after-commit); each
broker has a module of its own whose client library is imported only when it is used (the
``streams`` extra).
"""

from __future__ import annotations

from ._amqp import RabbitSource
from ._core import Consumer
from ._nats import JetStreamSource
from ._redis import RedisStreamSource, stream_id, stream_position
from ._source import BrokerSource, DeadMessage, Message, broker_position

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
