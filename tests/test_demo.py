"""``batchline demo``: the invoice use case end to end, checked in the database it leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from batchline._invoices import create_schema, make_catalog, make_lines, seed_catalog
from batchline._invoices._matching import CatalogMatcher
from batchline.cli import cli
from batchline.cli._demo_run import run_sequential


def scalar(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar() or 0)


def check_demo_database(url: str, lines: int) -> None:
    """Every line either landed or is a dead letter, and inventory adds up the transactions."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        transactions = scalar(engine, "SELECT count(*) FROM transactions")
        dead = scalar(engine, "SELECT count(*) FROM batchline_dead_letters WHERE job = 'demo'")
        assert transactions + dead == lines
        assert dead == lines // 1000  # one deliberately bad line in a thousand
        with engine.connect() as conn:
            landed: dict[int, int] = dict(
                conn.exec_driver_sql(
                    "SELECT item_id, sum(quantity) FROM transactions GROUP BY item_id"
                ).all()
            )
            stock: dict[int, int] = dict(
                conn.exec_driver_sql("SELECT item_id, quantity FROM inventory").all()
            )
        assert stock == landed
        # A product created for an unknown SKU is created once, however many lines name it.
        assert scalar(engine, "SELECT count(*) FROM catalog") == scalar(
            engine, "SELECT count(DISTINCT sku) FROM catalog"
        )
        assert scalar(engine, "SELECT count(*) FROM catalog WHERE sku LIKE 'NEW-%'") > 0
    finally:
        engine.dispose()


def test_demo_on_sqlite_loads_every_good_line_and_dead_letters_the_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lines = 3000

    result = CliRunner().invoke(
        cli, ["demo", "--lines", str(lines), "--sequential-sample", "100"], catch_exceptions=False
    )

    assert result.exit_code == 3, result.output  # partial success: the bad lines, on purpose
    assert "one at a time" in result.stdout and "faster" in result.stdout
    check_demo_database(f"sqlite:///{tmp_path / 'batchline-demo.db'}", lines)


def test_demo_json_reports_both_rates_and_recreates_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["demo", "--lines", "2000", "--sequential-sample", "50", "--json"]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    again = CliRunner().invoke(cli, args, catch_exceptions=False)

    assert first.exit_code == again.exit_code == 3
    report = json.loads(again.stdout)
    assert report["result"]["items_processed"] + report["result"]["items_failed"] == 2000
    assert report["sequential"]["lines"] == 50
    assert report["sequential"]["failed"] == 0  # the first bad line is line 1000
    assert report["speedup"] > 0
    assert report["database"] == "sqlite:///batchline-demo.db"
    check_demo_database(f"sqlite:///{tmp_path / 'batchline-demo.db'}", 2000)


@pytest.mark.postgres
def test_demo_on_postgres(postgres_url: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["demo", "--db", postgres_url, "--lines", "2000", "--sequential-sample", "50", "--quiet"],
        catch_exceptions=False,
    )
    assert result.exit_code == 3, result.output
    check_demo_database(postgres_url, 2000)


def test_matcher_trusts_a_sku_whose_product_the_description_resembles() -> None:
    matcher = CatalogMatcher([("SKU-1", "Stainless Steel Hex Bolt M6 x 20mm")])
    assert matcher.match("SKU-1", "SS Hex Blot M6 x 20mm") == (
        "SKU-1",
        "Stainless Steel Hex Bolt M6 x 20mm",
    )


def test_matcher_finds_a_misspelt_description_when_the_sku_is_unknown() -> None:
    matcher = CatalogMatcher(
        [("SKU-1", "Nitrile Gloves Large Box of 100"), ("SKU-2", "Nitrile Gloves Large Box of 200")]
    )
    assert matcher.match("OTHER-9", "Nitrile Glvoes Large Box of 200")[0] == "SKU-2"
    assert matcher.by_description == 1


def test_matcher_learns_new_products_for_later_lines() -> None:
    matcher = CatalogMatcher([("SKU-1", "Copy Paper A4 80gsm White Ream of 500")])
    assert matcher.match("NEW-1", "Wireless Headset Sage Series 5") == (
        "NEW-1",
        "Wireless Headset Sage Series 5",
    )
    # Same product misspelt, its SKU missing: the newcomer is found, not created twice.
    assert matcher.match("", "Wireless Headest Sage Series 5")[0] == "NEW-1"
    # A different model number is a different product.
    assert matcher.match("NEW-2", "Wireless Headset Sage Series 15")[0] == "NEW-2"
    assert matcher.created == 2


def test_matcher_refuses_a_line_with_nothing_to_match() -> None:
    matcher = CatalogMatcher([("SKU-1", "Duct Tape 48mm x 50m Black")])
    with pytest.raises(ValueError, match="no SKU or description"):
        matcher.match("", "")


def test_sequential_way_stops_at_its_time_budget(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url, poolclass=sa.pool.NullPool)
    products = make_catalog(50)
    create_schema(engine)
    seed_catalog(engine, products)
    lines = list(make_lines(products, 500))

    timing = run_sequential(engine, [(p.sku, p.name) for p in products], lines, budget=0.0)

    assert timing.lines == timing.processed == 1  # at least one line, then the budget is spent
    assert scalar(engine, "SELECT count(*) FROM transactions") == 1
    engine.dispose()


def test_after_the_demo_jobs_and_dlq_find_its_database_without_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHLINE_DB", raising=False)

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    demo = run("demo", "--lines", "1000", "--sequential-sample", "0")
    jobs = run("jobs", "--json")
    letters = run("dlq", "list", "--job", "demo", "--json")

    assert demo.exit_code == 3, demo.output
    # The commands the demo suggests are the ones that work here, as printed.
    assert "All of them: batchline dlq list --job demo\n" in demo.stdout
    assert "batchline jobs, batchline dlq list --job demo\n" in demo.stdout
    assert jobs.exit_code == 0, jobs.output
    assert [j["name"] for j in json.loads(jobs.stdout)] == ["demo"]
    assert "reading the demo's database, batchline-demo.db" in jobs.stderr
    assert letters.exit_code == 0
    assert [d["line"] for d in json.loads(letters.stdout)] == [1000]

    # Once there is a batchline.db here (a load without --db), it is the default again.
    (tmp_path / "f.csv").write_text("id\n1\n", encoding="utf-8")
    assert run("load", "f.csv", "--table", "t", "--job", "mine").exit_code == 0
    mine = run("jobs", "--json")
    again = run("demo", "--lines", "1000", "--sequential-sample", "0")

    assert [j["name"] for j in json.loads(mine.stdout)] == ["mine"]
    assert mine.stderr == ""
    assert "batchline jobs --db sqlite:///batchline-demo.db" in again.stdout
