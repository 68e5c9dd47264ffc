#!/usr/bin/env bash
# Fleet updates, measured (issue #15), beside casync in one run.
#
# Two test images from image/build-test-image make a routine release: the second has
# the daemon of this checkout where the first has OLD_REV's, and one Debian package
# upgraded (libssl3, bookworm's point release -> bookworm-security's). Each root is a
# real RAUC bundle signed by a test CA. Three figures:
#
#  delta  A box (the directory backend, a real Mosquitto, cartable-central publishing)
#         takes release 1, then release 2: bytes the origin sent for release 2, against
#         the bundle, and against casync (`casync make` a chunk store of each bundle;
#         what the second's store adds to the first's, compressed as casync serves it).
#  link   A fresh box in a network namespace behind RATE (tc netem, or tbf, as sync.sh)
#         takes release 1; at half the bundle the link is cut (down) for CUT_SECS.
#         Time and bytes to a verified bundle, and bytes the origin sent twice.
#  site   BOXES boxes of one site, one the others' peer ([update] peers; it installs
#         at night, they at once), take release 1 then release 2: bytes the origin
#         sent for each, per site and per box.
#
#   tests/bench/update.sh            (needs root and tests/run first)
#
# Environment: PARTS (default "delta link site"), IMAGES=DIR (reuse images a previous
# run built there: DIR/1, DIR/2), OLD_REV (HEAD~1; or OLD_BIN, its daemon built), RATE (2mbit), DELAY (20ms),
# CUT_SECS (3600), BOXES (50), WORK (/tmp/cartable-bench-update), MKSQUASHFS_ARGS (how
# the bundles' squashfs is made; default "-noI -noD -noF -noX", as the README says: its
# blocks stored as they are; "" for RAUC's default, compressed).
set -euo pipefail
cd "$(dirname "$0")/../.."
PARTS=${PARTS:-delta link site}
OLD_REV=${OLD_REV:-HEAD~1}
RATE=${RATE:-2mbit}
DELAY=${DELAY:-20ms}
CUT_SECS=${CUT_SECS:-3600}
BOXES=${BOXES:-50}
WORK=${WORK:-/tmp/cartable-bench-update}
MKSQUASHFS_ARGS=${MKSQUASHFS_ARGS--noI -noD -noF -noX}
export PATH="$PATH:/usr/sbin:/sbin"
for tool in mosquitto tc ip curl python3 openssl rauc casync mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run tests/run first" >&2; exit 1; }
done
say() { echo "update.sh: $*" >&2; }
now_s() { date +%s; }
mb() { awk "BEGIN {printf \"%.2f\", $1 / 1000000}"; }
pct() { awk "BEGIN {printf \"%.1f\", 100 * $1 / $2}"; }
. tests/bench/lib.sh

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# What a previous run left: its keys, boxes and stop mark.
rm -rf "$WORK"/root.key "$WORK"/fleet.key* "$WORK"/delta-box* "$WORK"/link-box* \
  "$WORK"/site-* "$WORK/stop" "$WORK"/origin-*
say "building (release)"
cargo build --release -p cartable -p cartable-central -p cartable-systests --bins >/dev/null 2>&1
BIN=$PWD/target/release

# --- The two images and their bundles ------------------------------------------------
if [ -z "${IMAGES:-}" ]; then
  IMAGES=$WORK/images
  OLD_BIN=${OLD_BIN:-$WORK/old-target/release/cartable}
  if [ ! -x "$OLD_BIN" ]; then
    say "the daemon of $OLD_REV, in a worktree"
    rm -rf "$WORK/old-src"
    git worktree add --force --detach "$WORK/old-src" "$OLD_REV" >/dev/null
    CARGO_TARGET_DIR=$WORK/old-target cargo build --quiet --release \
      --manifest-path "$WORK/old-src/Cargo.toml" -p cartable --bin cartable
    git worktree remove --force "$WORK/old-src"
  fi
  rm -f "$WORK"/libssl3_*.deb
  (cd "$WORK" && apt-get download libssl3 >/dev/null)
  DEB=$(ls "$WORK"/libssl3_*.deb)
  CARTABLE_BIN=$OLD_BIN NEXT_BIN=$BIN/cartable NEXT_DEBS=$DEB \
    image/build-test-image "$IMAGES"
fi
V1=$(cat "$IMAGES/1/version"); V2=$(cat "$IMAGES/2/version")
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Cartable bench release CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
bundle() { # version image-dir out
  rm -rf "$WORK/content" "$3" && mkdir -p "$WORK/content"
  cp "$2/rootfs.squashfs" "$WORK/content/rootfs.img"
  printf '[update]\ncompatible=cartable-x86_64\nversion=%s\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n' \
    "$1" >"$WORK/content/manifest.raucm"
  rauc --cert="$WORK/ca.pem" --key="$WORK/ca.key" bundle \
    ${MKSQUASHFS_ARGS:+"--mksquashfs-args=$MKSQUASHFS_ARGS"} "$WORK/content" "$3" >/dev/null
}
B1=$WORK/cartable-$V1.raucb; B2=$WORK/cartable-$V2.raucb
bundle "$V1" "$IMAGES/1" "$B1"
bundle "$V2" "$IMAGES/2" "$B2"
SIZE1=$(stat -c %s "$B1"); SIZE2=$(stat -c %s "$B2")
say "bundles: $V1 $(mb "$SIZE1") MB, $V2 $(mb "$SIZE2") MB"

# --- The fleet: keys, broker, console, origin -----------------------------------------
C=$BIN/cartable-central
PIN=$("$C" keygen --root --out "$WORK/root.key" | sed -n 's/^fleet_public_key = //p')
WK=$("$C" keygen --out "$WORK/fleet.key" | sed -n 's/^working_key = //p' | tr -d '"')
"$C" certify --root "$WORK/root.key" --key "$WK" --days 30 --out "$WORK/fleet.key.cert" >/dev/null

cleanup() {
  touch "$WORK/stop"
  pkill -f -- "--config $WORK/" 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true
  [ -n "${OUT:-}" ] && ip link del "$OUT" 2>/dev/null || true
  [ -n "${NS:-}" ] && ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

start_broker() { # host port
  printf 'listener %s %s\nallow_anonymous true\nuser root\nmax_queued_messages 0\n' "$2" "$1" \
    >"$WORK/mosquitto-$2.conf"
  mosquitto -c "$WORK/mosquitto-$2.conf" 2>"$WORK/mosquitto-$2.log" &
  until python3 -c "import socket; socket.create_connection(('$1', $2), 1)" 2>/dev/null; do sleep 0.1; done
}
start_origin() { # listen-addr store stats
  "$BIN/update-origin" "$1" "$2" "$3" 2>"$3.log" &
  until [ -s "$3" ]; do sleep 0.1; done
}
origin() { # stats field
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"
}
# The origin's counts, once it has written them after everything so far.
origin_settled() { sleep 1.5; origin "$@"; }

# A box: its config, and a loop that starts it again after each "reboot" (a clean
# exit of the directory backend).
box() { # name broker-addr http peers window [netns]
  local dir=$WORK/$1
  mkdir -p "$dir"
  cat >"$dir.toml" <<CONF
[appliance]
data_dir = "$dir"
id = "$1"
[http]
listen = "$3"
[dns]
listen = ["127.0.0.1:$(free_port)"]
system_resolvers = false
[sync]
broker = "mqtt://$2"
batch_max_age_secs = 0
fleet_public_key = $PIN
[update]
backend = "directory"
keyring = "$WORK/ca.pem"
board = "x86_64"
version = "0.0.1"
window = "$5"
health_timeout_secs = 120
peers = [$4]
CONF
  local pfx=()
  [ -n "${6:-}" ] && pfx=(ip netns exec "$6")
  (
    while [ ! -e "$WORK/stop" ]; do
      "${pfx[@]}" "$BIN/cartable" run --config "$dir.toml" 2>>"$dir.log" || break
    done
  ) &
}
status() { # http [netns] -> "state running bytes_done bytes"
  local pfx=()
  [ -n "${2:-}" ] && pfx=(ip netns exec "$2")
  "${pfx[@]}" curl -sf -m 5 "http://$1/api/v1/status" 2>/dev/null | python3 -c '
import json, sys
u = json.load(sys.stdin)["update"]
p = u.get("progress", {})
print(u["state"], u["running"], p.get("bytes_done", 0), p.get("bytes", 0), u.get("version") or "-")' 2>/dev/null || echo "down - 0 0 -"
}
wait_running() { # http version [netns]
  until [ "$(status "$1" "${3:-}" | awk '{print $1, $2}')" = "committed $2" ]; do sleep 1; done
}
wait_holding() { # http version: verified, waiting for its install window
  until [ "$(status "$1" | awk '{print $1, $5}')" = "waiting_for_window $2" ]; do sleep 1; done
}
publish() { # bundle version broker origin-url
  "$C" release publish "$1" --version "$2" --board x86_64 --store "$WORK/chunks" \
    --chunk-url "$4/chunks" --key "$WORK/fleet.key" --broker "$3" >/dev/null
}
ALL_DAY=00:00-23:59
rm -rf "$WORK/chunks" && mkdir -p "$WORK/chunks"

# --- delta ------------------------------------------------------------------------------
if [[ " $PARTS " == *" delta "* ]]; then
  say "delta: one box takes $V1, then $V2"
  BP=$(free_port); start_broker 127.0.0.1 "$BP"
  OA=127.0.0.1:$(free_port); start_origin "$OA" "$WORK/chunks" "$WORK/origin-delta.json"
  H=127.0.0.1:$(free_port)
  box delta-box "127.0.0.1:$BP" "$H" "" "$ALL_DAY"
  publish "$B1" "$V1" "127.0.0.1:$BP" "http://$OA"
  wait_running "$H" "$V1"
  FULL=$(origin_settled "$WORK/origin-delta.json" bytes_sent)
  publish "$B2" "$V2" "127.0.0.1:$BP" "http://$OA"
  wait_running "$H" "$V2"
  DELTA=$(( $(origin_settled "$WORK/origin-delta.json" bytes_sent) - FULL ))
  say "casync make of each bundle"
  rm -rf "$WORK/casync" && mkdir -p "$WORK/casync"
  casync make --store="$WORK/casync/s1" "$WORK/casync/1.caibx" "$B1" >/dev/null
  casync make --store="$WORK/casync/s2" "$WORK/casync/2.caibx" "$B2" >/dev/null
  CASYNC=$(python3 - "$WORK/casync/s1" "$WORK/casync/s2" <<'PY'
import os, sys
def chunks(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            if f.endswith(".cacnk"):
                out[f] = os.path.getsize(os.path.join(root, f))
    return out
a, b = chunks(sys.argv[1]), chunks(sys.argv[2])
print(sum(s for n, s in b.items() if n not in a), sum(b.values()), len(b), len([n for n in b if n not in a]))
PY
)
  read -r CA_NEW CA_ALL CA_N CA_NEW_N <<<"$CASYNC"
  pkill -f -- "--config $WORK/delta-box" || true
  DELTA_ROWS="| cartable (FastCDC 16/64/256 KiB, chunks as they are) | $(mb "$DELTA") MB | $(pct "$DELTA" "$SIZE2") % |
| casync make (64 KiB average, compressed chunks) | $(mb "$CA_NEW") MB ($CA_NEW_N of $CA_N chunks) | $(pct "$CA_NEW" "$SIZE2") % |"
  say "delta: cartable $(mb "$DELTA") MB, casync $(mb "$CA_NEW") MB, bundle $(mb "$SIZE2") MB"
fi

# --- link -------------------------------------------------------------------------------
if [[ " $PARTS " == *" link "* ]]; then
  say "link: a fresh box takes $V1 over $RATE, cut for $CUT_SECS s at half"
  NS=cartable-bench-upd-$$; OUT=cuout$$; IN=cuin$$
  # The cut: the host's end of the link down (no carrier, every packet lost), then up.
  shaped_link "$NS" "$OUT" "$IN" 10.233.0
  rx_bytes() { ip netns exec "$NS" cat "/sys/class/net/$IN/statistics/rx_bytes"; }
  LP=$(free_port); start_broker 10.233.0.1 "$LP"
  OL=10.233.0.1:$(free_port); start_origin "$OL" "$WORK/chunks" "$WORK/origin-link.json"
  # Release 1's chunks are in the store already when the delta part ran.
  publish "$B1" "$V1" "10.233.0.1:$LP" "http://$OL"
  H=127.0.0.1:$(free_port)
  RX0=$(rx_bytes); T0=$(now_s)
  box link-box "10.233.0.1:$LP" "$H" "" "$ALL_DAY" "$NS"
  until read -r _ _ got total _ <<<"$(status "$H" "$NS")" && [ "$total" -gt 0 ] && [ $((got * 2)) -ge "$total" ]; do sleep 1; done
  say "link: cut at $(mb "$got") of $(mb "$total") MB, $(( $(now_s) - T0 )) s in"
  ip link set "$OUT" down
  sleep "$CUT_SECS"
  ip link set "$OUT" up
  say "link: back"
  until case $(status "$H" "$NS" | awk '{print $1}') in
      verified|waiting_for_window|installing|rebooting|checking|committed) true ;;
      *) false ;; esac; do sleep 1; done
  T1=$(now_s); RX1=$(rx_bytes)
  LINK_SENT=$(origin_settled "$WORK/origin-link.json" bytes_sent)
  LINK_TWICE=$(origin "$WORK/origin-link.json" bytes_sent_twice)
  pkill -f -- "--config $WORK/link-box" || true
  LINK_ROW="| $SHAPER, cut $CUT_SECS s at half | $(( T1 - T0 )) s | $(mb "$LINK_SENT") MB | $(mb $((RX1 - RX0))) MB | $(mb "$LINK_TWICE") MB |"
  say "link: $(( T1 - T0 )) s, twice $LINK_TWICE bytes"
fi

# --- site -------------------------------------------------------------------------------
if [[ " $PARTS " == *" site "* ]]; then
  say "site: $BOXES boxes, one the others' peer"
  SP=$(free_port); start_broker 127.0.0.1 "$SP"
  OS=127.0.0.1:$(free_port); start_origin "$OS" "$WORK/chunks" "$WORK/origin-site.json"
  HTTP=()
  for i in $(seq 0 $((BOXES - 1))); do
    HTTP+=("127.0.0.1:$(free_port)")
  done
  # The peer installs at night, as every box of a school would (its window is closed
  # now, half a day away): it holds each release all day for the others, which here
  # install at once.
  h=$(( (10#$(date +%H) + 12) % 24 ))
  NIGHT=$(printf '%02d:00-%02d:01' "$h" "$h")
  box site-0 "127.0.0.1:$SP" "${HTTP[0]}" "" "$NIGHT"
  for i in $(seq 1 $((BOXES - 1))); do
    box "site-$i" "127.0.0.1:$SP" "${HTTP[$i]}" "\"http://${HTTP[0]}\"" "$ALL_DAY"
  done
  for v in 1 2; do
    b=B$v; ver=V$v
    BEFORE=$(origin_settled "$WORK/origin-site.json" bytes_sent)
    publish "${!b}" "${!ver}" "127.0.0.1:$SP" "http://$OS"
    wait_holding "${HTTP[0]}" "${!ver}"
    for h in "${HTTP[@]:1}"; do wait_running "$h" "${!ver}"; done
    SENT=$(( $(origin_settled "$WORK/origin-site.json" bytes_sent) - BEFORE ))
    SITE_ROWS="${SITE_ROWS:-}| ${!ver} ($([ $v = 1 ] && echo "first install" || echo "the delta")) | $(mb "$SENT") MB | $(mb $((SENT / BOXES))) MB |
"
    say "site: ${!ver}: $(mb "$SENT") MB from the origin"
  done
  pkill -f -- "--config $WORK/site-" || true
fi

echo
echo "Releases: $V1 -> $V2 (the daemon of $OLD_REV -> this checkout's, $(basename "${DEB:-libssl3 upgraded}"))"
echo "Bundles (RAUC, verity, signed, mksquashfs ${MKSQUASHFS_ARGS:-defaults}): $(mb "$SIZE1") MB and $(mb "$SIZE2") MB"
if [ -n "${DELTA_ROWS:-}" ]; then
  echo
  echo "| fetched for $V2 by a box on $V1 | bytes | of the bundle |"
  echo "|---|---|---|"
  echo "$DELTA_ROWS"
fi
if [ -n "${LINK_ROW:-}" ]; then
  echo
  echo "| link, release $V1 from nothing | time to a verified bundle | origin sent | box received (veth) | sent twice |"
  echo "|---|---|---|---|---|"
  echo "$LINK_ROW"
fi
if [ -n "${SITE_ROWS:-}" ]; then
  echo
  echo "| $BOXES boxes of one site, one the others' peer | origin sent | per box |"
  echo "|---|---|---|"
  printf '%s' "$SITE_ROWS"
fi
