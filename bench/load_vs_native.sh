#!/bin/bash
# `batchline load` of one CSV against each database's native loader, side by side in one run,
# with the row counts checked: psql \copy, sqlite3's .import --csv, MariaDB's LOAD DATA LOCAL
# INFILE, each into a pre-created table (batchline creates its own from the data's types).
# The same rows as a Parquet file (declared types: int64, string, decimal128(18,2),
# timestamp[us]) through `batchline load`, and as a pandas DataFrame through `bl.load` and
# pandas' `to_sql(chunksize=5000)` (the DataFrame read before the clock starts; its price
# as float64, which to_sql can bind).
#
#   bench/load_vs_native.sh [ROWS] [BEFORE_SRC]
#
# ROWS (default 200000) lines of generated CSV. BEFORE_SRC: another checkout's src/ directory
# (e.g. from `git archive <commit> src | tar -x -C /tmp/before`), timed too, as "before".
# Servers: BATCHLINE_TEST_POSTGRES / BATCHLINE_TEST_MYSQL as for the tests (local defaults);
# each run works in a schema/database of its own and drops it.
set -euo pipefail
ROWS=${1:-200000}
BEFORE=${2:-}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
WORK=$(mktemp -d)
S=blbench_$$
PG_BASE=${BATCHLINE_TEST_POSTGRES:-postgresql+psycopg://postgres@127.0.0.1:5432/test}
MY_BASE=${BATCHLINE_TEST_MYSQL:-mysql+pymysql://root@127.0.0.1:3306/test}
PG="$PG_BASE?options=-csearch_path%3D$S"
MY="${MY_BASE%/*}/$S"
PSQL=(psql -q -h 127.0.0.1 -U postgres test)
MYSQL=(mysql -h 127.0.0.1 -u root --local-infile=1)
BL='import sys; from batchline.cli import main; sys.argv[0] = "batchline"; main()'
cleanup() {
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS $S CASCADE" >/dev/null 2>&1 || true
  "${MYSQL[@]}" -e "DROP DATABASE IF EXISTS $S" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
"$PY" - "$ROWS" <<'PY'
import datetime, random, sys
random.seed(7)
t0 = datetime.datetime(2024, 1, 1)
with open("lines.csv", "w") as f:
    f.write("id,sku,qty,price,at,note\n")
    for i in range(int(sys.argv[1])):
        at = (t0 + datetime.timedelta(seconds=i * 37)).isoformat(" ")
        f.write(f"{i},SKU{random.randrange(5000):05d},{random.randrange(1, 50)},"
                f"{random.randrange(100, 100000) / 100:.2f},{at},item {i} note\n")
PY
"$PY" - <<'PY'
import pyarrow as pa, pyarrow.csv as pc, pyarrow.parquet as pq
types = {"id": pa.int64(), "sku": pa.string(), "qty": pa.int64(),
         "price": pa.decimal128(18, 2), "at": pa.timestamp("us"), "note": pa.string()}
table = pc.read_csv("lines.csv", convert_options=pc.ConvertOptions(column_types=types))
pq.write_table(table, "lines.parquet", row_group_size=100_000)
PY
# bl.load(df) or df.to_sql, timed inside Python: prints seconds
cat > frame.py <<'PY'
import sys, time
import pandas as pd
how, url, table = sys.argv[1:4]
frame = pd.read_parquet("lines.parquet")
frame["price"] = frame["price"].astype(float)
if how == "to_sql":
    import sqlalchemy as sa
    engine = sa.create_engine(url)
    began = time.perf_counter()
    frame.to_sql(table, engine, index=False, chunksize=5000)
else:
    import batchline as bl
    began = time.perf_counter()
    result = bl.load(frame, url, table=table)
    assert result.status == "success", result.to_dict()
print(f"{time.perf_counter() - began:.2f}")
PY
"${PSQL[@]}" -c "CREATE SCHEMA $S"
"${MYSQL[@]}" -e "CREATE DATABASE $S"
DDL="(id BIGINT, sku TEXT, qty BIGINT, price NUMERIC(18,2), at TIMESTAMP, note TEXT)"
MYDDL="(id BIGINT, sku TEXT, qty BIGINT, price DECIMAL(18,2), at DATETIME(6), note TEXT)"
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
bl() { local src=$1; shift; if [ -n "$src" ]; then env PYTHONPATH="$src" "$PY" -c "$BL" "$@"; else "$PY" -c "$BL" "$@"; fi; }
versions=(after)
[ -n "$BEFORE" ] && versions=(before after)
echo "rows: $ROWS"
for round in 1 2; do
  rm -f ./*.db
  "${PSQL[@]}" -c "SET search_path=$S; DROP TABLE IF EXISTS native, before, after, pq_before, pq_after, df_before, df_after, to_sql; CREATE TABLE native $DDL"
  "${MYSQL[@]}" "$S" -e "DROP TABLE IF EXISTS native, \`before\`, \`after\`, pq_before, pq_after; CREATE TABLE native $MYDDL"
  sqlite3 native.db "CREATE TABLE native $DDL"
  echo "round $round"
  printf '  %-46s %6.2f s\n' "psql \\copy" "$(secs "${PSQL[@]}" -c "SET search_path=$S" -c "\\copy native FROM 'lines.csv' CSV HEADER")"
  printf '  %-46s %6.2f s\n' "sqlite3 .import --csv" "$(secs sqlite3 native.db ".import --csv --skip 1 lines.csv native")"
  printf '  %-46s %6.2f s\n' "MariaDB LOAD DATA LOCAL INFILE" "$(secs "${MYSQL[@]}" "$S" -e "LOAD DATA LOCAL INFILE 'lines.csv' INTO TABLE native FIELDS TERMINATED BY ',' IGNORE 1 LINES")"
  for v in "${versions[@]}"; do
    src=""; [ "$v" = before ] && src="$BEFORE/"
    printf '  %-46s %6.2f s\n' "batchline load ($v), PostgreSQL" "$(secs bl "$src" load lines.csv --db "$PG" --table "$v" -q)"
    printf '  %-46s %6.2f s\n' "batchline load ($v), SQLite" "$(secs bl "$src" load lines.csv --db "sqlite:///$v.db" --table "$v" -q)"
    printf '  %-46s %6.2f s\n' "batchline load ($v), MariaDB" "$(secs bl "$src" load lines.csv --db "$MY" --table "$v" -q)"
  done
  for v in "${versions[@]}"; do
    src=""; [ "$v" = before ] && src="$BEFORE/"
    printf '  %-46s %6.2f s\n' "batchline load .parquet ($v), PostgreSQL" "$(secs bl "$src" load lines.parquet --db "$PG" --table "pq_$v" -q)"
    printf '  %-46s %6.2f s\n' "batchline load .parquet ($v), SQLite" "$(secs bl "$src" load lines.parquet --db "sqlite:///pq_$v.db" --table "pq_$v" -q)"
    printf '  %-46s %6.2f s\n' "batchline load .parquet ($v), MariaDB" "$(secs bl "$src" load lines.parquet --db "$MY" --table "pq_$v" -q)"
  done
  printf '  %-46s %6.2f s\n' "DataFrame: pandas to_sql, PostgreSQL" "$("$PY" frame.py to_sql "$PG" to_sql)"
  printf '  %-46s %6.2f s\n' "DataFrame: pandas to_sql, SQLite" "$("$PY" frame.py to_sql sqlite:///to_sql.db to_sql)"
  for v in "${versions[@]}"; do
    if [ "$v" = before ]; then run=(env PYTHONPATH="$BEFORE/" "$PY"); else run=("$PY"); fi
    printf '  %-46s %6.2f s\n' "DataFrame: bl.load ($v), PostgreSQL" "$("${run[@]}" frame.py bl "$PG" "df_$v")"
    printf '  %-46s %6.2f s\n' "DataFrame: bl.load ($v), SQLite" "$("${run[@]}" frame.py bl "sqlite:///df_$v.db" "df_$v")"
  done
  counts="pg native $("${PSQL[@]}" -tA -c "SET search_path=$S" -c "SELECT count(*) FROM native" | tail -1)"
  counts+=", sqlite native $(sqlite3 native.db 'SELECT count(*) FROM native')"
  counts+=", mariadb native $("${MYSQL[@]}" -N "$S" -e 'SELECT count(*) FROM native')"
  for v in "${versions[@]}"; do
    counts+=", $v: pg $("${PSQL[@]}" -tA -c "SET search_path=$S" -c "SELECT count(*) FROM $v" | tail -1)"
    counts+=" sqlite $(sqlite3 "$v.db" "SELECT count(*) FROM $v")"
    counts+=" mariadb $("${MYSQL[@]}" -N "$S" -e "SELECT count(*) FROM \`$v\`")"
    counts+=", pq_$v: pg $("${PSQL[@]}" -tA -c "SET search_path=$S" -c "SELECT count(*) FROM pq_$v" | tail -1)"
    counts+=" sqlite $(sqlite3 "pq_$v.db" "SELECT count(*) FROM pq_$v")"
    counts+=" mariadb $("${MYSQL[@]}" -N "$S" -e "SELECT count(*) FROM pq_$v")"
    counts+=", df_$v: pg $("${PSQL[@]}" -tA -c "SET search_path=$S" -c "SELECT count(*) FROM df_$v" | tail -1)"
    counts+=" sqlite $(sqlite3 "df_$v.db" "SELECT count(*) FROM df_$v")"
  done
  counts+=", to_sql: pg $("${PSQL[@]}" -tA -c "SET search_path=$S" -c "SELECT count(*) FROM to_sql" | tail -1)"
  counts+=" sqlite $(sqlite3 to_sql.db "SELECT count(*) FROM to_sql")"
  echo "  rows: $counts"
done
