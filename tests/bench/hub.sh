#!/usr/bin/env bash
# The classroom hub at scale, on loopback: DEVICES reference agents (one process)
# connected to one box; the box's memory per connected device, and the time from a
# teacher's request to the last tablet's ack, for a class of 30 and for every device
# (ROUNDS commands each, lock and unlock in turn).
#
#   tests/bench/hub.sh [DEVICES] [ROUNDS]      (default 1000 100)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICES=${1:-1000}
ROUNDS=${2:-100}
WORK=${WORK:-/tmp/cartable-bench-hub}
cargo build --release -p cartable -p cartable-systests --bins >/dev/null 2>&1
BIN=$PWD/target/release
rm -rf "$WORK" && mkdir -p "$WORK"
. tests/bench/lib.sh
HTTP=127.0.0.1:$(free_port)
box_base "$WORK/data" "$HTTP" "127.0.0.1:$(free_port)" > "$WORK/box.toml"
"$BIN/cartable" run --config "$WORK/box.toml" 2>"$WORK/box.log" &
BOX=$!
trap 'kill $BOX 2>/dev/null || true' EXIT
until curl -sf "http://$HTTP/healthz" >/dev/null; do sleep 0.1; done
echo "box: cartable run (release), pid $BOX, $(nproc) cores; agents: hub-bench, one process"
"$BIN/hub-bench" "$HTTP" "$BOX" "$DEVICES" "$ROUNDS"
