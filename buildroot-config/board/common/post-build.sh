#!/bin/sh
# Buildroot post-build script, every board (BR2_ROOTFS_POST_BUILD_SCRIPT): the root
# before it is packed into the read-only squashfs slot.
#
#   post-build.sh TARGET_DIR
set -eu
target=${1:?usage: post-build.sh TARGET_DIR}

# Mount points of the writable places (board/common/rootfs-overlay/etc/fstab).
mkdir -p "$target/data" "$target/boot/efi"
# Empty: the root is read-only, so systemd makes a machine ID in memory at each boot;
# what must outlive a reboot (the box's key) lives on /data.
: >"$target/etc/machine-id"
# The units the firmware starts are enabled by Buildroot's `systemctl preset-all`
# from the package's presets (systemd/80-cartable.preset).
