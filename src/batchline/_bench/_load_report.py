"""How ``batchline bench --load`` shows its figures: a table per database, then the targets.

The loaders' table gives what each took (median and spread of the rounds), the rows read back
and the process's peak RSS; the targets' table puts each ratio beside issue 13's bound, and
the title says how busy the machine was (load average before and after), since on a shared
machine that moves every figure.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["render_load"]


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _load(x: list[float] | None) -> str:
    return "?" if not x else f"{x[0]:.2f}"


def title(report: dict[str, Any], db: dict[str, Any]) -> str:
    m, f = report["machine"], report["file"]
    source = "generated" if f["generated"] else f["path"]
    return (
        f"{db['name']} {db['server_version']} ({db['url']}) · {f['rows']:,} rows, "
        f"{f['bytes'] / 1e6:.1f} MB ({source}) · median of {report['rounds']} · "
        f"{m['cpu_count']} CPUs, load average {_load(m['load_average_before'])} → "
        f"{_load(m['load_average_after'])} · {m['date']}"
    )


def loaders_table(report: dict[str, Any], db: dict[str, Any]) -> Table:
    t = Table(title=title(report, db), title_justify="left")
    t.add_column("loader")
    t.add_column("seconds", justify="right")
    t.add_column("min-max", justify="right")
    t.add_column("rows read back", justify="right")
    t.add_column("expected", justify="right")
    t.add_column("peak RSS MiB", justify="right")
    t.add_column("state", justify="center")
    for r in db["loaders"]:
        state = "ok" if r["verified"] else "skipped" if r["skipped"] else "[red]FAILED[/red]"
        rss = r["peak_rss_bytes"]
        t.add_row(
            r["name"] or r["key"],
            _s(r["median_seconds"]),
            f"{_s(r['min_seconds'])}-{_s(r['max_seconds'])}" if r["seconds"] else "—",
            "—" if r["rows"] is None else f"{r['rows']:,}",
            f"{r['rows_expected']:,}",
            "—" if rss is None else f"{rss / 2**20:,.0f}",
            state,
        )
    return t


def targets_table(report: dict[str, Any]) -> Table:
    t = Table(title="issue 13's targets (ratio of the medians)", title_justify="left")
    t.add_column("database")
    t.add_column("measure")
    t.add_column("ratio", justify="right")
    t.add_column("per round", justify="right")
    t.add_column("target", justify="right")
    t.add_column("met", justify="center")
    for db in report["databases"]:
        for r in db["ratios"]:
            met = {True: "yes", False: "[red]no[/red]", None: "—"}[r["met"]]
            ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            rounds = ", ".join(f"{x:.2f}" for x in r["ratio_per_round"])
            t.add_row(db["name"], r["measure"], ratio, rounds or "—", r["target"], met)
    return t


def render_load(report: dict[str, Any], console: Console) -> None:
    """Every database's loaders, the targets, and why anything failed or was skipped."""
    if report.get("command"):
        console.print(f"$ {report['command']}", highlight=False, markup=False)
    console.print(f"CPU: {report['machine']['cpu']}", highlight=False)
    for db in report["databases"]:
        console.print(loaders_table(report, db))
    console.print(targets_table(report))
    console.print(
        "Speed ratios are the other loader's seconds over batchline's (>= 0.5x means at "
        "least half as fast); the bad-rows ratio is the bad file's load over the clean one. "
        "Every load is a fresh process (start-up and imports included); peak RSS is its own. "
        + (
            "batchline's bytecode was compiled beforehand, as an installed package has it."
            if report["machine"].get("bytecode_compiled")
            else "batchline's bytecode could not be compiled: its processes compiled it."
        ),
        highlight=False,
    )
    for db in report["databases"]:
        for r in db["loaders"]:
            what = f"{db['name']}, {r['name'] or r['key']}"
            if r["error"]:
                console.print(f"[red]{escape(what)} failed:[/red] {escape(r['error'])}")
            elif r["skipped"]:
                console.print(f"{what} skipped: {r['skipped']}", markup=False)
