#!/bin/bash
# `batchline load` of one CSV against each database's native loader, side by side in one run,
# with the row counts checked: psql \copy, sqlite3's .import --csv, MariaDB's LOAD DATA LOCAL
# INFILE, each into a pre-created table (batchline creates its own from the data's types).
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
  "${PSQL[@]}" -c "SET search_path=$S; DROP TABLE IF EXISTS native, before, after; CREATE TABLE native $DDL"
  "${MYSQL[@]}" "$S" -e "DROP TABLE IF EXISTS native, \`before\`, \`after\`; CREATE TABLE native $MYDDL"
  sqlite3 native.db "CREATE TABLE native $DDL"
  echo "round $round"
  printf '  %-40s %6.2f s\n' "psql \\copy" "$(secs "${PSQL[@]}" -c "SET search_path=$S" -c "\\copy native FROM 'lines.csv' CSV HEADER")"
  printf '  %-40s %6.2f s\n' "sqlite3 .import --csv" "$(secs sqlite3 native.db ".import --csv --skip 1 lines.csv native")"
  printf '  %-40s %6.2f s\n' "MariaDB LOAD DATA LOCAL INFILE" "$(secs "${MYSQL[@]}" "$S" -e "LOAD DATA LOCAL INFILE 'lines.csv' INTO TABLE native FIELDS TERMINATED BY ',' IGNORE 1 LINES")"
  for v in "${versions[@]}"; do
    src=""; [ "$v" = before ] && src="$BEFORE/"
    printf '  %-40s %6.2f s\n' "batchline load ($v), PostgreSQL" "$(secs bl "$src" load lines.csv --db "$PG" --table "$v" -q)"
    printf '  %-40s %6.2f s\n' "batchline load ($v), SQLite" "$(secs bl "$src" load lines.csv --db "sqlite:///$v.db" --table "$v" -q)"
    printf '  %-40s %6.2f s\n' "batchline load ($v), MariaDB" "$(secs bl "$src" load lines.csv --db "$MY" --table "$v" -q)"
  done
  counts="pg native $("${PSQL[@]}" -tA -c "SET search_path=$S" -c "SELECT count(*) FROM native" | tail -1)"
  counts+=", sqlite native $(sqlite3 native.db 'SELECT count(*) FROM native')"
  counts+=", mariadb native $("${MYSQL[@]}" -N "$S" -e 'SELECT count(*) FROM native')"
  for v in "${versions[@]}"; do
    counts+=", $v: pg $("${PSQL[@]}" -tA -c "SET search_path=$S" -c "SELECT count(*) FROM $v" | tail -1)"
    counts+=" sqlite $(sqlite3 "$v.db" "SELECT count(*) FROM $v")"
    counts+=" mariadb $("${MYSQL[@]}" -N "$S" -e "SELECT count(*) FROM \`$v\`")"
  done
  echo "  rows: $counts"
done
