"""One runner per job, with real processes on every database (batchline._job_lock).

The table the runners load has no unique key, so a second runner that applied the same
records would show as extra rows: every test ends by checking the table holds each record
exactly once and the job row counts them once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import batchline as bl
from batchline.cli import cli

RUNNER = Path(__file__).resolve().parent / "_lock_runner.py"
REPO = RUNNER.parent.parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


@pytest.fixture
def items(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id BIGINT NOT NULL, v VARCHAR(20))")
    return engine


def _start(url: str, job: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), url, job, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, dict[str, Any]]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"runner printed nothing (exit {proc.returncode}): {err[-2000:]}"
    return proc.returncode, json.loads(lines[-1])


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"runner ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def _rows(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        total, distinct = conn.exec_driver_sql(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM items"
        ).one()
    return int(total), int(distinct)


def _job(url: str, job: str) -> bl.JobState:
    with bl.DeadLetters(url) as letters:
        state = letters.job(job)
    assert state is not None
    return state


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, Path, list[subprocess.Popen[str]]]]:
    """(gate, ready, started): runners started in a test are killed if it fails."""
    started: list[subprocess.Popen[str]] = []
    yield tmp_path / "gate", tmp_path / "ready", started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _hold(url: str, job: str, held: Any, records: int = 200) -> subprocess.Popen[str]:
    """A runner held at record 101 with its first chunks committed."""
    gate, ready, started = held
    proc = _start(
        url, job, "--records", str(records), "--hold-at", "101", "--gate", str(gate),
        "--ready", str(ready),
    )  # fmt: skip
    started.append(proc)
    _wait_for(ready, proc)
    return proc


def test_a_second_runner_is_refused_at_once_naming_the_holder(
    db_url: str, items: sa.Engine, held: Any
) -> None:
    first = _hold(db_url, "nightly", held)
    began = time.monotonic()
    second = _start(db_url, "nightly", "--records", "200")
    held[2].append(second)
    code, refused = _finish(second)
    assert code == 2
    assert time.monotonic() - began < 30
    message = refused["refused"]
    assert "'nightly'" in message and f"pid {first.pid}" in message, message
    assert refused["holder"]["pid"] == first.pid
    assert _job(db_url, "nightly").status == "running"  # the holder is alive

    held[0].touch()  # open the gate
    code, result = _finish(first)
    assert (code, result["status"], result["items_processed"]) == (0, "success", 200)
    assert _rows(items) == (200, 200)
    state = _job(db_url, "nightly")
    assert (state.status, state.processed, state.position) == ("success", 200, 200)


def test_the_cli_refuses_with_exit_2_and_waits_with_wait(
    db_url: str, items: sa.Engine, held: Any, tmp_path: Path
) -> None:
    first = _hold(db_url, "cli-job", held)
    source = tmp_path / "more.csv"
    source.write_text("id,v\n" + "".join(f"{i},s{i}\n" for i in range(1, 51)))
    args = ["load", str(source), "-t", "items", "--db", db_url, "--job", "cli-job", "-q"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2, refused.output
    assert "cli-job" in refused.output and f"pid {first.pid}" in refused.output
    assert "Traceback" not in refused.output
    assert "(--wait) or use another --job" in refused.output  # the options, not Python's

    timed_out = CliRunner().invoke(cli, [*args, "--wait", "0.5"])
    assert timed_out.exit_code == 2 and "waited 0.5 s" in timed_out.output

    # --wait: this runner waits for the holder; the job then ends as the holder left it.
    waiter = subprocess.Popen(
        [sys.executable, "-m", "batchline.cli", *args, "--wait", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    held[2].append(waiter)
    with pytest.raises(subprocess.TimeoutExpired):
        waiter.wait(timeout=1.5)  # still waiting for the holder
    held[0].touch()
    assert _finish(first)[0] == 0
    _out, err = waiter.communicate(timeout=90)
    # Once it had the job, the waiter found it was started on another source (the holder's
    # records, not this file) and said so: only the holder's run landed.
    assert waiter.returncode == 2 and "different source" in err, err
    assert _rows(items) == (200, 200)


def test_a_killed_holder_leaves_the_job_interrupted_and_a_resume_takes_it_at_once(
    db_url: str, items: sa.Engine, held: Any
) -> None:
    first = _hold(db_url, "crashy", held)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    # The database notices the dropped connection at once on loopback; allow it a moment.
    deadline = time.monotonic() + 10
    while _job(db_url, "crashy").status != "interrupted":
        assert time.monotonic() < deadline, _job(db_url, "crashy")
        time.sleep(0.05)
    kept = _job(db_url, "crashy").position
    assert 0 < kept < 200

    began = time.monotonic()
    code, result = _finish(_start(db_url, "crashy", "--records", "200"))
    assert time.monotonic() - began < 30  # no lease to wait out
    assert (code, result["status"]) == (0, "success")
    assert result["resumed_from"] == kept
    assert _rows(items) == (200, 200)
    state = _job(db_url, "crashy")
    assert (state.status, state.processed, state.position) == ("success", 200, 200)


@pytest.mark.parametrize("stagger", [0.0, 0.2, 0.5])
def test_two_runners_started_together_apply_the_job_once(
    db_url: str, items: sa.Engine, stagger: float, held: Any
) -> None:
    records = 3000
    first = _start(db_url, "together", "--records", str(records), "--chunk-size", "100")
    held[2].append(first)  # killed and reaped if the test fails
    time.sleep(stagger)
    second = _start(db_url, "together", "--records", str(records), "--chunk-size", "100")
    held[2].append(second)
    outcomes = [_finish(first), _finish(second)]
    codes = sorted(code for code, _ in outcomes)
    # Either the second was refused (2), or it came after the first had finished and found
    # nothing left to do (0); never two runs applying the same records.
    assert codes in ([0, 0], [0, 2]), outcomes
    assert _rows(items) == (records, records)
    state = _job(db_url, "together")
    assert (state.status, state.processed, state.position) == ("success", records, records)
    applied = [r for code, r in outcomes if code == 0 and r["items_processed"]]
    assert len(applied) == 1 and applied[0]["items_processed"] == records


def _kill_lock_connection(url: str, job: str) -> None:
    """End the server session holding ``job``'s lock, as a network cut or restart would."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    dialect = bl.Pipeline(engine, writes=[bl.Insert("items")]).dialect
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                place = conn.exec_driver_sql("SELECT current_schema()").scalar()
                key = dialect._lock_id(f"batchline-job:{place}:batchline_:{job}")  # type: ignore[attr-defined]
                pid = conn.exec_driver_sql(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (key,),
                ).scalar()
                assert pid is not None
                conn.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
            else:
                place = conn.exec_driver_sql("SELECT DATABASE()").scalar()
                name = dialect._lock_name(f"batchline-job:{place}:batchline_:{job}")  # type: ignore[attr-defined]
                owner = conn.exec_driver_sql("SELECT IS_USED_LOCK(%s)", (name,)).scalar()
                assert owner is not None
                conn.exec_driver_sql(f"KILL {int(owner)}")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_runner_whose_connection_dropped_stops_when_another_took_the_job(
    backend: str, request: pytest.FixtureRequest, held: Any
) -> None:
    url = str(request.getfixturevalue(f"{backend}_url"))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    request.addfinalizer(engine.dispose)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id BIGINT NOT NULL, v VARCHAR(20))")
    first = _hold(url, "cut", held)
    _kill_lock_connection(url, "cut")
    # The job is free now: a second runner takes it and finishes it.
    code, result = _finish(_start(url, "cut", "--records", "200"))
    assert (code, result["status"]) == (0, "success")
    held[0].touch()
    code, stopped = _finish(first)
    # The first runner reconnects, finds the checkpoint moved under it, and stops.
    assert code == 2 and "took it over" in stopped["refused"], stopped
    assert _rows(engine) == (200, 200)
    state = _job(url, "cut")
    assert (state.status, state.processed, state.position) == ("success", 200, 200)


def test_a_second_dead_letter_replay_is_refused_while_one_runs(
    db_url: str, items: sa.Engine
) -> None:
    """Two replays would both apply the same letters: one runs at a time per database."""
    from batchline._database import Session
    from batchline._job_lock import JobLock

    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("items")])
    with pipeline:
        pipeline.run([{"id": None, "v": "x"}], job="with-a-letter")  # NOT NULL: a letter
    with bl.DeadLetters(db_url) as letters:
        assert len(letters.list(job="with-a-letter")) == 1
        held = JobLock(letters.engine, letters.dialect, letters.tables, "replay", kind="replay")
        session = Session(letters.engine, letters.dialect)
        try:
            if held.by_connection:
                session.on_connect = lambda s: held.on_connect(s, s.commit)
                session.begin()
                session.commit()
            else:
                held.take_file()
            replayer = bl.Pipeline(db_url, writes=[bl.Insert("items")])
            with pytest.raises(bl.JobLocked, match="replayed by another runner"):
                letters.replay(replayer, job="with-a-letter")
        finally:
            if held.by_connection:
                held.release(session, session.commit)
            else:
                held.release(None)
            session.close()
        # once the other replay is over, this one runs
        letters.replay(bl.Pipeline(db_url, writes=[bl.Insert("items")]), job="with-a-letter")
