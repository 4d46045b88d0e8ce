"""``batchline consume BROKER_URL --table T``: a long-running micro-batching consumer.

The broker is chosen by the URL's scheme (``redis://``, ``nats://``, ``amqp://``). Each
message is a JSON document (on Redis in the entry's ``data`` field, ``--field`` renames it;
``--format fields`` takes the entry's own fields), converted to the table's column types and
written as ``batchline load`` writes a file's records. The table must exist: a stream has no
first records to infer it from before the first message arrives.

SIGTERM or SIGINT finishes the chunk being collected, commits and acknowledges it, and exits
0 (3 is kept for ``load``: a consumer with dead letters did its job). Exit 1 when the run
failed (database retries spent, too many failures), 2 on a usage error.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from .._database import make_engine, redact_url
from .._dead_letters import DeadLetters
from .._load import ensure_table, map_for_spec, pipeline_for_spec, resume_spec
from ._common import (
    EXIT_USAGE,
    Secrets,
    check_database,
    database_url,
    db_option,
    fail,
    handled,
    json_option,
    wait_option,
)

__all__ = ["consume", "source_for"]

SCHEMES = {"redis": "redis", "rediss": "redis", "nats": "nats", "tls": "nats", "amqp": "amqp",
           "amqps": "amqp"}  # fmt: skip


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def source_for(
    url: str,
    *,
    stream: str | None,
    group: str | None,
    queue: str | None,
    subject: str | None,
    consumer: str | None,
    field: str,
    fmt: str,
    start: str | None,
) -> Any:
    """The broker source the URL's scheme names, with the options it needs checked."""
    scheme = url.partition("://")[0].lower()
    kind = SCHEMES.get(scheme)
    if kind is None:
        fail(f"{redact_url(url)}: unknown broker; expected redis://, nats:// or amqp://")
    if fmt == "fields" and kind != "redis":
        fail("--format fields applies to Redis stream entries only")
    if kind == "redis":
        if not stream or not group:
            fail("a Redis stream needs --stream and --group")
        from .._streams import RedisStreamSource

        return RedisStreamSource(
            url, stream, group, consumer=consumer, field=field, format=fmt, start_id=start or "0"
        )
    if kind == "nats":
        if not stream or not group:
            fail("a JetStream stream needs --stream and --group (the durable consumer's name)")
        from .._streams import JetStreamSource

        return JetStreamSource(url, stream, group, subject=subject)
    if not queue:
        fail("RabbitMQ needs --queue")
    from .._streams import RabbitSource

    return RabbitSource(url, queue)


@contextlib.contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """SIGTERM and SIGINT stop the consumer cleanly (the chunk in hand commits first)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@click.command()
@click.argument("broker", metavar="BROKER_URL")
@db_option
@click.option("--table", "-t", required=True, help="Table to write into (must exist).")
@click.option("--stream", help="Redis: the stream's key. NATS: the JetStream stream.")
@click.option(
    "--group",
    help="Redis: the consumer group (created if missing). NATS: the durable consumer.",
)
@click.option("--queue", help="RabbitMQ: the queue (declared durable if missing).")
@click.option("--subject", help="NATS: the subject the stream is created with if missing.")
@click.option("--consumer", "consumer_name", help="Redis: this reader's name in the group.")
@click.option(
    "--start",
    metavar="ID",
    help="Redis: where a new group starts, 0 (default: the whole stream) or $ (new entries).",
)
@click.option(
    "--field", default="data", show_default=True, help="Redis: the field holding the JSON."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "fields"]),
    default="json",
    show_default=True,
    help="A message is a JSON document, or (Redis) the entry's own fields are the record.",
)
@click.option("--upsert", is_flag=True, help="Insert or update rows by --key.")
@click.option("--increment", is_flag=True, help="Add --columns to the row with --key.")
@click.option("--key", "-k", metavar="COL[,COL]", help="Key column(s) for --upsert/--increment.")
@click.option("--columns", metavar="COL[,COL]", help="Columns --increment adds up.")
@click.option(
    "--linger-ms",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Flush a chunk once its first message has waited this long.",
)
@click.option("--chunk-size", type=click.IntRange(min=1), help="Records per transaction at most.")
@click.option(
    "--fetch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Messages asked of the broker at once.",
)
@click.option(
    "--job",
    metavar="NAME",
    help="Job name (checkpoint, dead letters); default consume:<stream or queue>:<group>.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    help="Serve Prometheus metrics (records, failures, chunk size, commit latency, retries, "
    "lag) on 127.0.0.1:PORT; needs batchline[metrics].",
)
@click.option(
    "--dead-letter-target",
    metavar="NAME",
    help="Also re-publish each dead-lettered message, once its dead letter committed, to "
    "this Redis stream, NATS subject or RabbitMQ EXCHANGE[/ROUTING_KEY] (a notice: the "
    "dead-letter table stays the record).",
)
@click.option("--quiet", "-q", is_flag=True, help="No summary at the end.")
@json_option
@wait_option
@handled
def consume(
    broker: str,
    db: str | None,
    table: str,
    stream: str | None,
    group: str | None,
    queue: str | None,
    subject: str | None,
    consumer_name: str | None,
    start: str | None,
    field: str,
    fmt: str,
    upsert: bool,
    increment: bool,
    key: str | None,
    columns: str | None,
    linger_ms: int,
    chunk_size: int | None,
    fetch_size: int,
    job: str | None,
    metrics_port: int | None,
    dead_letter_target: str | None,
    quiet: bool,
    as_json: bool,
    wait: float,
) -> None:
    """Consume BROKER_URL (redis://, nats://, amqp://) into a table until SIGTERM/SIGINT.

    Messages are collected into chunks, each written in one transaction that also moves the
    job's checkpoint; a chunk flushes when full or once its first message waited
    --linger-ms. Messages are acknowledged only after their chunk committed. A message that
    is not JSON, does not fit the table or is refused by the database goes to the dead
    letters with its broker id/position and is acknowledged. A redelivered message is never
    applied twice (the checkpoint holds the last committed stream position; on RabbitMQ the
    idempotency ledger holds the message ids).
    """
    from .._streams import Consumer

    if upsert and increment:
        raise click.UsageError("--upsert and --increment exclude each other")
    mode = "upsert" if upsert else "increment" if increment else "insert"
    source = source_for(
        broker,
        stream=stream,
        group=group,
        queue=queue,
        subject=subject,
        consumer=consumer_name,
        field=field,
        fmt=fmt,
        start=start,
    )
    name = job or f"consume:{stream or queue}:{group or queue}"
    from .._load import make_spec

    spec = make_spec(
        file=source.describe(),
        format=fmt,
        table=table,
        mode=mode,
        key=_split(key),
        columns=_split(columns),
        chunk_size=chunk_size,
    )
    spec.update(command="consume", file=source.describe(), broker=source.kind, field=field)
    url = database_url(db)
    check_database(url)
    engine, _ = make_engine(url)
    try:
        with DeadLetters(url) as letters:
            resume_spec(letters.job(name), spec)
        import sqlalchemy as sa

        if not sa.inspect(engine).has_table(table):
            fail(f"table {table} does not exist: create it first (a stream has no sample)")
        ensure_table(engine, spec, [])
    finally:
        engine.dispose()
    pipeline = pipeline_for_spec(url, spec)
    metrics = None
    if metrics_port is not None:
        try:
            from .._metrics import PrometheusMetrics

            metrics = PrometheusMetrics(metrics_port, job=name, broker=source.kind)
        except ImportError:
            fail("--metrics-port needs prometheus-client: pip install 'batchline[metrics]'")
        except OSError as exc:
            fail(f"--metrics-port {metrics_port}: {exc.strerror or exc}")
    runner = Consumer(
        pipeline,
        source,
        map_for_spec(spec),
        job=name,
        linger=linger_ms / 1000,
        fetch_size=fetch_size,
        spec=spec,
        wait=wait,
        metrics=metrics,
        dead_letter_target=dead_letter_target,
    )
    with pipeline, _stop_on_signals(runner.stop), contextlib.ExitStack() as scope:
        if metrics is not None:
            scope.callback(metrics.close)
        # said once the signals stop it cleanly (a supervisor or test may wait for it)
        click.echo(
            f"batchline: consuming {source.describe()} into {table} as job {name!r} "
            "(SIGTERM or Ctrl-C stops after the chunk in hand)",
            err=True,
        )
        result = runner.run()
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data, default=str))
    elif not quiet:
        click.echo(
            f"batchline: {result.status}: {result.items_processed} loaded, "
            f"{result.items_failed} dead-lettered, {result.duplicates_skipped} duplicates, "
            f"{runner.acked} acknowledged",
            err=True,
        )
    if result.error:
        click.echo(f"batchline: {Secrets.scrub(result.error)}", err=True)
    code = 1 if result.status == "failed" else 0
    sys.stdout.flush()
    raise click.exceptions.Exit(code if code != EXIT_USAGE else 1)
