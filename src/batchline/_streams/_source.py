"""What a broker hands the consumer: :class:`Message`, and :class:`BrokerSource`, the four
calls (``open``, ``fetch``, ``ack``, ``close``) each broker module implements."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError

__all__ = ["BrokerSource", "DeadMessage", "Message", "broker_position", "decode_json", "raw_text"]

_RAW_LIMIT = 64 * 1024


@dataclass(slots=True)
class DeadMessage:
    """A dead-lettered message, re-published to the broker's dead-letter target."""

    id: str
    body: Any
    stage: str
    error: str


@dataclass(slots=True)
class Message:
    """One delivered message, as a source hands it over.

    Attributes:
        position: where the broker puts it in its order (a stream sequence, an encoded
            Redis stream ID), or 0 where the broker has none (the consumer numbers it).
        id: the broker's own name for it, as people read it (``"1764-0"``, ``"17"``, a
            message id); dead letters of unreadable messages quote it.
        record: the decoded record, or None when it could not be decoded.
        error: why it could not be decoded (then ``record`` is None).
        raw: its raw text, kept for the dead letter of an undecodable message.
        token: what the source needs to acknowledge it.
        body: what the source re-publishes to a dead-letter target should the message be
            dead-lettered (its body; a Redis entry's fields).
    """

    position: int
    id: str
    record: dict[str, Any] | None
    error: str | None
    raw: str | None
    token: Any
    body: Any = None


_fast_loads: Callable[[bytes | str], Any] | None = None
#: A body with each ASCII digit as b"0" and any other byte as b"x" (``bytes.translate``):
#: a run of 19 digits is then a plain search, in C, where a regex took a match per digit.
_DIGITS = bytes(48 if 48 <= c <= 57 else 120 for c in range(256))
_NINETEEN = b"0" * 19
try:  # several times faster than json on message-sized documents, where installed
    import orjson

    _fast_loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is optional
    pass


def decode_json(id: str, body: bytes | str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object from a message body, or why not (the message becomes a dead letter).

    With orjson installed it decodes a body first, unless the body has a run of 19 digits
    (orjson reads an integer over 64 bits as a float, json exactly); what orjson refuses
    (NaN, or what is not JSON) is decoded again by :mod:`json`. So a body means the same
    with or without orjson, and the reason a dead letter gives is json's."""
    if body is None:
        return None, f"message {id}: no body"
    try:
        if _fast_loads is None or type(body) is not bytes:
            raise ValueError
        if _NINETEEN in body.translate(_DIGITS):  # an integer orjson would read as a float
            raise ValueError
        value = _fast_loads(body)
    except ValueError:
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return None, f"message {id}: invalid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"message {id}: JSON {type(value).__name__}, expected an object"
    return value, None


def raw_text(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body[:_RAW_LIMIT].decode("utf-8", errors="replace")
    return body[:_RAW_LIMIT]


def broker_position(spec: Any, position: int) -> str | None:
    """A consumer job's checkpoint as its broker names it (``batchline jobs``): the last
    committed Redis stream ID or JetStream sequence; None for other jobs, and for RabbitMQ,
    whose queue has no position (the ledger holds the message ids there)."""
    if not isinstance(spec, dict) or spec.get("command") != "consume":
        return None
    if spec.get("broker") == "redis":
        from ._redis import stream_id

        return stream_id(position) if position else "-"
    if spec.get("broker") == "nats":
        return f"seq {position}" if position else "-"
    return None


class BrokerSource(ABC):
    """One broker's side of a consumer. ``fetch`` is called from the consumer's thread;
    ``ack`` may be called from the flush thread, so each source makes it safe there."""

    #: Whether ``Message.position`` is the broker's order (resume by position); else the
    #: consumer numbers messages and dedups by the idempotency ledger on the message id.
    ordered: bool = True
    #: The kind of broker, for the job's spec and metrics ("redis", "nats", "amqp").
    kind: str = ""
    #: Set when the consumer is asked to stop (the :class:`Consumer` gives its own): a
    #: source waiting to reconnect gives up waiting then, and ``fetch`` returns nothing.
    stopping: threading.Event | None = None

    @abstractmethod
    def describe(self) -> str:
        """What is consumed (URL without password, stream, group): the job's fingerprint."""

    @abstractmethod
    def open(self, committed: int) -> None:
        """Connect, create the group/consumer if missing, and get ready to deliver what
        follows position ``committed`` (the job's checkpoint) and whatever is pending."""

    @abstractmethod
    def fetch(self, max_count: int, timeout: float) -> list[Message]:
        """Up to ``max_count`` messages, waiting at most ``timeout`` seconds for the first."""

    @abstractmethod
    def ack(self, tokens: list[Any]) -> None:
        """Acknowledge these messages (they are committed or were already)."""

    @abstractmethod
    def close(self) -> None:
        """Send what is still buffered (acks) and disconnect."""

    def position_text(self, position: int) -> str:
        """A position as the broker writes it (for ``batchline jobs`` and dead letters)."""
        return str(position)

    def lag(self) -> int | None:
        """Messages in the broker not yet delivered to this consumer, when the broker says
        so cheaply and from any thread; None otherwise (metrics, ``batchline jobs``)."""
        return None

    def publish_dead(self, target: str, letters: list[DeadMessage]) -> None:
        """Re-publish dead-lettered messages to ``target`` (a stream, subject, exchange),
        each with its id, stage and reason (see :class:`Consumer`'s ``dead_letter_target``)."""
        raise ConfigError(f"{self.kind}: re-publishing dead letters is not supported")

    def check_target(self, target: str) -> None:
        """Refuse a dead-letter target the broker cannot take, on open (connected)."""
        return None

    def end(self) -> str | None:
        """The broker's last position (the newest stream entry ID, the stream's last
        sequence), as it writes it; None where a queue has none. From any thread."""
        return None
