# SPDX-License-Identifier: GPL-2.0
#
# gpup-vfio top-level Makefile: wraps the kbuild pass (Kbuild) and the test,
# lint and benchmark lanes.  `make help` lists the targets.

# KDIR= on the command line or in the environment wins.  Otherwise the
# running kernel's build tree, else the newest installed Debian 6.12
# headers (the kernel the test guest boots; the machine's own kernel has no
# build tree).  Expanded only when used (=, not :=), so that on a fresh
# machine it sees the headers that the `deps` prerequisite just installed.
gpup-newest-headers = $(shell ls -d /usr/src/linux-headers-6.12.*+deb12-amd64 \
	2>/dev/null | sort -V | tail -n 1)
ifeq ($(KDIR),)
KDIR = $(or $(patsubst %/Makefile,%,$(wildcard \
	/lib/modules/$(shell uname -r)/build/Makefile)),$(gpup-newest-headers))
endif
# The kernel release of KDIR, for the guest runner: it boots
# /boot/vmlinuz-$(KVER) with /lib/modules/$(KVER), the kernel the modules
# were built for.  Empty for a KDIR of another shape (the runner then
# picks the newest Debian 6.12).
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

.PHONY: all modules modclean clean deps check check-unit check-guest check-lint \
	check-debug debug-kernel selftests smoke demo bench help

all: modules

deps:
	@scripts/deps

modules: deps
	$(MAKE) $(KBUILD_ARGS) modules

selftests: deps
	$(MAKE) -C selftests/gpup O=$(BUILD)/selftests SRC=$(SRC)

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

debug-kernel: deps
	@scripts/debug-kernel/build --print

# Boot the guest and run the smoke test only.
smoke: deps
	@scripts/check smoke

# The main job: QEMU live-migrates a VM owning VF A to VF B in the guest
# (DEMO_KERNEL=debug: on the debug kernel, with QEMU's defaults).
demo: deps
	@scripts/check demo

# Benchmarks (not tests): BENCH lines, VRAM sizes in BENCH_VRAM_MB.
bench: deps
	@scripts/check bench

help:
	@echo "make              build the modules (KDIR=$(KDIR))"
	@echo "make W=1 | C=2    extra warnings | sparse"
	@echo "make deps         install everything (idempotent)"
	@echo "make check        unit tests, guest kselftests, lint gates, debug-kernel lane"
	@echo "make check-unit | check-guest | check-lint | check-debug   one lane"
	@echo "make debug-kernel build (or reuse) the KASAN/lockdep/kmemleak kernel"
	@echo "make demo         QEMU live migration of a VM owning a VF, with a summary"
	@echo "make smoke        boot the guest and run the smoke test"
	@echo "make bench        data_fd throughput and blackout figures"
	@echo "make clean"
