"""Crash soak for ``batchline consume``: SIGKILL consumers at random instants while a
producer publishes, on each broker, and check that nothing is lost or doubled.

The harness is the tests' (``tests/_brokers.py``: ``kill_chain``, ``check_exactly_once``):
each chain publishes ``--messages`` order messages (1% poison of three kinds) while
``--per-chain`` consumers are started and SIGKILLed at random instants, then a last one runs
until every message is a row or a dead letter and is stopped with SIGTERM (exit 0). The
table must then hold each good message once and the dead letters each poison message once.

    python bench/consume_soak.py --chains 10 --brokers redis,nats,amqp
    python bench/consume_soak.py --chains 5 --db postgres --per-chain 8

Exit status 1 when any chain lost or doubled a message.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import _brokers as b
from tests.test_consume_amqp import Publisher as RabbitPublisher
from tests.test_consume_amqp import check as rabbit_check
from tests.test_consume_nats import Publisher as NatsPublisher

from batchline.streams import stream_id


def chain(broker: str, db: str, messages: int, kills: int) -> tuple[bool, str]:
    """One chain on a fresh database; (ok, what happened)."""
    b.create_orders(db)
    sent: dict[int, tuple[str, str]] = {}
    common = ["--db", db, "--table", "orders", "--job", "soak", "--linger-ms", "100",
              "--quiet", "--wait", "30"]  # fmt: skip
    if broker == "redis":
        import redis

        url = b.REDIS_DEFAULT
        client = redis.Redis.from_url(url)
        name = b.unique("soak")

        def produce() -> None:
            for i in range(0, messages, 100):
                pipe = client.pipeline(transaction=False)
                batch = [(j, *b.message(j, time.time())) for j in range(i, i + 100)]
                for _, body, _ in batch:
                    pipe.xadd(name, {"data": body})
                ids = pipe.execute()
                sent.update({j: (e.decode(), kind) for (j, _, kind), e in zip(batch, ids)})
                time.sleep(0.05)

        command = ["consume", url, "--stream", name, "--group", "g", *common]
        try:
            code, err, seed = b.kill_chain(
                [sys.executable, "-m", "batchline.cli", *command], db, messages, produce, kills
            )
            b.check_exactly_once(db, "soak", sent, stream_id)
        except AssertionError as exc:
            return False, f"redis: {exc}"
        finally:
            client.delete(name)
            client.close()
        return code == 0, f"redis seed {seed} exit {code} {err[-300:] if code else ''}"
    if broker == "nats":
        url = b.NATS_DEFAULT
        pub = NatsPublisher(url, b.unique("soak"))

        def produce() -> None:
            for i in range(0, messages, 100):
                sent.update(pub.publish(i, i + 100))
                time.sleep(0.05)

        command = ["consume", url, "--stream", pub.stream, "--group", "g", *common]
        try:
            code, err, seed = b.kill_chain(
                [sys.executable, "-m", "batchline.cli", *command], db, messages, produce, kills
            )
            b.check_exactly_once(db, "soak", sent)
        except AssertionError as exc:
            return False, f"nats: {exc}"
        finally:
            pub.close()
        return code == 0, f"nats seed {seed} exit {code} {err[-300:] if code else ''}"
    url = b.AMQP_DEFAULT
    pub_r = RabbitPublisher(url, b.unique("soak"))

    def produce() -> None:
        own = RabbitPublisher(url, pub_r.queue)
        try:
            for i in range(0, messages, 100):
                sent.update(own.publish(i, i + 100))
                time.sleep(0.05)
        finally:
            own.connection.close()

    def done() -> bool:
        return len(b.order_ids(db)) >= messages - messages // 100

    command = ["consume", url, "--queue", pub_r.queue, *common]
    try:
        code, err, seed = b.kill_chain(
            [sys.executable, "-m", "batchline.cli", *command], db, messages, produce, kills,
            done=done,
        )  # fmt: skip
        rabbit_check(db, "soak", sent)
    except AssertionError as exc:
        return False, f"amqp: {exc}"
    finally:
        pub_r.close()
    return code == 0, f"amqp seed {seed} exit {code} {err[-300:] if code else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=5, help="chains per broker")
    parser.add_argument("--per-chain", type=int, default=6, help="kills per chain")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--brokers", default="redis,nats,amqp")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    failures = 0
    kills = 0
    started = time.monotonic()
    for broker in args.brokers.split(","):
        for n in range(args.chains):
            with tempfile.TemporaryDirectory() as folder:
                if args.db == "sqlite":
                    ok, what = chain(broker, f"sqlite:///{folder}/soak.db", args.messages,
                                     args.per_chain)  # fmt: skip
                else:
                    from tests._scratch import scratch_database

                    admin = sa.make_url("postgresql+psycopg://postgres@127.0.0.1:5432/test")
                    with scratch_database(admin) as url:
                        ok, what = chain(broker, str(url), args.messages, args.per_chain)
            kills += args.per_chain
            failures += not ok
            print(f"{broker} chain {n + 1}: {'ok' if ok else 'FAILED'} ({what.strip()})",
                  flush=True)  # fmt: skip
    print(f"{kills} kills, {failures} failed chains, {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
