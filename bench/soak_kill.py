"""Crash soak: SIGKILL a 20,000-record load at hundreds of random instants, resume each time,
and compare what is left with an uninterrupted run.

The workload, the kill harness and the comparison are those of
``tests/test_durability.py`` (``tests/_kill_worker.py``): the DESIGN.md sample shape (catalog
lookups created on first sight, inserts, increments, an idempotency key) with bad records of
every kind, so the dead letters and the ledger are part of every crash. Each backend gets one
uninterrupted reference run; then chains of ``--per-chain`` kills, each chain on a fresh
database, until ``--kills`` kills have landed. After every chain the final tables, dead
letters, ledger and job row must equal the reference (surrogate ids compared as natural keys).

    python bench/soak_kill.py --kills 200 --db sqlite
    python bench/soak_kill.py --kills 50 --db sqlite,postgres,mysql --json soak.json

Exit status 1 when any chain left anything different from the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._kill_worker import (
    Forker,
    create_schema,
    differences,
    kill_chain,
    run_worker,
    snapshot,
    write_source,
)

from batchline._database import redact_url

SERVERS = {
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/test",
}


@contextlib.contextmanager
def fresh_database(backend: str, server: str | None, workdir: Path) -> Iterator[str]:
    """A new, private database (SQLite file, PostgreSQL schema or MariaDB database)."""
    name = f"soak_{secrets.token_hex(4)}"
    if backend == "sqlite":
        yield f"sqlite:///{workdir / (name + '.db')}"
        return
    admin = sa.make_url(server or SERVERS[backend])
    engine = sa.create_engine(admin, poolclass=sa.pool.NullPool)
    if backend == "postgres":
        create, drop = f'CREATE SCHEMA "{name}"', f'DROP SCHEMA "{name}" CASCADE'
        url = admin.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        create, drop = f"CREATE DATABASE `{name}`", f"DROP DATABASE IF EXISTS `{name}`"
        url = admin.set(database=name)
    with engine.begin() as conn:
        conn.exec_driver_sql(create)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(drop)
        engine.dispose()


def soak(
    backend: str,
    server: str | None,
    *,
    kills: int,
    per_chain: int,
    records: int,
    chunk_size: int,
    seed: int,
    workdir: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    source = workdir / "invoices.jsonl"
    write_source(source, records)
    rng = random.Random(seed)
    phases: Counter[str] = Counter()
    chains: list[dict[str, Any]] = []
    landed = 0
    with Forker() as forker, fresh_database(backend, server, workdir) as reference_url:
        print(f"{backend}: reference run on {redact_url(reference_url)} ...", flush=True)
        create_schema(reference_url)
        reference = run_worker(
            forker, reference_url, "soak", source, workdir, tag="ref", chunk_size=chunk_size
        )
        expected = snapshot(reference_url)
        work = reference.seconds - reference.setup
        print(f"{backend}: reference {reference.seconds:.1f}s", flush=True)
        while landed < kills:
            chain_started = time.perf_counter()
            with fresh_database(backend, server, workdir) as url:
                create_schema(url)
                points, final = kill_chain(
                    forker,
                    url,
                    "soak",
                    source,
                    workdir,
                    kills=min(per_chain, kills - landed),
                    records=records,
                    work=work,
                    rng=rng,
                    chunk_size=chunk_size,
                )
                diff = differences(expected, snapshot(url))
            killed = [p for p in points if p.phase != "finished"]
            landed += len(killed)
            phases.update(p.phase for p in killed)
            chains.append(
                {
                    "kills": len(killed),
                    "phases": dict(Counter(p.phase for p in killed)),
                    "positions": [p.position_after for p in killed],
                    "mismatches": diff,
                    "seconds": round(time.perf_counter() - chain_started, 1),
                    "final_status": final.summary["status"],
                }
            )
            print(
                f"{backend}: chain {len(chains)}: {len(killed)} kills "
                f"{dict(Counter(p.phase for p in killed))}, "
                f"{'OK' if not diff else 'MISMATCH ' + '; '.join(diff)} "
                f"({chains[-1]['seconds']}s; {landed}/{kills} kills)",
                flush=True,
            )
            if not killed:
                raise RuntimeError("no kill landed in a whole chain: the delays are off")
    return {
        "backend": backend,
        "kills": landed,
        "phases": dict(phases),
        "chains": len(chains),
        "mismatching_chains": sum(bool(c["mismatches"]) for c in chains),
        "records": records,
        "chunk_size": chunk_size,
        "reference_seconds": round(reference.seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "details": chains,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="kills per backend (200)")
    parser.add_argument("--db", default="sqlite", help="sqlite,postgres,mysql (comma list)")
    parser.add_argument("--postgres", help=f"PostgreSQL server URL ({SERVERS['postgres']})")
    parser.add_argument("--mysql", help=f"MariaDB/MySQL server URL ({SERVERS['mysql']})")
    parser.add_argument("--per-chain", type=int, default=25, help="kills before a chain ends")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = []
    for backend in [b.strip() for b in args.db.split(",") if b.strip()]:
        if backend not in ("sqlite", "postgres", "mysql"):
            parser.error(f"unknown backend {backend!r}")
        with tempfile.TemporaryDirectory(prefix="batchline-soak-") as tmp:
            results.append(
                soak(
                    backend,
                    getattr(args, backend, None),
                    kills=args.kills,
                    per_chain=args.per_chain,
                    records=args.records,
                    chunk_size=args.chunk_size,
                    seed=args.seed,
                    workdir=Path(tmp),
                )
            )
    print()
    for r in results:
        print(
            f"{r['backend']}: {r['kills']} kills in {r['chains']} chains {r['phases']}; "
            f"mismatching chains: {r['mismatching_chains']}; {r['seconds']}s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if any(r["mismatching_chains"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
