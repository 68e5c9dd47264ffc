#!/bin/sh
# Buildroot post-image script for the x86_64 box (BR2_ROOTFS_POST_IMAGE_SCRIPT): the
# EFI system partition's files, then the disk (genimage.cfg next to this script).
# Buildroot runs it from its own tree with BINARIES_DIR set.
set -eu
board=$(cd "$(dirname "$0")" && pwd)
: "${BINARIES_DIR:?run by Buildroot}"

# GRUB as Buildroot built it (BR2_TARGET_GRUB2_BUILTIN_MODULES_EFI), the slot choice,
# and the boot state a new box starts with: slot A good, slot B empty.
cp "$BINARIES_DIR/efi-part/EFI/BOOT/bootx64.efi" "$BINARIES_DIR/bootx64.efi"
cp "$board/grub.cfg" "$BINARIES_DIR/grub.cfg"
sh "$board/grubenv.sh" "$BINARIES_DIR/grubenv"

support/scripts/genimage.sh -c "$board/genimage.cfg"
