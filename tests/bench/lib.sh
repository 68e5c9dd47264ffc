# Sourced by the benchmarks: a free loopback port, and the lines every benchmark's box
# starts from (its own data, HTTP and DNS on loopback, no system resolvers). The [dns]
# table comes last, so a benchmark may append more of its keys.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

box_base() { # data_dir http_addr dns_addr
  cat <<CONF
[appliance]
data_dir = "$1"
[http]
listen = "$2"
[dns]
listen = ["$3"]
system_resolvers = false
CONF
}

# CPU seconds (user + system, in clock ticks) process $1 has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# A network namespace $1 behind a veth pair ($2 here, $3 there) on NET.0/30 ($4: "10.232.0":
# .1 here, .2 there, its default route), shaped to RATE both ways: netem where the
# kernel has it, DELAY added; else a token bucket at the same rate (no added delay).
# Says which in SHAPER.
shaped_link() { # ns out in net
  ip netns add "$1"
  ip link add "$2" type veth peer name "$3"
  ip link set "$3" netns "$1"
  ip addr add "$4.1/30" dev "$2"; ip link set "$2" up
  ip netns exec "$1" ip link set lo up
  ip netns exec "$1" ip addr add "$4.2/30" dev "$3"
  ip netns exec "$1" ip link set "$3" up
  ip netns exec "$1" ip route add default via "$4.1"
  if tc qdisc add dev "$2" root netem rate "$RATE" delay "$DELAY" 2>/dev/null; then
    ip netns exec "$1" tc qdisc add dev "$3" root netem rate "$RATE" delay "$DELAY"
    SHAPER="tc netem, $RATE each way, $DELAY delay"
  else
    tc qdisc add dev "$2" root tbf rate "$RATE" burst 16kb latency 400ms
    ip netns exec "$1" tc qdisc add dev "$3" root tbf rate "$RATE" burst 16kb latency 400ms
    SHAPER="tc tbf (this kernel has no netem), $RATE each way"
  fi
}

# A private PostgreSQL cluster under $1 (run as the postgres user when root), trusting
# the user `cartable` on loopback. Sets PGBIN, PGPORT; `as_pg CMD...` runs a tool as its
# owner, `stop_postgres DIR` stops it (for the caller's trap).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_postgres() { # dir
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  [ -x "$PGBIN/postgres" ] || { echo "missing PostgreSQL: run tests/run first" >&2; exit 1; }
  mkdir -p "$1"; [ "$(id -u)" = 0 ] && chown postgres: "$1"
  as_pg "$PGBIN/initdb" -D "$1/data" -A trust -U cartable --no-sync >/dev/null
  PGPORT=$(free_port)
  as_pg "$PGBIN/postgres" -D "$1/data" -p "$PGPORT" -h 127.0.0.1 -k "$1" 2>"$1.log" &
  for _ in $(seq 100); do
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U cartable -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "PostgreSQL did not start: $(cat "$1.log")" >&2; exit 1
}
stop_postgres() { # dir
  [ -f "$1/data/postmaster.pid" ] && kill -INT "$(head -1 "$1/data/postmaster.pid")" 2>/dev/null
  return 0
}
