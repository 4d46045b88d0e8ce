"""A latency-injecting TCP proxy on loopback, for benchmarks.

Why: batching pays in proportion to the network round trip, and a database on loopback has
almost none, so ``batchline bench`` puts this proxy between the client and the server to
stand in for a database across a network.

Latency is applied **each way**: every chunk of bytes is held for ``latency_ms`` after it
arrives, in both directions, so a request/response round trip costs about
``2 * latency_ms`` more than without the proxy. Chunks pipeline: each one is delayed from
its own arrival, never queued behind the previous chunk's delay, and order is kept. The TCP
handshake itself is not delayed.

By default the proxy runs in a child process (``isolate=True``): its threads would
otherwise wait for the GIL behind the benchmark's own Python code (up to the 5 ms switch
interval), adding latency that is not the network's. The engine, and the script the child
runs, is ``_proxy_threads``; the echo server that times a round trip is ``_echo``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from types import TracebackType
from typing import IO, TYPE_CHECKING

from . import _proxy_threads
from ._echo import EchoServer, measure_tcp_rtt
from ._proxy_threads import JOIN_S, LOOPBACK, ThreadedProxy

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "EchoServer",
    "LatencyProxy",
    "measure_tcp_rtt",
    "proxied_url",
]


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
        self._engine: ThreadedProxy | None = None
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
            self._engine = ThreadedProxy(self.target_host, self.target_port, self.latency_ms)
            self._port = self._engine.start()
        return self._port

    def _start_child(self) -> int:
        # -I: no user site, no env vars, and the script's directory (this package, whose
        # module names could shadow the stdlib) is not put on sys.path.
        argv = [sys.executable, "-I", _proxy_threads.__file__]
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
            child.wait(JOIN_S)
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
            LatencyProxy(LOOPBACK, echo.port, self.latency_ms, isolate=self.isolate) as proxy,
        ):
            return measure_tcp_rtt(LOOPBACK, proxy.port, n)


def proxied_url(url: str | URL, proxy_port: int) -> str:
    """Rewrite a database URL to go through the proxy at ``127.0.0.1:proxy_port``.

    The password is kept (the result is for connecting, not for printing).
    """
    from sqlalchemy.engine import make_url  # lazy: the proxy itself needs no SQLAlchemy

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        raise ValueError("an SQLite database has no network connection to proxy")
    return parsed.set(host=LOOPBACK, port=proxy_port).render_as_string(hide_password=False)
