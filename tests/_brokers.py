"""Broker servers for the consume tests: Redis, NATS JetStream and RabbitMQ.

Each comes from an environment variable (``BATCHLINE_TEST_REDIS``, ``BATCHLINE_TEST_NATS``,
``BATCHLINE_TEST_AMQP``) or the usual local address; when nothing answers the test is
skipped, saying why. With ``BATCHLINE_REQUIRE_BROKERS=1`` (set by ``.ci/run``) a missing
broker fails the test instead, so CI cannot pass by skipping.

Also the helpers the tests share: names unique to a test, and a table of orders whose rows
say when they were published and when they landed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

import batchline as bl

REPO = Path(__file__).resolve().parent.parent

REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
NATS_DEFAULT = "nats://127.0.0.1:4222"
AMQP_DEFAULT = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _required() -> bool:
    return os.environ.get("BATCHLINE_REQUIRE_BROKERS", "") not in ("", "0")


@cache
def _answers(url: str) -> str:
    """'' if something listens at the URL's host and port, else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return ""
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def broker_url(env: str, default: str, name: str) -> str:
    url = os.environ.get(env) or default
    why = _answers(url)
    if why:
        reason = f"no {name} at {urlsplit(url).netloc.rpartition('@')[2]} ({why}); set {env}"
        if _required():
            pytest.fail(f"broker required by BATCHLINE_REQUIRE_BROKERS: {reason}")
        pytest.skip(reason)
    return url


def redis_url() -> str:
    return broker_url("BATCHLINE_TEST_REDIS", REDIS_DEFAULT, "Redis")


def nats_url() -> str:
    return broker_url("BATCHLINE_TEST_NATS", NATS_DEFAULT, "NATS")


def amqp_url() -> str:
    return broker_url("BATCHLINE_TEST_AMQP", AMQP_DEFAULT, "RabbitMQ")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_orders(url: str) -> None:
    """``orders``: no unique key, so a message applied twice shows as two rows; ``qty``
    must be positive, so a message can be refused by the database; ``landed`` is when the
    row was written, by the database's clock (seconds since the epoch)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    if engine.dialect.name == "sqlite":
        landed = "REAL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)"
    elif engine.dialect.name == "postgresql":
        landed = "DOUBLE PRECISION DEFAULT EXTRACT(EPOCH FROM clock_timestamp())"
    else:
        landed = "DOUBLE DEFAULT (UNIX_TIMESTAMP(NOW(6)))"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE orders (id INTEGER NOT NULL, sku VARCHAR(40) NOT NULL, "
            f"qty INTEGER NOT NULL CHECK (qty > 0), sent DOUBLE PRECISION, landed {landed})"
        )
    engine.dispose()


def order_ids(url: str) -> list[int]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        ids = [int(r[0]) for r in conn.exec_driver_sql("SELECT id FROM orders ORDER BY id")]
    engine.dispose()
    return ids


def message(i: int, sent: float = 0.0) -> tuple[bytes, str]:
    """The i-th order message and what it is: ``good``, or poison (1%): ``read`` (not
    JSON), ``map`` (a quantity that is no number) or ``write`` (a quantity the table's
    CHECK refuses)."""
    kind = {13: "read", 147: "map", 271: "write"}.get(i % 300, "good")
    if kind == "read":
        return b'{"id": ' + str(i).encode() + b", not json", kind
    qty: object = {"map": "many", "write": 0}.get(kind, 1 + i % 7)
    body = {"id": i, "sku": f"sku-{i % 50}", "qty": qty, "sent": sent}
    return json.dumps(body).encode(), kind


def map_order(record: dict[str, object], out: object) -> None:
    """The tests' map function: the quantity must be a number (else stage ``map``)."""
    qty = record["qty"]
    if not isinstance(qty, int):
        raise ValueError(f"qty {qty!r} is not a number")
    out.insert("orders", record)  # type: ignore[attr-defined]


def letters_by_id(url: str, job: str, id_of: Callable[[int], str] = str) -> dict[str, str]:
    """{broker id: stage} of the job's dead letters; a letter twice fails the test."""
    with bl.DeadLetters(url) as dlq:
        letters = dlq.list(job=job)
    found = {id_of(letter.position): letter.stage for letter in letters}
    assert len(found) == len(letters), "a message was dead-lettered twice"
    return found


def check_exactly_once(
    url: str, job: str, sent: dict[int, tuple[str, str]], id_of: Callable[[int], str] = str
) -> None:
    """Each good message's row once (none lost, none doubled), and each poison message
    dead-lettered once with its broker id and the stage it failed at.

    ``sent``: {i: (broker id, kind)}; ``id_of``: a dead letter's position to a broker id."""
    good = sorted(i for i, (_, kind) in sent.items() if kind == "good")
    ids = order_ids(url)
    if ids != good:
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        lost = sorted(set(good) - set(ids))
        raise AssertionError(
            f"lost {len(lost)}: {lost[:10]}; doubled {len(doubled)}: {doubled[:10]}"
        )
    poison = {entry: kind for entry, kind in sent.values() if kind != "good"}
    assert letters_by_id(url, job, id_of) == poison


def start(consumer: Any) -> threading.Thread:
    thread = threading.Thread(target=consumer.run, name="consumer")
    thread.start()
    return thread


def consume(consumer: Any, expected: int, timeout: float = 60) -> bl.Result:
    """Run ``consumer`` on a thread until ``expected`` messages are acknowledged, then stop
    it (its last chunk commits) and return its result."""
    thread = start(consumer)
    try:
        assert consumer.wait_acked(expected, timeout=timeout), consumer.acked
    finally:
        consumer.stop()
        thread.join(60)
    assert consumer.result is not None
    return consumer.result


def spawn(command: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=env
    )


def counted(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT COUNT(*) FROM orders").scalar_one()
            try:
                letters = conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM batchline_dead_letters"
                ).scalar_one()
            except sa.exc.DBAPIError:
                letters = 0
    finally:
        engine.dispose()
    return int(rows) + int(letters)


def kill_chain(
    command: list[str],
    db: str,
    total: int,
    produce: Callable[[], None],
    kills: int = 4,
    done: Callable[[], bool] | None = None,
) -> tuple[int, str, int]:
    """SIGKILL the consumer ``command`` at random instants of its life ``kills`` times,
    starting it again each time (with ``--wait``: a killed runner's database session, and
    so its job lock, may outlive it by a moment on a server), while ``produce`` publishes
    ``total`` messages; then run it until every message is a row or a dead letter (or
    ``done()``) and stop it with SIGTERM.

    Returns (the last run's exit code, its stderr, the random seed)."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    producing = threading.Thread(target=produce)
    producing.start()
    try:
        for _ in range(kills):
            proc = spawn(command)
            time.sleep(rng.uniform(0.3, 1.5))  # a random instant of its life
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
    finally:
        producing.join()
    proc = spawn(command)
    assert proc.stderr is not None
    assert b"consuming" in proc.stderr.readline()  # SIGTERM now stops it cleanly
    deadline = time.monotonic() + 60
    finished = done or (lambda: counted(db) >= total)
    while not finished() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # waiting on another process: poll with a deadline
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode(errors="replace"), seed


def check_linger(consumer: Any, publish: Callable[[int], object], url: str, linger: float) -> None:
    """Trickle 40 good messages, one every 50 ms (``publish(i)`` sends order ``i``, stamped
    with the time it was sent), through ``consumer`` into the orders table at ``url``; then
    check that each landed within ``linger`` plus one flush: typically a few ms after the
    linger (the median), and never more than a slow flush on a loaded machine after it (a
    chunk may also wait for the flush before it). Without the linger cut they would wait for
    a full chunk: minutes at one message every 50 ms. The chunks were cut by linger, not by
    size or the stop."""
    thread = start(consumer)
    count = 40
    try:
        assert consumer.ready.wait(30)
        for i in range(count):
            publish(i * 300 + 1)  # all good
            time.sleep(0.05)  # the trickle itself: one message every 50 ms
        assert consumer.wait_acked(count, timeout=30)
    finally:
        consumer.stop()
        thread.join(30)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        waits = [float(r[0]) for r in conn.exec_driver_sql("SELECT landed - sent FROM orders")]
    engine.dispose()
    assert len(waits) == count
    ordered = sorted(waits)
    assert ordered[len(ordered) // 2] < linger + 0.05, ordered
    assert ordered[-1] < linger + 0.25, ordered[-5:]
    assert consumer.result is not None and consumer.result.chunks_committed >= 5


def close_amqp_connections(name: str) -> int:
    """Close, from the server's side, every RabbitMQ connection whose client named itself
    ``name`` (``rabbitmqctl close_connection``, as an operator or a broker failover
    would); how many were closed. Skips the test without ``rabbitmqctl``."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("rabbitmqctl is not installed: cannot close a connection server-side")
    listed = subprocess.run(
        [ctl, "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    closed = 0
    for line in listed.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if f'{{"connection_name","{name}"}}' in properties:
            subprocess.run(
                [ctl, "close_connection", pid, "batchline test: connection cut"],
                capture_output=True, timeout=60, check=True,
            )  # fmt: skip
            closed += 1
    return closed


def jobs_row(db: str, job: str) -> dict[str, Any]:
    """The job as ``batchline jobs --json`` shows it (and the table shows its lag)."""
    from click.testing import CliRunner

    from batchline.cli import cli

    out = CliRunner().invoke(cli, ["jobs", "--db", db, "--json"])
    assert out.exit_code == 0, out.output
    (row,) = [r for r in json.loads(out.output) if r["name"] == job]
    table = CliRunner().invoke(cli, ["jobs", "--db", db])
    assert "lag" in table.output, table.output
    return dict(row)


def lag_then_caught_up(
    db: str, job: str, total: int, make_consumer: Callable[[], Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``total`` messages wait; one consumer stops after its first chunk, another consumes
    the rest. The job's row after each (``jobs_row``): the first leaves a lag, the second
    none."""
    first = make_consumer()
    first.on_chunk = lambda result, failed: first.stop()
    thread = start(first)
    thread.join(60)
    assert first.result is not None and 0 < first.acked < total, first.acked
    behind = jobs_row(db, job)
    second = make_consumer()
    thread = start(second)
    try:
        assert second.wait_acked(total - first.acked, timeout=60)
    finally:
        second.stop()
        thread.join(60)
    return behind, jobs_row(db, job)


def consume_through_db_outages(
    postgres_url: str, source: Any, total: int, cut_at: tuple[int, ...]
) -> tuple[Any, int]:
    """Consume ``source`` into PostgreSQL's ``orders`` (job ``outage``, chunks of 200) while
    the consumer's connections are terminated (``pg_terminate_backend``, as an administrator
    or a failover would) once ``cut_at``'s counts of messages are acked, until ``total``
    are; returns the consumer's result and how many connections were terminated."""
    from batchline._streams import Consumer

    # the consumer's connections carry a name of their own: the audit's are left alone
    named = sa.make_url(postgres_url).update_query_dict({"application_name": "bl-consumer"})
    pipeline = bl.Pipeline(
        named.render_as_string(hide_password=False), writes=[bl.Insert("orders")], chunk_size=200
    )
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    consumer = Consumer(pipeline, source, map_order, job="outage")
    thread = start(consumer)
    terminated = 0
    try:
        for at_least in cut_at:
            assert consumer.wait_acked(at_least, timeout=60)
            with admin.connect() as conn:
                terminated += len(
                    conn.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'bl-consumer'"
                    ).all()
                )
        assert consumer.wait_acked(total, timeout=60)
    finally:
        consumer.stop()
        thread.join(60)
        pipeline.close()
        admin.dispose()
    return consumer.result, terminated
