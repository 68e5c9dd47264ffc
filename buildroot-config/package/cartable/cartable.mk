################################################################################
#
# cartable
#
################################################################################

# The project's release tarball already holds its crates in VENDOR/ (made by
# image/release-tarball), so Buildroot's download step uses it as is and the
# build runs --offline --locked; see buildroot-config/README.md.
CARTABLE_VERSION = 0.1.0
CARTABLE_SITE = https://github.com/cartable-school/cartable/releases/download/v$(CARTABLE_VERSION)
CARTABLE_LICENSE = Apache-2.0
CARTABLE_SUBDIR = appliance

# The root is read-only: the daemon's user is made at build time (makeusers), not
# by systemd-sysusers at boot (systemd/cartable.sysusers.conf says the same).
define CARTABLE_USERS
	cartable -1 cartable -1 * /var/lib/cartable - - Cartable daemon
endef

# The units, their presets (what Buildroot's `systemctl preset-all` enables) and the
# data partition's growth script.
define CARTABLE_INSTALL_INIT_SYSTEMD
	$(foreach unit,$(wildcard $(@D)/systemd/*.service $(@D)/systemd/*.path $(@D)/systemd/*.timer),\
		$(INSTALL) -D -m 0644 $(unit) \
			$(TARGET_DIR)/usr/lib/systemd/system/$(notdir $(unit))$(sep))
	$(INSTALL) -D -m 0644 $(@D)/systemd/80-cartable.preset \
		$(TARGET_DIR)/usr/lib/systemd/system-preset/80-cartable.preset
	$(INSTALL) -D -m 0644 $(@D)/systemd/cartable.sysusers.conf \
		$(TARGET_DIR)/usr/lib/sysusers.d/cartable.conf
	$(INSTALL) -D -m 0755 $(@D)/systemd/libexec/grow-data \
		$(TARGET_DIR)/usr/libexec/cartable/grow-data
endef

$(eval $(cargo-package))
