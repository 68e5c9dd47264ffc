#!/usr/bin/env bash
# Replays two memory attacks from the school network against a box and prints its
# resident memory before and after each, so a build can be compared with an older one
# in one run: `tests/bench/attacks.sh [CARTABLE_BINARY ...]` (default: this
# workspace's release build).
#  1. 150 sign-ins with distinct 1 MiB login names, each from its own loopback address.
#  2. 8 uploads of 45 MiB with no cookie, stalled one byte short.
# Not a test: it asserts nothing. Traffic stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh

if (($# == 0)); then
  cargo build --release -p cartable --bin cartable >/dev/null
  set -- target/release/cartable
fi

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

measure() { # binary
  local bin=$1 dir port pid before after
  dir=$(mktemp -d)
  port=$(free_port)
  box_base "$dir" "127.0.0.1:$port" "127.0.0.1:$(free_port)" >"$dir/box.toml"
  "$bin" run --config "$dir/box.toml" >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  python3 - "$port" "$pid" <<'PY'
import socket, sys, json
port, pid = int(sys.argv[1]), int(sys.argv[2])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
def post(src, path, headers, body, stall=False, length=None):
    s = socket.create_connection(("127.0.0.1", port), source_address=(src, 0))
    head = f"POST {path} HTTP/1.1\r\nHost: box\r\nContent-Length: {length or len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    try:
        s.sendall(head.encode() + body)
    except OSError:
        pass
    if stall:
        return s
    s.settimeout(30)
    try:
        answer = s.recv(64).split()[1].decode()
    except Exception:
        answer = "none"
    s.close()
    return answer
before = rss()
codes = {}
for i in range(150):
    name = f"{i:03}" + "x" * ((1 << 20) - 3)
    body = json.dumps({"login": name, "password": "p"}).encode()
    c = post(f"127.0.4.{i}", "/api/v1/login", [("content-type", "application/json")], body)
    codes[c] = codes.get(c, 0) + 1
after = rss()
print(f"  150 sign-ins with distinct 1 MiB login names: answers {codes}; RSS {before} -> {after} KiB")
held = []
before = rss()
for i in range(8):
    held.append(post("127.0.0.1", "/api/v1/classes/1/documents?name=x", [], b"x" * (47185920 - 1), stall=True, length=47185920))
import time
time.sleep(2)
after = rss()
print(f"  8 uploads of 45 MiB, no cookie, stalled one byte short: RSS {before} -> {after} KiB")
PY
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

for bin in "$@"; do
  echo "$bin ($("$bin" --version))"
  measure "$bin"
done
