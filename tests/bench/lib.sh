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
