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

define CARTABLE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/systemd/cartable.service \
		$(TARGET_DIR)/usr/lib/systemd/system/cartable.service
	$(INSTALL) -D -m 0644 $(@D)/systemd/cartable.sysusers.conf \
		$(TARGET_DIR)/usr/lib/sysusers.d/cartable.conf
endef

$(eval $(cargo-package))
