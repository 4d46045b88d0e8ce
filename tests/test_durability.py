"""A crash at any instant, then a resume, leaves the database as an uninterrupted run would.

Real faults only: SIGKILL of the loading process, the server terminating our connection
at and after a COMMIT, a connection cut after the server committed but before the client
heard (the ambiguous commit), and, opt-in, PostgreSQL restarted mid-run. Then the ledger
(the same file twice, under two job names) and the resume checks (a changed file is
refused; a finished job is not re-applied).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from batchline.typing import MapFunction
from tests._kill_worker import (
    Forker,
    create_schema,
    differences,
    idempotency_key,
    kill_chain,
    make_pipeline,
    run_worker,
    snapshot,
    write_source,
)
from tests._scratch import scratch_database

RECORDS = 20_000
KILLS = 22  # at least 20 must land: a load may finish before its kill
FAST_RETRY = bl.RetryPolicy(attempts=8, initial=0.02, maximum=0.5)


@contextlib.contextmanager
def sibling_database(url: str, tmp_path: Path) -> Iterator[str]:
    """A second private database on the same server as ``url`` (for a reference run)."""
    if sa.make_url(url).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'reference.db'}"
        return
    with scratch_database(url) as sibling:
        yield sibling


def expected_tables(source: Path) -> dict[str, Any]:
    """What a clean source must leave, computed without batchline."""
    transactions = []
    inventory: Counter[str] = Counter()
    for line in source.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        transactions.append((str(r["invoice_id"]), str(r["line_no"]), r["sku"], str(r["quantity"])))
        inventory[r["sku"]] += r["quantity"]
    return {
        "transactions": sorted(transactions, key=lambda t: (int(t[0]), int(t[1]))),
        "inventory": sorted((sku, str(q)) for sku, q in inventory.items()),
    }


def loaded_tables(url: str | sa.URL) -> dict[str, Any]:
    snap = snapshot(url)
    return {
        "transactions": [t[:4] for t in snap["transactions"]],
        "inventory": snap["inventory"],
        "row_counts": snap["row_counts"],
    }


# -- SIGKILL at random instants ------------------------------------------------------------------
def test_sigkill_at_random_instants_then_resume_leaves_what_an_uninterrupted_run_leaves(
    db_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "invoices.jsonl"
    stats = write_source(source, RECORDS)
    started = time.perf_counter()
    with sibling_database(db_url, tmp_path) as reference_url, Forker() as forker:
        create_schema(reference_url)
        create_schema(db_url)
        reference = run_worker(forker, reference_url, "invoices", source, tmp_path, tag="ref")
        points, final = kill_chain(
            forker,
            db_url,
            "invoices",
            source,
            tmp_path,
            kills=KILLS,
            records=RECORDS,
            work=reference.seconds - reference.setup,
            rng=random.Random(20261128),
        )
        expected, got = snapshot(reference_url), snapshot(db_url)
    killed = [p for p in points if p.phase != "finished"]
    phases = Counter(p.phase for p in killed)
    print(
        f"\n{sa.make_url(db_url).get_backend_name()}: {len(killed)} kills {dict(phases)}, "
        f"positions {[p.position_after for p in killed]}, reference run "
        f"{reference.seconds:.1f}s, whole test {time.perf_counter() - started:.1f}s, "
        f"mismatches {len(differences(expected, got))}",
        *differences(expected, got),
        sep="\n",
    )
    assert len(killed) >= 20
    # The kills hit the load while it worked, at many places of the run, not only at its edges.
    assert phases["transaction"] + phases["commit"] >= 10
    assert len({p.position_after for p in killed}) >= 8
    assert final.summary["resumed_from"] > 0 and final.summary["status"] == "partial_success"

    assert differences(expected, got) == []
    assert got == expected
    # Exactly once: every record is in the data, the dead letters or the duplicates.
    ((_, _, position, processed, failed, duplicates, status),) = got["jobs"]
    assert (int(position), status) == (RECORDS, "partial_success")
    assert int(processed) + int(failed) + int(duplicates) == RECORDS
    assert int(duplicates) == stats.bad["duplicate"]
    assert len(got["transactions"]) == int(processed) == len(got["ledger"])
    dead = got["dead_letters"]
    assert len({d[1] for d in dead}) == len(dead) == int(failed)
    assert Counter(d[3] for d in dead) == {
        stage: stats.bad[stage] for stage in ("read", "map", "lookup", "write")
    }


# -- the server cuts the connection around a COMMIT ----------------------------------------------
def _terminate(admin: sa.Engine, app: str) -> int:
    with admin.connect() as conn:
        n = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE application_name = :app AND pid <> pg_backend_pid()"
            ),
            {"app": app},
        ).scalar()
        conn.commit()
    return int(n or 0)


@pytest.mark.postgres
@pytest.mark.parametrize("when", ["at_commit", "after_commit"])
def test_backend_terminated_around_commit_loses_and_doubles_nothing(
    postgres_url: str, tmp_path: Path, when: str
) -> None:
    app = f"bl_{secrets.token_hex(4)}"
    url = sa.make_url(postgres_url).update_query_dict({"application_name": app})
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    create_schema(postgres_url)
    source = tmp_path / "clean.jsonl"
    write_source(source, 4000, clean=True)
    pipeline, map_line = make_pipeline(url, chunk_size=200, retry=FAST_RETRY)
    targets = {3, 8, 14}  # the Nth COMMIT of the run's session
    commits = 0
    armed = False
    terminated: list[int] = []

    def fault(sql: str, rows: int) -> None:
        nonlocal commits, armed
        if armed:  # the first statement after the chosen COMMIT
            armed = False
            terminated.append(_terminate(admin, app))
        if sql == "COMMIT":
            commits += 1
            if commits in targets:
                if when == "at_commit":
                    terminated.append(_terminate(admin, app))  # the COMMIT will not arrive
                else:
                    armed = True

    pipeline.statement_listeners.append(fault)
    result = pipeline.run(bl.read(source), map_line, job="cut", idempotency_key=idempotency_key)
    admin.dispose()
    # each fault really hit the run's connection (and, when open, its read-ahead one)
    assert len(terminated) == 3 and all(n >= 1 for n in terminated), terminated
    assert result.retries >= 3
    assert result.status == "success"
    assert (result.items_processed, result.duplicates_skipped, result.items_failed) == (4000, 0, 0)
    got = loaded_tables(postgres_url)
    assert got["transactions"] == expected_tables(source)["transactions"]
    assert got["inventory"] == expected_tables(source)["inventory"]
    assert snapshot(postgres_url)["dead_letters"] == []


class CommitEatingProxy:
    """A TCP relay that, when armed, lets the client's next COMMIT reach the server, then
    swallows the server's answer and cuts that connection.

    Armed just before a COMMIT, this is the ambiguous commit: the server has committed, and
    the client only learns that its connection died.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.armed = threading.Event()
        self.cuts = 0
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            eat = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, eat), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, eat), daemon=True).start()

    @staticmethod
    def _cut(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _up(self, client: socket.socket, upstream: socket.socket, eat: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                # Only the connection that sends the COMMIT: another connection (the
                # read-ahead's) may talk first, and cutting it would not be this fault.
                if self.armed.is_set() and b"COMMIT" in data.upper():
                    self.armed.clear()
                    eat.set()
                upstream.sendall(data)
        self._cut(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, eat: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if eat.is_set():
                    self.cuts += 1
                    break
                client.sendall(data)
        self._cut(client, upstream)

    def close(self) -> None:
        self.server.close()
        self._cut(*self._socks)


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("postgres_url", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql_url", id="mysql", marks=pytest.mark.mysql),
    ],
)
def test_commit_that_landed_before_the_connection_died_is_not_applied_again(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db_url = str(request.getfixturevalue(backend))
    create_schema(db_url)
    u = sa.make_url(db_url)
    proxy = CommitEatingProxy(u.host or "127.0.0.1", u.port or 0)
    source = tmp_path / "clean.jsonl"
    write_source(source, 3000, clean=True)
    # No idempotency key: a chunk committed twice would hit the primary key and dead-letter.
    pipeline, map_line = make_pipeline(u.set(port=proxy.port), chunk_size=200, retry=FAST_RETRY)
    commits = 0

    def arm(sql: str, rows: int) -> None:
        nonlocal commits
        if sql == "COMMIT":
            commits += 1
            if commits in (2, 7, 11):
                proxy.armed.set()

    pipeline.statement_listeners.append(arm)
    try:
        result = pipeline.run(bl.read(source), map_line, job="ambiguous")
    finally:
        proxy.close()
    assert proxy.cuts == 3
    assert result.retries >= 3
    assert result.status == "success", result.error
    assert (result.items_processed, result.items_failed) == (3000, 0)
    got = loaded_tables(db_url)
    assert got["transactions"] == expected_tables(source)["transactions"]
    assert got["inventory"] == expected_tables(source)["inventory"]
    snap = snapshot(db_url)
    assert snap["dead_letters"] == []
    assert snap["jobs"][0][2:] == ("3000", "3000", "0", "0", "success")


def _server_answers() -> bool:
    ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False)
    return ready.returncode == 0


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(
    os.environ.get("BATCHLINE_TEST_PG_RESTART", "") in ("", "0"),
    reason="restarts the shared PostgreSQL server: opt in with BATCHLINE_TEST_PG_RESTART=1",
)
def test_postgres_restarted_mid_run_loses_and_doubles_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    cluster = os.environ.get("BATCHLINE_TEST_PG_CLUSTER", "15 main").split()
    if shutil.which("pg_ctlcluster") is None:
        pytest.skip("pg_ctlcluster is not available here")
    create_schema(postgres_url)
    source = tmp_path / "clean.jsonl"
    write_source(source, 10_000, clean=True)
    pipeline, map_line = make_pipeline(
        postgres_url, chunk_size=200, retry=bl.RetryPolicy(attempts=20, initial=0.2, maximum=3)
    )
    restarts: list[subprocess.CompletedProcess[bytes]] = []
    restarter = threading.Thread(
        target=lambda: restarts.append(
            subprocess.run(["pg_ctlcluster", *cluster, "restart"], capture_output=True)
        )
    )
    commits = 0

    def restart(sql: str, rows: int) -> None:
        nonlocal commits
        if sql == "COMMIT":
            commits += 1
            if commits == 6:  # the load goes on, into the server going down and coming back
                restarter.start()
                # Hold this COMMIT back until the server stops answering, so it meets the
                # shutdown (bounded: a restart that is never seen going down is not waited on).
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _server_answers():
                    time.sleep(0.02)

    pipeline.statement_listeners.append(restart)
    result = pipeline.run(
        bl.read(source), map_line, job="restarted", idempotency_key=idempotency_key
    )
    restarter.join()
    assert [r.returncode for r in restarts] == [0], restarts
    assert result.retries >= 1
    assert result.status == "success", result.error
    assert (result.items_processed, result.duplicates_skipped) == (10_000, 0)
    assert result.items_failed == 0
    got = loaded_tables(postgres_url)
    assert got["transactions"] == expected_tables(source)["transactions"]
    assert got["inventory"] == expected_tables(source)["inventory"]
    assert snapshot(postgres_url)["dead_letters"] == []


# -- the ledger across jobs ----------------------------------------------------------------------
def test_same_file_under_two_job_names_is_applied_once(db_url: str, tmp_path: Path) -> None:
    create_schema(db_url)
    source = tmp_path / "invoices.jsonl"
    write_source(source, 1500, clean=True)
    pipeline, map_line = make_pipeline(db_url, chunk_size=200)
    first = pipeline.run(bl.read(source), map_line, job="monday", idempotency_key=idempotency_key)
    before = loaded_tables(db_url)
    second = pipeline.run(bl.read(source), map_line, job="tuesday", idempotency_key=idempotency_key)
    assert (first.items_processed, first.duplicates_skipped) == (1500, 0)
    assert (second.items_processed, second.duplicates_skipped, second.items_failed) == (0, 1500, 0)
    assert second.status == "success"
    after = loaded_tables(db_url)
    assert after == before  # no increment applied twice
    assert after["transactions"] == expected_tables(source)["transactions"]
    assert after["inventory"] == expected_tables(source)["inventory"]

    # A re-sent file with half old lines, half new: only the new ones land.
    more = tmp_path / "more.jsonl"
    write_source(more, 2500, clean=True)
    resent = tmp_path / "resent.jsonl"
    resent.write_text("\n".join(more.read_text().splitlines()[750:]) + "\n", encoding="utf-8")
    third = pipeline.run(
        bl.read(resent), map_line, job="wednesday", idempotency_key=idempotency_key
    )
    assert (third.items_processed, third.duplicates_skipped) == (1000, 750)
    assert loaded_tables(db_url)["inventory"] == expected_tables(more)["inventory"]


# -- resume checks -------------------------------------------------------------------------------
def _ev_tables(url: str) -> None:
    md = sa.MetaData()
    sa.Table(
        "ev",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("k", sa.Integer, nullable=False),
    )
    sa.Table(
        "agg",
        md,
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    md.create_all(engine)
    engine.dispose()


def _csv(path: Path, n: int, bad: set[int], k_of: int = 7) -> None:
    rows = ["id,k"] + [f"{i},{'x' if i in bad else i % k_of}" for i in range(1, n + 1)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _ev_pipeline(url: str, **kwargs: Any) -> tuple[bl.Pipeline, MapFunction, list[int]]:
    """A pipeline over ``ev``/``agg``, its map function, and the ids the map has seen."""
    mapped: list[int] = []

    def emit(r: dict[str, Any], out: bl.Out) -> None:
        mapped.append(int(r["id"]))
        out.insert("ev", {"id": int(r["id"]), "k": int(r["k"])})
        out.increment("agg", {"k": int(r["k"]), "n": 1})

    pipeline = bl.Pipeline(
        url,
        writes=[bl.Insert("ev"), bl.Increment("agg", key="k", columns="n")],
        chunk_size=100,
        **kwargs,
    )
    return pipeline, emit, mapped


def _ev_state(url: str) -> tuple[Any, ...]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        ev = conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM ev")).one()
        agg = conn.execute(sa.text("SELECT k, n FROM agg ORDER BY k")).all()
        jobs = conn.execute(sa.text("SELECT * FROM batchline_jobs ORDER BY name")).all()
        dead = conn.execute(sa.text("SELECT count(*) FROM batchline_dead_letters")).scalar()
    engine.dispose()
    return tuple(ev), [tuple(r) for r in agg], [tuple(r) for r in jobs], dead


def _job(url: str, name: str) -> bl.JobState | None:
    with bl.DeadLetters(url) as letters:
        return letters.job(name)


def _key(r: dict[str, Any]) -> Any:
    return r["id"]


def test_resume_on_a_changed_file_is_refused_and_restart_starts_over(
    db_url: str, tmp_path: Path
) -> None:
    _ev_tables(db_url)
    path = tmp_path / "events.csv"
    _csv(path, 1000, bad={150, 160, 170})
    pipeline, emit, mapped = _ev_pipeline(db_url, max_failures=2)
    stopped = pipeline.run(bl.read(path), emit, job="ev", idempotency_key=_key)
    assert stopped.status == "failed" and "max_failures" in (stopped.error or "")
    job = _job(db_url, "ev")
    assert job is not None and 200 <= job.position < 1000 and job.status == "failed"
    partial = _ev_state(db_url)

    _csv(path, 1000, bad=set(), k_of=5)  # the file changed under the job
    with pytest.raises(bl.ResumeMismatch, match="different source"):
        pipeline.run(bl.read(path), emit, job="ev", idempotency_key=_key)
    assert _ev_state(db_url) == partial  # refused before touching anything

    mapped.clear()
    fresh = pipeline.run(bl.read(path), emit, job="ev", idempotency_key=_key, restart=True)
    assert fresh.resumed_from == 0 and len(mapped) == 1000
    assert fresh.status == "success"
    # The rows of the first attempt are in the ledger: the restart skips them, never doubles.
    assert fresh.duplicates_skipped == job.processed
    assert fresh.items_processed == 1000 - job.processed
    (count, distinct), _, jobs, _ = _ev_state(db_url)
    assert count == distinct == 1000
    assert len(jobs) == 1


def test_resume_on_the_same_file_skips_without_remapping(db_url: str, tmp_path: Path) -> None:
    _ev_tables(db_url)
    path = tmp_path / "events.csv"
    _csv(path, 1000, bad={150, 160, 170})
    pipeline, emit, mapped = _ev_pipeline(db_url, max_failures=2)
    assert pipeline.run(bl.read(path), emit, job="ev").status == "failed"
    job = _job(db_url, "ev")
    assert job is not None and job.position >= 200
    mapped.clear()
    pipeline.max_failures = None
    resumed = pipeline.run(bl.read(path), emit, job="ev")
    assert resumed.resumed_from == job.position
    assert mapped == list(range(job.position + 1, 1001))  # nothing before it is re-mapped
    finished = _job(db_url, "ev")
    assert finished is not None and finished.status == "partial_success"  # the whole job's
    assert (finished.position, finished.processed, finished.failed) == (1000, 997, 3)
    (count, distinct), agg, _, dead = _ev_state(db_url)
    assert count == distinct == 997 and dead == 3
    assert sum(n for _, n in agg) == 997


def test_finished_job_is_not_applied_again(db_url: str, tmp_path: Path) -> None:
    _ev_tables(db_url)
    path = tmp_path / "events.csv"
    _csv(path, 500, bad={42})
    pipeline, emit, mapped = _ev_pipeline(db_url)
    done = pipeline.run(bl.read(path), emit, job="ev", idempotency_key=_key)
    assert done.status == "partial_success" and done.items_processed == 499
    state = _ev_state(db_url)
    mapped.clear()

    again = pipeline.run(bl.read(path), emit, job="ev", idempotency_key=_key)
    assert again.message is not None and "already finished" in again.message
    assert again.status == "partial_success"
    assert (again.items_processed, again.items_failed, again.records_seen) == (0, 0, 0)
    assert mapped == []
    assert _ev_state(db_url) == state  # data, dead letters and the job row untouched

    # Pointed at another file, the finished job refuses, and stays as it was (finished).
    _csv(path, 500, bad=set(), k_of=3)
    with pytest.raises(bl.ResumeMismatch):
        pipeline.run(bl.read(path), emit, job="ev", idempotency_key=_key)
    assert _ev_state(db_url) == state

    # restart=True really starts over on the new file; the ledger keeps it from applying
    # anything twice, so only record 42 (bad before, good now) lands.
    over = pipeline.run(bl.read(path), emit, job="ev", idempotency_key=_key, restart=True)
    assert len(mapped) == 500
    assert (over.items_processed, over.duplicates_skipped, over.status) == (1, 499, "success")
    (count, _), agg, _, _ = _ev_state(db_url)
    assert count == 500 and sum(n for _, n in agg) == 500
