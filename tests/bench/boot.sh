#!/usr/bin/env bash
# Boot to serving under qemu (TCG, no KVM here) and the firmware's size, in one run:
#  1. the test image booted ROUNDS times as built, and ROUNDS times with
#     cartable.service masked (systemd.mask= added to GRUB's command line on a copy of
#     the disk), alternating: from qemu's start to the first DNS answer, to /healthz
#     saying the daemon serves, and to multi-user.target, timed on this side from the
#     forwarded ports and the serial console; and by the box's own clock, from the
#     kernel timestamps on the console, the daemon's start to READY=1 and the time to
#     multi-user.target (the daemon's share of the boot is the difference of the
#     medians). Then the same daemon started natively here, for scale.
#  2. sizes: the root slot (squashfs), the whole disk image as written, the daemon.
#
#   tests/bench/boot.sh [ROUNDS]   (default 3)
#   IMAGES=DIR reuses images made by image/build-test-image DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
ROUNDS=${1:-3}
WORK=${WORK:-/tmp/cartable-bench-boot}
mkdir -p "$WORK"
IMAGES=${IMAGES:-$WORK/images}
if [ ! -f "$IMAGES/1/disk.img" ]; then
  cargo build --release -p cartable --bin cartable --locked
  CARTABLE_BIN=target/release/cartable image/build-test-image "$IMAGES"
fi

# The masked variant: the same disk, GRUB's command line masking the daemon (and the
# unit that waits for it to mark the slot good).
cp --sparse=always "$IMAGES/1/disk.img" "$WORK/masked.img"
mcopy -o -i "$WORK/masked.img@@1M" ::EFI/BOOT/grub.cfg "$WORK/grub.cfg"
sed -i 's/^set CMDLINE="/set CMDLINE="systemd.mask=cartable.service /' "$WORK/grub.cfg"
grep -q 'systemd.mask=cartable.service' "$WORK/grub.cfg"
mcopy -o -i "$WORK/masked.img@@1M" "$WORK/grub.cfg" ::EFI/BOOT/grub.cfg

value() { sed -n "s/^$1=//p" "$2"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
: >"$WORK/activation"; : >"$WORK/guest-served"; : >"$WORK/guest-masked"
for round in $(seq "$ROUNDS"); do
  # A fresh disk each round: every boot is a first boot (key, store, /data growth).
  cp --sparse=always "$IMAGES/1/disk.img" "$WORK/box.img"
  image/boot-test "$WORK/box.img" "$WORK/serial-served-$round.log" >"$WORK/served-$round"
  cp --sparse=always "$WORK/masked.img" "$WORK/box-masked.img"
  MASKED=1 image/boot-test "$WORK/box-masked.img" "$WORK/serial-masked-$round.log" >"$WORK/masked-$round"
  echo "round $round: served dns $(value dns_ms "$WORK/served-$round") ms," \
    "healthz $(value healthz_ms "$WORK/served-$round") ms," \
    "multi-user $(value multi_user_target_ms "$WORK/served-$round") ms;" \
    "masked multi-user $(value multi_user_target_ms "$WORK/masked-$round") ms"
done
med() { for r in $(seq "$ROUNDS"); do value "$1" "$WORK/$2-$r"; done | median; }
dns=$(med dns_ms served)
healthz=$(med healthz_ms served)
target=$(med multi_user_target_ms served)
masked=$(med multi_user_target_ms masked)
echo
echo "median of $ROUNDS boots, ms from qemu's start (TCG, 1 vCPU, on $(nproc) cores):"
echo "  first DNS answer          $dns"
echo "  /healthz serving          $healthz"
echo "  multi-user.target         $target"
echo "  multi-user.target, cartable.service masked  $masked"
echo "  difference: $((target - masked)) ms (includes firmware and GRUB time, noisy)"
echo "  DNS served before multi-user.target: $([ "$dns" -le "$target" ] && echo yes || echo no)"
# By the box's own clock (kernel timestamps of systemd's lines on the console): the
# daemon's start to its READY=1, and the target, served and masked.
stamp() { grep -a "systemd\[1\]: $1" "$2" | head -n 1 | sed 's/^.*\[ *\([0-9]*\)\.\([0-9][0-9][0-9]\).*/\1\2/'; }
for r in $(seq "$ROUNDS"); do
  s=$WORK/serial-served-$r.log m=$WORK/serial-masked-$r.log
  echo $(($(stamp 'Started cartable.service' "$s") - $(stamp 'Starting cartable.service' "$s"))) >>"$WORK/activation"
  stamp 'Reached target multi-user.target' "$s" >>"$WORK/guest-served"
  stamp 'Reached target multi-user.target' "$m" >>"$WORK/guest-masked"
done
activation=$(median <"$WORK/activation")
guest_served=$(median <"$WORK/guest-served")
guest_masked=$(median <"$WORK/guest-masked")
echo
echo "median, ms by the box's clock (from the kernel's start):"
echo "  cartable.service start to READY=1  $activation"
echo "  multi-user.target                  $guest_served"
echo "  multi-user.target, masked          $guest_masked"
echo "  the daemon's share of the boot: $((guest_served - guest_masked)) ms"

# The same daemon started natively on this machine, first start on an empty data
# folder, loopback ports, no system resolvers: start to first DNS answer.
: >"$WORK/native"
for r in $(seq 5); do
  rm -rf "$WORK/native-data"
  dns_port=$(free_port) http_port=$(free_port)
  box_base "$WORK/native-data" "127.0.0.1:$http_port" "127.0.0.1:$dns_port" >"$WORK/native.toml"
  t0=$(date +%s%3N)
  target/release/cartable run --config "$WORK/native.toml" 2>/dev/null &
  pid=$!
  until dig +tries=1 +time=1 -p "$dns_port" @127.0.0.1 use-application-dns.net 2>/dev/null | grep -q NXDOMAIN; do
    sleep 0.01
  done
  echo $(($(date +%s%3N) - t0)) >>"$WORK/native"
  kill "$pid"; wait "$pid" || true
done
echo "  native, this machine, start to first DNS answer (median of 5): $(median <"$WORK/native") ms"

echo
echo "sizes:"
echo "  root slot (squashfs)      $(stat -c %s "$IMAGES/1/rootfs.squashfs") bytes"
echo "  disk image (as written)   $(stat -c %s "$IMAGES/1/disk.img") bytes, $(du -B1 "$IMAGES/1/disk.img" | cut -f1) allocated"
echo "  daemon (stripped)         $(strip -o "$WORK/cartable" target/release/cartable && stat -c %s "$WORK/cartable") bytes"
echo "  disk image, xz -T0 -6     $(xz -T0 -6 -c "$IMAGES/1/disk.img" | wc -c) bytes"
