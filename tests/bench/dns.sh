#!/usr/bin/env bash
# Filtering DNS, side by side: cartable, unbound and dnsmasq, each loaded with the same
# block list (the UT1 snapshot plus synthetic names up to TOTAL), measured by dnsperf on
# loopback in one run. Figures: queries per second on three mixes (blocked exact names,
# blocked subdomains, allowed names already cached), resident memory after loading, time
# to load; for cartable also the time and peak memory of a reload (SIGHUP) under load,
# and the queries lost meanwhile.
#
# Two rounds of throughput: first each server as it comes, pinned to core 1 with
# dnsperf on core 0 (on a 2-core machine dnsperf's own core is then the limit: its CPU
# share is printed); then each server held to CAP_PERCENT % of one core by a cgroup
# while dnsperf stays free, which measures the servers' own capacity: what a
# Raspberry Pi whose CPU is the limit would see. Both rounds also measure dns-floor, a
# responder that does no work at all with the same system calls: the most any server
# could answer on this machine, since the rest of a query's cost is the kernel's.
#
#   tests/bench/dns.sh [TOTAL]        (default 5000000; needs ../shared/data/ut1)
#
# Everything listens on 127.0.0.1; the upstream is a local dnsmasq authoritative for
# allowed.test, so no query leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOTAL=${1:-5000000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WORK=${WORK:-/tmp/cartable-bench-dns}
UT1=../shared/data/ut1/ut1-blacklists-2026-08-17.tar.gz
mkdir -p "$WORK"
export PATH="$PATH:/usr/sbin:/sbin"
for tool in dnsperf unbound dnsmasq dig python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run tests/run first" >&2; exit 1; }
done

cargo build --release -p cartable -p cartable-systests --bin cartable --bin dns-floor >/dev/null
CARTABLE=$PWD/target/release/cartable
FLOOR=$PWD/target/release/dns-floor

# --- The list -------------------------------------------------------------------
if [ ! -s "$WORK/names-$TOTAL.txt" ]; then
  rm -rf "$WORK/ut1" && mkdir -p "$WORK/ut1"
  tar -xzf "$UT1" -C "$WORK/ut1"
  python3 tests/bench/gen_names.py "$WORK/ut1/blacklists" "$TOTAL" "$WORK/names-$TOTAL.txt"
fi
LIST=$WORK/names-$TOTAL.txt
# Names only (the UT1 addresses are not names a DNS server can block).
grep -v '^[0-9.]*$' "$LIST" > "$WORK/names-only.txt"
NAMES=$(wc -l < "$WORK/names-only.txt")

# (Throughput runs end with dnsperf's last few hundred queries in flight, counted as
# lost by every server alike; loss is measured by the rate-limited reload run.)
# Query files: exact blocked names, their subdomains, allowed names (cached after warm-up).
shuf -n 100000 --random-source=<(yes) "$WORK/names-only.txt" | sed 's/$/ A/' > "$WORK/q-exact.txt"
shuf -n 100000 --random-source=<(yes 1) "$WORK/names-only.txt" | awk '{print "x" NR%97 "." $1 " A"}' > "$WORK/q-sub.txt"
seq 1 2000 | awk '{print "h" $1 ".allowed.test A"}' > "$WORK/q-allowed.txt"

. tests/bench/lib.sh
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
wait_answer() { # port
  for _ in $(seq 1 6000); do
    dig @127.0.0.1 -p "$1" +time=1 +tries=1 h1.allowed.test A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on $1 never answered" >&2; return 1
}
# Core 0 for dnsperf, core 1 for the server under test (once it has loaded: loading
# uses every core).
CLIENT_CPU=()
SERVER_CORE=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  CLIENT_CPU=(taskset -c 0)
  SERVER_CORE=1
fi
pin() { [ -z "$SERVER_CORE" ] || taskset -a -cp "$SERVER_CORE" "$1" >/dev/null; }
unpin() { [ -z "$SERVER_CORE" ] || taskset -a -cp "0-$(($(nproc) - 1))" "$1" >/dev/null; }

# The equal CPU budget: a cgroup (v1 or v2) with a quota of CAP_PERCENT % of one core.
CAP_PERCENT=${CAP_PERCENT:-50}
CGROUP=""
CGROUP_ROOT=""
if [ -w /sys/fs/cgroup/cpu ] && mkdir -p /sys/fs/cgroup/cpu/cartable-bench 2>/dev/null; then
  CGROUP_ROOT=/sys/fs/cgroup/cpu
  CGROUP=$CGROUP_ROOT/cartable-bench
  echo 10000 > "$CGROUP/cpu.cfs_period_us"
  echo $((CAP_PERCENT * 100)) > "$CGROUP/cpu.cfs_quota_us"
elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null \
  && mkdir -p /sys/fs/cgroup/cartable-bench 2>/dev/null; then
  echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  CGROUP_ROOT=/sys/fs/cgroup
  CGROUP=$CGROUP_ROOT/cartable-bench
  echo "$((CAP_PERCENT * 100)) 10000" > "$CGROUP/cpu.max" 2>/dev/null || CGROUP=""
fi
[ -n "$CGROUP" ] || echo "no writable cgroup with a cpu controller: no equal-budget round" >&2

kernel_ticks() { awk '{print $15}' "/proc/$1/stat"; }
# qps PORT FILE SERVER_PID -> "QPS (server CPU µs/query, its share in the kernel,
# dnsperf CPU %)"
qps() {
  local out s0 s1 k0 k1 d0 d1 q perf
  "${CLIENT_CPU[@]}" dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$SECONDS_PER_RUN" -T 1 -c 1 -q 500 > "$WORK/perf.out" 2>/dev/null &
  perf=$!
  sleep 1
  s0=$(cpu_ticks "$3"); k0=$(kernel_ticks "$3"); d0=$(cpu_ticks "$perf")
  sleep $((SECONDS_PER_RUN - 2))
  s1=$(cpu_ticks "$3"); k1=$(kernel_ticks "$3"); d1=$(cpu_ticks "$perf")
  wait "$perf"
  q=$(awk '/Queries per second/ {printf "%d", $4}' "$WORK/perf.out")
  # Ticks are 1/100 s; the window is SECONDS_PER_RUN - 2 seconds.
  echo "$q ($(awk "BEGIN {printf \"%.1f\", ($s1 - $s0) * 10000 / ($q * ($SECONDS_PER_RUN - 2))}") µs, kernel $(( (k1 - k0) * 100 / (s1 - s0 + 1) ))%, client $(( (d1 - d0) / (SECONDS_PER_RUN - 2) ))%)"
}

# --- The upstream ------------------------------------------------------------------
UP=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port="$UP" --user=root --pid-file= --local=/test/ \
  --address=/allowed.test/10.9.9.9 --local-ttl=3600 --log-facility=- 2>/dev/null &
UP_PID=$!
trap 'kill $UP_PID 2>/dev/null; kill $(jobs -p) 2>/dev/null; sleep 0.5; [ -z "$CGROUP" ] || rmdir "$CGROUP" 2>/dev/null || true' EXIT
sleep 0.5

declare -A RESULT CAPPED
mixes() { # port pid -> the three mixes' figures, " | " between
  echo "$(qps "$1" "$WORK/q-exact.txt" "$2") | $(qps "$1" "$WORK/q-sub.txt" "$2") | $(qps "$1" "$WORK/q-allowed.txt" "$2")"
}
throughput() { # name port pid: both rounds of the three mixes
  local name=$1 port=$2 pid=$3
  pin "$pid"
  RESULT[$name]=$(mixes "$port" "$pid")
  if [ -n "$CGROUP" ]; then
    echo "$pid" > "$CGROUP/cgroup.procs"
    CAPPED[$name]=$(mixes "$port" "$pid")
    echo "$pid" > "$CGROUP_ROOT/cgroup.procs"
  fi
  unpin "$pid"
}
measure() { # name port pid started_ns
  local name=$1 port=$2 pid=$3 started=$4
  wait_answer "$port"
  local loaded_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  local rss; rss=$(rss_kb "$pid")
  dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/q-allowed.txt" -n 2 -T 1 >/dev/null 2>&1 || true
  throughput "$name" "$port" "$pid"
  RESULT[$name]+=" | $((rss / 1024)) MiB ($(( rss * 1024 / NAMES )) B/name) | ${loaded_ms} ms"
}
# ratio "A | B | C ..." "D | E | F ..." -> "a/d | b/e | c/f" of the leading numbers
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, "|"); split(b, y, "|"); out = ""
    for (i = 1; i <= 3 && i <= n; i++) { split(x[i], p, " "); split(y[i], q, " ")
      out = out (i > 1 ? " | " : "") (q[1] > 0 ? sprintf("%.2fx", p[1] / q[1]) : "-") }
    print out }'
}

# --- cartable ---------------------------------------------------------------------
PORT=$(free_port); HTTP=$(free_port)
rm -rf "$WORK/cartable-data"
{ box_base "$WORK/cartable-data" "127.0.0.1:$HTTP" "127.0.0.1:$PORT"; cat; } > "$WORK/cartable.toml" <<EOF
upstreams = ["127.0.0.1:$UP"]
block_mode = "nxdomain"
[[filter.list]]
category = "adult"
path = "$LIST"
[[filter.policy]]
name = "all"
block = ["adult"]
safe_search = false
EOF
STARTED=$(date +%s%N)
"$CARTABLE" run --config "$WORK/cartable.toml" 2> "$WORK/cartable.log" &
CPID=$!
measure cartable "$PORT" "$CPID" "$STARTED"

# Reload under load: SIGHUP while dnsperf runs; sample RSS every 20 ms.
STEADY=$(rss_kb "$CPID")
dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/q-exact.txt" -l 12 -T 1 -Q 20000 > "$WORK/reload-perf.txt" 2>&1 &
PERF=$!
sleep 2
# One sampler process (spawning tools every 20 ms would steal the CPU being measured).
PEAK=$(python3 - "$CPID" "$WORK/cartable.log" "$LIST" <<'PY'
import sys, time, os
pid, log = sys.argv[1], sys.argv[2]
def rss():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
def compiled():
    with open(log) as f:
        return f.read().count("filter lists compiled")
before, peak = compiled(), rss()
os.utime(sys.argv[3])  # a changed list: the reload compiles, it does not load the saved index
os.kill(int(pid), 1)  # SIGHUP
while compiled() == before:
    peak = max(peak, rss())
    time.sleep(0.02)
print(peak)
PY
)
wait $PERF
RELOAD_MS=$(grep "filter lists compiled" "$WORK/cartable.log" | tail -1 | sed 's/.*took_ms=\([0-9]*\).*/\1/')
LOST=$(awk '/Queries lost/ {print $3}' "$WORK/reload-perf.txt")
SENT=$(awk '/Queries sent/ {print $3}' "$WORK/reload-perf.txt")
kill "$CPID"; wait "$CPID" 2>/dev/null || true

# --- unbound ----------------------------------------------------------------------
PORT=$(free_port)
awk '{print "local-zone: \"" $1 ".\" always_nxdomain"}' "$WORK/names-only.txt" > "$WORK/unbound-block.conf"
cat > "$WORK/unbound.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $PORT
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: ""
  do-ip6: no
  num-threads: 2
  so-reuseport: yes
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  qname-minimisation: no
  module-config: "iterator"
  msg-cache-size: 64m
  rrset-cache-size: 128m
  include: "$WORK/unbound-block.conf"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$UP
EOF
STARTED=$(date +%s%N)
unbound -c "$WORK/unbound.conf" 2> "$WORK/unbound.log" &
UPID=$!
measure unbound "$PORT" "$UPID" "$STARTED"
kill "$UPID"; wait "$UPID" 2>/dev/null || true

# --- dnsmasq ----------------------------------------------------------------------
PORT=$(free_port)
awk '{print "address=/" $1 "/"}' "$WORK/names-only.txt" > "$WORK/dnsmasq-block.conf"
STARTED=$(date +%s%N)
dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq-block.conf" --no-resolv --no-hosts \
  --bind-interfaces --listen-address=127.0.0.1 --port="$PORT" --user=root --pid-file= \
  --server=127.0.0.1#"$UP" --cache-size=10000 --log-facility=- 2>/dev/null &
DPID=$!
measure dnsmasq "$PORT" "$DPID" "$STARTED"
kill "$DPID"; wait "$DPID" 2>/dev/null || true

# --- The floor ----------------------------------------------------------------------
# dns-floor answers every query with an empty answer and does nothing else, with the
# calls cartable makes (recvmmsg, sendmmsg): what is left to any server once the kernel
# has taken its part of a query.
PORT=$(free_port)
"$FLOOR" "127.0.0.1:$PORT" &
FPID=$!
wait_answer "$PORT"
throughput floor "$PORT" "$FPID"
kill "$FPID"; wait "$FPID" 2>/dev/null || true

# --- Report -----------------------------------------------------------------------
echo
echo "Block list: $NAMES names ($(nproc) cores, dnsperf -T 1 -c 1 -q 500, ${SECONDS_PER_RUN} s per mix)"
echo "Each mix: queries/s (server CPU per query, the part of it spent in the kernel; dnsperf's"
echo "own CPU: at ~100% the client is the limit)"
echo
# table ARRAY EXTRA_HEADINGS EXTRA_RULES: a row per server, then cartable's ratios to unbound
table() {
  local -n rows=$1
  echo "| server | exact q/s | subdomain q/s | allowed cached q/s |$2"
  echo "|---|---|---|---|$3"
  for s in cartable unbound dnsmasq; do echo "| $s | ${rows[$s]} |"; done
  echo "| cartable / unbound | $(ratio "${rows[cartable]}" "${rows[unbound]}") |"
  echo "| floor: no work at all | ${rows[floor]} |"
  echo "| floor / unbound: the most any server could be | $(ratio "${rows[floor]}" "${rows[unbound]}") |"
  echo
}
table RESULT " RSS after load | load |" "---|---|"
if [ -n "$CGROUP" ]; then
  echo "Each server held to ${CAP_PERCENT} % of one core (cgroup cpu quota, 10 ms period), dnsperf free:"
  echo
  table CAPPED "" ""
fi
echo "cartable reload under load: ${RELOAD_MS} ms; RSS steady $((STEADY / 1024)) MiB, peak $((PEAK / 1024)) MiB ($(awk "BEGIN {printf \"%.2f\", $PEAK / $STEADY}")x); dnsperf sent $SENT, lost $LOST"
