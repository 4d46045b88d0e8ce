"""How bench results are shown: a rich table per latency, the JSON document, a plot.

Ratios are the point (absolute figures move ±10–15% from run to run on a shared machine),
so the table puts "× sequential" and "× floor" next to records/s, and says how the figures
were made: database, round trip, lines, repeats, machine, date.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render", "write_json", "write_plot"]


def _rate(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}×" if x >= 100 else f"{x:,.2f}×" if x < 10 else f"{x:,.1f}×"


def _mib(x: int | None) -> str:
    return "—" if x is None else f"{x / 2**20:,.1f}"


def run_title(report: dict[str, Any], run: dict[str, Any]) -> str:
    m = report["machine"]
    db = f"{m['database']} {m['server_version']}".strip()
    if run["rtt_ms"] is None:
        where = "embedded"
    elif run["proxied"]:
        where = f"+{run['latency_ms']:g} ms each way, SELECT 1 round trip {run['rtt_ms']:.2f} ms"
    else:
        where = f"no proxy, SELECT 1 round trip {run['rtt_ms']:.2f} ms"
    opts = report["options"]
    return (
        f"{db} ({where}) · {opts['lines']:,} lines · median of {opts['repeats']} · "
        f"{m['cpu_count']} CPUs, Python {m['python']} · {m['date']}"
    )


def table(report: dict[str, Any], run: dict[str, Any]) -> Table:
    """One run (one latency) as a rich table."""
    t = Table(title=run_title(report, run), title_justify="left")
    t.add_column("strategy")
    t.add_column("lines", justify="right")
    t.add_column("records/s", justify="right")
    t.add_column("min–max", justify="right")
    t.add_column("× sequential", justify="right")
    t.add_column("× floor", justify="right")
    t.add_column("peak MiB", justify="right")
    t.add_column("state", justify="center")
    for r in run["strategies"]:
        spread = f"{_rate(r['records_per_second_min'])}–{_rate(r['records_per_second_max'])}"
        state = "ok" if r["verified"] else "[red]FAILED[/red]"
        lines = f"{r['records']:,}" + ("*" if r["sampled"] else "")
        t.add_row(
            r["name"],
            lines,
            _rate(r["records_per_second"]),
            spread if r["seconds"] else "—",
            _ratio(r.get("vs_sequential")),
            _ratio(r.get("vs_floor")),
            _mib(r["peak_memory_bytes"]),
            state,
        )
    return t


def render(report: dict[str, Any], console: Console) -> None:
    """Print every run's table, then the notes and any failures."""
    if report.get("command"):
        console.print(f"$ {report['command']}")
    console.print(f"database: {report['db']}; CPU: {report['machine']['cpu']}")
    for run in report["runs"]:
        console.print(table(report, run))
    for note in report["notes"]:
        console.print(f"* {note}" if "first" in note else f"note: {note}")
    console.print("peak MiB: Python heap peak during one untimed run (tracemalloc).")
    for run in report["runs"]:
        for r in run["strategies"]:
            if r["error"]:
                console.print(f"[red]{r['name']} failed:[/red] {r['error']}", markup=True)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, default=str) + "\n")


def write_plot(report: dict[str, Any], path: str | Path) -> None:
    """records/s (log scale) against the measured round trip, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: Sequence[dict[str, Any]] = report["runs"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = [r["name"] for r in runs[0]["strategies"]]
    xs = [run["rtt_ms"] if run["rtt_ms"] is not None else 0.0 for run in runs]
    for name in names:
        ys = []
        for run in runs:
            row = next(r for r in run["strategies"] if r["name"] == name)
            ys.append(row["records_per_second"] or float("nan"))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("SELECT 1 round trip (ms)")
    ax.set_ylabel("records/s (median)")
    m = report["machine"]
    ax.set_title(f"batchline bench: {m['database']} {m['server_version']}, {m['date'][:10]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
