#!/usr/bin/env bash
# Events per second the central side stores from the broker, with one
# `cartable-central serve` and with two sharing the events (`--share-group-file`), on
# one PostgreSQL and one Mosquitto, in one run.
#
# For each round the store starts empty, the instances subscribe, then `flood-central`
# publishes BOXES boxes' backlogs (BATCHES sealed batches of EVENTS app-use events
# each, as boxes drain after an outage) and the clock runs until the store holds them
# all (its `events` counter). The publisher runs alongside, as boxes would.
#
#   tests/bench/central_share.sh [BOXES] [BATCHES] [EVENTS]   (default 100 40 100;
#   tests/run first)
set -euo pipefail
cd "$(dirname "$0")/../.."
BOXES=${1:-100}
BATCHES=${2:-40}
EVENTS=${3:-100}
WORK=${WORK:-/tmp/cartable-bench-central-share}
for tool in curl python3 mosquitto; do
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

# --- A private PostgreSQL cluster and a broker ---------------------------------------
start_postgres "$WORK/pg"
psql_do() { as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U cartable -d postgres -Atqc "$1"; }

MQTT_PORT=$(free_port)
mkdir -p "$WORK/mosquitto"
cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/mosquitto/
max_queued_messages 0
CONF
mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $MQTT_PORT))" 2>/dev/null && break
  sleep 0.1
done

now_ms() { date +%s%3N; }

# One round: N instances, each to the end of the flood. Prints events/s.
round() { # n
  local n=$1 db=central_$1 pids=() addr first
  psql_do "CREATE DATABASE $db"
  # A group of its own: the last round's sessions stay subscribed in theirs.
  openssl rand -hex 16 >"$WORK/share-group-$n"
  for i in $(seq "$n"); do
    addr=127.0.0.1:$(free_port)
    [ "$i" = 1 ] && first=$addr
    RUST_LOG=info "$BIN/cartable-central" serve --broker "127.0.0.1:$MQTT_PORT" \
      --database "postgres://cartable@127.0.0.1:$PGPORT/$db" --listen "$addr" \
      --client-id "bench-$n-$i" --share-group-file "$WORK/share-group-$n" \
      2>"$WORK/central-$n-$i.log" &
    pids+=($!)
    for _ in $(seq 200); do grep -qs subscribed "$WORK/central-$n-$i.log" && break; sleep 0.05; done
  done
  local total=$((BOXES * BATCHES * EVENTS)) start end stored=0
  start=$(now_ms)
  "$BIN/flood-central" 127.0.0.1 "$MQTT_PORT" "$BOXES" "$BATCHES" "$EVENTS" >"$WORK/flood-$n.json" &
  local flood=$!
  while [ "$stored" -lt "$total" ]; do
    sleep 0.1
    stored=$(curl -s "http://$first/api/v1/counters" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("events", 0))' 2>/dev/null || echo 0)
  done
  end=$(now_ms)
  wait "$flood"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  echo $((total * 1000 / (end - start)))
}

echo "flood: $BOXES boxes x $BATCHES batches x $EVENTS events = $((BOXES * BATCHES * EVENTS)) events, $(nproc) cores"
ONE=$(round 1)
TWO=$(round 2)
printf '%-40s %12s\n' "instances (one PostgreSQL, one broker)" "events/s"
printf '%-40s %12s\n' "1" "$ONE"
printf '%-40s %12s\n' "2, shared subscription" "$TWO"
