#!/usr/bin/env bash
# Sync after a week offline, side by side with the naive way, in one run.
#
# A box's outbox is filled with what a large school produces in DAYS days (TABLETS
# tablets in school hours: DNS counters and app usage per tablet and hour, attendance
# per lesson). The box runs in a network namespace whose veth link is shaped to RATE
# both ways (tc netem); Mosquitto and cartable-central run outside. Figures: backlog
# on disk; time and bytes on the wire (the box's veth counters) for cartable to drain
# it, against `publish-each` sending the same events one JSON message each (QoS 1)
# over the same link; events per second that cartable-central stores when the same
# backlog drains over loopback.
#
#   tests/bench/sync.sh [DAYS] [TABLETS]      (default 7 400; needs root, tests/run first)
set -euo pipefail
cd "$(dirname "$0")/../.."
DAYS=${1:-7}
TABLETS=${2:-400}
RATE=${RATE:-2mbit}
DELAY=${DELAY:-20ms}
WORK=${WORK:-/tmp/cartable-bench-sync}
export PATH="$PATH:/usr/sbin:/sbin"
for tool in mosquitto tc ip curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run tests/run first" >&2; exit 1; }
done
cargo build --release -p cartable -p cartable-central -p cartable-systests --bins >/dev/null 2>&1
BIN=$PWD/target/release
rm -rf "$WORK" && mkdir -p "$WORK"

. tests/bench/lib.sh
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- The backlog -------------------------------------------------------------------
"$BIN/gen-backlog" "$WORK/box" "$DAYS" "$TABLETS" | tee "$WORK/gen.txt"
TOTAL=$(awk '{print $1}' "$WORK/gen.txt")
python3 - "$WORK/box/cartable.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()
PY
DISK=$(du -cb "$WORK"/box/cartable.db* | tail -1 | awk '{print $1}')
cp -a "$WORK/box" "$WORK/box-each"
cp -a "$WORK/box" "$WORK/box-loopback"

# --- The shaped link -----------------------------------------------------------------
NS=cartable-bench-$$
OUT=cbout$$; IN=cbin$$
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  ip link del "$OUT" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
shaped_link "$NS" "$OUT" "$IN" 10.232.0
tx_bytes() { ip netns exec "$NS" cat "/sys/class/net/$IN/statistics/tx_bytes"; }
rx_bytes() { ip netns exec "$NS" cat "/sys/class/net/$IN/statistics/rx_bytes"; }

start_broker() { # host port
  cat > "$WORK/mosquitto-$2.conf" <<CONF
listener $2 $1
allow_anonymous true
user root
max_queued_messages 0
message_size_limit 0
CONF
  mosquitto -c "$WORK/mosquitto-$2.conf" 2>"$WORK/mosquitto-$2.log" &
  sleep 0.5
}
box_config() { # data_dir broker_host broker_port http dns
  box_base "$1" "127.0.0.1:$4" "127.0.0.1:$5"
  cat <<CONF
[sync]
broker = "mqtt://$2:$3"
batch_max_age_secs = 0
CONF
}
central_events() { curl -sf "http://$1/api/v1/counters" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])' 2>/dev/null || echo 0; }

# --- cartable over the shaped link --------------------------------------------------
BP=$(free_port); start_broker 10.232.0.1 "$BP"
CH=127.0.0.1:$(free_port)
"$BIN/cartable-central" serve --broker "10.232.0.1:$BP" --database "$WORK/central.db" --listen "$CH" 2>"$WORK/central.log" &
sleep 1
HP=$(free_port); DP=$(free_port)
box_config "$WORK/box" 10.232.0.1 "$BP" "$HP" "$DP" > "$WORK/box.toml"
TX0=$(tx_bytes); RX0=$(rx_bytes); T0=$(now_ms)
ip netns exec "$NS" "$BIN/cartable" run --config "$WORK/box.toml" 2>"$WORK/box.log" &
BOX=$!
until [ "$(central_events "$CH")" -ge "$TOTAL" ]; do sleep 0.5; done
T1=$(now_ms); TX1=$(tx_bytes); RX1=$(rx_bytes)
kill "$BOX"; wait "$BOX" 2>/dev/null || true
DUPS=$(curl -sf "http://$CH/api/v1/counters")

# --- the same events one JSON message each, same link ----------------------------------
TX2=$(tx_bytes); RX2=$(rx_bytes); T2=$(now_ms)
ip netns exec "$NS" "$BIN/publish-each" "$WORK/box-each" 10.232.0.1 "$BP" > "$WORK/each.txt"
T3=$(now_ms); TX3=$(tx_bytes); RX3=$(rx_bytes)

# --- central's ingest rate, loopback ----------------------------------------------------
LP=$(free_port); start_broker 127.0.0.1 "$LP"
CL=127.0.0.1:$(free_port)
"$BIN/cartable-central" serve --broker "127.0.0.1:$LP" --database "$WORK/central-lo.db" --listen "$CL" --client-id central-lo 2>"$WORK/central-lo.log" &
sleep 1
HP=$(free_port); DP=$(free_port)
box_config "$WORK/box-loopback" 127.0.0.1 "$LP" "$HP" "$DP" > "$WORK/box-lo.toml"
T4=$(now_ms)
"$BIN/cartable" run --config "$WORK/box-lo.toml" 2>"$WORK/box-lo.log" &
until [ "$(central_events "$CL")" -ge "$TOTAL" ]; do sleep 0.2; done
T5=$(now_ms)

mb() { awk "BEGIN {printf \"%.2f\", $1 / 1000000}"; }
echo
echo "Backlog: $TOTAL events ($DAYS days, $TABLETS tablets), $(mb "$DISK") MB on disk (SQLite, checkpointed)"
echo "Link: $SHAPER, on a veth pair into a network namespace"
echo
echo "| sender | time to deliver | bytes sent by the box | bytes received by the box |"
echo "|---|---|---|---|"
echo "| cartable (batches, zlib, QoS 1) | $(( (T1 - T0) / 1000 )) s | $(mb $((TX1 - TX0))) MB | $(mb $((RX1 - RX0))) MB |"
echo "| one JSON message each (QoS 1) | $(( (T3 - T2) / 1000 )) s | $(mb $((TX3 - TX2))) MB | $(mb $((RX3 - RX2))) MB |"
echo
echo "central counters after the shaped run: $DUPS"
echo "central ingest over loopback: $TOTAL events in $(( T5 - T4 )) ms = $(( TOTAL * 1000 / (T5 - T4) )) events/s (box start included)"
