"""How bench results are shown: a rich table per latency, the JSON document, a plot.

Ratios are the point (absolute figures move 10-15% from run to run on a shared machine),
so the table puts "x sequential", "x hand-written" and "x floor" next to records/s, says under
it where batchline stands against the hand-written loader and the floor (the measures of
issue 12's targets), and says how the figures were made: database, round trip, lines,
repeats, machine, date.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ._harness import MEMORY_SAMPLE, RATIO_BASES

__all__ = [
    "peer_summary",
    "render",
    "run_title",
    "table",
    "to_markdown",
    "write_json",
    "write_plot",
]


def _rate(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}x"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"


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
    t.add_column("min-max", justify="right")
    t.add_column("x sequential", justify="right")
    t.add_column("x hand-written", justify="right")
    t.add_column("x floor", justify="right")
    t.add_column("peak MiB", justify="right")
    t.add_column("state", justify="center")
    for r in run["strategies"]:
        spread = f"{_rate(r['records_per_second_min'])}-{_rate(r['records_per_second_max'])}"
        state = "ok" if r["verified"] else "skipped" if r["skipped"] else "[red]FAILED[/red]"
        lines = f"{r['records']:,}" + ("*" if r["sampled"] else "")
        t.add_row(
            r["name"],
            lines,
            _rate(r["records_per_second"]),
            spread if r["seconds"] else "—",
            _ratio(r.get("vs_sequential")),
            _ratio(r.get("vs_hand_written")),
            _ratio(r.get("vs_floor")),
            _mib(r["peak_memory_bytes"]),
            state,
        )
    return t


def peer_summary(run: dict[str, Any]) -> list[str]:
    """One line per batchline strategy: its ratio to the hand-written loader and to the floor.

    Empty when the run has neither peer (``--strategies`` left them out) or no batchline.
    """
    rows = {r["name"]: r for r in run["strategies"]}
    present = [
        (key, name)
        for key, name in RATIO_BASES.items()
        if name != "sequential" and rows.get(name, {}).get("records_per_second")
    ]
    lines = []
    for r in run["strategies"]:
        if not r["name"].startswith("batchline") or not present:
            continue
        parts = [f"{_ratio(r.get(key))} {name}" for key, name in present]
        lines.append(f"{r['name']}: " + ", ".join(parts))
    return lines


def render(report: dict[str, Any], console: Console) -> None:
    """Print every run's table, then the notes and any failures."""
    if report.get("command"):
        console.print(f"$ {report['command']}")
    console.print(f"database: {report['db']}; CPU: {report['machine']['cpu']}")
    for run in report["runs"]:
        console.print(table(report, run))
        for line in peer_summary(run):
            console.print(line, highlight=False)
    for note in report["notes"]:
        console.print(f"* {note}" if "first" in note else f"note: {note}")
    if any(r["peak_memory_bytes"] is not None for run in report["runs"] for r in run["strategies"]):
        console.print(
            "peak MiB: Python heap peak during one untimed run (tracemalloc; the * strategies "
            f"on their first {MEMORY_SAMPLE} lines)."
        )
    for run in report["runs"]:
        for r in run["strategies"]:
            if r["error"]:
                console.print(f"[red]{r['name']} failed:[/red] {r['error']}", markup=True)
            elif r["skipped"]:
                console.print(f"{r['name']} skipped: {r['skipped']}", markup=False)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, default=str) + "\n")


def write_plot(report: dict[str, Any], path: str | Path) -> None:
    """records/s (log scale) against the added latency, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: Sequence[dict[str, Any]] = report["runs"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = [r["name"] for r in runs[0]["strategies"]]
    # x is the latency asked for: the measured round trip moves with the machine's load
    xs = [run["latency_ms"] for run in runs]
    for name in names:
        ys = []
        for run in runs:
            row = next(r for r in run["strategies"] if r["name"] == name)
            ys.append(row["records_per_second"] or float("nan"))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [
            f"{x:g}" + (f"\n(RTT {run['rtt_ms']:.2f})" if run["rtt_ms"] is not None else "")
            for x, run in zip(xs, runs)
        ]
    )
    ax.set_xlabel("latency added each way, ms (measured SELECT 1 round trip, ms)")
    ax.set_ylabel("records/s (median)")
    m = report["machine"]
    ax.set_title(f"batchline bench: {m['database']} {m['server_version']}, {m['date'][:10]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (for a README), one per latency, with its command."""
    out = []
    if report.get("command"):
        out.append(f"`{report['command']}`\n")
    m = report["machine"]
    out.append(f"Machine: {m['cpu_count']} x {m['cpu']}, {m['platform']}, Python {m['python']}.\n")
    for run in report["runs"]:
        out.append(f"{run_title(report, run)}\n")
        out.append(
            "| strategy | lines | records/s (median) | min-max | x sequential "
            "| x hand-written | x floor | peak MiB |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in run["strategies"]:
            lines = f"{r['records']:,}" + ("*" if r["sampled"] else "")
            spread = f"{_rate(r['records_per_second_min'])}-{_rate(r['records_per_second_max'])}"
            state = "" if r["verified"] else " (skipped)" if r["skipped"] else " (FAILED)"
            out.append(
                f"| {r['name']}{state} | {lines} | {_rate(r['records_per_second'])} | {spread} | "
                f"{_ratio(r.get('vs_sequential'))} | {_ratio(r.get('vs_hand_written'))} | "
                f"{_ratio(r.get('vs_floor'))} | {_mib(r['peak_memory_bytes'])} |"
            )
        out.append("")
        summary = peer_summary(run)
        if summary:
            out.extend(f"{line}  " for line in summary)
            out.append("")
    out.extend(f"- {note}" for note in report["notes"])
    return "\n".join(out) + "\n"
