"""Consuming a Redis stream: exactly once over redelivery and SIGKILL, poison messages
dead-lettered with their stream ID and acknowledged, linger, SIGTERM (real Redis, SQLite and
PostgreSQL)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

import batchline as bl
from batchline._streams import Consumer, RedisStreamSource, stream_id, stream_position
from tests._brokers import (
    check_exactly_once,
    check_linger,
    consume,
    create_orders,
    kill_chain,
    lag_then_caught_up,
    letters_by_id,
    map_order,
    message,
    order_ids,
    redis_url,
    start,
    unique,
)

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def stream() -> Iterator[tuple[str, redis.Redis, str]]:
    url = redis_url()
    client = redis.Redis.from_url(url)
    name = unique("bl-test")
    yield url, client, name
    client.delete(name)
    client.close()


@pytest.fixture
def db(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    create_orders(url)
    return url


def publish(client: redis.Redis, name: str, first: int, last: int) -> dict[int, tuple[str, str]]:
    """XADD messages first..last-1; {i: (entry id, kind)}."""
    pipe = client.pipeline(transaction=False)
    kinds = []
    for i in range(first, last):
        body, kind = message(i, time.time())
        pipe.xadd(name, {"data": body})
        kinds.append((i, kind))
    ids = pipe.execute()
    return {i: (entry.decode(), kind) for (i, kind), entry in zip(kinds, ids)}


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_redis_poison_is_dead_lettered_with_its_id_and_good_messages_land_once(
    stream: tuple[str, redis.Redis, str], db: str
) -> None:
    url, client, name = stream
    sent = publish(client, name, 0, 3000)
    pipeline = bl.Pipeline(db, writes=[bl.Insert("orders")])
    consumer = Consumer(pipeline, RedisStreamSource(url, name, "loaders"), map_order, job="j")
    consume(consumer, len(sent))
    assert consumer.result is not None
    assert consumer.result.status == "partial_success"
    assert consumer.result.items_failed == 30
    check_exactly_once(db, "j", sent, stream_id)
    stages = set(letters_by_id(db, "j", stream_id).values())
    assert stages == {"read", "map", "write"}
    assert client.xpending(name, "loaders")["pending"] == 0  # the poison was acknowledged too


def test_redis_redelivered_messages_are_not_applied_again(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """The group delivers the whole stream again (as after a crash between commit and
    XACK): the checkpoint, committed with the chunks, holds the last stream ID, so every
    message is acknowledged and none is applied twice. New messages after it still land."""
    url, client, name = stream
    create_orders(sqlite_url)
    sent = publish(client, name, 0, 600)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])

    def consume_again(expected: int) -> bl.Result:  # expected: messages acknowledged first
        source = RedisStreamSource(url, name, "g")
        return consume(Consumer(pipeline, source, map_order, job="again"), expected)

    consume_again(len(sent))
    client.xgroup_setid(name, "g", "0")  # deliver everything again
    sent.update(publish(client, name, 600, 700))
    again = consume_again(100)  # the new ones, delivered after the 600 again
    assert again.items_processed == 100 - 1  # only the new ones (one of them is poison)
    assert client.xpending(name, "g")["pending"] == 0  # the 600 acknowledged again
    check_exactly_once(sqlite_url, "again", sent, stream_id)


def test_redis_pending_entries_of_a_dead_consumer_are_claimed(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """Entries delivered to a consumer that never acknowledged them (it died) are claimed
    (XAUTOCLAIM) and loaded once, before new entries."""
    url, client, name = stream
    create_orders(sqlite_url)
    sent = publish(client, name, 0, 200)
    client.xgroup_create(name, "g", id="0")
    client.xreadgroup("g", "old-pod", {name: ">"}, count=150)  # delivered, never acked
    assert client.xpending(name, "g")["pending"] == 150
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    consume(Consumer(pipeline, RedisStreamSource(url, name, "g"), map_order, job="claim"), 200)
    check_exactly_once(sqlite_url, "claim", sent, stream_id)
    assert client.xpending(name, "g")["pending"] == 0


def test_redis_linger_flushes_a_trickle_within_linger_plus_one_flush(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """One message every 50 ms: each is committed within linger (0.2 s) plus one flush of
    it, not when a 500-record chunk would be full."""
    url, client, name = stream
    create_orders(sqlite_url)
    linger = 0.2
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    consumer = Consumer(
        pipeline, RedisStreamSource(url, name, "g"), map_order, job="trickle", linger=linger
    )
    check_linger(
        consumer,
        lambda i: client.xadd(name, {"data": message(i, time.time())[0]}),
        sqlite_url,
        linger,
    )


def test_redis_busy_stream_chunks_are_full_linger_counts_from_a_chunks_first_message(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """A backlog of 30,000 messages in chunks of 400, with a linger (0.15 s) shorter than the
    whole run but far longer than collecting a chunk (a few ms): every chunk is full. Timed
    from the first message after the last linger cut (as it was), the clock ran across
    chunks closed by size, and a busy stream's chunk was cut short every 0.15 s."""
    url, client, name = stream
    create_orders(sqlite_url)
    publish(client, name, 0, 30_000)
    sizes: list[int] = []

    def chunk(result: bl.Result, failed: object) -> None:
        sizes.append(result.records_seen - sum(sizes))

    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=400)
    source = RedisStreamSource(url, name, "g")
    consumer = Consumer(
        pipeline, source, map_order, job="busy", linger=0.15, fetch_size=700, on_chunk=chunk
    )
    consume(consumer, 30_000, timeout=120)
    assert sizes == [400] * 75, sizes


def test_redis_end_of_a_burst_lands_without_waiting_out_linger(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """A burst of 2,500 in chunks of 1,000 with a 30 s linger: its last chunk (500, the
    least a chunk needs to go early) is flushed once the stream has nothing more and the
    flush is idle, not 30 s later. A chunk under 500 still waits for linger (the trickle
    test)."""
    url, client, name = stream
    create_orders(sqlite_url)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=1000)
    consumer = Consumer(pipeline, RedisStreamSource(url, name, "g"), map_order, job="burst",
                        linger=30.0)  # fmt: skip
    thread = start(consumer)
    try:
        assert consumer.ready.wait(30)
        sent = publish(client, name, 0, 2500)
        assert consumer.wait_acked(2500, timeout=15), consumer.acked
    finally:
        consumer.stop()
        thread.join(60)
    assert order_ids(sqlite_url) == sorted(i for i, (_, kind) in sent.items() if kind == "good")


# -- SIGKILL at random instants, with a producer publishing all along ---------------------------


def consume_command(broker: str, db: str, name: str) -> list[str]:
    return [sys.executable, "-m", "batchline.cli", "consume", broker, "--db", db,
            "--table", "orders", "--stream", name, "--group", "loaders", "--job", "kill",
            "--linger-ms", "100", "--quiet", "--wait", "30"]  # fmt: skip


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_redis_sigkill_at_random_instants_loses_and_doubles_nothing(
    stream: tuple[str, redis.Redis, str], db: str
) -> None:
    url, client, name = stream
    total = 4000
    sent: dict[int, tuple[str, str]] = {}

    def produce() -> None:  # 4,000 messages over about 2 s, while consumers come and go
        for i in range(0, total, 100):
            sent.update(publish(client, name, i, i + 100))
            time.sleep(0.05)

    code, err, seed = kill_chain(consume_command(url, db, name), db, total, produce)
    assert code == 0, (seed, err)
    check_exactly_once(db, "kill", sent, stream_id)
    assert client.xpending(name, "loaders")["pending"] == 0, seed


@pytest.mark.postgres
def test_redis_database_outage_mid_run_acknowledges_only_what_committed(
    stream: tuple[str, redis.Redis, str], postgres_url: str
) -> None:
    """The database goes away mid-run (every connection cut, new ones refused): the run's
    retries run out and it fails; every acknowledged message is committed, every committed
    one is acknowledged or still pending, and a new run loads the rest exactly once."""
    from batchline._bench._proxy import LatencyProxy, proxied_url

    url, client, name = stream
    create_orders(postgres_url)
    sent = publish(client, name, 0, 20_000)
    target = sa.make_url(postgres_url)
    proxy = LatencyProxy(target.host or "127.0.0.1", target.port or 5432, 0.2)
    proxy.start()
    quick = bl.RetryPolicy(attempts=3, initial=0.05, maximum=0.2)
    pipeline = bl.Pipeline(
        proxied_url(target, proxy.port), writes=[bl.Insert("orders")], retry=quick, chunk_size=500
    )
    consumer = Consumer(pipeline, RedisStreamSource(url, name, "g"), map_order, job="outage")
    thread = start(consumer)
    try:
        assert consumer.wait_acked(2000, timeout=60)
        proxy.stop()  # the database is gone
        thread.join(60)
    finally:
        consumer.stop()
        thread.join(60)
        proxy.stop()
    assert consumer.result is not None and consumer.result.status == "failed"
    acked = consumer.acked
    pending = client.xpending(name, "g")["pending"]
    assert acked < len(sent)
    landed = set(order_ids(postgres_url))
    with bl.DeadLetters(postgres_url) as dlq:
        lettered = {stream_id(d.position) for d in dlq.list(job="outage")}
    by_id = {entry: i for i, (entry, _) in sent.items()}
    committed = {e for e in by_id if by_id[e] in landed} | lettered
    # acknowledged = the committed ones (in stream order, the first `acked`), nothing more
    entries = [e for e, _ in sorted(sent.values(), key=lambda v: stream_position(v[0]))]
    assert set(entries[:acked]) <= committed
    assert committed <= set(entries[: acked + pending])  # the rest: delivered, unacked
    assert pending > 0
    again = Consumer(
        bl.Pipeline(postgres_url, writes=[bl.Insert("orders")]),
        RedisStreamSource(url, name, "g"),
        map_order,
        job="outage",
    )
    thread = start(again)
    try:
        # the committed ones are acknowledged again, uncounted (some may have committed
        # without their acknowledgement: the reply to a COMMIT can be lost with the server)
        assert again.wait_acked(len(sent) - len(committed), timeout=60)
    finally:
        again.stop()
        thread.join(60)
    check_exactly_once(postgres_url, "outage", sent, stream_id)
    assert client.xpending(name, "g")["pending"] == 0


def test_redis_connections_cut_mid_run_lose_and_double_nothing(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """Redis drops the consumer's connections again and again while it reads (CLIENT
    KILL, as a broker restart would): it reconnects, reads its pending list again so a read
    whose reply was lost skips nothing, and every message lands once and is acknowledged."""
    url, client, name = stream
    create_orders(sqlite_url)
    sent: dict[int, tuple[str, str]] = {}
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    consumer = Consumer(pipeline, RedisStreamSource(url, name, "cut"), map_order, job="cut")
    thread = start(consumer)
    cuts = 0
    try:
        assert consumer.ready.wait(30)
        for i in range(0, 6000, 200):
            sent.update(publish(client, name, i, i + 200))
            for info in client.client_list():
                if info.get("name", "").startswith("batchline:cut"):
                    client.client_kill_filter(_id=info["id"])
                    cuts += 1
            time.sleep(0.02)
        assert consumer.wait_acked(len(sent), timeout=60)
    finally:
        consumer.stop()
        thread.join(60)
    assert cuts >= 10
    check_exactly_once(sqlite_url, "cut", sent, stream_id)
    assert client.xpending(name, "cut")["pending"] == 0


def test_redis_jobs_shows_the_lag_and_the_stream_end(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """The consumer records the group's lag (``XINFO GROUPS``) and the stream's last entry
    ID in its job's row; ``batchline jobs`` shows them (no broker URL kept there)."""
    url, client, name = stream
    create_orders(sqlite_url)
    sent = publish(client, name, 0, 2000)
    last = sent[1999][0]
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=100)
    spec = {"command": "consume", "broker": "redis"}

    def make() -> Consumer:
        source = RedisStreamSource(url, name, "g")
        return Consumer(pipeline, source, map_order, job="lag", fetch_size=100, spec=spec)

    behind, caught_up = lag_then_caught_up(sqlite_url, "lag", 2000, make)
    pipeline.close()
    assert 0 < behind["broker_lag"] < 2000
    assert behind["broker_end"] == last
    assert caught_up["broker_lag"] == 0
    assert caught_up["broker_end"] == last == caught_up["broker_position"]


class PrivateRedis:
    """A redis-server of the test's own, keeping its data in an append-only file, so that
    it can be stopped (SIGTERM: it writes the file) and started again with the stream."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed: cannot restart a private server")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                     str(folder), "--appendonly", "yes", "--appendfsync", "always",
                     "--save", ""]  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=1).ping():
                    return
            except redis.exceptions.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)  # a poll step with a deadline

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
            self.proc = None


class AuditedRedis(RedisStreamSource):
    """Checks, as each acknowledgement leaves, that the entries it names committed."""

    def __init__(self, url: str, stream: str, group: str, db: str, ids: dict[str, int]) -> None:
        super().__init__(url, stream, group)
        self.db, self.ids = db, ids
        self.uncommitted: list[str] = []

    def ack(self, tokens: list[Any]) -> None:
        with bl.DeadLetters(self.db) as dlq:
            lettered = {stream_id(d.position) for d in dlq.list(job="restart", limit=10**6)}
        landed = set(order_ids(self.db))
        for token in tokens:
            entry = token.decode()
            if entry not in lettered and self.ids[entry] not in landed:
                self.uncommitted.append(entry)
        super().ack(tokens)


def test_redis_server_restart_mid_run_acknowledges_only_what_committed(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The Redis server stops (SIGTERM) and starts again mid-run, its stream kept in its
    append-only file: the consumer reconnects, reads its pending entries again and goes on;
    every acknowledgement names committed entries only, and every message lands once."""
    server = PrivateRedis(tmp_path)
    server.start()
    create_orders(sqlite_url)
    name = unique("bl-restart")
    client = redis.Redis(port=server.port)
    sent = publish(client, name, 0, 3000)
    ids = {entry: i for i, (entry, _) in sent.items()}
    source = AuditedRedis(server.url, name, "g", sqlite_url, ids)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=200)
    consumer = Consumer(pipeline, source, map_order, job="restart")
    thread = start(consumer)
    try:
        assert consumer.wait_acked(500, timeout=60)
        server.stop()
        server.start()
        client = redis.Redis(port=server.port)
        more = publish(client, name, 3000, 4000)
        sent.update(more)
        ids.update({entry: i for i, (entry, _) in more.items()})
        assert consumer.wait_acked(len(sent), timeout=60), consumer.acked
    finally:
        consumer.stop()
        thread.join(60)
        pipeline.close()
        try:
            pending = client.xpending(name, "g")["pending"]
        finally:
            server.stop()
    assert source.uncommitted == []
    check_exactly_once(sqlite_url, "restart", sent, stream_id)
    assert pending == 0


def test_redis_poison_is_republished_to_the_dead_letter_stream(
    stream: tuple[str, redis.Redis, str], sqlite_url: str
) -> None:
    """With a dead-letter target each poison message is also added to that stream, with
    its own fields and its entry ID, stage and reason; good messages are not."""
    url, client, name = stream
    create_orders(sqlite_url)
    sent = publish(client, name, 0, 600)
    dead = f"{name}-dead"
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    source = RedisStreamSource(url, name, "g")
    consumer = Consumer(pipeline, source, map_order, job="dlt", dead_letter_target=dead)
    try:
        consume(consumer, 600)
    finally:
        pipeline.close()
    try:
        entries = client.xrange(dead)
    finally:
        client.delete(dead)
    poison = {entry: kind for entry, kind in sent.values() if kind != "good"}
    assert len(poison) == 6
    got = {f[b"batchline-id"].decode(): f[b"batchline-stage"].decode() for _, f in entries}
    assert got == poison
    by_id = {entry: i for i, (entry, _) in sent.items()}
    for _, fields in entries:  # the message as it was (its body starts with its id)
        i = by_id[fields[b"batchline-id"].decode()]
        assert fields[b"data"].startswith(b'{"id": ' + str(i).encode())
        assert fields[b"batchline-error"]
    check_exactly_once(sqlite_url, "dlt", sent, stream_id)
