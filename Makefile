# SPDX-License-Identifier: GPL-2.0
#
# gpup-vfio top-level Makefile: wraps the kbuild pass (Kbuild) and the test,
# lint and benchmark lanes.  `make help` lists the targets.

# KDIR= on the command line or in the environment wins.  Otherwise the
# running kernel's build tree, else the headers of the Debian 6.12 release
# that `make deps` installed for the build and the test guest (scripts/deps
# --kver: the one place that decides it; the machine's own kernel has no
# build tree).  Expanded only when used (=, not :=), so that on a fresh
# machine it sees the headers that the `deps` prerequisite just installed.
gpup-top := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
gpup-kver = $(shell $(gpup-top)/scripts/deps --kver 2>/dev/null)
ifeq ($(KDIR),)
KDIR = $(strip $(or $(patsubst %/Makefile,%,$(wildcard \
	/lib/modules/$(shell uname -r)/build/Makefile)),$(if $(gpup-kver),\
	/usr/src/linux-headers-$(gpup-kver))))
endif
# The kernel release of KDIR, for the guest runner: it boots
# /boot/vmlinuz-$(KVER) with /lib/modules/$(KVER), the kernel the modules
# were built for.  Empty for a KDIR of another shape (the runner then
# asks scripts/deps --kver).
export KVER = $(filter-out /%,$(patsubst /lib/modules/%/build,%,$(patsubst \
	/usr/src/linux-headers-%,%,$(KDIR))))

GPUP_CACHE ?= /var/cache/gpup-vfio
SRC := $(GPUP_CACHE)/src
BUILD := $(CURDIR)/build
export GPUP_CACHE

KBUILD_ARGS = -C $(KDIR) M=$(CURDIR)
ifneq ($(W),)
KBUILD_ARGS += W=$(W)
endif
ifneq ($(C),)
KBUILD_ARGS += C=$(C)
endif

.PHONY: all modules modclean clean deps print-kdir check check-unit check-guest check-lint \
	check-debug check-sid check-two-hosts debug-kernel selftests smoke demo demo-two-hosts bench help \
	install uninstall deb

all: modules

deps:
	@scripts/deps

# No deps here: building (and make install) needs only the kernel's
# headers, for the running kernel or the KDIR given.
modules:
	@test -n "$(KDIR)" || { echo "no kernel build tree: install linux-headers-$$(uname -r), run make deps (Debian 6.12: $$($(gpup-top)/scripts/deps --kver 2>&1)) or give KDIR=" >&2; exit 1; }
	$(MAKE) $(KBUILD_ARGS) modules

selftests: deps
	$(MAKE) -C selftests/gpup O=$(BUILD)/selftests SRC=$(SRC)

# Install into /lib/modules/$(KVER)/updates (INSTALL_MOD_PATH= stages under
# another root) and run depmod, so that modprobe finds the modules by name
# and their dependencies, and modules.alias the driver's vfio_pci: IDs.
MODLIB = $(INSTALL_MOD_PATH)/lib/modules/$(KVER)
install: modules
	$(MAKE) $(KBUILD_ARGS) INSTALL_MOD_DIR=updates modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $(KVER)

uninstall:
	rm -f $(MODLIB)/updates/drivers/gpu/gpup-core/gpup_core.ko* \
		$(MODLIB)/updates/drivers/vfio/pci/gpup/gpup_vfio_pci.ko* \
		$(MODLIB)/updates/drivers/gpu/gpup-sim/gpup_sim.ko*
	-rmdir -p $(MODLIB)/updates/drivers/vfio/pci/gpup \
		$(MODLIB)/updates/drivers/gpu/gpup-core \
		$(MODLIB)/updates/drivers/gpu/gpup-sim 2>/dev/null
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $(KVER)

# The Debian package of the DKMS sources, in the layout Debian's NAME-dkms
# packages use (usr/src/gpup-vfio-VERSION, dh-dkms), built from a copy of
# the sources in build/deb.  Needs debhelper and dh-dkms (make deps).
VERSION := $(shell cat $(gpup-top)/VERSION)
DEB_STAGE = $(BUILD)/deb/gpup-vfio-$(VERSION)
deb:
	rm -rf $(BUILD)/deb
	mkdir -p $(DEB_STAGE)
	cp -r VERSION debian $(DEB_STAGE)/
	find Kbuild include drivers -name Kbuild -o -name '*.[ch]' ! -name '*.mod.c' | \
		cpio -pdm --quiet $(DEB_STAGE)
	cp dkms.conf $(DEB_STAGE)/debian/gpup-vfio-dkms.dkms
	printf 'gpup-vfio (%s) unstable; urgency=medium\n\n  * gpup-vfio %s.\n\n -- %s  %s\n' \
		'$(VERSION)' '$(VERSION)' \
		"$$(sed -n 's/^Maintainer: //p' debian/control)" \
		"$$(git log -1 --format=%aD 2>/dev/null || date -R)" \
		>$(DEB_STAGE)/debian/changelog
	cd $(DEB_STAGE) && dpkg-buildpackage -b -us -uc -nc \
		>$(BUILD)/deb/build.log 2>&1 || { tail -n 30 $(BUILD)/deb/build.log; exit 1; }
	@ls $(BUILD)/deb/gpup-vfio-dkms_$(VERSION)_all.deb

# The kernel build tree the modules are built against (scripts/check).
print-kdir:
	@echo $(KDIR)

# Module objects only; `clean` also drops build/ (test outputs, results).
modclean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean

clean: modclean
	$(MAKE) -C selftests/gpup O=$(BUILD)/selftests clean
	rm -rf $(BUILD)

# The three lanes of `make check`; each writes TAP into build/results/ and
# scripts/check prints every TAP line and the final tally.
check: deps
	@scripts/check all

check-unit: deps
	@scripts/check unit

check-guest: deps
	@scripts/check guest

check-lint: deps
	@scripts/check lint

# The guest suite on a debug kernel built from linux-source-6.12 (KASAN,
# lockdep, kmemleak, UBSAN, failslab, vfio cdev + iommufd), cached in
# $(GPUP_CACHE)/debug-kernel.
check-debug: deps
	@scripts/check debug

# The guest suite on the newest Debian (sid) kernel, our modules built in a
# sid chroot (scripts/sid-chroot, cached in $(GPUP_CACHE)/sid).
check-sid: deps
	@scripts/check sid

# Only the QEMU end to end across two hosts, on the stock and on the debug
# kernel (both are part of check-guest and check-debug).
check-two-hosts: deps
	@scripts/check two-hosts two-hosts-debug

debug-kernel: deps
	@scripts/debug-kernel/build --print

# Boot the guest and run the smoke test only.
smoke: deps
	@scripts/check smoke

# The main job: QEMU live-migrates a VM owning VF A to VF B in the guest
# (DEMO_KERNEL=debug: on the debug kernel, with QEMU's defaults).
demo: deps
	@scripts/check demo

# The same between two hosts: two guests on a private link, the VM going
# from host A to host B over TCP (DEMO_KERNEL=debug as above).
demo-two-hosts: deps
	@scripts/check demo-two-hosts

# Benchmarks (not tests): BENCH lines, VRAM sizes in BENCH_VRAM_MB.
bench: deps
	@scripts/check bench

help:
	@echo "make              build the modules (KDIR=$(KDIR))"
	@echo "make W=1 | C=2    extra warnings | sparse"
	@echo "make deps         install everything (idempotent)"
	@echo "make check        unit tests, guest kselftests, lint gates, debug, sid and two-host lanes"
	@echo "make check-unit | check-guest | check-lint | check-debug | check-sid   one lane"
	@echo "make check-two-hosts  only the tests across two hosts (stock and debug kernel)"
	@echo "make debug-kernel build (or reuse) the KASAN/lockdep/kmemleak kernel"
	@echo "make demo         QEMU live migration of a VM owning a VF, with a summary"
	@echo "make demo-two-hosts  the same from one guest host to another, over TCP"
	@echo "make smoke        boot the guest and run the smoke test"
	@echo "make bench        data_fd throughput and blackout figures"
	@echo "make install      modules into /lib/modules/KVER/updates, depmod"
	@echo "make uninstall    remove them, depmod"
	@echo "make deb          build/deb/gpup-vfio-dkms_VERSION_all.deb (DKMS)"
	@echo "make clean"
