"""Consuming a NATS JetStream stream: exactly once over redelivery and SIGKILL, poison
messages dead-lettered with their stream sequence and acknowledged, linger, SIGTERM (real
NATS, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

import batchline as bl
from batchline._streams import Consumer, JetStreamSource
from tests._brokers import (
    check_exactly_once,
    check_linger,
    consume,
    consume_through_db_outages,
    counted,
    create_orders,
    kill_chain,
    lag_then_caught_up,
    letters_by_id,
    map_order,
    message,
    nats_url,
    order_ids,
    start,
    unique,
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Publisher:
    """Publishes to a JetStream stream from a loop of its own (the tests are sync)."""

    def __init__(self, url: str, stream: str) -> None:
        self.url, self.stream = url, stream
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.call(nats.connect(url))
        self.js = self.nc.jetstream()
        self.call(self.js.add_stream(name=stream, subjects=[stream]))

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def publish(self, first: int, last: int) -> dict[int, tuple[str, str]]:
        """Messages first..last-1; {i: (stream sequence, kind)}."""

        async def send() -> dict[int, tuple[str, str]]:
            sent = {}
            for i in range(first, last):
                body, kind = message(i, time.time())
                ack = await self.js.publish(self.stream, body)
                sent[i] = (str(ack.seq), kind)
            return sent

        result: dict[int, tuple[str, str]] = self.call(send())
        return result

    def close(self) -> None:
        self.call(self.js.delete_stream(self.stream))
        self.call(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def stream() -> Iterator[tuple[str, Publisher]]:
    url = nats_url()
    publisher = Publisher(url, unique("bl-test"))
    yield url, publisher
    publisher.close()


@pytest.fixture
def db(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    create_orders(url)
    return url


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_nats_poison_is_dead_lettered_with_its_sequence_and_good_messages_land_once(
    stream: tuple[str, Publisher], db: str
) -> None:
    url, pub = stream
    sent = pub.publish(0, 3000)
    pipeline = bl.Pipeline(db, writes=[bl.Insert("orders")])
    source = JetStreamSource(url, pub.stream, "loaders")
    result = consume(Consumer(pipeline, source, map_order, job="j"), len(sent))
    assert result.status == "partial_success"
    assert result.items_failed == 30
    check_exactly_once(db, "j", sent)
    assert set(letters_by_id(db, "j").values()) == {"read", "map", "write"}


def test_nats_restart_delivers_from_the_checkpoint_and_applies_nothing_twice(
    stream: tuple[str, Publisher], sqlite_url: str
) -> None:
    """A second run of the job (its durable consumer made anew from the checkpoint) loads
    only the messages published since; the job row holds the last stream sequence."""
    url, pub = stream
    create_orders(sqlite_url)
    sent = pub.publish(0, 600)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    consume(Consumer(pipeline, JetStreamSource(url, pub.stream, "d"), map_order, job="n"), 600)
    sent.update(pub.publish(600, 700))
    again = consume(
        Consumer(pipeline, JetStreamSource(url, pub.stream, "d"), map_order, job="n"), 100
    )
    assert again.items_processed == 100 - 1  # one of them is poison
    check_exactly_once(sqlite_url, "n", sent)
    with bl.DeadLetters(sqlite_url) as dlq:
        job = dlq.job("n")
    assert job is not None and job.position == 700  # the last stream sequence


def test_nats_linger_flushes_a_trickle_within_linger_plus_one_flush(
    stream: tuple[str, Publisher], sqlite_url: str
) -> None:
    url, pub = stream
    create_orders(sqlite_url)
    linger = 0.2
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    source = JetStreamSource(url, pub.stream, "d")
    consumer = Consumer(pipeline, source, map_order, job="trickle", linger=linger)
    check_linger(consumer, lambda i: pub.publish(i, i + 1), sqlite_url, linger)


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_nats_sigkill_at_random_instants_loses_and_doubles_nothing(
    stream: tuple[str, Publisher], db: str
) -> None:
    url, pub = stream
    total = 3000
    sent: dict[int, tuple[str, str]] = {}

    def produce() -> None:  # 3,000 messages over about 2 s, while consumers come and go
        for i in range(0, total, 100):
            sent.update(pub.publish(i, i + 100))
            time.sleep(0.05)

    command = [sys.executable, "-m", "batchline.cli", "consume", url, "--db", db,
               "--table", "orders", "--stream", pub.stream, "--group", "loaders",
               "--job", "kill", "--linger-ms", "100", "--quiet", "--wait", "30"]  # fmt: skip
    code, err, seed = kill_chain(command, db, total, produce)
    assert code == 0, (seed, err)
    check_exactly_once(db, "kill", sent)


def _restart_nats(url: str) -> None:
    """Stop the local nats-server and start it again with the same arguments (its JetStream
    store is on disk, so the stream and its messages survive)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    found = subprocess.run(["pidof", "nats-server"], capture_output=True, text=True).stdout.split()
    if len(found) != 1 or not os.access(f"/proc/{found[0]}/cmdline", os.R_OK):
        pytest.fail(f"no single local nats-server to restart (pidof: {found})")
    pid = int(found[0])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists():  # polling another process, with a deadline
        assert time.monotonic() < deadline, "nats-server did not stop"
        time.sleep(0.05)
    subprocess.run(
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", argv[0].decode(),
         "--", *[a.decode() for a in argv[1:]]],
        check=True,
    )  # fmt: skip
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "nats-server did not come back"
            time.sleep(0.05)


class AuditedSource(JetStreamSource):
    """A JetStreamSource that checks, as each acknowledgement leaves, that every message it
    covers (AckPolicy.ALL: each stream sequence up to the acknowledged one) is committed:
    its row is in the table, or its dead letter."""

    def __init__(self, url: str, stream: str, db: str, job: str, sent: dict[int, Any]) -> None:
        super().__init__(url, stream, "outage")
        self.db, self.job = db, job
        self.by_seq = {int(seq): i for i, (seq, _) in sent.items()}
        self.uncommitted: list[int] = []
        self.audited = 0

    def ack(self, tokens: list[Any]) -> None:
        last = tokens[-1].metadata.sequence.stream
        covered = {i for seq, i in self.by_seq.items() if seq <= last}
        with bl.DeadLetters(self.db) as dlq:
            lettered = {self.by_seq[d.position] for d in dlq.list(job=self.job)}
        committed = set(order_ids(self.db)) | lettered
        self.uncommitted.extend(sorted(covered - committed))
        self.audited = max(self.audited, len(covered))
        super().ack(tokens)


@pytest.mark.postgres
def test_nats_database_connection_terminated_mid_run_acks_only_committed(
    stream: tuple[str, Publisher], postgres_url: str
) -> None:
    """PostgreSQL terminates the consumer's connections twice mid-run (pg_terminate_backend,
    as an administrator or a failover would): the chunk in flight rolls back with its
    checkpoint and is tried again on a new connection; no acknowledgement ever covers a
    message that had not committed, and every good message lands once."""
    url, pub = stream
    create_orders(postgres_url)
    sent = pub.publish(0, 2000)
    source = AuditedSource(url, pub.stream, postgres_url, "outage", sent)
    result, terminated = consume_through_db_outages(postgres_url, source, len(sent), (300, 1000))
    assert result is not None and result.status != "failed", result and result.error
    assert terminated >= 2
    assert result.retries >= 1  # a statement met the cut connection and the chunk was retried
    assert source.audited == len(sent)  # the acknowledgements covered every message …
    assert source.uncommitted == []  # … each only once it had committed
    check_exactly_once(postgres_url, "outage", sent)


def test_nats_server_restart_mid_run_acknowledges_only_what_committed(
    stream: tuple[str, Publisher], sqlite_url: str
) -> None:
    """The broker goes away mid-run and comes back: whatever the consumer does meanwhile
    (reconnect, or stop), a run of the job afterwards leaves every message exactly once,
    because nothing was acknowledged that had not committed."""
    url, pub = stream
    create_orders(sqlite_url)
    sent = pub.publish(0, 3000)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    consumer = Consumer(pipeline, JetStreamSource(url, pub.stream, "r"), map_order, job="rs")
    thread = start(consumer)
    try:
        assert consumer.wait_acked(300, timeout=60)
        _restart_nats(url)
        print(f"\nacked before the restart came back: {consumer.acked}")
        sent.update(pub.publish(3000, 3500))  # the publisher reconnected too
        finished = consumer.wait_acked(len(sent), timeout=30)
    finally:
        consumer.stop()
        thread.join(60)
    first = consumer.result
    assert first is not None
    print(f"first run: finished={finished}, {first.status}, acked {consumer.acked}")
    if not finished:  # it stopped on the lost broker: a second run of the job finishes
        left = len(sent) - counted(sqlite_url)  # rows + dead letters: what committed
        consume(
            Consumer(pipeline, JetStreamSource(url, pub.stream, "r"), map_order, job="rs"), left
        )
    check_exactly_once(sqlite_url, "rs", sent)


def test_nats_jobs_shows_the_lag_and_the_stream_end(
    stream: tuple[str, Publisher], sqlite_url: str
) -> None:
    """The consumer records its durable consumer's ``num_pending`` and the stream's last
    sequence in its job's row; ``batchline jobs`` shows them."""
    url, pub = stream
    create_orders(sqlite_url)
    pub.publish(0, 2000)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=100)
    spec = {"command": "consume", "broker": "nats"}

    def make() -> Consumer:
        source = JetStreamSource(url, pub.stream, "lag")
        return Consumer(pipeline, source, map_order, job="lag", fetch_size=100, spec=spec)

    behind, caught_up = lag_then_caught_up(sqlite_url, "lag", 2000, make)
    pipeline.close()
    assert 0 < behind["broker_lag"] < 2000
    assert behind["broker_end"] == "seq 2000"
    assert caught_up["broker_lag"] == 0
    assert caught_up["broker_end"] == "seq 2000" == caught_up["broker_position"]


class LossySource(JetStreamSource):
    """Loses one delivery on the way, once (as a connection lost mid-batch would): the
    deliveries after it come with a consumer sequence one too far ahead."""

    lost: int | None = None

    def fetch(self, max_count: int, timeout: float) -> list[Any]:
        puller = self._puller
        if self.lost is None and puller is not None:
            with puller.ready:
                # on the first fetch, once more than 10 are buffered (the stream holds them
                # all: not whenever a fetch happens to find them, which a busy machine may
                # never do)
                if puller.ready.wait_for(lambda: len(puller.buffer) > 10, timeout=30):
                    self.lost = int(puller.buffer[5].reply.split(".")[5])
                    del puller.buffer[5]
        return super().fetch(max_count, timeout)


def test_nats_a_delivery_lost_on_the_way_is_fetched_again_not_skipped(
    stream: tuple[str, Publisher], sqlite_url: str
) -> None:
    """Acknowledging a later message (``AckPolicy.ALL``) would acknowledge the lost one
    too: the consumer sees the gap in the consumer sequence, hands on nothing after it,
    and makes the consumer anew from the last message handed on."""
    url, pub = stream
    create_orders(sqlite_url)
    sent = pub.publish(0, 1500)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    source = LossySource(url, pub.stream, "lossy")
    consume(Consumer(pipeline, source, map_order, job="lossy"), len(sent))
    pipeline.close()
    assert source.lost is not None and source.restarts == 1
    check_exactly_once(sqlite_url, "lossy", sent)


def test_nats_poison_is_republished_to_the_dead_letter_subject(
    stream: tuple[str, Publisher], sqlite_url: str
) -> None:
    """With a dead-letter target each poison message is also published on that subject
    (here kept by a stream), with its body and headers naming its sequence, stage and
    reason."""
    url, pub = stream
    create_orders(sqlite_url)
    dead = f"{pub.stream}-dead"
    pub.call(pub.js.add_stream(name=dead, subjects=[dead]))
    try:
        sent = pub.publish(0, 600)
        pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
        source = JetStreamSource(url, pub.stream, "dlt")
        consume(Consumer(pipeline, source, map_order, job="dlt", dead_letter_target=dead), 600)
        pipeline.close()
        info = pub.call(pub.js.stream_info(dead))
        got = [pub.call(pub.js.get_msg(dead, seq)) for seq in range(1, info.state.messages + 1)]
    finally:
        pub.call(pub.js.delete_stream(dead))
    poison = {entry: kind for entry, kind in sent.values() if kind != "good"}
    assert {m.headers["Batchline-Id"]: m.headers["Batchline-Stage"] for m in got} == poison
    by_seq = {entry: i for i, (entry, _) in sent.items()}
    for m in got:
        assert m.data.startswith(b'{"id": ' + str(by_seq[m.headers["Batchline-Id"]]).encode())
        assert m.headers["Batchline-Error"]
    check_exactly_once(sqlite_url, "dlt", sent)
