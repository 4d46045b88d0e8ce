"""``batchline bench`` end to end at tiny sizes: every strategy runs, and the harness checks
that each left exactly the expected database state. No timing assertions: figures vary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from batchline._bench import BenchOptions, bench_command, run_bench, verify_state
from batchline._bench._report import peer_summary
from batchline._bench._strategies import STRATEGIES, batchline_default, hand_written
from batchline._bench._workload import TX_COLUMNS, BenchTables, Workload, make_workload

ALL = [s.name for s in STRATEGIES]
TINY = {"lines": 100, "repeats": 2, "sample": 20, "products": 60, "chunk_size": 25}


def _check_all_verified(report: dict, runs: int = 1) -> None:
    assert report["ok"] is True
    assert len(report["runs"]) == runs
    for run in report["runs"]:
        assert [r["name"] for r in run["strategies"]] == ALL
        for row in run["strategies"]:
            assert row["error"] is None, row
            assert row["verified"] is True
            # the state was checked after every timed repeat, not once
            assert row["verifications"] == len(row["seconds"]) == 2
            assert row["records_per_second"] > 0
            assert row["peak_memory_bytes"] is not None


def test_every_strategy_leaves_the_expected_state_on_sqlite(sqlite_url: str) -> None:
    report = run_bench(BenchOptions(db=sqlite_url, **TINY))  # type: ignore[arg-type]
    _check_all_verified(report)
    rows = {r["name"]: r for r in report["runs"][0]["strategies"]}
    assert rows["sequential"]["records"] == 20 and rows["sequential"]["sampled"]
    assert rows["seed-batch"]["records"] == 40
    assert rows["batchline"]["records"] == 100
    assert rows["floor"]["vs_floor"] == pytest.approx(1.0)
    assert rows["hand-written"]["vs_hand_written"] == pytest.approx(1.0)
    assert rows["batchline"]["vs_hand_written"] > 0
    assert any("first 20 lines" in n for n in report["notes"])
    summary = peer_summary(report["runs"][0])
    assert [line.split(":")[0] for line in summary] == [
        "batchline",
        "batchline-tuned",
        "batchline-values",
    ]
    assert all("x hand-written, " in line and line.endswith("x floor") for line in summary)


def _state(engine: sa.Engine, work: Workload) -> tuple[list[Any], list[Any], list[Any]]:
    """Everything a strategy can write: catalog, transactions and inventory, sorted."""
    t = work.tables
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            sorted(tuple(row) for row in conn.execute(sa.select(table)))
            for table in (t.catalog, t.transactions, t.inventory)
        )


def test_hand_written_leaves_the_state_batchline_leaves_on_sqlite(sqlite_url: str) -> None:
    tables = BenchTables.build("bench_")
    work, catalog = make_workload(tables, 120, n_products=40, chunk_size=25)
    work = dataclasses.replace(work, tuned_chunk_size=50)  # three chunks: the cache carries over
    engine = sa.create_engine(sqlite_url)
    tables.create(engine, catalog)
    batchline_default(engine, work)
    verify_state(engine, work)
    by_batchline = _state(engine, work)
    tables.reset(engine)
    hand_written(engine, work)
    verify_state(engine, work)
    assert _state(engine, work) == by_batchline
    engine.dispose()


def test_hand_written_creates_a_missing_catalog_row_once(db_url: str) -> None:
    tables = BenchTables.build("bench_")
    work, catalog = make_workload(tables, 90, n_products=30)
    work = dataclasses.replace(work, tuned_chunk_size=40)
    sku = work.lines[0]["sku"]
    engine = sa.create_engine(db_url)
    tables.create(engine, [p for p in catalog if p.sku != sku])
    hand_written(engine, work)
    cat, tx = tables.catalog, tables.transactions
    with engine.connect() as conn:
        created = conn.execute(sa.select(cat.c.id, cat.c.name).where(cat.c.sku == sku)).all()
        assert [name for _, name in created] == [work.lines[0]["description"]]
        new_id = created[0][0]
        assert conn.execute(sa.select(sa.func.count()).select_from(tx)).scalar() == 90
        referring = conn.execute(sa.select(sa.func.count()).where(tx.c.item_id == new_id))
        assert referring.scalar() == sum(line["sku"] == sku for line in work.lines)
    engine.dispose()


def test_bench_drops_its_tables_when_done(sqlite_url: str) -> None:
    run_bench(BenchOptions(db=sqlite_url, strategies=("batchline",), **TINY))  # type: ignore[arg-type]
    names = sa.inspect(sa.create_engine(sqlite_url)).get_table_names()
    assert not [n for n in names if n.startswith("bench_")]


@pytest.mark.postgres
def test_every_strategy_leaves_the_expected_state_on_postgres(postgres_url: str) -> None:
    report = run_bench(BenchOptions(db=postgres_url, **TINY))  # type: ignore[arg-type]
    _check_all_verified(report)
    assert report["machine"]["database"] == "postgresql"
    assert report["runs"][0]["rtt_ms"] > 0


@pytest.mark.mysql
def test_every_strategy_leaves_the_expected_state_on_mariadb(mysql_url: str) -> None:
    import importlib.util

    if importlib.util.find_spec("batchline._dialects._mysql") is None:
        pytest.skip("the MySQL/MariaDB dialect is not built yet (issue 5)")
    opts = {**TINY, "repeats": 1, "memory": False}
    report = run_bench(BenchOptions(db=mysql_url, **opts))  # type: ignore[arg-type]
    assert report["ok"] is True, report["runs"]
    assert report["machine"]["database"] in ("mysql", "mariadb")


@pytest.mark.postgres
def test_latency_goes_through_the_proxy_and_is_reported(postgres_url: str) -> None:
    opts = BenchOptions(
        db=postgres_url,
        latencies=(0.0, 0.3),
        strategies=("sqlalchemy", "batchline", "floor"),
        memory=False,
        lines=60,
        repeats=1,
        products=30,
    )
    report = run_bench(opts)
    assert report["ok"]
    direct, delayed = report["runs"]
    assert not direct["proxied"] and delayed["proxied"]
    assert delayed["rtt_ms"] > 0 and delayed["latency_ms"] == 0.3
    assert all(r["verified"] for r in delayed["strategies"])


def test_verification_catches_a_wrong_state(sqlite_url: str) -> None:
    tables = BenchTables.build("bench_")
    work, catalog = make_workload(tables, 30, n_products=20)
    engine = sa.create_engine(sqlite_url)
    tables.create(engine, catalog)
    STRATEGIES[-1].run(engine, work)  # the floor loads it right
    assert verify_state(engine, work) == {
        "transactions": 30,
        "inventory_items": len(work.totals),
    }
    with engine.begin() as conn:
        conn.execute(sa.update(tables.inventory).values(quantity=tables.inventory.c.quantity + 1))
    with pytest.raises(AssertionError, match="bench_inventory"):
        verify_state(engine, work)
    engine.dispose()


def test_cli_writes_json_with_the_expected_keys(sqlite_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--db", sqlite_url, "--lines", "50", "--repeats", "1", "--sample", "20"]
    args += ["--strategies", "sequential,batchline,floor", "--json", str(out), "--quiet"]
    args += ["--latency-ms", "1", "--markdown", str(tmp_path / "bench.md")]
    result = CliRunner().invoke(bench_command, args)
    assert result.exit_code == 0, result.output
    assert "| batchline |" in (tmp_path / "bench.md").read_text()
    assert "batchline" in result.output and "x floor" in result.output
    report = json.loads(out.read_text())
    assert {"command", "date", "machine", "options", "notes", "runs", "ok"} <= report.keys()
    assert {"cpu_count", "python", "server_version", "database"} <= report["machine"].keys()
    assert any("latency is ignored" in n for n in report["notes"])
    row = report["runs"][0]["strategies"][1]
    expected = {"name", "records", "records_per_second", "vs_sequential", "vs_floor"}
    expected |= {"vs_hand_written"}
    assert expected | {"peak_memory_bytes", "verified", "seconds"} <= row.keys()


def test_cli_rejects_an_unknown_strategy() -> None:
    result = CliRunner().invoke(bench_command, ["--strategies", "magic"])
    assert result.exit_code == 2
    assert "no strategy 'magic'" in result.output


@pytest.mark.postgres
def test_cli_reports_a_database_refusal_in_one_line(postgres_url: str) -> None:
    # A search_path naming no schema: PostgreSQL refuses to create the bench tables.
    url = sa.make_url(postgres_url).set(query={"options": "-csearch_path=no_such_schema"})
    args = ["--db", url.render_as_string(hide_password=False), "--lines", "10", "-q"]
    result = CliRunner().invoke(bench_command, [*args, "--repeats", "1", "--no-memory"])
    assert result.exit_code == 1
    assert "no schema has been selected" in result.output
    assert "Traceback" not in result.output


def test_cli_plot_draws_a_png(sqlite_url: str, tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    args = ["--db", sqlite_url, "--lines", "30", "--repeats", "1", "--no-memory", "-q"]
    args += ["--strategies", "batchline,floor", "--plot", str(png)]
    result = CliRunner().invoke(bench_command, args)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_strategy_that_leaves_a_wrong_state_is_reported_and_the_rest_still_run(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchline._bench import _harness
    from batchline._bench._strategies import Strategy, floor, strategy_named

    def half_then_crash(engine: sa.Engine, work: Any) -> None:
        """Loads a few lines, then fails with its transaction open."""
        conn = engine.connect()
        tx = work.tables.transactions
        conn.execute(sa.insert(tx), [dict(zip(TX_COLUMNS, r)) for r in work.mapped[:10]])
        raise RuntimeError("crashed mid-load")

    def forgets_inventory(engine: sa.Engine, work: Any) -> None:
        """Loads the transactions only."""
        with engine.begin() as conn:
            conn.execute(
                sa.insert(work.tables.transactions),
                [dict(zip(TX_COLUMNS, r)) for r in work.mapped],
            )

    broken = {
        "crash": Strategy("crash", half_then_crash),
        "partial": Strategy("partial", forgets_inventory),
        "floor": Strategy("floor", floor),
    }
    monkeypatch.setattr(_harness, "strategy_named", lambda n: broken.get(n) or strategy_named(n))
    opts = BenchOptions(
        db=sqlite_url, strategies=("crash", "partial", "floor"), memory=False, lines=40,
        repeats=2, products=20,
    )  # fmt: skip
    report = run_bench(opts)
    assert report["ok"] is False
    rows = {r["name"]: r for r in report["runs"][0]["strategies"]}
    assert "crashed mid-load" in rows["crash"]["error"] and not rows["crash"]["verified"]
    assert "bench_inventory" in rows["partial"]["error"] and not rows["partial"]["verified"]
    # the crash left a connection in a transaction; the harness closed it, so the floor ran
    assert rows["floor"]["verified"] and rows["floor"]["verifications"] == 2


def test_a_strategy_whose_optional_dependency_is_missing_is_skipped_not_failed(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchline._bench import _harness
    from batchline._bench._strategies import Strategy, strategy_named

    def needs_missing(engine: sa.Engine, work: Any) -> None:
        """Never runs."""
        raise AssertionError("a skipped strategy ran")

    extra = Strategy("exotic", needs_missing, imports=("batchline_no_such_module",))
    monkeypatch.setattr(
        _harness, "strategy_named", lambda n: extra if n == "exotic" else strategy_named(n)
    )
    opts = BenchOptions(db=sqlite_url, strategies=("exotic", "floor"), memory=False, lines=20,
                        repeats=1, products=10)  # fmt: skip
    report = run_bench(opts)
    assert report["ok"] is True
    exotic, floor_row = report["runs"][0]["strategies"]
    assert "batchline_no_such_module is not installed" in exotic["skipped"]
    assert exotic["seconds"] == [] and floor_row["verified"]
