#!/usr/bin/env bash
# The app and update cache on loopback, side by side with nginx (Debian's) in one run:
#  1. warm: a SIZE_MB object served to CLIENTS concurrent curl clients by the box and
#     by nginx serving the same file (sendfile on): total throughput, and the box's
#     peak memory (VmHWM);
#  2. cold: COLD_CLIENTS concurrent clients ask the box for a COLD_MB object it does
#     not hold yet; nginx is the origin and its log counts the bytes it sent;
#  3. one client, cold, from an origin capped at 20 MB/s (a WAN link): straight from
#     nginx, then through the box (which streams while it fills).
#
#   tests/bench/cache.sh [SIZE_MB] [CLIENTS] [COLD_MB] [COLD_CLIENTS]
#   (default 1024 50 100 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MB=${1:-1024}
CLIENTS=${2:-50}
COLD_MB=${3:-100}
COLD_CLIENTS=${4:-200}
WORK=${WORK:-/tmp/cartable-bench-cache}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -p cartable --bins >/dev/null 2>&1
BIN=$PWD/target/release
rm -rf "$WORK" && mkdir -p "$WORK/www" "$WORK/nginx"
. tests/bench/lib.sh

echo "making the objects ($SIZE_MB MB and $COLD_MB MB of random bytes)"
dd if=/dev/urandom of="$WORK/www/big.apk" bs=1M count="$SIZE_MB" status=none
dd if=/dev/urandom of="$WORK/www/cold.apk" bs=1M count="$COLD_MB" status=none
dd if=/dev/urandom of="$WORK/www/wan.apk" bs=1M count="$COLD_MB" status=none
WAN_SHA=$(sha256sum "$WORK/www/wan.apk" | cut -d' ' -f1)
BIG_SHA=$(sha256sum "$WORK/www/big.apk" | cut -d' ' -f1)
COLD_SHA=$(sha256sum "$WORK/www/cold.apk" | cut -d' ' -f1)

NGINX_PORT=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log $WORK/nginx/access.log;
  log_format sent '\$request_uri \$status \$body_bytes_sent';
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  sendfile on; tcp_nopush on;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
    access_log $WORK/nginx/sent.log sent;
    location /wan/ { alias $WORK/www/; limit_rate 20m; }
  }
}
CONF
"$NGINX" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
NGX=$!

HTTP=127.0.0.1:$(free_port)
cat > "$WORK/catalogue.json" <<JSON
{"items": [
  {"id": "big", "version": "1", "urls": ["http://127.0.0.1:$NGINX_PORT/big.apk"],
   "size": $((SIZE_MB * 1048576)), "sha256": "$BIG_SHA", "pinned": true},
  {"id": "cold", "version": "1", "urls": ["http://127.0.0.1:$NGINX_PORT/cold.apk"],
   "size": $((COLD_MB * 1048576)), "sha256": "$COLD_SHA"},
  {"id": "wan", "version": "1", "urls": ["http://127.0.0.1:$NGINX_PORT/wan/wan.apk"],
   "size": $((COLD_MB * 1048576)), "sha256": "$WAN_SHA"}
]}
JSON
{ box_base "$WORK/data" "$HTTP" "127.0.0.1:$(free_port)"; cat; } > "$WORK/box.toml" <<CONF
[cache]
catalogue = "$WORK/catalogue.json"
# No prefetch: the objects come by pull-through, as the benchmark asks.
windows = [{ days = [], from = "00:00", to = "23:59" }]
CONF
"$BIN/cartable" run --config "$WORK/box.toml" 2>"$WORK/box.log" &
BOX=$!
trap 'kill $BOX $NGX 2>/dev/null || true' EXIT
until curl -sf "http://$HTTP/healthz" >/dev/null; do sleep 0.1; done
until curl -sf "http://127.0.0.1:$NGINX_PORT/big.apk" -r 0-0 -o /dev/null; do sleep 0.1; done
echo "box: cartable run (release), pid $BOX; peer: nginx $("$NGINX" -v 2>&1 | cut -d/ -f2), $(nproc) cores"

# Fetch the big object into the box once (pull-through) before timing.
curl -sf -o /dev/null "http://$HTTP/cache/$BIG_SHA"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
echo "box RSS before: $(rss_kb $BOX) KiB"

# CLIENTS concurrent downloads of URL; prints seconds and checks every size.
fan_out() {
  local url=$1 n=$2 want=$3 t0 t1 bad=0
  t0=$(date +%s.%N)
  for _ in $(seq "$n"); do
    curl -s -o /dev/null -w '%{size_download}\n' "$url" &
  done > "$WORK/sizes"
  wait
  t1=$(date +%s.%N)
  bad=$(grep -vcx "$want" "$WORK/sizes" || true)
  echo "$t0 $t1 $bad"
}

run_warm() {
  local name=$1 url=$2
  read -r t0 t1 bad < <(fan_out "$url" "$CLIENTS" $((SIZE_MB * 1048576)))
  python3 - "$name" "$t0" "$t1" "$bad" "$CLIENTS" "$SIZE_MB" <<'PY'
import sys
name, t0, t1, bad, n, mb = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
secs = t1 - t0
print(f"{name:9} {n} x {mb} MiB in {secs:6.2f} s = {n * mb / 1024 / secs:6.2f} GiB/s  (short downloads: {bad})")
PY
}

echo "warm: $CLIENTS clients x $SIZE_MB MiB each"
for round in 1 2; do
  run_warm "nginx" "http://127.0.0.1:$NGINX_PORT/big.apk"
  run_warm "cartable" "http://$HTTP/cache/$BIG_SHA"
done
echo "box peak RSS (VmHWM): $(awk '/^VmHWM/ {print $2}' /proc/$BOX/status) KiB, now $(rss_kb $BOX) KiB"

echo "cold: $COLD_CLIENTS clients ask the box for a $COLD_MB MiB object it does not hold"
: > "$WORK/nginx/sent.log"
read -r t0 t1 bad < <(fan_out "http://$HTTP/cache/$COLD_SHA" "$COLD_CLIENTS" $((COLD_MB * 1048576)))
sleep 1
python3 - "$t0" "$t1" "$bad" "$WORK/nginx/sent.log" "$COLD_MB" "$COLD_CLIENTS" <<'PY'
import sys
t0, t1, bad, log, mb, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
rows = [l.split() for l in open(log) if "/cold.apk" in l]
sent = sum(int(r[2]) for r in rows)
print(f"cold      {n} clients in {t1 - t0:.2f} s (short downloads: {bad}); origin requests: {len(rows)}, "
      f"bytes sent by the origin: {sent} = {sent / (mb * 1048576):.3f} x the object")
PY
echo "box peak RSS (VmHWM) after all: $(awk '/^VmHWM/ {print $2}' /proc/$BOX/status) KiB"

echo "one client, cold, origin capped at 20 MB/s:"
curl -s -o /dev/null -w "direct    %{time_total} s, %{size_download} bytes\n" \
  "http://127.0.0.1:$NGINX_PORT/wan/wan.apk"
curl -s -o /dev/null -w "via box   %{time_total} s, %{size_download} bytes\n" \
  "http://$HTTP/cache/$WAN_SHA"
