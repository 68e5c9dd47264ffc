#!/bin/sh
# Writes GRUB's environment block as a new x86_64 box starts with: slot A installed
# and good, slot B empty (RAUC's GRUB backend variables; see grub.cfg). The format is
# GRUB's: a 1024-byte file, a header line, NAME=value lines, '#' padding.
#
#   grubenv.sh OUT-FILE
set -eu
out=$1
{
	printf '# GRUB Environment Block\n'
	printf 'ORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=0\nB_TRY=0\n'
} >"$out.tmp"
size=$(wc -c <"$out.tmp")
# Pad with '#' to 1024 bytes.
head -c $((1024 - size)) /dev/zero | tr '\0' '#' >>"$out.tmp"
mv "$out.tmp" "$out"
