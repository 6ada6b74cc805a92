// SPDX-License-Identifier: GPL-2.0
/*
 * Smoke test: both modules load, gpup_sim takes the igb PF by
 * driver_override, VFs appear, a VF binds to gpup_vfio_pci and opens
 * through the VFIO type1 group/container interface, or through its cdev
 * bound to iommufd with GPUP_VFIO_IFACE=cdev.  A VF whose PF has no
 * migration provider (the PF driven by stock igb) binds too, as plain
 * vfio-pci without migration, and the log says why once.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

FIXTURE(smoke) {
	char pf[GPUP_BDF_LEN];
	char vf[GPUP_BDF_LEN];
	struct gpup_vfio v;
};

FIXTURE_SETUP(smoke)
{
	ASSERT_EQ(0, gpup_setup_vf(self->pf, 2, 0, self->vf));
	ASSERT_EQ(0, gpup_vfio_open(self->vf, &self->v));
}

FIXTURE_TEARDOWN(smoke)
{
	gpup_vfio_close(&self->v);
	gpup_unbind(self->vf);
	gpup_set_numvfs(self->pf, 0);
}

TEST_F(smoke, drivers_bound)
{
	char drv[64];

	ASSERT_EQ(0, gpup_driver_of(self->pf, drv, sizeof(drv)));
	EXPECT_STREQ("gpup_sim", drv);
	ASSERT_EQ(0, gpup_driver_of(self->vf, drv, sizeof(drv)));
	EXPECT_STREQ("gpup_vfio_pci", drv);
}

TEST_F(smoke, device_info)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info cfg = {
		.argsz = sizeof(cfg),
		.index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	unsigned short vendor = 0;

	ASSERT_EQ(0, ioctl(self->v.device, VFIO_DEVICE_GET_INFO, &info));
	EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI);
	EXPECT_GE(info.num_regions, VFIO_PCI_CONFIG_REGION_INDEX + 1);
	EXPECT_GE(info.num_irqs, VFIO_PCI_MSIX_IRQ_INDEX + 1);

	/* Config space reads go through vfio-pci core: the VF's vendor. */
	ASSERT_EQ(0, ioctl(self->v.device, VFIO_DEVICE_GET_REGION_INFO, &cfg));
	ASSERT_EQ(2, pread(self->v.device, &vendor, 2, cfg.offset));
	EXPECT_EQ(GPUP_PF_VENDOR, vendor);
}

TEST_F(smoke, opened_through_requested_interface)
{
	char link[64], target[128] = "";

	snprintf(link, sizeof(link), "/proc/self/fd/%d", self->v.device);
	ASSERT_LT(0, readlink(link, target, sizeof(target) - 1));
	TH_LOG("%s: %s", gpup_vfio_iface_name(self->v.iface), target);
	ASSERT_EQ(gpup_vfio_iface(), self->v.iface);
	if (self->v.iface == GPUP_VFIO_CDEV) {
		EXPECT_EQ(0, strncmp(target, "/dev/vfio/devices/vfio", 22));
		EXPECT_LE(0, self->v.iommufd);
		EXPECT_GT(self->v.ioas_id, 0);
	} else {
		EXPECT_STREQ("anon_inode:[vfio-device]", target);
		EXPECT_LE(0, self->v.group);
	}
}

TEST_F(smoke, vfs_have_own_groups)
{
	char vf1[GPUP_BDF_LEN], path[128];

	ASSERT_EQ(0, gpup_vf_bdf(self->pf, 1, vf1));
	EXPECT_NE(gpup_iommu_group(self->vf), gpup_iommu_group(vf1));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", vf1);
	EXPECT_EQ(0x10ca, gpup_read_long(path));
}

/*
 * The PF under stock igb registers no provider: its VF still binds to
 * gpup_vfio_pci and works as vfio-pci, offers no migration, and the
 * driver says why in one log line per bind, not per open.
 */
TEST(no_provider_plain_vfio)
{
	char pf[GPUP_BDF_LEN], vf[GPUP_BDF_LEN], needle[96], drv[64];
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct gpup_vfio v;
	unsigned short vendor = 0;
	struct vfio_region_info cfg = {
		.argsz = sizeof(cfg),
		.index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	u64 flags;
	int kmsg, i;

	ASSERT_EQ(0, gpup_run("modprobe -a igb vfio_iommu_type1 gpup_vfio_pci"));
	ASSERT_EQ(0, gpup_find_pf(pf));
	ASSERT_EQ(0, gpup_driver_of(pf, drv, sizeof(drv)));
	if (!strcmp(drv, "gpup_sim"))
		ASSERT_EQ(0, gpup_set_numvfs(pf, 0));
	ASSERT_EQ(0, gpup_bind_override(pf, "igb"));
	ASSERT_EQ(0, gpup_set_numvfs(pf, 1));
	ASSERT_EQ(0, gpup_vf_bdf(pf, 0, vf));

	kmsg = gpup_kmsg_open();
	ASSERT_LE(0, kmsg);
	ASSERT_EQ(0, gpup_bind_override(vf, "gpup_vfio_pci"));

	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, gpup_vfio_open(vf, &v));
		ASSERT_EQ(0, ioctl(v.device, VFIO_DEVICE_GET_INFO, &info));
		EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI);
		ASSERT_EQ(0, ioctl(v.device, VFIO_DEVICE_GET_REGION_INFO, &cfg));
		EXPECT_EQ(2, pread(v.device, &vendor, 2, cfg.offset));
		EXPECT_EQ(GPUP_PF_VENDOR, vendor);
		/* vfio core: no mig_ops, no migration feature. */
		EXPECT_EQ(-ENOTTY, gpup_mig_flags(v.device, &flags));
		gpup_vfio_close(&v);
	}

	snprintf(needle, sizeof(needle),
		 "gpup: no migration provider for PF %s, no migration", pf);
	EXPECT_EQ(1, gpup_kmsg_count(kmsg, needle));
	close(kmsg);

	EXPECT_EQ(0, gpup_unbind(vf));
	EXPECT_EQ(0, gpup_set_numvfs(pf, 0));
	/* Hand the PF back to gpup_sim for the tests that follow. */
	EXPECT_EQ(0, gpup_run("modprobe gpup_sim"));
	EXPECT_EQ(0, gpup_bind_override(pf, "gpup_sim"));
	gpup_run("rmmod igb");
}

/*
 * VRAM moves in bulk (vram_xfer) unless the user turns it off: the
 * module parameter bulk_xfer reads Y when nothing set it, and N where
 * the kernel's command line did (the sid lane boots with
 * gpup_vfio_pci.bulk_xfer=0, as a user would).
 */
TEST(bulk_xfer_is_the_default)
{
	char cmdline[4096], val[8];
	bool off;

	ASSERT_EQ(0, gpup_run("modprobe gpup_vfio_pci"));
	ASSERT_LT(0, gpup_read_file("/proc/cmdline", cmdline,
				    sizeof(cmdline)));
	off = strstr(cmdline, "gpup_vfio_pci.bulk_xfer=0") ||
	      strstr(cmdline, "gpup_vfio_pci.bulk_xfer=N") ||
	      strstr(cmdline, "gpup_vfio_pci.bulk_xfer=n");
	ASSERT_LT(0, gpup_read_file(GPUP_VFIO_PARAM("bulk_xfer"),
				    val, sizeof(val)));
	TH_LOG("bulk_xfer=%c, %s on the command line", val[0],
	       off ? "off" : "nothing");
	EXPECT_EQ(off ? 'N' : 'Y', val[0]);
}

TEST_HARNESS_MAIN
