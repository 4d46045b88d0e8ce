"""The latency proxy: bytes intact and in order, latency each way, no stalls, clean stops."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from batchline._bench._proxy import EchoServer, LatencyProxy, measure_tcp_rtt, proxied_url

MODES = [pytest.param(False, id="threads"), pytest.param(True, id="process")]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {extra}"


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = bytearray()
    while len(parts) < size:
        chunk = sock.recv(size - len(parts))
        assert chunk, "connection closed early"
        parts += chunk
    return bytes(parts)


@pytest.mark.parametrize("isolate", MODES)
def test_a_5mb_stream_arrives_intact_and_in_order(echo: EchoServer, isolate: bool) -> None:
    payload = random.Random(5).randbytes(5 * 1024 * 1024)
    with (
        LatencyProxy("127.0.0.1", echo.port, 1.0, isolate=isolate) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):

        def send() -> None:
            view = memoryview(payload)
            for start in range(0, len(payload), 100_000):  # many writes, not one
                sock.sendall(view[start : start + 100_000])
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
        sender.join()
    assert len(received) == len(payload)
    assert received == payload


@pytest.mark.parametrize("isolate", MODES)
def test_a_round_trip_costs_twice_the_latency(echo: EchoServer, isolate: bool) -> None:
    with LatencyProxy("127.0.0.1", echo.port, 2.0, isolate=isolate) as proxy:
        rtt = measure_tcp_rtt("127.0.0.1", proxy.port, 50)
    assert 3.5 <= rtt <= 8.0


def test_measure_rtt_reports_the_configured_round_trip() -> None:
    rtt = LatencyProxy("127.0.0.1", 1, 1.0).measure_rtt(30)
    assert 1.8 <= rtt <= 5.0


@pytest.mark.parametrize("isolate", MODES)
def test_zero_latency_adds_less_than_a_millisecond(echo: EchoServer, isolate: bool) -> None:
    direct = measure_tcp_rtt("127.0.0.1", echo.port, 100)
    with LatencyProxy("127.0.0.1", echo.port, 0, isolate=isolate) as proxy:
        proxied = measure_tcp_rtt("127.0.0.1", proxy.port, 100)
    assert proxied - direct < 1.0


@pytest.mark.parametrize("isolate", MODES)
def test_pipelined_messages_are_not_delayed_one_after_another(
    echo: EchoServer, isolate: bool
) -> None:
    latency = 5.0
    message = b"0123456789abcdef"
    with (
        LatencyProxy("127.0.0.1", echo.port, latency, isolate=isolate) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                sock.sendall(message)
                time.sleep(0.0002)  # separate segments, so the proxy sees separate chunks
            _recv_exactly(sock, 10 * len(message))
            timings.append((time.perf_counter() - start) * 1000)
    elapsed = statistics.median(timings)
    assert 2 * latency <= elapsed < 2 * latency + 8  # not 10 x latency


@pytest.mark.parametrize("isolate", MODES)
def test_stop_closes_open_connections(echo: EchoServer, isolate: bool) -> None:
    proxy = LatencyProxy("127.0.0.1", echo.port, 1.0, isolate=isolate)
    port = proxy.start()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"ping")
        assert _recv_exactly(sock, 4) == b"ping"
        proxy.stop()
        proxy.stop()  # idempotent
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
    with pytest.raises(RuntimeError):
        _ = proxy.port


@pytest.mark.parametrize("isolate", MODES)
def test_an_unreachable_target_closes_the_client(isolate: bool) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with (
        LatencyProxy("127.0.0.1", dead_port, 1.0, isolate=isolate) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""


def test_many_connections_at_once(echo: EchoServer) -> None:
    with LatencyProxy("127.0.0.1", echo.port, 0.5, isolate=False) as proxy:
        socks = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(8)]
        try:
            for i, sock in enumerate(socks):
                sock.sendall(f"hello {i}".encode())
            for i, sock in enumerate(socks):
                assert _recv_exactly(sock, len(f"hello {i}")) == f"hello {i}".encode()
        finally:
            for sock in socks:
                sock.close()


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError):
        LatencyProxy("127.0.0.1", 1, -1)


def test_proxied_url_points_at_the_proxy_and_keeps_credentials() -> None:
    url = proxied_url(
        "postgresql+psycopg://app:s3cret@db.example.com:6543/shop?sslmode=disable", 4321
    )
    parsed = make_url(url)
    assert (parsed.host, parsed.port) == ("127.0.0.1", 4321)
    assert (parsed.username, parsed.password, parsed.database) == ("app", "s3cret", "shop")
    assert parsed.drivername == "postgresql+psycopg"
    assert parsed.query == {"sslmode": "disable"}
    assert make_url(proxied_url("mysql+pymysql://root@localhost/db", 1)).port == 1
    with pytest.raises(ValueError):
        proxied_url("sqlite:///x.db", 1)


# --- a real database through the proxy ----------------------------------------------------

_PG_URL = os.environ.get("BATCHLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_params(port: int | None = None) -> dict[str, Any]:
    url = make_url(_PG_URL)
    return {
        "host": "127.0.0.1" if port else (url.host or "127.0.0.1"),
        "port": port or url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "dbname": url.database or "postgres",
        "connect_timeout": 3,
    }


@pytest.fixture
def postgres_target() -> tuple[str, int]:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(**_pg_params()).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {make_url(_PG_URL)!r} does not answer: {exc}")
    params = _pg_params()
    return params["host"], params["port"]


@pytest.mark.postgres
@pytest.mark.parametrize("isolate", MODES)
def test_postgres_through_the_proxy_pays_the_round_trip(
    postgres_target: tuple[str, int], isolate: bool
) -> None:
    import psycopg

    host, port = postgres_target
    with (
        LatencyProxy(host, port, 1.0, isolate=isolate) as proxy,
        psycopg.connect(**_pg_params(proxy.port)) as conn,
    ):
        assert conn.execute("select 1").fetchone() == (1,)
        timings = []
        for _ in range(30):
            start = time.perf_counter()
            conn.execute("select 1").fetchone()
            timings.append((time.perf_counter() - start) * 1000)
    assert statistics.median(timings) >= 2.0
