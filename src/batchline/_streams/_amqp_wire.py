"""A minimal AMQP 0-9-1 consumer connection, on a plain socket, for :class:`RabbitSource`.

pika decodes each delivery's three frames (method, content header, body) through several
layers of Python objects and callbacks; at tens of thousands of messages a second that was
most of a RabbitMQ consumer's cost (bare pika, doing nothing with the messages, reached
about 40,000 a second here). A consumer needs little of AMQP: open a connection and one
channel, declare a queue, set the prefetch, consume, acknowledge. So this speaks that much
of the protocol itself and decodes deliveries with ``struct`` in one pass over the bytes
read; pika's codec (``pika.spec``, ``pika.frame``) encodes and decodes every other frame,
and its ``URLParameters`` reads the URL.

One thread reads (the consumer's); any thread may send (the flush thread acknowledges),
under a lock. Heartbeats are sent while the connection is idle and the broker's are
checked: two missed intervals mean the connection is lost. Any loss, or a close, channel
close or consumer cancel by the broker, raises :class:`WireError`.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import struct
import threading
import time
from typing import Any

__all__ = ["Delivery", "Wire", "WireError"]

_HEAD = struct.Struct(">BHI")
_CLASS_METHOD = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_ACK = struct.Struct(">BHIHHQBB")  # a whole Basic.Ack frame, multiple=True
_FRAME_END = 0xCE
_HEADERS = 1 << 13  # a content header's "headers" property flag


class WireError(Exception):
    """The connection was lost or closed by the broker (the consumer connects again)."""


Delivery = tuple[int, "str | None", bytes]  # (delivery tag, message id, body)


class Wire:
    """One connection with channel 1 open, from ``amqp://`` or ``amqps://`` URL ``url``."""

    def __init__(self, url: str, name: str, timeout: float = 10.0) -> None:
        import pika

        self.params = pika.URLParameters(url)
        self.name = name
        self.timeout = timeout
        self.deliveries: collections.deque[Delivery] = collections.deque()
        self._replies: collections.deque[Any] = collections.deque()
        self._buf = bytearray()
        self._sock: Any = None
        self._selector = selectors.DefaultSelector()
        self._send_lock = threading.Lock()
        self._partial: list[Any] | None = None  # [tag, message id, size, chunks, got]
        self.heartbeat = 0
        self.frame_max = 131072
        #: set by the source: which channel's delivery tags this connection's are
        self.generation = 0
        self._sent = self._received = time.monotonic()

    # -- connecting -----------------------------------------------------------------------------
    def connect(self) -> None:
        from pika import spec
        from pika.frame import ProtocolHeader

        p = self.params
        sock = socket.create_connection((p.host, p.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if p.ssl_options is not None:
                host = p.ssl_options.server_hostname or p.host
                sock = p.ssl_options.context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(self.timeout)
        self._sock = sock
        self._selector.register(sock, selectors.EVENT_READ)
        self._send(ProtocolHeader().marshal())
        self._expect(spec.Connection.Start)
        user = p.credentials.username.encode()
        password = p.credentials.password.encode()
        properties = {
            "product": "batchline",
            "connection_name": self.name,
            "capabilities": {"consumer_cancel_notify": True, "basic.nack": True},
        }
        self._method(
            0, spec.Connection.StartOk(properties, "PLAIN", b"\0" + user + b"\0" + password)
        )
        tune = self._expect(spec.Connection.Tune)
        self.heartbeat = int(tune.heartbeat if p.heartbeat is None else p.heartbeat)
        self.frame_max = frame_max = min(tune.frame_max or p.frame_max, p.frame_max)
        self._method(0, spec.Connection.TuneOk(tune.channel_max or 2047, frame_max, self.heartbeat))
        self._method(0, spec.Connection.Open(p.virtual_host))
        self._expect(spec.Connection.OpenOk)
        self._method(1, spec.Channel.Open())
        self._expect(spec.Channel.OpenOk)

    def declare(self, queue: str, *, passive: bool = False) -> int:
        """Declare ``queue`` durable (or only check it, ``passive``); its ready messages."""
        from pika import spec

        self._method(1, spec.Queue.Declare(queue=queue, durable=True, passive=passive))
        return int(self._expect(spec.Queue.DeclareOk).message_count)

    def consume(self, queue: str, prefetch: int) -> None:
        from pika import spec

        self._method(1, spec.Basic.Qos(prefetch_count=prefetch))
        self._expect(spec.Basic.QosOk)
        self._method(1, spec.Basic.Consume(queue=queue))
        self._expect(spec.Basic.ConsumeOk)

    # -- sending (any thread) -------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise WireError("not connected")
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as exc:
            raise WireError(f"send: {exc}") from exc
        self._sent = time.monotonic()

    def _method(self, channel: int, method: Any) -> None:
        from pika.frame import Method

        self._send(Method(channel, method).marshal())

    def publish(
        self, exchange: str, key: str, body: bytes, message_id: str, headers: dict[str, Any]
    ) -> None:
        """Publish a persistent message (its frames in one send: nothing comes between)."""
        from pika import spec
        from pika.frame import Body, Header, Method

        properties = spec.BasicProperties(message_id=message_id, delivery_mode=2, headers=headers)
        frames = [
            Method(1, spec.Basic.Publish(exchange=exchange, routing_key=key)).marshal(),
            Header(1, len(body), properties).marshal(),
        ]
        step = self.frame_max - 8
        frames += [Body(1, body[i : i + step]).marshal() for i in range(0, len(body), step)]
        self._send(b"".join(frames))

    def check_exchange(self, exchange: str) -> None:
        """That ``exchange`` exists (a passive declare; WireError if not)."""
        from pika import spec

        self._method(1, spec.Exchange.Declare(exchange=exchange, passive=True))
        self._expect(spec.Exchange.DeclareOk)

    def ack(self, tag: int) -> None:
        """Acknowledge delivery ``tag`` and all before it on the channel."""
        self._send(_ACK.pack(1, 1, 13, 60, 80, tag, 1, _FRAME_END))

    # -- reading (the consumer's thread) --------------------------------------------------------
    def poll(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` seconds (nothing waits if ``timeout`` is 0)
        into :attr:`deliveries`; keep the heartbeats."""
        sock = self._sock
        if sock is None:
            raise WireError("not connected")
        now = time.monotonic()
        if self.heartbeat:
            if now - self._sent > self.heartbeat / 2:
                self._send(b"\x08\x00\x00\x00\x00\x00\x00\xce")
            if now - self._received > 2 * self.heartbeat:
                raise WireError(f"no heartbeat from the broker for {now - self._received:.0f}s")
            timeout = min(timeout, self.heartbeat / 2)
        pending = getattr(sock, "pending", None)  # TLS: bytes decrypted, not yet read
        if not (pending and pending()):
            try:  # (a selector: select() refuses descriptors over 1023)
                readable = self._selector.select(max(timeout, 0))
            except (OSError, ValueError) as exc:
                raise WireError(f"select: {exc}") from exc
            if not readable:
                return
        try:
            data = sock.recv(262144)
        except OSError as exc:
            raise WireError(f"recv: {exc}") from exc
        if not data:
            raise WireError("the broker closed the connection")
        self._received = time.monotonic()
        self._buf += data
        self._parse()

    def _expect(self, kind: type) -> Any:
        deadline = time.monotonic() + self.timeout
        while not self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireError(f"no {kind.__name__} from the broker in {self.timeout:g}s")
            self.poll(left)
        reply = self._replies.popleft()
        if not isinstance(reply, kind):
            raise WireError(f"expected {kind.__name__}, the broker sent {reply.NAME}")
        return reply

    def _parse(self) -> None:
        """Take every whole frame from the buffer: deliveries by hand, the rest by pika."""
        buf = self._buf
        n = len(buf)
        pos = 0
        unpack_head, unpack_cm, unpack_u64 = (
            _HEAD.unpack_from,
            _CLASS_METHOD.unpack_from,
            _U64.unpack_from,
        )
        deliveries = self.deliveries
        while n - pos >= 8:
            kind, _channel, size = unpack_head(buf, pos)
            start = pos + 7
            end = start + size
            if end >= n:
                break
            if buf[end] != _FRAME_END:
                raise WireError("malformed frame from the broker")
            if kind == 3:  # body
                partial = self._partial
                if partial is not None:
                    partial[3].append(bytes(buf[start:end]))
                    partial[4] += size
                    if partial[4] >= partial[2]:
                        self._deliver(partial)
            elif kind == 2:  # content header
                partial = self._partial
                if partial is not None:
                    partial[2] = unpack_u64(buf, start + 4)[0]
                    partial[1] = _message_id(buf, start + 12, end)
                    if partial[2] == 0:
                        self._deliver(partial)
            elif kind == 1:
                if unpack_cm(buf, start) == (60, 60):  # Basic.Deliver
                    at = start + 4
                    at += 1 + buf[at]  # consumer tag
                    tag = unpack_u64(buf, at)[0]
                    whole = _whole_content(buf, end + 1, n)
                    if whole is not None:  # the common case, in one step
                        message_id, body, pos = whole
                        deliveries.append((tag, message_id, body))
                        continue
                    self._partial = [tag, None, 0, [], 0]
                else:
                    self._method_frame(bytes(buf[pos : end + 1]))
            # 8: a heartbeat; reading it was the point
            pos = end + 1
        del buf[:pos]

    def _deliver(self, partial: list[Any]) -> None:
        chunks = partial[3]
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.deliveries.append((partial[0], partial[1], body))
        self._partial = None

    def _method_frame(self, data: bytes) -> None:
        from pika import spec
        from pika.frame import decode_frame

        _, frame = decode_frame(data)
        method = getattr(frame, "method", None)
        if isinstance(method, spec.Connection.Close):
            self._ignore(lambda: self._method(0, spec.Connection.CloseOk()))
            raise WireError(
                f"the broker closed the connection: {method.reply_code} {method.reply_text}"
            )
        if isinstance(method, spec.Channel.Close):
            self._ignore(lambda: self._method(1, spec.Channel.CloseOk()))
            raise WireError(
                f"the broker closed the channel: {method.reply_code} {method.reply_text}"
            )
        if isinstance(method, spec.Basic.Cancel):
            raise WireError("the broker cancelled the consumer (the queue was deleted?)")
        if method is not None:
            self._replies.append(method)

    @staticmethod
    def _ignore(fn: Any) -> None:
        with contextlib.suppress(WireError):
            fn()

    def close(self) -> None:
        from pika import spec

        sock = self._sock
        if sock is None:
            self._selector.close()
            return
        try:
            self._method(0, spec.Connection.Close(200, "batchline consumer stopping", 0, 0))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if self._replies and isinstance(self._replies[-1], spec.Connection.CloseOk):
                    break
                self.poll(deadline - time.monotonic())
        except WireError:
            pass
        finally:
            self._sock = None
            self._selector.close()
            with contextlib.suppress(OSError):
                sock.close()


def _whole_content(buf: bytearray, pos: int, n: int) -> tuple[str | None, bytes, int] | None:
    """A delivery's content at ``pos`` (after its Basic.Deliver): its message id, its body
    and where the next frame starts, when its content header and its one body frame are
    whole in the buffer; else None (then the frames are taken one by one, as they come)."""
    if n - pos < 8:
        return None
    kind, _channel, size = _HEAD.unpack_from(buf, pos)
    start = pos + 7
    end = start + size
    if kind != 2 or end >= n or buf[end] != _FRAME_END:
        return None
    length = _U64.unpack_from(buf, start + 4)[0]
    message_id = _message_id(buf, start + 12, end)
    if length == 0:
        return message_id, b"", end + 1
    pos = end + 1
    if n - pos < 8:
        return None
    kind, _channel, size = _HEAD.unpack_from(buf, pos)
    start = pos + 7
    end = start + size
    if kind != 3 or size != length or end >= n or buf[end] != _FRAME_END:
        return None
    return message_id, bytes(buf[start:end]), end + 1


#: A content header's property flags → the properties it has before the message id, in order:
#: True for a short string (content type, encoding, correlation id, reply to, expiration),
#: False for one octet (delivery mode, priority). Worked out once per set of flags.
_BEFORE_ID: dict[int, tuple[bool, ...]] = {}


def _message_id(buf: bytearray, at: int, end: int) -> str | None:
    """The ``message-id`` property of a content header's property list at ``at``."""
    flags = _U16.unpack_from(buf, at)[0]
    if not flags & (1 << 7):
        return None
    if flags & _HEADERS:  # a field table before it: pika decodes the properties
        from pika import spec

        properties = spec.BasicProperties()
        properties.decode(bytes(buf[at:end]))
        message_id: str | None = properties.message_id
        return message_id
    at += 2
    before = _BEFORE_ID.get(flags)
    if before is None:
        before = _BEFORE_ID[flags] = tuple(
            bit not in (12, 11) for bit in (15, 14, 12, 11, 10, 9, 8) if flags & (1 << bit)
        )
    for short in before:
        at += 1 + buf[at] if short else 1
    length = buf[at]
    return buf[at + 1 : at + 1 + length].decode("utf-8", errors="replace")
