"""Consuming a RabbitMQ queue: good messages and dead letters exactly once over redelivery
and SIGKILL (the idempotency ledger on the message id), poison dead-lettered and
acknowledged, linger, SIGTERM (real RabbitMQ, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

import batchline as bl
from batchline._streams import Consumer, RabbitSource
from tests._brokers import (
    amqp_url,
    check_linger,
    close_amqp_connections,
    consume,
    consume_through_db_outages,
    create_orders,
    kill_chain,
    lag_then_caught_up,
    map_order,
    message,
    order_ids,
    start,
    unique,
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Publisher:
    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue = url, queue
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue, durable=True)

    def publish(self, first: int, last: int) -> dict[int, tuple[str, str]]:
        """Messages first..last-1 with message ids ``m-<i>``; {i: (message id, kind)}."""
        sent = {}
        for i in range(first, last):
            body, kind = message(i, time.time())
            props = pika.BasicProperties(message_id=f"m-{i}", delivery_mode=2)
            self.channel.basic_publish("", self.queue, body, props)
            sent[i] = (f"m-{i}", kind)
        self.connection.process_data_events(0)
        return sent

    def depth(self) -> int:
        return int(self.channel.queue_declare(self.queue, passive=True).method.message_count)

    def close(self) -> None:
        self.channel.queue_delete(self.queue)
        self.connection.close()


@pytest.fixture
def queue() -> Iterator[tuple[str, Publisher]]:
    url = amqp_url()
    publisher = Publisher(url, unique("bl-test"))
    yield url, publisher
    publisher.close()


@pytest.fixture
def db(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    create_orders(url)
    return url


def poison_letters(url: str, job: str) -> list[tuple[int, str]]:
    """(order id, stage) of each dead letter: the record's id, or for an unreadable message
    the message id its reason quotes (``message m-<i>: …``)."""
    with bl.DeadLetters(url) as dlq:
        letters = dlq.list(job=job)
    found = []
    for letter in letters:
        if letter.stage == "read":
            assert letter.message.startswith("message m-"), letter.message
            found.append((int(letter.message.split()[1][2:-1]), letter.stage))
        else:
            record: Any = letter.record
            found.append((int(record["id"]), letter.stage))
    return sorted(found)


def check(url: str, job: str, sent: dict[int, tuple[str, str]]) -> None:
    """Each good message's row once (none lost, none doubled), and each poison message
    dead-lettered once (its dead letter holds its key in the ledger: see
    batchline._streams._amqp)."""
    good = sorted(i for i, (_, kind) in sent.items() if kind == "good")
    assert order_ids(url) == good  # each good message once, none lost, none doubled
    poison = sorted((i, kind) for i, (_, kind) in sent.items() if kind != "good")
    assert poison_letters(url, job) == poison


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_amqp_poison_is_dead_lettered_and_good_messages_land_once(
    queue: tuple[str, Publisher], db: str
) -> None:
    url, pub = queue
    sent = pub.publish(0, 3000)
    pipeline = bl.Pipeline(db, writes=[bl.Insert("orders")])
    result = consume(Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="q"), 3000)
    assert result.status == "partial_success"
    assert result.items_failed == 30
    check(db, "q", sent)
    assert {stage for _, stage in poison_letters(db, "q")} == {"read", "map", "write"}
    assert pub.depth() == 0  # all acknowledged, the poison too


def test_amqp_redelivered_messages_are_skipped_by_the_ledger(
    queue: tuple[str, Publisher], sqlite_url: str
) -> None:
    """The same messages (same message ids) arrive again, as after a crash between commit
    and ack: they are duplicates in the ledger, acknowledged, not applied twice."""
    url, pub = queue
    create_orders(sqlite_url)
    good = {i: v for i, v in pub.publish(0, 300).items() if v[1] == "good"}
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    consume(Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="r"), 300)
    for i in good:  # the good ones again
        body, _ = message(i)
        pub.channel.basic_publish("", pub.queue, body, pika.BasicProperties(message_id=f"m-{i}"))
    again = consume(Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="r"), len(good))
    assert again.duplicates_skipped == len(good)
    assert again.items_processed == 0
    assert order_ids(sqlite_url) == sorted(good)


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_amqp_redelivered_poison_is_not_dead_lettered_again(
    queue: tuple[str, Publisher], db: str
) -> None:
    """Poison messages (unreadable, unmappable, refused by the database) arrive again with
    their message ids, as after a crash between commit and ack: each dead letter holds its
    message's key in the ledger, so they are duplicates, acknowledged, and not dead-lettered
    a second time; a corrected message under a poison message's id still lands."""
    url, pub = queue
    sent = pub.publish(0, 900)
    poison = {i: kind for i, (_, kind) in sent.items() if kind != "good"}
    pipeline = bl.Pipeline(db, writes=[bl.Insert("orders")])
    first = consume(Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="p"), 900)
    assert first.items_failed == len(poison) == 9
    for i in sorted(poison):  # the poison again, as the broker redelivers it
        body, _ = message(i)
        pub.channel.basic_publish("", pub.queue, body, pika.BasicProperties(message_id=f"m-{i}"))
    again = consume(Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="p"), 9)
    assert (again.duplicates_skipped, again.items_failed, again.items_processed) == (9, 0, 0)
    fixed = min(i for i, kind in poison.items() if kind == "write")
    body = json.dumps({"id": fixed, "sku": "fixed", "qty": 1, "sent": 0.0}).encode()
    pub.channel.basic_publish("", pub.queue, body, pika.BasicProperties(message_id=f"m-{fixed}"))
    last = consume(Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="p"), 1)
    pipeline.close()
    assert (last.duplicates_skipped, last.items_failed, last.items_processed) == (0, 0, 1)
    assert poison_letters(db, "p") == sorted(poison.items())  # each once
    good = sorted(i for i, (_, kind) in sent.items() if kind == "good")
    assert order_ids(db) == sorted([*good, fixed])


def test_amqp_linger_flushes_a_trickle_within_linger_plus_one_flush(
    queue: tuple[str, Publisher], sqlite_url: str
) -> None:
    url, pub = queue
    create_orders(sqlite_url)
    linger = 0.2
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    consumer = Consumer(
        pipeline, RabbitSource(url, pub.queue), map_order, job="trickle", linger=linger
    )
    check_linger(consumer, lambda i: pub.publish(i, i + 1), sqlite_url, linger)


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_amqp_sigkill_at_random_instants_loses_and_doubles_nothing(
    queue: tuple[str, Publisher], db: str
) -> None:
    url, pub = queue
    total = 3000
    sent: dict[int, tuple[str, str]] = {}

    def produce() -> None:  # 3,000 messages over about 2 s, while consumers come and go
        own = Publisher(url, pub.queue)  # pika connections belong to one thread
        try:
            for i in range(0, total, 100):
                sent.update(own.publish(i, i + 100))
                time.sleep(0.05)
        finally:
            own.connection.close()

    command = [sys.executable, "-m", "batchline.cli", "consume", url, "--db", db,
               "--table", "orders", "--queue", pub.queue, "--job", "kill",
               "--linger-ms", "100", "--quiet", "--wait", "30"]  # fmt: skip

    def done() -> bool:  # every good message is a row
        return len(order_ids(db)) >= total - total // 100

    code, err, seed = kill_chain(command, db, total, produce, done=done)
    assert code == 0, (seed, err)
    check(db, "kill", sent)  # poison too: once, though redelivered after a kill
    assert pub.depth() == 0, seed


class AuditedSource(RabbitSource):
    """A RabbitSource that checks, as each acknowledgement leaves, that every message it
    covers (its channel's deliveries up to the tag) is committed: a row or a dead letter."""

    def __init__(self, url: str, queue: str, db: str, job: str = "cut") -> None:
        super().__init__(url, queue)
        self.db, self.job = db, job
        self.delivered: dict[int, list[tuple[int, int]]] = {}  # generation: [(tag, i)]
        self.audited = 0
        self.uncommitted: list[int] = []

    def _message(self, generation: int, tag: int, message_id: str | None, body: bytes) -> Any:
        assert message_id is not None
        self.delivered.setdefault(generation, []).append((tag, int(message_id[2:])))
        return super()._message(generation, tag, message_id, body)

    def _basic_ack(self, wire: Any, tag: int) -> None:
        covered = {i for t, i in self.delivered.get(wire.generation, []) if t <= tag}
        committed = set(order_ids(self.db)) | {i for i, _ in poison_letters(self.db, self.job)}
        self.uncommitted.extend(sorted(covered - committed))
        self.audited += len(covered)
        super()._basic_ack(wire, tag)


@pytest.mark.postgres
def test_amqp_connection_closed_by_the_server_reconnects_and_acks_only_committed(
    queue: tuple[str, Publisher], postgres_url: str
) -> None:
    """The broker closes the consumer's connection twice while a producer publishes: the
    consumer connects again, declares the queue again and goes on; the messages the lost
    channel had delivered come back and the ledger keeps them once; no acknowledgement ever
    covers a message that had not committed (an old channel's tags are never sent on the
    new channel, where they name other messages)."""
    url, pub = queue
    db = postgres_url
    create_orders(db)
    total = 4000
    sent: dict[int, tuple[str, str]] = {}

    def produce() -> None:  # 4,000 messages over about 3 s
        own = Publisher(url, pub.queue)
        try:
            for i in range(0, total, 100):
                sent.update(own.publish(i, i + 100))
                time.sleep(0.07)
        finally:
            own.connection.close()

    source = AuditedSource(url, pub.queue, db)
    pipeline = bl.Pipeline(db, writes=[bl.Insert("orders")])
    consumer = Consumer(pipeline, source, map_order, job="cut", linger=0.05)
    thread = start(consumer)
    producing = threading.Thread(target=produce)
    try:
        assert consumer.ready.wait(30)
        producing.start()
        for at_least in (600, 2000):
            assert consumer.wait_acked(at_least, timeout=60)
            assert close_amqp_connections(f"batchline:{pub.queue}") == 1
        producing.join()
        deadline = time.monotonic() + 60
        while len(order_ids(db)) < total - total // 100 and time.monotonic() < deadline:
            time.sleep(0.1)  # a poll step with a deadline
    finally:
        consumer.stop()
        thread.join(60)
        pipeline.close()
    result = consumer.result
    assert result is not None and result.status != "failed", result and result.error
    assert source.reconnects == 2
    assert source.uncommitted == []
    assert source.audited >= total
    check(db, "cut", sent)  # good messages and poison once
    assert pub.depth() == 0


@pytest.mark.postgres
def test_amqp_database_connection_terminated_mid_run_acks_only_committed(
    queue: tuple[str, Publisher], postgres_url: str
) -> None:
    """PostgreSQL terminates the consumer's connections twice mid-run (pg_terminate_backend,
    as an administrator or a failover would): the chunk in flight rolls back, ledger claims
    with it, and is retried on a new connection; no acknowledgement ever covers a message
    that had not committed, and every good message lands once."""
    url, pub = queue
    create_orders(postgres_url)
    sent = pub.publish(0, 4000)
    source = AuditedSource(url, pub.queue, postgres_url, job="outage")
    result, terminated = consume_through_db_outages(postgres_url, source, len(sent), (500, 2000))
    assert result is not None and result.status != "failed", result and result.error
    assert terminated >= 2
    assert result.retries >= 1  # a chunk was cut short and tried again
    assert source.uncommitted == []
    check(postgres_url, "outage", sent)
    assert pub.depth() == 0


def test_amqp_jobs_shows_the_lag(queue: tuple[str, Publisher], sqlite_url: str) -> None:
    """The consumer records the messages its queue still holds for it (ready, from a
    passive declare, and prefetched but not yet read) in its job's row; ``batchline jobs``
    shows them (a queue has no end position)."""
    url, pub = queue
    create_orders(sqlite_url)
    pub.publish(0, 2000)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=100)
    spec = {"command": "consume", "broker": "amqp"}

    def make() -> Consumer:
        source = RabbitSource(url, pub.queue, prefetch=200)
        return Consumer(pipeline, source, map_order, job="lag", fetch_size=100, spec=spec)

    behind, caught_up = lag_then_caught_up(sqlite_url, "lag", 2000, make)
    pipeline.close()
    assert 0 < behind["broker_lag"] < 2000
    assert behind["broker_end"] is None
    assert caught_up["broker_lag"] == 0


def test_amqp_properties_and_bodies_of_every_shape_are_read(
    queue: tuple[str, Publisher], sqlite_url: str
) -> None:
    """The consumer decodes deliveries itself (``_amqp_wire``): a message id after every
    property before it, or after a headers table; none at all (the body's hash is the
    key); an empty body; a body over several frames (over 128 KiB)."""
    url, pub = queue
    create_orders(sqlite_url)
    big = "x" * 300_000

    def send(i: int, props: pika.BasicProperties, sku: str = "a") -> None:
        body = json.dumps({"id": i, "sku": sku[:40], "qty": 1, "sent": 0, "note": sku})
        pub.channel.basic_publish("", pub.queue, body.encode(), props)

    every = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8", delivery_mode=2,
        priority=1, correlation_id="c", reply_to="r", expiration="600000", message_id="m-1",
        timestamp=1, type="t", user_id="guest", app_id="a",
    )  # fmt: skip
    send(1, every)
    send(2, pika.BasicProperties(headers={"k": "v", "n": 1}, message_id="m-2"))
    send(3, pika.BasicProperties())  # no message id
    send(4, pika.BasicProperties(message_id="m-4"), sku=big)
    pub.channel.basic_publish("", pub.queue, b"", pika.BasicProperties(message_id="m-5"))
    pub.connection.process_data_events(0)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
    letters: list[Any] = []

    def insert(record: dict[str, Any], out: Any) -> None:
        record.pop("note")
        out.insert("orders", record)

    consumer = Consumer(pipeline, RabbitSource(url, pub.queue), insert, job="shapes")
    result = consume(consumer, 5)
    pipeline.close()
    assert order_ids(sqlite_url) == [1, 2, 3, 4]
    with bl.DeadLetters(sqlite_url) as dlq:
        letters = dlq.list(job="shapes")
    assert [letter.message for letter in letters] == [
        "message m-5: invalid JSON: Expecting value: line 1 column 1 (char 0)"
    ]
    assert result.items_failed == 1
    assert pub.depth() == 0


def test_amqp_poison_is_republished_to_the_dead_letter_exchange(
    queue: tuple[str, Publisher], sqlite_url: str
) -> None:
    """With a dead-letter target each poison message is also published to that exchange,
    with its body, message id and headers naming its stage and reason; a missing exchange
    is refused when the consumer starts."""
    url, pub = queue
    create_orders(sqlite_url)
    exchange, dead = unique("bl-dlx"), unique("bl-dead")
    pub.channel.exchange_declare(exchange, "fanout")
    pub.channel.queue_declare(dead)
    pub.channel.queue_bind(dead, exchange)
    try:
        sent = pub.publish(0, 600)
        pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])
        missing = Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="dlt",
                           dead_letter_target=unique("no-such-exchange"))  # fmt: skip
        with pytest.raises(bl.SourceError, match="dead-letter target exchange"):
            missing.run()
        for back in ("", "/", f"/{pub.queue}"):  # the default exchange, to the queue itself
            loop = Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="dlt",
                            dead_letter_target=back)  # fmt: skip
            with pytest.raises(bl.SourceError, match="would come back for ever"):
                loop.run()
        consumer = Consumer(pipeline, RabbitSource(url, pub.queue), map_order, job="dlt",
                            dead_letter_target=exchange)  # fmt: skip
        consume(consumer, 600)
        pipeline.close()
        got = []
        while True:
            method, props, body = pub.channel.basic_get(dead, auto_ack=True)
            if method is None:
                break
            got.append((props, body))
    finally:
        pub.channel.queue_delete(dead)
        pub.channel.exchange_delete(exchange)
    poison = {entry: kind for entry, kind in sent.values() if kind != "good"}
    assert {p.message_id: p.headers["x-batchline-stage"] for p, _ in got} == poison
    for props, body in got:
        assert body.startswith(b'{"id": ' + props.message_id[2:].encode())
        assert props.headers["x-batchline-error"]
    check(sqlite_url, "dlt", sent)


class PrivateRabbit:
    """A RabbitMQ node of the test's own (its port, node name and data folder), so that it
    can be stopped and started (``rabbitmqctl stop_app`` / ``start_app``) without touching
    the shared one; its durable queues and persistent messages survive that."""

    BIN = Path("/usr/lib/rabbitmq/bin")  # not /usr/sbin's wrappers: they change user

    def __init__(self, folder: Path) -> None:
        if not (self.BIN / "rabbitmq-server").exists():
            pytest.skip("rabbitmq-server is not installed here: cannot run a private node")
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.port = ports[0]
        self.node = f"{unique('bltest')}@localhost"
        (folder / "plugins").write_text("[].")
        self.env = {**os.environ, "HOME": str(folder), "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_PORT": str(ports[0]), "RABBITMQ_DIST_PORT": str(ports[1]),
                    "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(folder / "log"),
                    "RABBITMQ_PID_FILE": str(folder / "pid"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "plugins"),
                    "RABBITMQ_CONFIG_FILE": str(folder / "none")}  # fmt: skip
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.proc = subprocess.Popen(
            [self.BIN / "rabbitmq-server"],
            env=self.env,
            cwd=folder,  # a crash dump lands there, not in the repository
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_up()

    def wait_up(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                pika.BlockingConnection(pika.URLParameters(self.url)).close()
                return
            except pika.exceptions.AMQPError:
                assert time.monotonic() < deadline, "the private RabbitMQ did not start"
                time.sleep(0.1)  # a poll step with a deadline

    def ctl(self, *args: str) -> None:
        subprocess.run([self.BIN / "rabbitmqctl", "-n", self.node, *args], env=self.env,
                       capture_output=True, timeout=60, check=True)  # fmt: skip

    def close(self) -> None:
        try:
            self.ctl("shutdown")
        finally:
            self.proc.kill()
            self.proc.wait(30)


def test_amqp_broker_restart_mid_run_reconnects_and_acks_only_committed(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The broker's application stops and starts again mid-run (its durable queue and
    persistent messages kept): the consumer reconnects with backoff, declares the queue
    again and goes on; no acknowledgement covers an uncommitted message, and every good
    message lands once."""
    broker = PrivateRabbit(tmp_path)
    try:
        create_orders(sqlite_url)
        pub = Publisher(broker.url, unique("bl-restart"))
        sent = pub.publish(0, 3000)
        pub.connection.close()
        source = AuditedSource(broker.url, pub.queue, sqlite_url, job="restart")
        pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=200)
        consumer = Consumer(pipeline, source, map_order, job="restart")
        thread = start(consumer)
        try:
            assert consumer.wait_acked(500, timeout=60)
            broker.ctl("stop_app")
            broker.ctl("start_app")
            broker.wait_up()
            pub = Publisher(broker.url, pub.queue)
            sent.update(pub.publish(3000, 4000))
            deadline = time.monotonic() + 60
            while len(order_ids(sqlite_url)) < 4000 - 40 and time.monotonic() < deadline:
                time.sleep(0.1)  # a poll step with a deadline
        finally:
            consumer.stop()
            thread.join(60)
            pipeline.close()
        assert source.reconnects >= 1
        assert source.uncommitted == []
        check(sqlite_url, "restart", sent)
        assert pub.depth() == 0
        pub.close()
    finally:
        broker.close()
