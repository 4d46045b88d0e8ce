"""``batchline consume``: options, usage errors, a SIGTERM'd consumer's exit code, and
``batchline jobs`` showing a consumer's position as its broker's stream ID."""

from __future__ import annotations

import json
import signal
import sys
import time

import redis
import sqlalchemy as sa
from click.testing import CliRunner

from batchline.cli import cli
from tests._brokers import counted, create_orders, redis_url, spawn, unique


def test_consume_fields_format_then_jobs_shows_the_last_stream_id(sqlite_url: str) -> None:
    """Entries whose own fields are the record (``--format fields``, values as text,
    converted to the table's types); SIGTERM ends with exit 0 and everything acknowledged;
    ``jobs`` shows the last committed stream ID."""
    url = redis_url()
    create_orders(sqlite_url)
    client = redis.Redis.from_url(url)
    name = unique("bl-cli")
    try:
        proc = spawn([sys.executable, "-m", "batchline.cli", "consume", url, "--db", sqlite_url,
                      "--table", "orders", "--stream", name, "--group", "g", "--format",
                      "fields", "--linger-ms", "50"])  # fmt: skip
        assert proc.stderr is not None
        assert b"consuming" in proc.stderr.readline()
        last = b""
        for i in range(20):
            last = client.xadd(name, {"id": str(i), "sku": "a", "qty": "2", "sent": "0"})
        deadline = time.monotonic() + 30
        while counted(sqlite_url) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting on another process: poll with a deadline
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert b"20 loaded" in err
        assert client.xpending(name, "g")["pending"] == 0
    finally:
        client.delete(name)
        client.close()
    out = CliRunner().invoke(cli, ["jobs", "--db", sqlite_url, "--json"])
    assert out.exit_code == 0, out.output
    (job,) = json.loads(out.output)
    assert job["name"] == f"consume:{name}:g"
    assert job["broker_position"] == last.decode()
    assert job["processed"] == 20
    assert job["broker_lag"] == 0  # recorded by the consumer as it stopped
    assert job["broker_end"] == last.decode()
    assert "password" not in json.dumps(job["spec"])
    table = CliRunner().invoke(cli, ["jobs", "--db", sqlite_url])
    assert f"{last.decode()} of {last.decode()}" in table.output


def test_consume_usage_errors_exit_2(sqlite_url: str) -> None:
    runner = CliRunner()
    no_group = runner.invoke(
        cli,
        [
            "consume",
            "redis://127.0.0.1:6379/0",
            "--db",
            sqlite_url,
            "--table",
            "t",
            "--stream",
            "s",
        ],
    )
    assert no_group.exit_code == 2 and "--group" in no_group.output
    unknown = runner.invoke(
        cli, ["consume", "kafka://u:secret@h:9092", "--db", sqlite_url, "--table", "t"]
    )
    assert unknown.exit_code == 2 and "unknown broker" in unknown.output
    assert "secret" not in unknown.output  # the password is masked
    url = redis_url()
    missing = runner.invoke(
        cli,
        [
            "consume",
            url,
            "--db",
            sqlite_url,
            "--table",
            "nope",
            "--stream",
            unique("s"),
            "--group",
            "g",
        ],
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_dlq_replay_takes_a_consumer_job(sqlite_url: str) -> None:
    """A consumer's dead letters replay through the table and conversion its job recorded:
    after the cause is fixed (here: the table takes a quantity of 0), the letter lands."""
    url = redis_url()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER, sku TEXT, qty INTEGER, sent REAL)")
        conn.exec_driver_sql(
            "CREATE TRIGGER no_zero BEFORE INSERT ON orders WHEN NEW.qty = 0 "
            "BEGIN SELECT RAISE(ABORT, 'qty must not be 0'); END"
        )
    client = redis.Redis.from_url(url)
    name = unique("bl-replay")
    try:
        for i in range(5):
            client.xadd(name, {"data": json.dumps({"id": i, "sku": "a", "qty": i % 3, "sent": 0})})
        proc = spawn([sys.executable, "-m", "batchline.cli", "consume", url, "--db", sqlite_url,
                      "--table", "orders", "--stream", name, "--group", "g", "--job", "c",
                      "--linger-ms", "50"])  # fmt: skip
        assert proc.stderr is not None
        assert b"consuming" in proc.stderr.readline()
        deadline = time.monotonic() + 30
        while counted(sqlite_url) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting on another process: poll with a deadline
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        client.delete(name)
        client.close()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER no_zero")  # the cause, fixed
    out = CliRunner().invoke(cli, ["dlq", "replay", "--job", "c", "--db", sqlite_url, "--json"])
    assert out.exit_code == 0, out.output
    with engine.connect() as conn:
        ids = sorted(r[0] for r in conn.exec_driver_sql("SELECT id FROM orders"))
    engine.dispose()
    assert ids == [0, 1, 2, 3, 4]
