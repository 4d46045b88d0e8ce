"""The latency proxy's engine: threads that forward each chunk of bytes ``latency_ms`` late.

Why a module of its own: ``LatencyProxy`` runs this file as a script in a child process
(``python -I _proxy_threads.py HOST PORT LATENCY_MS``), so that the benchmark's own Python
code cannot delay it through the GIL; a script run that way imports the standard library
only, never this package.

How, and why so: one reader and one writer thread per direction per connection. The reader
stamps each chunk with ``perf_counter() + delay``; the writer sleeps until shortly before the
stamp and spins (``sleep(0)``) for the last ~200 µs, because an asyncio loop cannot time a
sub-millisecond delay. ``TCP_NODELAY`` is set on both sockets, or pipelined small writes
stall ~40 ms on delayed ACKs. The child exits when the parent closes its stdin, so it cannot
outlive the parent.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["CHUNK", "JOIN_S", "LOOPBACK", "ThreadedProxy", "nodelay", "shutdown"]

LOOPBACK = "127.0.0.1"
CHUNK = 256 * 1024
_SPIN_S = 0.0002  # spin for the last 200 µs: sleep() overshoots by ~50-100 µs on Linux
_QUEUE_CHUNKS = 512  # bounded, so a fast sender meets back-pressure
JOIN_S = 5.0


def nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def _wait_until(deadline: float) -> None:
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        time.sleep(remaining - _SPIN_S if remaining > _SPIN_S else 0)


class _Pipe:
    """One direction of one connection: bytes from ``src`` reach ``dst`` ``delay`` later."""

    def __init__(
        self,
        src: socket.socket,
        dst: socket.socket,
        delay_s: float,
        on_done: Callable[[bool], None],
        name: str,
    ) -> None:
        self._src = src
        self._dst = dst
        self._delay = delay_s
        self._on_done = on_done
        self._queue: queue.Queue[tuple[float, bytes | None]] = queue.Queue(_QUEUE_CHUNKS)
        self._writer_gone = threading.Event()
        self.threads = (
            threading.Thread(target=self._read, name=f"{name}-read", daemon=True),
            threading.Thread(target=self._write, name=f"{name}-write", daemon=True),
        )

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _put(self, item: tuple[float, bytes | None]) -> None:
        while not self._writer_gone.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read(self) -> None:
        try:
            while True:
                data = self._src.recv(CHUNK)
                self._put((time.perf_counter() + self._delay, data))
                if not data:  # end of stream: the writer half-closes after the delay
                    return
        except OSError:
            self._put((0.0, None))  # broken: tell the writer to abort the connection

    def _write(self) -> None:
        failed = False
        try:
            while True:
                due, data = self._queue.get()
                if data is None:
                    failed = True
                    return
                _wait_until(due)
                if not data:
                    shutdown(self._dst, socket.SHUT_WR)
                    return
                self._dst.sendall(data)
        except OSError:
            failed = True
        finally:
            self._writer_gone.set()
            self._on_done(failed)


class _Connection:
    """A client socket, its upstream socket and the two pipes between them."""

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        delay_s: float,
        on_closed: Callable[[_Connection], None],
        name: str,
    ) -> None:
        self._socks = (client, upstream)
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._done = 0
        self._pipes = (
            _Pipe(client, upstream, delay_s, self._pipe_done, f"{name}-up"),
            _Pipe(upstream, client, delay_s, self._pipe_done, f"{name}-down"),
        )

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        return self._pipes[0].threads + self._pipes[1].threads

    def start(self) -> None:
        for pipe in self._pipes:
            pipe.start()

    def abort(self) -> None:
        """Wake every thread of this connection (blocked recv/send fail at once)."""
        for sock in self._socks:
            shutdown(sock)

    def _pipe_done(self, failed: bool) -> None:
        if failed:
            self.abort()
        with self._lock:
            self._done += 1
            last = self._done == 2
        if last:
            # Both writers are done, so no reader can block on its queue; readers still in
            # recv() were woken by abort(). Join them before closing the sockets they use.
            for pipe in self._pipes:
                pipe.threads[0].join(JOIN_S)
            for sock in self._socks:
                sock.close()
            self._on_closed(self)


class ThreadedProxy:
    """The proxy engine, in this process's threads."""

    def __init__(self, target_host: str, target_port: int, latency_ms: float) -> None:
        self._target = (target_host, target_port)
        self._delay = latency_ms / 1000.0
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[_Connection] = set()
        self._finished: list[threading.Thread] = []
        self._count = 0
        self.port = 0

    def start(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(128)
        listener.settimeout(0.05)  # the accept loop polls the stop flag this often
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"latency-proxy-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self.port

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()  # the client sees the connection closed, as without a proxy
                continue
            upstream.settimeout(None)
            nodelay(client)
            nodelay(upstream)
            self._count += 1
            conn = _Connection(
                client, upstream, self._delay, self._closed, f"proxy-{self.port}-{self._count}"
            )
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    upstream.close()
                    return
                self._conns.add(conn)
            conn.start()

    def _closed(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)
            self._finished = [t for t in self._finished if t.is_alive()]
            self._finished.extend(conn.threads)

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_S)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.abort()
        threads = [t for conn in conns for t in conn.threads]
        with self._lock:
            threads += self._finished
            self._finished = []
        current = threading.current_thread()
        for thread in threads:
            if thread is not current and thread.ident is not None:
                thread.join(JOIN_S)


def _main(argv: list[str]) -> int:
    """Child-process entry: serve until stdin closes (the parent stopped or died)."""
    host, port, latency = argv[0], int(argv[1]), float(argv[2])
    engine = ThreadedProxy(host, port, latency)
    print(engine.start(), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()
    engine.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
