"""A loopback echo server and a round-trip timer, to measure what the latency proxy adds.

Why a module of its own: a database does not echo, so the round trip that a proxy's settings
give is timed against this server (``LatencyProxy.measure_rtt``); the proxy's tests use it as
the far end too.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from types import TracebackType

from ._proxy_threads import CHUNK, JOIN_S, LOOPBACK, nodelay, shutdown

__all__ = ["EchoServer", "measure_tcp_rtt"]


class EchoServer:
    """A loopback TCP server that sends back what it receives; for RTT and proxy tests."""

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the echo server is not started")
        return self._port

    def start(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((LOOPBACK, 0))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="echo", daemon=True)
        self._acceptor.start()
        return self._port

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            nodelay(sock)
            thread = threading.Thread(target=self._echo, args=(sock,), daemon=True)
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    return
                self._clients[sock] = thread
            thread.start()

    def _echo(self, sock: socket.socket) -> None:
        try:
            while data := sock.recv(CHUNK):
                sock.sendall(data)
        except OSError:
            pass
        finally:
            shutdown(sock)

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_S)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for sock, _ in clients:
            shutdown(sock)
        for sock, thread in clients:
            thread.join(JOIN_S)
            sock.close()
        self._port = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def measure_tcp_rtt(host: str, port: int, n: int = 50, *, size: int = 32) -> float:
    """Median time (ms) to send ``size`` bytes to an echo server and read them back.

    One connection, ``TCP_NODELAY``, three warm-up rounds not counted.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    payload = b"x" * size
    samples: list[float] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        nodelay(sock)
        for i in range(n + 3):
            start = time.perf_counter()
            sock.sendall(payload)
            received = 0
            while received < size:
                chunk = sock.recv(size - received)
                if not chunk:
                    raise ConnectionError("the echo server closed the connection")
                received += len(chunk)
            if i >= 3:
                samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)
