"""Client CPU instructions per record, batchline against the hand-written loader, under
``valgrind --tool=callgrind``.

Why this exists: wall-clock ratios on 2 shared cores move ±15% with whatever else runs.
Callgrind counts the instructions the process executes (Ir), which do not depend on the rest
of the machine, so a change to the engine can be judged by a count, not by luck (issue 12).

How a figure is made: each strategy loads the bench workload (``batchline._bench``) twice in
fresh processes under callgrind, once ``--records`` N and once 2N. Both processes do the same
setup (imports, the catalog, the 2N lines generated, the tables created) and only the load
differs, so ``(Ir(2N) - Ir(N)) / N`` is what N more records cost: start-up, imports and each
strategy's first-chunk costs cancel out, while the chunks after the first count (batchline
with ``--chunk-size`` 500, pinned because by time callgrind's slowdown would size its chunks:
4 chunks of 500 against 8; the hand-written loader, 5,000 rows a chunk, loads both
sizes in one chunk, so its per-chunk cost, a few statements per 5,000 rows, is left out).

The interpreter is the real binary (the realpath of ``sys.executable``, never a pyenv shim,
which callgrind would count instead of Python), with ``PYTHONHASHSEED=0`` and the parent's
``sys.path``; a native warm-up run first writes every ``.pyc``, so no measured run compiles.
Each run starts from an empty database, and its state is checked (``verify_state``) by this
process after it, outside the count. ``--repeats 2`` (the default) runs everything twice, to
show the totals repeat.

On SQLite the count includes SQLite's own work (it runs in the process); on PostgreSQL or
MariaDB it is the client's only (the server is another process). No latency proxy: it would
run in the measured process. On a shared server, give the run a schema of its own (as for
``batchline bench``): the tables are ``ir_catalog``... unless ``--prefix`` says otherwise.

    python bench/instructions.py                        # SQLite file in /tmp, 2,000 and 4,000
    python bench/instructions.py --db postgresql://postgres@127.0.0.1/test
    python bench/instructions.py --strategies batchline,batchline-tuned,hand-written,floor
    python bench/instructions.py --strategies batchline,batchline-values,hand-written
    python bench/instructions.py --strategies mapping-only,mapping-only-values,hand-written,floor
    python bench/instructions.py --keep-out /tmp/ir     # callgrind files, for callgrind_annotate
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from batchline._bench._batchline_strategies import invoice_map, load_with_batchline
from batchline._bench._harness import verify_state
from batchline._bench._strategies import strategy_named
from batchline._bench._workload import BenchTables, make_workload
from batchline._database import make_engine, redact_url

PEER = "hand-written"
#: Not loaders: the bench's mapping function alone, called on every line with an ``Out``
#: whose methods do nothing (no chunk, no database). What calling a per-record mapping
#: costs at the least: the catalog reference, the rows built, two method calls.
MAPPING_ONLY = {"mapping-only": False, "mapping-only-values": True}


class _NoOut:
    """An ``Out`` that takes the mapping's rows and keeps nothing."""

    def insert(self, table: str, row: Any, *, columns: Any = None) -> None:
        pass

    def increment(self, table: str, row: Any, *, columns: Any = None) -> None:
        pass


def real_python() -> str:
    """The interpreter binary itself: the realpath of ``sys.executable`` (a venv's ``python``
    is a symlink to it), or ``sys._base_executable``'s; never a shell-script shim."""
    for candidate in (sys.executable, getattr(sys, "_base_executable", "")):
        if not candidate:
            continue
        path = os.path.realpath(candidate)
        with open(path, "rb") as f:
            if f.read(4) == b"\x7fELF":
                return path
    raise SystemExit(f"no ELF interpreter behind {sys.executable!r}: run this with a real Python")


def child_env() -> dict[str, str]:
    """The parent's environment with a fixed hash seed and the parent's import path (the real
    binary outside the venv would not find the venv's packages otherwise)."""
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path[1:] if p)
    return env


def _workload(prefix: str, records: int, generated: int) -> tuple[Any, Any]:
    tables = BenchTables.build(prefix)
    work, catalog = make_workload(tables, generated)
    return work.head(records), catalog


def child(args: argparse.Namespace) -> None:
    """One measured process: set up exactly as for every size, then load ``records`` lines."""
    engine, _ = make_engine(args.db)
    work, catalog = _workload(args.prefix, args.records, args.generate)
    work.tables.create(engine, catalog)
    if args.strategy in MAPPING_ONLY:
        import batchline as bl

        lookup = bl.Lookup(work.tables.catalog.name, key="sku", returns="id")
        map_fn = invoice_map(work, lookup, values=MAPPING_ONLY[args.strategy])
        out = _NoOut()
        for line in work.lines:
            map_fn(line, out)  # type: ignore[arg-type]
    elif args.strategy in ("batchline", "batchline-values"):
        # pinned: sized by time, chunks would be sized by callgrind's slowdown (~50x)
        load_with_batchline(
            engine, work, args.chunk_size, values=args.strategy == "batchline-values"
        )
    else:
        strategy_named(args.strategy).run(engine, work)
    engine.dispose()


def _run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}")


def callgrind_total(out_file: Path) -> int:
    """The ``totals:`` (or ``summary:``) line of a callgrind output file: instructions (Ir)."""
    summary = None
    for line in out_file.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
        if line.startswith("summary:"):
            summary = int(line.split()[1])
    if summary is None:
        raise SystemExit(f"no totals in {out_file}")
    return summary


def _child_args(args: argparse.Namespace, strategy: str, records: int) -> list[str]:
    """The script and its arguments for a child loading ``records`` of ``2 * args.records``."""
    return [
        __file__, "--child", "--db", args.db, "--prefix", args.prefix, "--strategy", strategy,
        "--records", str(records), "--generate", str(2 * args.records),
        "--chunk-size", str(args.chunk_size),
    ]  # fmt: skip


def measure(
    args: argparse.Namespace,
    python: str,
    env: dict[str, str],
    strategy: str,
    records: int,
    out: Path,
) -> int:
    """Ir of one process loading ``records`` lines with ``strategy``; its state is verified.

    Every run starts from empty (this script's SQLite file deleted, or the tables dropped), so
    no run pays for dropping what the one before it left.
    """
    _empty(args)
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    _run([*valgrind, python, *_child_args(args, strategy, records)], env)
    if strategy not in MAPPING_ONLY:  # (those write nothing)
        engine, _ = make_engine(args.db)
        try:
            work, _ = _workload(args.prefix, records, 2 * args.records)
            verify_state(engine, work)
        finally:
            engine.dispose()
    return callgrind_total(out)


def _empty(args: argparse.Namespace) -> None:
    if args.own_file:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(args.own_file + suffix).unlink(missing_ok=True)
        return
    engine, _ = make_engine(args.db)
    try:
        BenchTables.build(args.prefix).drop(engine)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file in /tmp)")
    parser.add_argument("--records", type=int, default=2_000, help="N: runs load N and 2N")
    parser.add_argument("--strategies", default=f"batchline,{PEER}")
    parser.add_argument("--repeats", type=int, default=2, help="runs of everything (determinism)")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=500,
        help="batchline's chunk size here (pinned: by time, chunks would follow callgrind's "
        "slowdown)",
    )
    parser.add_argument("--keep-out", metavar="DIR", help="keep the callgrind files here")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--prefix",
        default="ir_",
        help="table prefix (fixed by default: a name's hash decides dict probes per record)",
    )
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    for name in names:
        if name not in MAPPING_ONLY:
            strategy_named(name)
    tmp = Path(tempfile.mkdtemp(prefix="batchline-ir-", dir="/tmp"))
    args.own_file = None  # a SQLite file of this script's own, deleted before each run
    if args.db is None:
        args.own_file = str(tmp / "ir.db")
        args.db = f"sqlite:///{args.own_file}"
    out_dir = Path(args.keep_out) if args.keep_out else tmp
    out_dir.mkdir(parents=True, exist_ok=True)
    python, env = real_python(), child_env()
    n = args.records
    totals: dict[tuple[str, int], list[int]] = {}
    start = time.monotonic()
    try:
        for name in names:  # native warm-up: .pyc files written, the child known to work
            _run([python, *_child_args(args, name, n)], env)
        for rep in range(args.repeats):
            for name in names:
                for records in (n, 2 * n):
                    out = out_dir / f"callgrind.{name}.{records}.{rep + 1}"
                    ir = measure(args, python, env, name, records, out)
                    totals.setdefault((name, records), []).append(ir)
                    print(f"  run {rep + 1}: {name} {records:,} records: {ir:,} Ir, verified",
                          file=sys.stderr, flush=True)  # fmt: skip
    finally:
        _empty(args)
        shutil.rmtree(tmp, ignore_errors=True)
    report(args, python, names, totals, time.monotonic() - start)


def report(
    args: argparse.Namespace,
    python: str,
    names: list[str],
    totals: dict[tuple[str, int], list[int]],
    seconds: float,
) -> None:
    n = args.records
    where = "SQLite file in /tmp" if args.own_file else redact_url(args.db)
    print(f"{where}; {n:,} and {2 * n:,} records; {python}, PYTHONHASHSEED=0; {seconds:.0f} s")
    runs = " | ".join(f"Ir run {r + 1}" for r in range(args.repeats))
    print(f"\n| strategy | records | {runs} | repeat |")
    print("|---|---:|" + "---:|" * args.repeats + "---|")
    for name in names:
        for records in (n, 2 * n):
            irs = totals[(name, records)]
            spread = max(irs) - min(irs)
            ppm = spread / min(irs) * 1e6
            same = "identical" if spread == 0 else f"differ by {spread:,} Ir ({ppm:.1f} ppm)"
            same = same if len(irs) > 1 else "—"
            cells = " | ".join(f"{ir:,}" for ir in irs)
            print(f"| {name} | {records:,} | {cells} | {same} |")
    per = {
        name: [(b - a) / n for a, b in zip(totals[(name, n)], totals[(name, 2 * n)])]
        for name in names
    }
    peer = per.get(PEER)
    runs = "run 1, 2..." if args.repeats > 1 else "run 1"
    print(f"\n| strategy | Ir/record ({runs}) | x {PEER} (run 1) |")
    print("|---|---:|---:|")
    for name in names:
        values = ", ".join(f"{v:,.0f}" for v in per[name])
        ratio = f"{per[name][0] / peer[0]:.2f}x" if peer else "—"
        print(f"| {name} | {values} | {ratio} |")
    if args.json:
        doc = {
            "db": where,
            "records": [n, 2 * n],
            "python": python,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "totals": {f"{k[0]}@{k[1]}": v for k, v in totals.items()},
            "ir_per_record": per,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
