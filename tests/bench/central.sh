#!/usr/bin/env bash
# The fleet console's pages with a year of a large fleet, SQLite and PostgreSQL side by
# side, in one run.
#
# `gen-fleet` fills each store through the console's own ingest path (so the usage
# rollups are built as in service): BOXES boxes (two per site) of TABLETS tablets, DAYS
# days back from today, school days only; each box's inventory. Then `cartable-central
# serve` runs on each store in turn and every page and export is timed with curl
# (median of RUNS, after one warm-up): the target is under 200 ms.
#
#   tests/bench/central.sh [BOXES] [DAYS] [TABLETS]    (default 500 365 30; tests/run first)
set -euo pipefail
cd "$(dirname "$0")/../.."
BOXES=${1:-500}
DAYS=${2:-365}
TABLETS=${3:-30}
RUNS=${RUNS:-5}
WORK=${WORK:-/tmp/cartable-bench-central}
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run tests/run first" >&2; exit 1; }
done
cargo build --release -p cartable-central -p cartable-systests --bins >/dev/null 2>&1
BIN=$PWD/target/release
rm -rf "$WORK" && mkdir -p "$WORK"
. tests/bench/lib.sh

cleanup() {
  stop_postgres "$WORK/pg"
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# --- A private PostgreSQL cluster ---------------------------------------------------
start_postgres "$WORK/pg"
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U cartable central
PGURL="postgres://cartable@127.0.0.1:$PGPORT/central"

# --- The stores -------------------------------------------------------------------------
echo "filling: $BOXES boxes, $DAYS days, $TABLETS tablets each"
SQLITE_GEN=$("$BIN/gen-fleet" "$WORK/central.db" "$BOXES" "$DAYS" "$TABLETS")
PG_GEN=$("$BIN/gen-fleet" "$PGURL" "$BOXES" "$DAYS" "$TABLETS")
SQLITE_SIZE=$(du -cb "$WORK"/central.db* | tail -1 | awk '{print $1}')
PG_SIZE=$(as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U cartable -d central -Atc "SELECT pg_database_size('central')")

YEAR_AGO=$(date -u -d "-$((DAYS - 1)) days" +%F)
PAGES=(
  "/"
  "/tablets"
  "/usage"
  "/usage?from=$YEAR_AGO"
  "/usage?from=$YEAR_AGO&site=ecole-042"
  "/api/v1/usage?format=csv&table=tablets&from=$YEAR_AGO"
  "/api/v1/usage?format=csv&table=classes&from=$YEAR_AGO"
)

median_ms() { # url
  curl -s -o /dev/null "$1"
  for _ in $(seq "$RUNS"); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done |
    sort -n | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]*1000}'
}

declare -A RESULT
for store in sqlite postgres; do
  DB=$WORK/central.db; [ "$store" = postgres ] && DB=$PGURL
  ADDR=127.0.0.1:$(free_port)
  # No broker: the pages read the store only (the console keeps trying to connect).
  "$BIN/cartable-central" serve --broker "127.0.0.1:$(free_port)" --database "$DB" --listen "$ADDR" 2>"$WORK/central-$store.log" &
  PID=$!
  for _ in $(seq 100); do curl -sf "http://$ADDR/api/v1/counters" >/dev/null && break; sleep 0.2; done
  for p in "${PAGES[@]}"; do RESULT["$store $p"]=$(median_ms "http://$ADDR$p"); done
  kill "$PID"; wait "$PID" 2>/dev/null || true
done

echo
echo "SQLite:     $SQLITE_GEN; store $((SQLITE_SIZE / 1048576)) MiB"
echo "PostgreSQL: $PG_GEN; store $((PG_SIZE / 1048576)) MiB"
printf '%-62s %10s %12s\n' "page (median of $RUNS, ms)" SQLite PostgreSQL
for p in "${PAGES[@]}"; do
  printf '%-62s %10s %12s\n' "$p" "${RESULT["sqlite $p"]}" "${RESULT["postgres $p"]}"
done
