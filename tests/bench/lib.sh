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
