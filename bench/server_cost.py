"""What PostgreSQL itself spends inserting a chunk: the limit no client can go below.

Inserts 20 chunks of 500 rows into a table shaped like the bench's transactions (primary key,
CHECK, foreign key to a 3,000-row catalog), each committed, by an ``unnest`` INSERT, by COPY,
and by the INSERT again without the foreign key, on a direct connection (no proxy). The rows
are built before timing, so the figures are the server's work plus one loopback round trip.

    python bench/server_cost.py --db postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import random
import time

import psycopg

INSERT = (
    "INSERT INTO s_tx SELECT * FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::int[],"
    " %s::numeric[])"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(5)
    with psycopg.connect(args.db) as conn:
        conn.execute("DROP TABLE IF EXISTS s_tx, s_cat")
        conn.execute("CREATE TABLE s_cat (id int PRIMARY KEY, sku text UNIQUE)")
        conn.execute("INSERT INTO s_cat SELECT g, 'SKU-' || g FROM generate_series(1, 3000) g")
        conn.execute(
            "CREATE TABLE s_tx (invoice_id bigint, line_no int, item_id int NOT NULL"
            " REFERENCES s_cat (id), quantity int NOT NULL CHECK (quantity > 0),"
            " unit_cost numeric(12, 2) NOT NULL, PRIMARY KEY (invoice_id, line_no))"
        )
        conn.commit()
        next_id = 0
        print(f"{args.chunks} chunks of {args.rows} rows, each committed")
        for label in ("unnest INSERT", "COPY", "unnest INSERT, no foreign key"):
            if label.endswith("no foreign key"):
                conn.execute("ALTER TABLE s_tx DROP CONSTRAINT s_tx_item_id_fkey")
                conn.commit()
            write = commit = 0.0
            for _ in range(args.chunks):
                rows = []
                for _ in range(args.rows):
                    next_id += 1
                    rows.append((next_id, 1, rng.randint(1, 3000), 3, "9.99"))
                start = time.perf_counter()
                if label.startswith("unnest"):
                    conn.execute(INSERT, [list(col) for col in zip(*rows)])
                else:
                    with conn.cursor().copy("COPY s_tx FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                middle = time.perf_counter()
                conn.commit()
                write += middle - start
                commit += time.perf_counter() - middle
            per_row = write / (args.chunks * args.rows) * 1e6
            print(
                f"  {label:32} {write / args.chunks * 1e3:6.2f} ms a chunk ({per_row:.1f} µs a "
                f"row), commit {commit / args.chunks * 1e3:.2f} ms"
            )
        conn.execute("DROP TABLE s_tx, s_cat")


if __name__ == "__main__":
    main()
