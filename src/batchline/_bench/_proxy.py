"""A latency-injecting TCP proxy on loopback, for benchmarks.

Why: batching pays in proportion to the network round trip, and a database on loopback has
almost none, so ``batchline bench`` puts this proxy between the client and the server to
stand in for a database across a network.

Latency is applied **each way**: every chunk of bytes is held for ``latency_ms`` after it
arrives, in both directions, so a request/response round trip costs about
``2 * latency_ms`` more than without the proxy. Chunks pipeline: each one is delayed from
its own arrival, never queued behind the previous chunk's delay, and order is kept. The TCP
handshake itself is not delayed.

How, and why so: one reader and one writer thread per direction per connection. The reader
stamps each chunk with ``perf_counter() + delay``; the writer sleeps until shortly before the
stamp and spins (``sleep(0)``) for the last ~200 µs, because an asyncio loop cannot time a
sub-millisecond delay. ``TCP_NODELAY`` is set on both sockets, or pipelined small writes
stall ~40 ms on delayed ACKs.

By default the proxy runs in a child process (``isolate=True``): its threads would
otherwise wait for the GIL behind the benchmark's own Python code (up to the 5 ms switch
interval), adding latency that is not the network's. The child exits when the parent closes
its stdin, so it cannot outlive the parent.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "EchoServer",
    "LatencyProxy",
    "measure_tcp_rtt",
    "proxied_url",
]

_LOOPBACK = "127.0.0.1"
_CHUNK = 256 * 1024
_SPIN_S = 0.0002  # spin for the last 200 µs: sleep() overshoots by ~50-100 µs on Linux
_QUEUE_CHUNKS = 512  # bounded, so a fast sender meets back-pressure
_JOIN_S = 5.0


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
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
                data = self._src.recv(_CHUNK)
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
                    _shutdown(self._dst, socket.SHUT_WR)
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
            _shutdown(sock)

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
                pipe.threads[0].join(_JOIN_S)
            for sock in self._socks:
                sock.close()
            self._on_closed(self)


class _ThreadedProxy:
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
        listener.bind((_LOOPBACK, 0))
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
            _nodelay(client)
            _nodelay(upstream)
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
            self._acceptor.join(_JOIN_S)
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
                thread.join(_JOIN_S)


class LatencyProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``, adding latency each way.

    Args:
        target_host: where connections go (normally the database server).
        target_port: its port.
        latency_ms: delay added to every chunk in each direction; a round trip gains
            about twice this. 0 forwards as fast as the proxy can.
        isolate: run the proxy in a child process (default), so the caller's Python code
            cannot delay it through the GIL; ``False`` runs it in threads of this process.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        latency_ms: float,
        *,
        isolate: bool = True,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.target_host = target_host
        self.target_port = target_port
        self.latency_ms = float(latency_ms)
        self.isolate = isolate
        self._engine: _ThreadedProxy | None = None
        self._child: subprocess.Popen[str] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The local port to connect to; only known once started."""
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    def start(self) -> int:
        """Start listening on an ephemeral loopback port and return it."""
        if self._port is not None:
            return self._port
        if self.isolate:
            self._port = self._start_child()
        else:
            self._engine = _ThreadedProxy(self.target_host, self.target_port, self.latency_ms)
            self._port = self._engine.start()
        return self._port

    def _start_child(self) -> int:
        # -I: no user site, no env vars, and the script's directory (this package, whose
        # module names could shadow the stdlib) is not put on sys.path.
        argv = [sys.executable, "-I", __file__]
        argv += [self.target_host, str(self.target_port), repr(self.latency_ms)]
        child = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._child = child
        assert child.stdout is not None
        line = child.stdout.readline()
        try:
            return int(line)
        except ValueError:
            self._stop_child()
            raise RuntimeError(f"the latency proxy process failed to start: {line!r}") from None

    def stop(self) -> None:
        """Close every connection and stop listening; safe to call twice."""
        if self._engine is not None:
            self._engine.stop()
            self._engine = None
        if self._child is not None:
            self._stop_child()
        self._port = None

    def _stop_child(self) -> None:
        child = self._child
        if child is None:
            return
        self._child = None
        pipes: list[IO[str]] = [p for p in (child.stdin, child.stdout) if p is not None]
        with contextlib.suppress(OSError):
            if child.stdin is not None:
                child.stdin.close()  # the child's cue to stop
        try:
            child.wait(_JOIN_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for pipe in pipes:
            pipe.close()

    def __enter__(self) -> LatencyProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def measure_rtt(self, n: int = 50) -> float:
        """Median round trip (ms) that this proxy's settings give a small message.

        Measured against a loopback echo server through a proxy with the same latency and
        mode, because the real target (a database) does not echo. The round trip of a real
        query through this proxy is the caller's to time (e.g. ``SELECT 1``).
        """
        with (
            EchoServer() as echo,
            LatencyProxy(_LOOPBACK, echo.port, self.latency_ms, isolate=self.isolate) as proxy,
        ):
            return measure_tcp_rtt(_LOOPBACK, proxy.port, n)


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
        listener.bind((_LOOPBACK, 0))
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
            _nodelay(sock)
            thread = threading.Thread(target=self._echo, args=(sock,), daemon=True)
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    return
                self._clients[sock] = thread
            thread.start()

    def _echo(self, sock: socket.socket) -> None:
        try:
            while data := sock.recv(_CHUNK):
                sock.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(sock)

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(_JOIN_S)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for sock, _ in clients:
            _shutdown(sock)
        for sock, thread in clients:
            thread.join(_JOIN_S)
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
        _nodelay(sock)
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


def proxied_url(url: str | URL, proxy_port: int) -> str:
    """Rewrite a database URL to go through the proxy at ``127.0.0.1:proxy_port``.

    The password is kept (the result is for connecting, not for printing).
    """
    from sqlalchemy.engine import make_url  # lazy: the proxy process imports stdlib only

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        raise ValueError("an SQLite database has no network connection to proxy")
    return parsed.set(host=_LOOPBACK, port=proxy_port).render_as_string(hide_password=False)


def _main(argv: list[str]) -> int:
    """Child-process entry: serve until stdin closes (the parent stopped or died)."""
    host, port, latency = argv[0], int(argv[1]), float(argv[2])
    engine = _ThreadedProxy(host, port, latency)
    print(engine.start(), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()
    engine.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
