#!/usr/bin/env bash
# Two DNS servers at equal CPU, side by side in the same seconds: both pinned to core 1
# in one cgroup held to CAP_PERCENT % of it, each with its own dnsperf on core 0. Each
# one's CPU per query is measured in the same seconds, so the drift of a shared machine
# (which moves dns.sh's figures by up to 10 % from one run to the next) hits both alike.
# The cost ratio is the figure: the scheduler shares the cap per thread, so a server
# with more busy threads gets more of it, and the q/s ratio flatters it.
#
#   tests/bench/dns_duel.sh A B      (each: a cartable binary, or "floor" for dns-floor)
#   MIX=q-exact.txt ROUNDS=5 tests/bench/dns_duel.sh ...
#
# Needs the list and query files tests/bench/dns.sh leaves in $WORK (run it once).
set -euo pipefail
cd "$(dirname "$0")/../.."
A=$1; B=$2
MIX=${MIX:-q-allowed.txt}
WORK=${WORK:-/tmp/cartable-bench-dns}
CAP_PERCENT=${CAP_PERCENT:-50}
[ -s "$WORK/names-1000000.txt" ] || { echo "run tests/bench/dns.sh 1000000 first" >&2; exit 1; }
cargo build --release -p cartable-systests --bin dns-floor >/dev/null
. tests/bench/lib.sh
if [ -w /sys/fs/cgroup/cpu ]; then
  CG=/sys/fs/cgroup/cpu/cartable-duel; mkdir -p "$CG"
  echo 10000 > "$CG/cpu.cfs_period_us"; echo $((CAP_PERCENT * 100)) > "$CG/cpu.cfs_quota_us"
  ROOT=/sys/fs/cgroup/cpu
else
  echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  CG=/sys/fs/cgroup/cartable-duel; mkdir -p "$CG"
  echo "$((CAP_PERCENT * 100)) 10000" > "$CG/cpu.max"
  ROOT=/sys/fs/cgroup
fi
UP=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port="$UP" --user=root --pid-file= --local=/test/ \
  --address=/allowed.test/10.9.9.9 --local-ttl=3600 --log-facility=- 2>/dev/null &
PIDS=($!)
trap 'kill "${PIDS[@]}" 2>/dev/null || true; sleep 0.3; rmdir "$CG" 2>/dev/null || true' EXIT
start() { # binary -> "port pid"
  local port http dir
  port=$(free_port); http=$(free_port); dir="$WORK/duel-$port"
  rm -rf "$dir"; mkdir -p "$dir"
  { box_base "$dir/data" "127.0.0.1:$http" "127.0.0.1:$port"; cat; } > "$dir/c.toml" <<CONF
upstreams = ["127.0.0.1:$UP"]
block_mode = "nxdomain"
[[filter.list]]
category = "adult"
path = "$WORK/names-1000000.txt"
[[filter.policy]]
name = "all"
block = ["adult"]
safe_search = false
CONF
  if [ "$1" = floor ]; then
    target/release/dns-floor "127.0.0.1:$port" 2>/dev/null &
  else
    "$1" run --config "$dir/c.toml" 2>"$dir/log" &
  fi
  echo "$port $!"
}
read -r PA IA < <(start "$A"); PIDS+=("$IA")
read -r PB IB < <(start "$B"); PIDS+=("$IB")
for p in $PA $PB; do
  for _ in $(seq 1 600); do dig @127.0.0.1 -p "$p" +time=1 +tries=1 h1.allowed.test A >/dev/null 2>&1 && break; sleep 0.1; done
  dnsperf -s 127.0.0.1 -p "$p" -d "$WORK/q-allowed.txt" -n 2 -T 1 >/dev/null 2>&1 || true
done
for pid in $IA $IB; do taskset -a -cp 1 "$pid" >/dev/null; echo "$pid" > "$CG/cgroup.procs"; done
HZ=$(getconf CLK_TCK)
for _ in $(seq 1 "${ROUNDS:-3}"); do
  ca=$(cpu_ticks "$IA"); cb=$(cpu_ticks "$IB")
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$PA" -d "$WORK/$MIX" -l 10 -T 1 -c 1 -q 500 > "$WORK/duel-a.out" 2>&1 &
  X=$!
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$PB" -d "$WORK/$MIX" -l 10 -T 1 -c 1 -q 500 > "$WORK/duel-b.out" 2>&1 &
  Y=$!
  wait "$X" "$Y"
  qa=$(awk '/Queries per second/ {printf "%d", $4}' "$WORK/duel-a.out")
  qb=$(awk '/Queries per second/ {printf "%d", $4}' "$WORK/duel-b.out")
  ca=$(( $(cpu_ticks "$IA") - ca )); cb=$(( $(cpu_ticks "$IB") - cb ))
  # CPU per query (µs): the fair scheduler shares the cap per thread, not per process,
  # so the q/s ratio alone is the cost ratio only when both used the same CPU.
  ua=$(awk "BEGIN {printf \"%.2f\", $ca / $HZ * 1e6 / ($qa * 10)}")
  ub=$(awk "BEGIN {printf \"%.2f\", $cb / $HZ * 1e6 / ($qb * 10)}")
  echo "$MIX: A $qa q/s ($ua µs CPU/query) | B $qb q/s ($ub µs) | A/B q/s $(awk "BEGIN {printf \"%.3f\", $qa / $qb}"), cost B/A $(awk "BEGIN {printf \"%.3f\", $ub / $ua}")"
done
for pid in $IA $IB; do echo "$pid" > "$ROOT/cgroup.procs" 2>/dev/null || true; done
