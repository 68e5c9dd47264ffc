#!/usr/bin/env bash
# Cart mode, side by side in one run:
#
# 1. DHCP: CLIENTS simulated tablets (default 1000) each doing DISCOVER-OFFER-REQUEST-
#    ACK (tests/src/bin/dhcp_client.rs: Android's messages, WINDOW in flight, the
#    broadcast flag set so both servers' answers reach its one socket) against the
#    cartable box and against dnsmasq, each serving the same bridge in a network
#    namespace (a /21, so a thousand fit): leases per second, the last lease's latency,
#    and the server's resident memory per lease (RSS after minus before, over CLIENTS).
#    cartable commits each lease (SQLite, synchronous=FULL, group-committed) before its
#    ACK; dnsmasq writes its lease file without fsync. dnsmasq runs with --no-ping
#    (cartable does not ping before offering either).
# 2. DNS over TLS: queries per second on reused connections (dnsperf -m dot, C
#    connections) for one cached allowed name, cartable's DoT beside unbound's DoT,
#    both on loopback with the same upstream (a local dnsmasq), each pinned to core 1
#    with dnsperf on core 0 when there are two cores.
#
#   tests/bench/dhcp.sh            (root: namespaces; nothing leaves the machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
CLIENTS=${CLIENTS:-1000}
WINDOW=${WINDOW:-64}
DOT_SECONDS=${DOT_SECONDS:-10}
DOT_CONNS=${DOT_CONNS:-8}
WORK=${WORK:-/tmp/cartable-bench-dhcp}
export PATH="$PATH:/usr/sbin:/sbin"
for tool in dnsmasq unbound dnsperf nft openssl ip; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run tests/run first" >&2; exit 1; }
done
rm -rf "$WORK"; mkdir -p "$WORK"
cargo build --release -p cartable -p cartable-systests --bin cartable --bin dhcp-client >/dev/null
CARTABLE=$PWD/target/release/cartable
CLIENT=$PWD/target/release/dhcp-client
NS_BOX=cbench-box NS_TAB=cbench-tab
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  sleep 0.3
  ip netns del "$NS_TAB" 2>/dev/null || true
  ip netns del "$NS_BOX" 2>/dev/null || true
}
trap cleanup EXIT
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

topology() {
  ip netns del "$NS_TAB" 2>/dev/null || true
  ip netns del "$NS_BOX" 2>/dev/null || true
  ip netns add "$NS_BOX"; ip netns add "$NS_TAB"
  ip -n "$NS_BOX" link set lo up; ip -n "$NS_TAB" link set lo up
  ip -n "$NS_BOX" link add tp1 type veth peer name eth0 netns "$NS_TAB"
  ip -n "$NS_TAB" link set eth0 up
}

# --- cartable's DHCP ----------------------------------------------------------------
topology
HTTP=$(free_port)
cat > "$WORK/box.toml" <<CONF
[appliance]
data_dir = "$WORK/box"
[http]
listen = "127.0.0.1:$HTTP"
[dns]
listen = ["0.0.0.0:53"]
system_resolvers = false
[net]
mode = "cart"
[net.lan]
ports = ["tp1"]
address = "10.42.0.1/21"
[net.dhcp]
range_start = "10.42.1.0"
range_end = "10.42.7.250"
[net.firewall]
enabled = false
CONF
ip netns exec "$NS_BOX" "$CARTABLE" run --config "$WORK/box.toml" 2> "$WORK/box.log" &
BOX=$!
until ip netns exec "$NS_BOX" curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null 2>&1 \
  || ip netns exec "$NS_BOX" curl -s "http://127.0.0.1:$HTTP/healthz" 2>/dev/null | grep -q degraded; do
  sleep 0.1
done
# As for dnsmasq below: the bridge up, then one tablet's lease (another MAC) before
# the clock starts, so that neither server is timed on the link's first packets.
until ip -n "$NS_BOX" link show br-cart 2>/dev/null | grep -q "state UP"; do sleep 0.05; done
ip netns exec "$NS_TAB" "$CLIENT" load eth0 1 1 ee >/dev/null
BEFORE=$(rss_kib "$BOX")
CART_DHCP=$(ip netns exec "$NS_TAB" "$CLIENT" load eth0 "$CLIENTS" "$WINDOW")
AFTER=$(rss_kib "$BOX")
CART_LEASES=$(ip netns exec "$NS_BOX" curl -s "http://127.0.0.1:$HTTP/api/v1/net" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["leases"]) - 1)')
CART_PER_LEASE=$(awk "BEGIN {printf \"%.0f\", ($AFTER - $BEFORE) * 1024 / $CLIENTS}")
kill "$BOX"; wait "$BOX" 2>/dev/null || true

# --- dnsmasq's DHCP -----------------------------------------------------------------
topology
ip -n "$NS_BOX" link add br-cart type bridge
ip -n "$NS_BOX" link set tp1 master br-cart
ip -n "$NS_BOX" link set tp1 up
ip -n "$NS_BOX" addr add 10.42.0.1/21 dev br-cart
ip -n "$NS_BOX" link set br-cart up
ip netns exec "$NS_BOX" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
  --interface=br-cart --bind-interfaces --user=root --pid-file= --no-ping \
  --dhcp-authoritative --dhcp-range=10.42.1.0,10.42.7.250,12h \
  --dhcp-leasefile="$WORK/dnsmasq.leases" --dhcp-lease-max=10000 --log-facility=- 2> "$WORK/dnsmasq.log" &
DM=$!
sleep 0.5
DM_PID=$(pgrep -n -x dnsmasq)
ip netns exec "$NS_TAB" "$CLIENT" load eth0 1 1 ee >/dev/null
BEFORE=$(rss_kib "$DM_PID")
DM_DHCP=$(ip netns exec "$NS_TAB" "$CLIENT" load eth0 "$CLIENTS" "$WINDOW")
AFTER=$(rss_kib "$DM_PID")
DM_LEASES=$(($(wc -l < "$WORK/dnsmasq.leases") - 1))
DM_PER_LEASE=$(awk "BEGIN {printf \"%.0f\", ($AFTER - $BEFORE) * 1024 / $CLIENTS}")
kill "$DM"; wait "$DM" 2>/dev/null || true

# --- DNS over TLS -------------------------------------------------------------------
CLIENT_CPU=() SERVER_CORE=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  CLIENT_CPU=(taskset -c 0); SERVER_CORE=1
fi
pin() { [ -z "$SERVER_CORE" ] || taskset -a -cp "$SERVER_CORE" "$1" >/dev/null; }
UP=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port="$UP" --user=root --pid-file= --local=/test/ \
  --address=/allowed.test/10.9.9.9 --local-ttl=3600 --log-facility=- 2>/dev/null &
sleep 0.3
for i in $(seq 1 1000); do echo "allowed.test A"; done > "$WORK/q-dot.txt"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=bench.test -keyout "$WORK/dot-key.pem" -out "$WORK/dot-cert.pem" 2>/dev/null

dot_qps() { # port pid -> queries per second
  dnsperf -m dot -s 127.0.0.1 -p "$1" -d "$WORK/q-dot.txt" -n 1 -c 1 >/dev/null 2>&1 || true
  pin "$2"
  "${CLIENT_CPU[@]}" dnsperf -m dot -s 127.0.0.1 -p "$1" -d "$WORK/q-dot.txt" \
    -l "$DOT_SECONDS" -c "$DOT_CONNS" -T 1 -q 200 > "$WORK/dot-$1.txt" 2>&1 || true
  awk '/Queries per second/ {printf "%.0f", $4}' "$WORK/dot-$1.txt"
  grep -q "Queries lost: *0 " "$WORK/dot-$1.txt" || grep "Queries lost" "$WORK/dot-$1.txt" >&2
}

PORT=$(free_port) DPORT=$(free_port) HTTP=$(free_port)
cat > "$WORK/dot.toml" <<CONF
[appliance]
data_dir = "$WORK/dot"
[http]
listen = "127.0.0.1:$HTTP"
[dns]
listen = ["127.0.0.1:$PORT"]
tls_listen = ["127.0.0.1:$DPORT"]
tls_cert_file = "$WORK/dot-cert.pem"
tls_key_file = "$WORK/dot-key.pem"
upstreams = ["127.0.0.1:$UP"]
client_rate = 0
CONF
"$CARTABLE" run --config "$WORK/dot.toml" 2> "$WORK/dot.log" &
BOX=$!
until curl -s "http://127.0.0.1:$HTTP/healthz" | grep -q -e ok -e degraded; do sleep 0.1; done
CART_DOT=$(dot_qps "$DPORT" "$BOX")
kill "$BOX"; wait "$BOX" 2>/dev/null || true

UPORT=$(free_port)
cat > "$WORK/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@$UPORT
  tls-port: $UPORT
  tls-service-key: "$WORK/dot-key.pem"
  tls-service-pem: "$WORK/dot-cert.pem"
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
  incoming-num-tcp: 100
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$UP
EOF
unbound -c "$WORK/unbound.conf" 2> "$WORK/unbound.log" &
UB=$!
sleep 0.5
UB_DOT=$(dot_qps "$UPORT" "$UB")
kill "$UB"; wait "$UB" 2>/dev/null || true

echo "DHCP: $CLIENTS clients (DISCOVER-OFFER-REQUEST-ACK, $WINDOW in flight), one bridge in a namespace, $(nproc) cores"
echo "| server | result | leases stored | memory per lease |"
echo "|---|---|---|---|"
echo "| cartable | $CART_DHCP | $CART_LEASES | $CART_PER_LEASE B |"
echo "| dnsmasq  | $DM_DHCP | $DM_LEASES | $DM_PER_LEASE B |"
echo
echo "DNS over TLS: dnsperf -m dot, $DOT_CONNS reused connections, one cached name, $DOT_SECONDS s, server on core ${SERVER_CORE:-any}"
echo "| server | queries per second |"
echo "|---|---|"
echo "| cartable | $CART_DOT |"
echo "| unbound  | $UB_DOT |"
echo "| cartable / unbound | $(awk "BEGIN {printf \"%.2f\", $CART_DOT / $UB_DOT}") |"
