# U-Boot's boot script on the Pi: boots root slot A (partition 2) or B (partition 3)
# as RAUC's U-Boot backend says in the environment (BOOT_ORDER, BOOT_<slot>_LEFT).
# A boot takes one try off the slot it picks; `rauc status mark-good`, once the
# daemon serves, gives them back. A slot with no tries left is skipped. Each slot holds
# its own kernel in /boot of its read-only root; the device tree is the one the Pi
# firmware loaded for this model (its overlays and config.txt applied).

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv slot
for s in ${BOOT_ORDER}; do
  if test -z "${slot}"; then
    if test "${s}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv slot A
      setenv part 2
    elif test "${s}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv slot B
      setenv part 3
    fi
  fi
done

if test -z "${slot}"; then
  # Every slot used its tries: give them back and start over, rather than no slot.
  echo "Cartable: no slot left to try; resetting the tries"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  saveenv
  reset
fi
saveenv

setenv bootargs "${bootargs} root=/dev/mmcblk0p${part} ro rootwait rootfstype=squashfs console=ttyS0,115200 panic=10 rauc.slot=${slot}"
load mmc 0:${part} ${kernel_addr_r} /boot/Image
booti ${kernel_addr_r} - ${fdt_addr}
