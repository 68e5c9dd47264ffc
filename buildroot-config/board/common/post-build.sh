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

# RAUC installs only bundles signed for this fleet: its keyring (the fleet's update
# signing certificate, PEM) comes from the fleet's own release, never from this tree.
# Without one the firmware builds, and refuses every update.
if [ -n "${CARTABLE_RAUC_KEYRING:-}" ]; then
	install -D -m 0644 "$CARTABLE_RAUC_KEYRING" "$target/etc/rauc/keyring.pem"
else
	echo "post-build.sh: CARTABLE_RAUC_KEYRING not set: this firmware will refuse every update" >&2
fi
