"""The load a crash test kills, and the harness that kills it and checks what survived.

Run as a script (``python tests/_kill_worker.py URL JOB SOURCE``) it loads ``SOURCE`` (a
JSON Lines file made by :func:`write_source`) into the DESIGN.md sample shape: a catalog
looked up (and created) per SKU, transactions inserted, inventory incremented, an
idempotency key per invoice line. A few records are bad on purpose (read, map, lookup and
write failures, repeated keys) so dead letters and the ledger are part of every crash.

Imported, it gives the tests and ``bench/soak_kill.py`` one definition of the workload,
:func:`kill_chain` (SIGKILL a run again and again, resuming each time) and
:func:`snapshot` (the final tables, dead letters, ledger and job row, with surrogate ids
replaced by natural keys: PostgreSQL sequences do not roll back, so catalog ids differ
between any two runs that ever rolled a transaction back, and only the ids may differ).

The script needs only batchline, SQLAlchemy and ``tests/_schemas.py``, so its start-up stays
short.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import batchline as bl

if not __package__:  # run as a script: make ``tests`` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests._schemas import shop_metadata

__all__ = [
    "Forker",
    "KillPoint",
    "create_schema",
    "differences",
    "idempotency_key",
    "kill_chain",
    "make_pipeline",
    "run_worker",
    "snapshot",
    "write_source",
]

WORKER = Path(__file__).resolve()
REPO = WORKER.parent.parent


# -- the workload --------------------------------------------------------------------------------
def create_schema(url: str | sa.URL) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    shop_metadata().create_all(engine)
    engine.dispose()


@dataclass
class SourceStats:
    """What :func:`write_source` put in the file, by kind of record."""

    records: int = 0
    bad: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.bad[kind] = self.bad.get(kind, 0) + 1


def write_source(path: Path, n: int = 20_000, seed: int = 3, *, clean: bool = False) -> SourceStats:
    """A JSON Lines file of ``n`` invoice lines, about 1 % of them bad in one way or another.

    Bad on purpose: quantity 0 (a CHECK violation: stage write), quantity "n/a" (the map
    raises: stage map), a new SKU without a name (the catalog row cannot be created: stage
    lookup), a line that is not JSON (stage read), and a line repeating an earlier line's
    key (skipped as a duplicate). A bad SKU is never shared, so which record fails does not
    depend on how the records fall into chunks. ``clean=True`` leaves them all good.
    """
    rng = random.Random(seed)
    stats = SourceStats(records=n)
    lines: list[str] = []
    good: list[str] = []
    for i in range(1, n + 1):
        sku = f"SKU-{rng.randrange(400):04d}"
        rec: dict[str, Any] = {
            "invoice_id": 100_000 + (i - 1) // 10,
            "line_no": (i - 1) % 10 + 1,
            "sku": sku,
            "description": f"Item {sku}",
            "quantity": rng.randint(1, 9),
            "unit_price": f"{rng.randint(100, 99_999) / 100:.2f}",
        }
        if clean:
            pass
        elif i % 1999 == 0:
            lines.append('{"invoice_id": ' + str(i) + ', "sku": ')  # cut short
            stats.add("read")
            continue
        elif i % 701 == 0 and good:
            lines.append(good[-3])  # the same line again, same key
            stats.add("duplicate")
            continue
        elif i % 1613 == 0:
            rec["quantity"] = 0
            stats.add("write")
        elif i % 877 == 0:
            rec["quantity"] = "n/a"
            stats.add("map")
        elif i % 3361 == 0:
            rec["sku"] = f"BAD-{i}"
            rec["description"] = None
            stats.add("lookup")
        line = json.dumps(rec)
        lines.append(line)
        if rec["quantity"] not in (0, "n/a") and rec["description"] is not None:
            good.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return stats


def make_pipeline(
    url: str | sa.URL, chunk_size: int = 200, retry: bl.RetryPolicy | None = None
) -> tuple[bl.Pipeline, Callable[..., None]]:
    """The DESIGN.md sample: catalog lookups (created on first sight), inserts, increments."""
    catalog = bl.Lookup("catalog", key="sku", returns="id", create=True)
    pipeline = bl.Pipeline(
        url,
        writes=[
            bl.Insert("transactions"),
            bl.Increment("inventory", key="item_id", columns=["quantity"]),
        ],
        lookups=[catalog],
        chunk_size=chunk_size,
        retry=retry or bl.RetryPolicy(attempts=8, initial=0.05),
    )

    def map_line(record: dict[str, Any], out: bl.Out) -> None:
        item_id = catalog.ref(sku=record["sku"], name=record["description"])
        quantity = int(record["quantity"])
        out.insert(
            "transactions",
            {
                "invoice_id": record["invoice_id"],
                "line_no": record["line_no"],
                "item_id": item_id,
                "quantity": quantity,
                "unit_cost": Decimal(record["unit_price"]),
            },
        )
        out.increment("inventory", {"item_id": item_id, "quantity": quantity})

    return pipeline, map_line


def idempotency_key(record: dict[str, Any]) -> tuple[Any, Any]:
    return (record["invoice_id"], record["line_no"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("job")
    parser.add_argument("source")
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--events", help="append one line per statement sent (for post-mortems)")
    args = parser.parse_args(argv)
    logging.getLogger("batchline").setLevel(logging.ERROR)  # dead letters are expected here
    pipeline, map_line = make_pipeline(args.url, args.chunk_size)
    events = open(args.events, "a", buffering=1, encoding="utf-8") if args.events else None  # noqa: SIM115

    def event(kind: str) -> None:
        if events is not None:
            events.write(f"{time.time():.6f} {kind}\n")

    if events is not None:
        pipeline.statement_listeners.append(lambda sql, rows: event(sql.split(None, 1)[0].upper()))
    event("RUN")
    result = pipeline.run(
        bl.read(args.source), map_line, job=args.job, idempotency_key=idempotency_key
    )
    event("DONE")
    summary = result.to_dict()
    summary.pop("failed_items", None)
    print(json.dumps(summary, default=str), flush=True)
    return 0 if result.status in ("success", "partial_success") else 1


# -- the harness ---------------------------------------------------------------------------------
def serve() -> int:
    """Fork a fresh load per request, read as JSON lines on stdin.

    A kill chain starts a load twenty times or more; forking from this warmed-up process
    spares each one the interpreter's start-up and imports (seconds on a busy machine),
    while every load still runs in its own process, killed for real.
    """
    import psycopg  # noqa: F401  (imported once here, inherited by every fork)
    import pymysql  # noqa: F401
    from sqlalchemy.dialects import mysql, postgresql, sqlite  # noqa: F401

    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        request = json.loads(line)
        if request["cmd"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(request["argv"], request["out"])
            reply: dict[str, Any] = {"pid": pid}
        else:  # wait
            reply = _reap(int(request["pid"]), float(request["timeout"]))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _child(argv: list[str], out: str) -> None:
    code = 1
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        code = main(argv)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reap(pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"signal": None, "code": None, "timeout": True}
        time.sleep(0.005)
    return {
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "timeout": False,
    }


class Forker:
    """The test's side of :func:`serve`: start loads, SIGKILL them, collect how they ended.

    Closing it kills the loads not yet waited for (a test that failed half way), so none
    keeps writing to a database its test is dropping.
    """

    def __init__(self) -> None:
        self.running: set[int] = set()  # spawned, not yet reaped by the server
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():
            raise RuntimeError("the fork server did not start")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the fork server died")
        return dict(json.loads(reply))

    def spawn(self, argv: list[str], out: Path) -> int:
        pid = int(self._ask({"cmd": "spawn", "argv": argv, "out": str(out)})["pid"])
        self.running.add(pid)
        return pid

    def wait(self, pid: int, timeout: float) -> dict[str, Any]:
        reply = self._ask({"cmd": "wait", "pid": pid, "timeout": timeout})
        self.running.discard(pid)  # reaped, or killed and reaped on the timeout
        return reply

    def close(self) -> None:
        # Unreaped, so these pids are still the loads' (the server reaps only when asked).
        for pid in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.running.clear()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Forker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class WorkerRun:
    """One load that ran to its end: its summary line and how long it took, wall clock."""

    summary: dict[str, Any]
    seconds: float
    setup: float  # from spawn to the first statement of the run's own session


def _argv(url: str, job: str, source: Path, chunk_size: int, events: Path) -> list[str]:
    size = str(chunk_size)
    return [
        url,
        job,
        str(source.resolve()),
        "--chunk-size",
        size,
        "--events",
        str(events.resolve()),
    ]


def _events(path: Path) -> list[tuple[float, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stamp, _, kind = line.partition(" ")
        if kind:
            out.append((float(stamp), kind))
    return out


def run_worker(
    forker: Forker,
    url: str,
    job: str,
    source: Path,
    workdir: Path,
    *,
    tag: str = "run",
    chunk_size: int = 200,
    timeout: float = 300,
) -> WorkerRun:
    """Run the load to its end in a forked process; raise if it did not end cleanly."""
    events, out = workdir / f"events-{job}-{tag}.log", workdir / f"out-{job}-{tag}.txt"
    events.unlink(missing_ok=True)
    started = time.time()
    pid = forker.spawn(_argv(url, job, source, chunk_size, events), out)
    status = forker.wait(pid, timeout)
    seconds = time.time() - started
    text = out.read_text(encoding="utf-8") if out.exists() else ""
    if status["code"] not in (0, 1) or not text.strip().startswith("{"):
        raise RuntimeError(f"the load ended with {status}: {text[-3000:]}")
    ev = _events(events)
    statements = [t for t, kind in ev if kind not in ("RUN", "DONE")]
    setup = (statements[0] - started) if statements else seconds
    return WorkerRun(json.loads(text.strip().splitlines()[-1]), seconds, setup)


@dataclass(frozen=True)
class KillPoint:
    """Where one SIGKILL landed."""

    delay: float  # seconds after the spawn
    phase: str  # startup | prepare | transaction | commit | finished (not killed)
    position_before: int
    position_after: int


def _phase(events: list[tuple[float, str]]) -> str:
    if not events:
        return "startup"  # forked, engine not made yet: no statement
    last = events[-1][1]
    if last == "RUN":
        return "prepare"  # state tables and reflection, on SQLAlchemy connections
    if last == "DONE":
        return "finished"
    if last == "COMMIT":
        return "commit"  # COMMIT sent: in flight, or answered before the next statement
    return "transaction"  # statements of an open transaction sent, no COMMIT yet


def _first_statement(events: Path, timeout: float) -> float:
    """Wait until the load has sent a statement through its session; return when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stamp, kind in _events(events):
            if kind not in ("RUN", "DONE"):
                return stamp
        time.sleep(0.002)
    raise RuntimeError(f"the load sent no statement within {timeout}s")


def job_position(url: str, job: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("batchline_jobs"):
                return 0
            value = conn.execute(
                sa.text("SELECT position FROM batchline_jobs WHERE name = :n"), {"n": job}
            ).scalar()
    finally:
        engine.dispose()
    return int(value or 0)


def kill_chain(
    forker: Forker,
    url: str,
    job: str,
    source: Path,
    workdir: Path,
    *,
    kills: int,
    records: int,
    work: float,
    rng: random.Random,
    chunk_size: int = 200,
    timeout: float = 300,
) -> tuple[list[KillPoint], WorkerRun]:
    """SIGKILL the load ``kills`` times, each time resuming it, then let it finish.

    Once the load has sent its first statement, each kill waits for a random part of the
    work still to do (estimated from the checkpoint and the measured uninterrupted ``work``
    time), so the kills spread over the whole run; about one in eight lands in start-up or
    preparation instead.
    """
    points: list[KillPoint] = []
    setups = [0.3]  # seconds from a spawn to its first statement, as seen so far
    for k in range(kills):
        before = job_position(url, job)
        remaining = work * max(0.0, records - before) / records
        events, out = workdir / f"events-{job}-{k}.log", workdir / f"out-{job}-{k}.txt"
        events.unlink(missing_ok=True)  # a file of an earlier chain would mislead
        spawned = time.time()
        pid = forker.spawn(_argv(url, job, source, chunk_size, events), out)
        if rng.random() < 0.125:
            time.sleep(rng.uniform(0.0, 1.5 * sorted(setups)[len(setups) // 2]))
        else:
            first = _first_statement(events, timeout)
            setups.append(first - spawned)
            # three quarters of an even share on average: a faster load must still be
            # caught working ``kills`` times, not finish before its kill early in the chain
            time.sleep(rng.uniform(0.0, 1.5) * remaining / (kills - k + 1))
        delay = time.time() - spawned
        os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still the load's
        status = forker.wait(pid, timeout)
        killed = status["signal"] == signal.SIGKILL
        if not killed and status["code"] not in (0, 1):
            raise RuntimeError(f"the load ended with {status} before its kill: {out.read_text()}")
        phase = _phase(_events(events)) if killed else "finished"
        points.append(KillPoint(delay, phase, before, job_position(url, job)))
        if not killed:
            break
    final = run_worker(
        forker, url, job, source, workdir, tag="final", chunk_size=chunk_size, timeout=timeout
    )
    return points, final


def _normal_message(message: str, database: str) -> str:
    # Messages may name the (private) database, quote a surrogate id or a line of a COPY
    # batch; the rest must match.
    if database:
        message = message.replace(database, "<db>")
    return re.sub(r"\d+", "#", message)


def snapshot(url: str | sa.URL) -> dict[str, Any]:
    """Everything a load leaves behind, comparable across runs (ids as natural keys)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    u = sa.make_url(url)
    options = str(u.query.get("options", ""))
    database = options.partition("search_path=")[2] or (
        u.database if u.get_backend_name() != "sqlite" else ""
    )

    def rows(conn: sa.Connection, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(str(v) for v in r) for r in conn.execute(sa.text(sql))]

    try:
        with engine.connect() as conn:
            snap: dict[str, Any] = {
                "catalog": rows(conn, "SELECT sku, name FROM catalog ORDER BY sku"),
                "catalog_ids": rows(conn, "SELECT count(*), count(DISTINCT id) FROM catalog"),
                "transactions": rows(
                    conn,
                    "SELECT t.invoice_id, t.line_no, c.sku, t.quantity, t.unit_cost "
                    "FROM transactions t JOIN catalog c ON c.id = t.item_id "
                    "ORDER BY t.invoice_id, t.line_no",
                ),
                "inventory": rows(
                    conn,
                    "SELECT c.sku, i.quantity FROM inventory i JOIN catalog c "
                    "ON c.id = i.item_id ORDER BY c.sku",
                ),
                "row_counts": rows(
                    conn,
                    "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM inventory)",
                ),
                "dead_letters": [
                    (*r[:5], _normal_message(r[5], database or ""), *r[6:])
                    for r in rows(
                        conn,
                        "SELECT job, position, line, stage, error_class, message, payload, "
                        "attempts FROM batchline_dead_letters ORDER BY position, id",
                    )
                ],
                "ledger": rows(
                    conn,
                    "SELECT namespace, key_hash, job FROM batchline_ledger "
                    "ORDER BY namespace, key_hash",
                ),
                "jobs": rows(
                    conn,
                    "SELECT name, fingerprint, position, processed, failed, duplicates, status "
                    "FROM batchline_jobs ORDER BY name",
                ),
            }
    finally:
        engine.dispose()
    return snap


def differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """The parts of two snapshots that differ, briefly (empty when they are equal)."""
    out = []
    for key in expected:
        if expected[key] != got.get(key):
            a, b = set(expected[key]), set(got.get(key) or [])
            out.append(
                f"{key}: {len(expected[key])} vs {len(got.get(key) or [])} rows; "
                f"missing {sorted(a - b)[:3]}, extra {sorted(b - a)[:3]}"
            )
    return out


if __name__ == "__main__":
    sys.exit(main())
