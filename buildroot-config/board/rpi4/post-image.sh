#!/bin/sh
# Buildroot post-image script for the Raspberry Pi (BR2_ROOTFS_POST_IMAGE_SCRIPT): the
# Pi firmware's config.txt (start U-Boot), U-Boot's boot script and the environment a
# new card starts with, then the card (genimage.cfg next to this script). Buildroot
# runs it from its own tree with BINARIES_DIR and HOST_DIR set.
set -eu
board=$(cd "$(dirname "$0")" && pwd)
: "${BINARIES_DIR:?run by Buildroot}" "${HOST_DIR:?run by Buildroot}"

cp "$board/config.txt" "$BINARIES_DIR/rpi-firmware/config.txt"
"$HOST_DIR/bin/mkimage" -A arm64 -O linux -T script -C none \
	-n "Cartable A/B boot" -d "$board/boot.cmd" "$BINARIES_DIR/boot.scr"
# RAUC's U-Boot backend keeps BOOT_ORDER and BOOT_<slot>_LEFT here (fw_env.config).
"$HOST_DIR/bin/mkenvimage" -s 0x10000 -o "$BINARIES_DIR/uboot-env.bin" "$board/uboot-env.txt"

support/scripts/genimage.sh -c "$board/genimage.cfg"
