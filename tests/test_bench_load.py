"""``batchline bench --load`` end to end on small files: every loader's rows are read back
and equal the file's, every target of the database gets a ratio, passwords stay masked, and
a missing client or a failed load is reported while the rest still run. No timing
assertions: figures vary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from batchline._bench import bench_command
from batchline._bench._lineitem import COLUMNS, check_file, generate, spoil
from batchline._bench._load_bench import TARGETS, compile_bytecode
from batchline._bench._process import run_timed

ROWS = 2_000
NATIVE = {"sqlite": "sqlite3", "postgresql": "psql", "mysql": "mysql"}


def _bench(tmp_path: Path, *args: str) -> tuple[int, str, dict[str, Any] | None]:
    out = tmp_path / "load.json"
    result = CliRunner().invoke(bench_command, ["--load", *args, "--json", str(out), "-q"])
    report = json.loads(out.read_text()) if out.exists() else None
    return result.exit_code, result.output, report


def _check_every_loader_and_target(report: dict[str, Any], backend: str) -> None:
    """Every loader ran once and left the file's rows (the bad file's good ones), or was
    skipped for want of its client; every target of ``backend`` has its ratio."""
    (db,) = report["databases"]
    assert db["database"] == backend
    bad = report["file"]["bad_percent"] > 0
    good = ROWS - report["file"]["bad_rows"]
    assert 0 < report["file"]["bad_rows"] < ROWS // 20 if bad else good == ROWS  # about 1%
    rows = {r["key"]: r for r in db["loaders"]}
    assert list(rows) == ["native", "pandas", "batchline"] + (["batchline-bad"] if bad else [])
    native_here = shutil.which(NATIVE[backend]) or (backend == "mysql" and shutil.which("mariadb"))
    for key, row in rows.items():
        if key == "native" and not native_here:
            assert "not on PATH" in row["skipped"]
            continue
        assert row["error"] is None, row
        assert row["verified"] is True
        assert row["rows"] == row["rows_expected"] == (good if key == "batchline-bad" else ROWS)
        assert len(row["seconds"]) == 1 and row["median_seconds"] > 0
        assert row["peak_rss_bytes"] > 0
    # batchline's own peak RSS, not the bench's: a Python process with pyarrow loaded
    assert rows["batchline"]["peak_rss_bytes"] > 30 * 2**20
    wanted = [t.measure for t in TARGETS if t.backend == backend or (bad and t.backend == "*")]
    assert [r["measure"] for r in db["ratios"]] == wanted
    for ratio in db["ratios"]:
        if ratio["over"] == "native" and not native_here:
            assert ratio["ratio"] is None and ratio["met"] is None
            continue
        assert ratio["ratio"] > 0 and len(ratio["ratio_per_round"]) == 1
        bounded = ratio["target"] != "—"
        assert isinstance(ratio["met"], bool) if bounded else ratio["met"] is None
    assert report["ok"] is True


def test_load_bench_on_sqlite_reads_every_loaders_rows_back_and_rates_each_target(
    tmp_path: Path,
) -> None:
    code, output, report = _bench(tmp_path, "--lines", str(ROWS), "--repeats", "1", "--bad", "1")
    assert code == 0, output
    assert report is not None
    _check_every_loader_and_target(report, "sqlite")
    assert report["file"]["generated"] is True and report["rounds"] == 1
    assert report["databases"][0]["url"] == "temporary SQLite file"
    assert len(report["machine"]["load_average_before"]) == 3
    assert report["machine"]["bytecode_compiled"] is True
    assert "batchline load vs pandas to_sql" in output and ">= 1.5x" in output
    assert "bytecode was compiled beforehand" in output


def test_compiled_bytecode_is_what_a_process_that_writes_none_then_loads() -> None:
    """With ``PYTHONDONTWRITEBYTECODE`` set, a batchline process reads its modules from the
    bytecode ``compile_bytecode`` wrote instead of compiling them from source."""
    assert compile_bytecode() is True
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    done = subprocess.run(
        [sys.executable, "-v", "-c", "import batchline._load"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    loaded = [
        line for line in done.stderr.splitlines() if "batchline" in line and "code object" in line
    ]
    assert loaded and all(".pyc" in line for line in loaded), loaded[:3]


@pytest.mark.postgres
def test_load_bench_on_postgres_never_shows_the_password(postgres_url: str, tmp_path: Path) -> None:
    url = sa.make_url(postgres_url)
    if not url.password:
        url = url.set(password="s3cret-pw")  # the test server trusts 127.0.0.1: not checked
    db = url.render_as_string(hide_password=False)
    code, output, report = _bench(tmp_path, "--db", db, "--lines", str(ROWS), "--repeats", "1")
    assert code == 0, output
    assert report is not None
    _check_every_loader_and_target(report, "postgresql")
    assert str(url.password) not in output + json.dumps(report)
    assert "***" in report["command"] and "***" in report["databases"][0]["url"]


@pytest.mark.mysql
def test_load_bench_on_mysql_reads_every_loaders_rows_back(mysql_url: str, tmp_path: Path) -> None:
    code, output, report = _bench(
        tmp_path, "--db", mysql_url, "--lines", str(ROWS), "--repeats", "1"
    )
    assert code == 0, output
    assert report is not None
    _check_every_loader_and_target(report, "mysql")


def test_a_missing_client_is_skipped_and_a_failed_load_reported_while_the_rest_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, given = tmp_path / "clean.csv", tmp_path / "given.csv"
    generate(clean, 200)
    lines = clean.read_text().splitlines(keepends=True)
    lines[100] = lines[100].replace(",", ",oops", 1)  # l_partkey: not a number
    given.write_text("".join(lines))
    monkeypatch.setenv("PATH", str(tmp_path))  # no sqlite3 shell; the loaders use sys.executable
    code, output, report = _bench(tmp_path, "--file", str(given), "--repeats", "1")
    assert code == 1, output
    assert report is not None and report["ok"] is False
    assert report["file"] == {
        "generated": False, "path": str(given), "rows": 200, "bytes": given.stat().st_size,
        "bad_percent": 0.0, "bad_rows": 0,
    }  # fmt: skip
    rows = {r["key"]: r for r in report["databases"][0]["loaders"]}
    assert rows["native"]["skipped"] == "sqlite3 is not on PATH"
    assert rows["pandas"]["verified"] and rows["pandas"]["rows"] == 200  # the rest still ran
    assert rows["batchline"]["error"].startswith("exit 3")  # one row dead-lettered
    assert "batchline load failed: exit 3" in output and "skipped: sqlite3 is not on PATH" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--load", "--strategies", "batchline"], "--strategies does not apply to --load"),
        (["--load", "--no-memory"], "--memory/--no-memory does not apply to --load"),
        (["--load", "--db", "sqlite:////no/such/dir/x.db"], "no scratch directory in /no/such"),
        (["--bad", "1"], "--bad needs --load"),
        (["--db", "sqlite:///a.db", "--db", "sqlite:///b.db"], "several only with --load"),
        (["--load", "--file", "{csv}", "--lines", "5"], "the rows are the file's"),
        (["--load", "--file", "{csv}"], "not a lineitem CSV"),
    ],
)
def test_the_cli_refuses_options_that_do_not_fit(
    args: list[str], message: str, tmp_path: Path
) -> None:
    csv = tmp_path / "other.csv"
    csv.write_text("id,name\n1,a\n")
    args = [a.replace("{csv}", str(csv)) for a in args]
    result = CliRunner().invoke(bench_command, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_generated_file_is_the_same_for_the_same_rows_and_spoil_counts_its_bad_rows(
    tmp_path: Path,
) -> None:
    a, b, bad = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "bad.csv"
    generate(a, 3_000)
    generate(b, 3_000)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text().split("\n", 1)[0] == ",".join(COLUMNS)
    assert check_file(a) == 3_000
    spoiled = spoil(a, bad, 1)
    quantities = [line.split(",")[4] for line in bad.read_text().splitlines()[1:]]
    assert spoiled == sum(q.startswith("x") for q in quantities) > 0
    assert all(q.startswith("x") or q.endswith(".00") for q in quantities)


def test_peak_rss_is_the_childs_own_not_the_inherited_high_water_mark(tmp_path: Path) -> None:
    log = tmp_path / "err.txt"
    ballast = bytearray(100 * 2**20)  # this process's peak: what a child inherits as its own
    big = run_timed([sys.executable, "-c", "b = bytearray(300 * 2**20)"], {}, None, log)
    small = run_timed([sys.executable, "-c", "import time; time.sleep(0.3)"], {}, None, log)
    assert big.code == small.code == 0
    assert big.peak_rss is not None and big.peak_rss > 300 * 2**20
    assert small.peak_rss is not None and small.peak_rss < 40 * 2**20 < len(ballast)
