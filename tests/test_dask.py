"""Partitioned loads on a Dask LocalCluster (2 worker processes) against PostgreSQL.

One cluster serves the whole module (starting it is the slow part). Map functions live at
module level: workers unpickle them by reference, importing this module by name (the spawned
worker processes inherit the test run's ``sys.path``).
"""

from __future__ import annotations

import csv
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from batchline._dask._committed import as_committed
from batchline._dask._worker import records_of, run_records
from batchline.dask import DistributedResult, load_files, run_partitions

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.postgres]

FILES = 4
ROWS = 400  # per file
KEYS = 5  # hot keys every record increments
WAIT = 120  # seconds: a hung cluster fails the test instead of blocking the run


# -- map functions (module level, so workers can import them) --------------------------------------


def _emit(record: dict[str, Any], out: bl.Out, prefix: str) -> None:
    rid, qty = int(record["id"]), int(record["qty"])
    out.insert(f"{prefix}lines", {"id": rid, "sku": record["sku"], "qty": qty})
    out.increment(f"{prefix}totals", {"sku": record["sku"], "qty": qty, "n": 1})


class LinesAndTotals:
    """Insert each line and add its quantity to its SKU's running total."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, record: dict[str, Any], out: bl.Out) -> None:
        _emit(record, out, self.prefix)


class KillWorkerOnce:
    """Like LinesAndTotals, but SIGKILLs its own worker process at one record, once.

    The marker file tells the first attempt (it creates the marker, then dies) from the
    retry (it finds the marker and goes on).
    """

    def __init__(self, marker: str, at_id: int, prefix: str = "") -> None:
        self.marker = marker
        self.at_id = at_id
        self.prefix = prefix

    def __call__(self, record: dict[str, Any], out: bl.Out) -> None:
        if int(record["id"]) == self.at_id and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        _emit(record, out, self.prefix)


def slow_insert(record: dict[str, Any], out: bl.Out) -> None:
    time.sleep(0.002)
    out.insert("slow", record)


def slower_insert(record: dict[str, Any], out: bl.Out) -> None:
    time.sleep(0.05)
    out.insert("slow", record)


def hot_increments(record: dict[str, Any], out: bl.Out) -> None:
    """Every record adds to every hot key, in an order that differs from record to record."""
    n = int(record["n"])
    for k in sorted(range(KEYS), key=lambda k: (k * 7 + n) % KEYS):
        out.increment("hot", {"k": k, "total": n + k, "hits": 1})


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            # ":0": a free port for the scheduler's HTTP server (8787 may be taken: a warning)
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def client(cluster_client: Any) -> Any:
    """The shared client, with both workers up (a test may have killed one)."""
    cluster_client.wait_for_workers(2, timeout=60)
    return cluster_client


def _write_files(folder: Path) -> list[Path]:
    """FILES CSV files of ROWS lines each; ids are unique across files."""
    folder.mkdir()
    paths = []
    for f in range(FILES):
        path = folder / f"part-{f}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "sku", "qty"])
            for i in range(ROWS):
                rid = f * 1000 + i
                w.writerow([rid, f"SKU-{rid % 7}", rid % 13 + 1])
        paths.append(path)
    return paths


def _expected(paths: list[Path]) -> tuple[int, int, dict[str, tuple[int, int]]]:
    count = total = 0
    per_sku: dict[str, tuple[int, int]] = {}
    for path in paths:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                qty = int(row["qty"])
                count += 1
                total += qty
                q, n = per_sku.get(row["sku"], (0, 0))
                per_sku[row["sku"]] = (q + qty, n + 1)
    return count, total, per_sku


def _create_tables(engine: sa.Engine, prefix: str = "") -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {prefix}lines (id bigint, sku varchar(20), qty bigint)")
        conn.exec_driver_sql(
            f"CREATE TABLE {prefix}totals (sku varchar(20) PRIMARY KEY, qty bigint, n bigint)"
        )


@pytest.fixture
def pg(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def _rows(engine: sa.Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def _jobs(engine: sa.Engine, base: str) -> list[tuple[Any, ...]]:
    """(name, status, position, processed) of the partition jobs under ``base``."""
    return _rows(
        engine,
        "SELECT name, status, position, processed FROM batchline_jobs "
        "WHERE name LIKE :pattern ORDER BY name",
        pattern=f"{base}/%",
    )


# -- tests ----------------------------------------------------------------------------------------


def test_files_loaded_by_two_workers_equal_a_single_process_load(
    client: Any, postgres_url: str, pg: sa.Engine, tmp_path: Path
) -> None:
    paths = _write_files(tmp_path / "data")
    _create_tables(pg, "d_")
    _create_tables(pg, "s_")
    pipeline = bl.Pipeline(
        postgres_url,
        writes=[bl.Insert("d_lines"), bl.Increment("d_totals", key="sku", columns=["qty", "n"])],
        chunk_size=50,
    )

    result = run_partitions(
        pipeline,
        str(tmp_path / "data" / "*.csv"),
        LinesAndTotals("d_"),
        job="dist",
        client=client,
        timeout=WAIT,
    )

    single = bl.Pipeline(
        postgres_url,
        writes=[bl.Insert("s_lines"), bl.Increment("s_totals", key="sku", columns=["qty", "n"])],
        chunk_size=50,
    )
    with single:
        for i, path in enumerate(paths):
            single.run(bl.read(path), LinesAndTotals("s_"), job=f"single/{i}")
    assert isinstance(result, DistributedResult)
    assert result.status == "success"
    assert result.items_processed == FILES * ROWS
    assert [r.job for r in result.partitions] == [f"dist/{i:05d}" for i in range(FILES)]
    for table in ("lines", "totals"):
        assert _rows(pg, f"SELECT * FROM d_{table} ORDER BY 1") == _rows(
            pg, f"SELECT * FROM s_{table} ORDER BY 1"
        )
    assert len(_rows(pg, "SELECT * FROM d_lines")) == FILES * ROWS
    assert [j[1:] for j in _jobs(pg, "dist")] == [("success", ROWS, ROWS)] * FILES


@pytest.mark.parametrize(
    "backend", ["postgres", pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb")]
)
def test_a_worker_killed_mid_partition_is_retried_and_every_record_lands_once(
    client: Any, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = str(request.getfixturevalue(f"{backend}_url"))
    db = sa.create_engine(url, poolclass=sa.pool.NullPool)
    request.addfinalizer(db.dispose)
    paths = _write_files(tmp_path / "data")
    _create_tables(db, "k_")
    count, total, per_sku = _expected(paths)
    marker = tmp_path / "killed"
    pipeline = bl.Pipeline(
        url,
        writes=[bl.Insert("k_lines"), bl.Increment("k_totals", key="sku", columns=["qty", "n"])],
        chunk_size=50,
    )
    kill_at = 2 * 1000 + 230  # file 2, record 231: a few chunks of it have committed

    result = run_partitions(
        pipeline,
        [str(p) for p in paths],
        KillWorkerOnce(str(marker), kill_at, "k_"),
        job="kill",
        client=client,
        timeout=WAIT,
    )

    assert marker.exists(), "the worker was never killed"
    assert result.status == "success", result.to_dict()
    assert _rows(db, "SELECT count(*), count(DISTINCT id), sum(qty) FROM k_lines") == [
        (count, count, total)
    ]
    totals = {sku: (int(q), int(n)) for sku, q, n in _rows(db, "SELECT * FROM k_totals")}
    assert totals == per_sku
    jobs = _jobs(db, "kill")
    assert [j[1:] for j in jobs] == [("success", ROWS, ROWS)] * FILES
    # The combined Result is what committed, the killed attempt's chunks included (the
    # retry that finished partition 2 resumed after them and did only the rest).
    assert result.items_processed == sum(j[3] for j in jobs) == count
    assert [(p.items_processed, p.records_seen, p.resumed_from) for p in result.partitions] == [
        (ROWS, ROWS, 0)
    ] * FILES
    assert result.to_dict()["chunks_committed"] == FILES * ROWS // 50  # none twice


def test_hot_key_increments_from_all_workers_at_once_total_exactly(
    client: Any, postgres_url: str, pg: sa.Engine
) -> None:
    import dask.bag

    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE hot (k int PRIMARY KEY, total bigint, hits bigint)")
    records = [{"n": n} for n in range(2000)]
    bag = dask.bag.from_sequence(records, npartitions=4)
    pipeline = bl.Pipeline(  # 20 chunks per partition, each adding to every hot key
        postgres_url,
        writes=[bl.Increment("hot", key="k", columns=["total", "hits"])],
        chunk_size=25,
    )

    result = run_partitions(pipeline, bag, hot_increments, job="hot", client=client, timeout=WAIT)

    assert result.status == "success", result.to_dict()
    assert result.items_processed == len(records)
    expected = {k: (sum(r["n"] + k for r in records), len(records)) for k in range(KEYS)}
    got = {k: (int(t), int(h)) for k, t, h in _rows(pg, "SELECT k, total, hits FROM hot")}
    assert got == expected
    # Rows are locked in key order in every chunk, so concurrent chunks wait, never deadlock.
    assert result.to_dict()["retries"] == 0


def test_dataframe_partitions_load_with_missing_values_as_null(
    client: Any, postgres_url: str, pg: sa.Engine
) -> None:
    pd = pytest.importorskip("pandas")
    import dask.dataframe

    frame = pd.DataFrame(
        {"id": range(30), "price": [None if i % 10 == 0 else i * 1.5 for i in range(30)]}
    )
    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE priced (id bigint PRIMARY KEY, price double precision)")
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Upsert("priced", key="id")])

    result = run_partitions(
        pipeline,
        dask.dataframe.from_pandas(frame, npartitions=3),
        job="frame",
        client=client,
        timeout=WAIT,
    )

    assert result.status == "success", result.to_dict()
    assert len(result.partitions) == 3
    rows = _rows(pg, "SELECT id, price FROM priced ORDER BY id")
    assert rows == [(i, None if i % 10 == 0 else i * 1.5) for i in range(30)]


def test_load_files_creates_the_table_and_a_second_run_loads_nothing_twice(
    client: Any, postgres_url: str, pg: sa.Engine, tmp_path: Path
) -> None:
    paths = _write_files(tmp_path / "data")
    count, total, _ = _expected(paths)
    pattern = str(tmp_path / "data" / "*.csv")

    first = load_files(
        pattern, db=postgres_url, table="loaded", client=client, timeout=WAIT, chunk_size=100
    )
    again = load_files(
        pattern, db=postgres_url, table="loaded", client=client, timeout=WAIT, chunk_size=100
    )

    assert first.status == "success", first.to_dict()
    assert first.items_processed == count
    assert again.items_processed == 0  # every partition's job had finished
    assert _rows(pg, "SELECT count(*), count(DISTINCT id), sum(qty) FROM loaded") == [
        (count, count, total)
    ]


def test_load_files_refuses_another_table_for_its_job_and_restart_loads_it_anew(
    client: Any, postgres_url: str, pg: sa.Engine, tmp_path: Path
) -> None:
    paths = _write_files(tmp_path / "data")
    count, _, _ = _expected(paths)
    pattern = str(tmp_path / "data" / "*.csv")
    kw: dict[str, Any] = {"db": postgres_url, "client": client, "timeout": WAIT, "job": "lf"}
    assert load_files(pattern, table="loaded", **kw).items_processed == count

    with pytest.raises(bl.JobSpecMismatch) as refused:
        load_files(pattern, table="other", **kw)
    assert (refused.value.job, refused.value.differences) == ("lf", (("table", "loaded", "other"),))
    assert not sa.inspect(pg).has_table("other")  # refused before the table was made

    over = load_files(pattern, table="other", restart=True, **kw)

    assert over.status == "success", over.to_dict()
    assert over.items_processed == count
    assert _rows(pg, "SELECT count(*), count(DISTINCT id) FROM other") == [(count, count)]
    assert [j[1:] for j in _jobs(pg, "lf")] == [("success", ROWS, ROWS)] * FILES


def test_a_restart_while_another_runner_holds_a_partition_drops_nothing(
    client: Any, postgres_url: str, pg: sa.Engine
) -> None:
    from batchline._database import Session
    from batchline._dialects import dialect_for
    from batchline._job_lock import JobLock
    from batchline._state_tables import StateTables

    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE slow (id bigint)")
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("slow")], chunk_size=5)
    parts = [[{"id": p * 100 + i} for i in range(10)] for p in range(3)]
    assert run_partitions(pipeline, parts, job="held", client=client, timeout=WAIT).status == (
        "success"
    )
    before = _jobs(pg, "held")
    dialect = dialect_for(pg)
    session = Session(pg, dialect)
    other = JobLock(pg, dialect, StateTables(), "held/00001")  # another runner's, mid-run
    other.on_connect(session, session.commit)
    try:
        with pytest.raises(bl.JobLocked, match="held/00001"):
            run_partitions(pipeline, parts, job="held", client=client, timeout=WAIT, restart=True)
        assert _jobs(pg, "held") == before  # not one partition was dropped or run again
    finally:
        other.release(session, session.commit)
        session.close()

    again = run_partitions(pipeline, parts, job="held", client=client, timeout=WAIT, restart=True)

    assert again.items_processed == 30  # every partition from its first record
    assert _rows(pg, "SELECT count(*), count(DISTINCT id) FROM slow") == [(60, 30)]


def test_a_resume_on_changed_files_is_refused_at_the_caller(
    client: Any, postgres_url: str, pg: sa.Engine, tmp_path: Path
) -> None:
    paths = _write_files(tmp_path / "data")
    _create_tables(pg)
    pipeline = bl.Pipeline(
        postgres_url,
        writes=[bl.Insert("lines"), bl.Increment("totals", key="sku", columns=["qty", "n"])],
    )
    run_partitions(
        pipeline, [str(p) for p in paths], LinesAndTotals(""), job="j", client=client, timeout=WAIT
    )
    with paths[1].open("a") as fh:
        fh.write("99999,SKU-0,1\n")

    with pytest.raises(bl.ResumeMismatch) as info:
        run_partitions(
            pipeline,
            [str(p) for p in paths],
            LinesAndTotals(""),
            job="j",
            client=client,
            timeout=WAIT,
        )

    assert info.value.job == "j/00001"
    assert _rows(pg, "SELECT count(*) FROM lines") == [(FILES * ROWS,)]


def test_a_timed_out_run_raises_and_running_it_again_completes_it(
    client: Any, postgres_url: str, pg: sa.Engine
) -> None:
    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE slow (id bigint)")
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("slow")], chunk_size=5)
    parts = [[{"id": p * 100 + i} for i in range(20)] for p in range(2)]  # ~1 s each

    with pytest.raises(TimeoutError, match="running them again resumes"):
        run_partitions(pipeline, parts, slower_insert, job="late", client=client, timeout=0.2)
    again = run_partitions(pipeline, parts, slower_insert, job="late", client=client, timeout=WAIT)

    assert again.status == "success"
    assert _rows(pg, "SELECT count(*), count(DISTINCT id) FROM slow") == [(40, 40)]


def test_a_dataframe_partition_becomes_records_with_none_for_missing_values() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"id": [1, 2], "price": [1.5, None], "sku": ["a", None]})

    assert list(records_of(frame)) == [
        {"id": 1, "price": 1.5, "sku": "a"},
        {"id": 2, "price": None, "sku": None},
    ]


def test_a_second_attempt_of_a_running_partition_waits_and_writes_nothing_twice(
    postgres_url: str, pg: sa.Engine
) -> None:
    # What a worker the scheduler wrongly declared dead would do: the first attempt still
    # runs while Dask starts a second one. The per-job lock makes the second wait, then find
    # the job finished.
    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE slow (id bigint)")
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("slow")], chunk_size=20)
    records = [{"id": i} for i in range(200)]
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run_records, pipeline, records, slow_insert, "dup/00000", None, None)
        deadline = time.monotonic() + 60
        while not _committed(pg, "dup/00000") and not first.done():
            assert time.monotonic() < deadline, "the first attempt never committed a chunk"
            time.sleep(0.01)
        second = pool.submit(run_records, pipeline, records, slow_insert, "dup/00000", None, None)
        one, two = first.result(), second.result()

    assert isinstance(one, bl.Result) and isinstance(two, bl.Result)
    assert one.items_processed == 200
    assert two.items_processed == 0 and two.message is not None  # "already finished"
    assert _rows(pg, "SELECT count(*), count(DISTINCT id) FROM slow") == [(200, 200)]


def _committed(engine: sa.Engine, job: str) -> bool:
    try:
        rows = _rows(engine, "SELECT position FROM batchline_jobs WHERE name = :j", j=job)
    except sa.exc.ProgrammingError:  # the state tables are not there yet
        return False
    return bool(rows) and rows[0][0] > 0


def test_a_pipeline_built_on_an_engine_is_refused_before_anything_is_sent(
    sqlite_url: str,
) -> None:
    engine = sa.create_engine(sqlite_url)
    pipeline = bl.Pipeline(engine, writes=[bl.Insert("t")])
    with pytest.raises(bl.ConfigError, match="Engine"):
        run_partitions(pipeline, [[{"a": 1}]], job="e", scheduler="tcp://127.0.0.1:1")
    engine.dispose()


def test_combined_status_follows_the_partitions() -> None:
    def combined(*parts: tuple[str, str | None]) -> str:
        results = [bl.Result(job=f"j/{i}", status=s, error=e) for i, (s, e) in enumerate(parts)]  # type: ignore[arg-type]
        return DistributedResult(job="j", partitions=results).status

    assert combined(("success", None), ("success", None)) == "success"
    assert combined(("success", None), ("partial_success", None)) == "partial_success"
    assert combined(("success", None), ("failed", None)) == "partial_success"
    assert combined(("failed", None), ("failed", None)) == "failed"
    assert combined(("success", None), ("failed", "stopped: too many failures")) == "failed"


def test_combined_counts_are_the_partitions_sums() -> None:
    a = bl.Result(job="j/0", items_processed=3, items_failed=1, records_seen=4, statements=5)
    b = bl.Result(job="j/1", items_processed=7, duplicates_skipped=2, records_seen=9)
    a.add_failure(bl.FailedItem(2, 3, "map", "ValueError: bad", "ValueError"))
    combined = DistributedResult(job="j", partitions=[a, b], processing_time_seconds=2.0)

    data = combined.to_dict()

    assert data["items_processed"] == 10
    assert data["items_failed"] == 1
    assert data["duplicates_skipped"] == 2
    assert data["statements"] == 5
    assert data["records_per_second"] == 6.5
    assert data["failed_items"] == [
        {
            "job": "j/0",
            "line": 3,
            "position": 2,
            "stage": "map",
            "error": "ValueError: bad",
            "error_class": "ValueError",
        }
    ]
    assert [p["job"] for p in data["partitions"]] == ["j/0", "j/1"]


def test_a_partition_counts_what_its_job_committed_in_this_call() -> None:
    def job(position: int, processed: int, failed: int, chunks: int) -> bl.JobState:
        return bl.JobState(
            "j/00000", "fp", position, processed, failed, 0, chunks, "success", None, "", "", None
        )

    # The retry that finished the partition resumed after 300 records; the killed attempt
    # before it had committed 3 chunks (one dead letter among them); an earlier call, 1 chunk.
    retry = bl.Result(job="j/00000", items_processed=100, records_seen=100, resumed_from=300)
    before, after = job(100, 100, 0, 1), job(400, 399, 1, 4)

    counted = as_committed(retry, before, after)

    assert (counted.items_processed, counted.items_failed, counted.records_seen) == (299, 1, 300)
    assert (counted.resumed_from, counted.chunks_committed) == (100, 3)
    assert counted.status == "partial_success"
    assert counted.failed_items_truncated  # that failure is in the dead letters, not the list
    assert as_committed(retry, None, None) is retry  # no job row: nothing better to say
