// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_vfio_pci: vfio-pci variant driver for GPU SR-IOV virtual functions
 * that live-migrates them through a GPU-P migration provider (see
 * include/linux/gpup_migration.h).
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/log2.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/vfio.h>
#include <linux/workqueue.h>

#include <gpup_compat.h>

#include "gpup_vfio.h"
#include "migrate.h"

#define CREATE_TRACE_POINTS
#include "trace.h"

/* Bounds a provider's declared sizes must keep; they bound allocations. */
#define GPUP_MAX_BLOB		(64U << 20)
#define GPUP_MAX_PAGE		(2U << 20)
/* Page bitmaps are sized in unsigned int bits: 2^31 pages is 8 TiB of 4K. */
#define GPUP_MAX_PAGES		BIT_ULL(31)

bool gpup_vfio_bulk_xfer = true;
module_param_named(bulk_xfer, gpup_vfio_bulk_xfer, bool, 0644);
MODULE_PARM_DESC(bulk_xfer, "move VRAM by the provider's vram_xfer, several transfers in flight, when it has one (default Y; N: vram_read/vram_write, one range at a time). Read when a data_fd is made");

bool gpup_vfio_skip_unwritten = true;
module_param_named(skip_unwritten, gpup_vfio_skip_unwritten, bool, 0644);
MODULE_PARM_DESC(skip_unwritten, "send the VRAM pages the provider reports as never written since the VF's reset (query_written) as ZERO records, without reading them, and restore none of a ZERO record whose pages it reports as never written (default Y; N: the first pass reads every page, every ZERO record is cleared). Read when a save data_fd is made, and at each ZERO record");

bool gpup_vfio_zero_detect = true;
module_param_named(zero_detect, gpup_vfio_zero_detect, bool, 0644);
MODULE_PARM_DESC(zero_detect, "send the VRAM pages that were read as zeros as ZERO records, where the provider did not report the written pages (no query_written, or skip_unwritten=N) (default Y). Read when a save data_fd is made");

unsigned int gpup_vfio_xfer_depth = GPUP_XFER_DEPTH;
module_param_named(xfer_depth, gpup_vfio_xfer_depth, uint, 0644);
MODULE_PARM_DESC(xfer_depth, "vram_xfer transfers a data_fd keeps in flight, 1 to 4 (default 4): a save's slots, a restore's gather buffers. Read when a data_fd is made");

unsigned int gpup_vfio_xfer_timeout_ms = 10000;
module_param_named(xfer_timeout_ms, gpup_vfio_xfer_timeout_ms, uint, 0644);
MODULE_PARM_DESC(xfer_timeout_ms, "how long a wait for one of the provider's VRAM transfers (vram_xfer) lasts before the data_fd fails with ETIMEDOUT (default 10000)");

bool gpup_vfio_test_hooks;
module_param_named(test_hooks, gpup_vfio_test_hooks, bool, 0644);
MODULE_PARM_DESC(test_hooks, "debugfs test hooks (hold, held) for the VFs bound from then on; for the selftests only (default N: none)");

static bool gpup_vfio_caps_ok(struct pci_dev *pdev,
			      const struct gpup_migration_caps *caps)
{
	if (!(caps->flags & GPUP_CAP_LIVE_MIGRATION)) {
		pci_info(pdev, "gpup: provider offers no live migration for this VF\n");
		return false;
	}
	if (!is_power_of_2(caps->page_size) || caps->page_size < PAGE_SIZE ||
	    caps->page_size > GPUP_MAX_PAGE || !caps->vram_size ||
	    caps->vram_size & (caps->page_size - 1) ||
	    div_u64(caps->vram_size, caps->page_size) > GPUP_MAX_PAGES ||
	    !caps->max_immutable_size ||
	    caps->max_immutable_size > GPUP_MAX_BLOB ||
	    !caps->max_mutable_size || caps->max_mutable_size > GPUP_MAX_BLOB) {
		pci_warn(pdev, "gpup: provider caps out of bounds, no migration\n");
		return false;
	}
	return true;
}

/* Reads the provider's caps for the VF; true if the VF can migrate. */
static bool gpup_vfio_probe_migration(struct gpup_vfio_dev *gdev)
{
	struct pci_dev *pdev = gdev->core.pdev;
	struct gpup_provider *prov;
	bool ok = false;
	int ret;

	if (!pdev->is_virtfn) {
		pci_info(pdev, "gpup: not a VF, no migration\n");
		return false;
	}
	gdev->vf_id = pci_iov_vf_id(pdev);

	prov = gpup_provider_get(pdev);
	if (!prov) {
		pci_info(pdev, "gpup: no migration provider for PF %s, no migration\n",
			 pci_name(pci_physfn(pdev)));
		return false;
	}
	ret = gpup_provider_enter(prov);
	if (!ret) {
		ret = prov->ops->query_caps(prov->pf, gdev->vf_id, &gdev->caps);
		trace_gpup_vfio_op(gdev->vf_id, "query_caps", 0, ret);
		ok = !ret && gpup_vfio_caps_ok(pdev, &gdev->caps);
		/* The ops are valid inside the fence only. */
		if (ok)
			gpup_vfio_log_init(gdev, prov->ops);
		gpup_provider_exit(prov);
	}
	gpup_provider_put(prov);
	if (ret)
		pci_info(pdev, "gpup: provider caps query failed (%d), no migration\n",
			 ret);
	return ok;
}

static int gpup_vfio_init_dev(struct vfio_device *vdev)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	int ret;

	ret = vfio_pci_core_init_dev(vdev);
	if (ret)
		return ret;

	gpup_vfio_mig_init(gdev);
	gdev->migratable = gpup_vfio_probe_migration(gdev);
	if (!gdev->migratable)
		return 0;

	vdev->migration_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
	if (gdev->caps.flags & GPUP_CAP_DIRTY_TRACKING)
		vdev->migration_flags |= VFIO_MIGRATION_PRE_COPY;
	vdev->mig_ops = &gpup_vfio_mig_ops;
	pci_info(gdev->core.pdev,
		 "gpup: migration enabled: profile %u, VRAM %llu MiB%s\n",
		 gdev->caps.profile_id, gdev->caps.vram_size >> 20,
		 vdev->migration_flags & VFIO_MIGRATION_PRE_COPY ?
		 ", pre-copy" : "");
	return 0;
}

static int gpup_vfio_open_device(struct vfio_device *vdev)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	int ret;

	if (gdev->migratable)
		gpup_vfio_mig_open(gdev);
	ret = vfio_pci_core_enable(&gdev->core);
	if (ret) {
		if (gdev->migratable)
			gpup_vfio_mig_close(gdev);
		return ret;
	}
	vfio_pci_core_finish_enable(&gdev->core);
	return 0;
}

static void gpup_vfio_close_device(struct vfio_device *vdev)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);

	if (gdev->migratable)
		gpup_vfio_mig_close(gdev);
	vfio_pci_core_close_device(vdev);
}

/*
 * VFIO_DEVICE_RESET: vfio-pci core resets the function, and reset_done
 * resets the VF in the provider before the ioctl returns.  The ioctl
 * returns 0 only if that left the device in RUNNING, as the uAPI has it:
 * the core's own errors come back unchanged, with the state untouched;
 * a provider that failed to reset the VF leaves the device in ERROR and
 * the ioctl fails with -EIO or the provider's errno.  A VF whose provider
 * is gone is reset by the function reset alone.
 */
static long gpup_vfio_ioctl(struct vfio_device *vdev, unsigned int cmd,
			    unsigned long arg)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	unsigned long seq;
	long ret;

	if (cmd != VFIO_DEVICE_RESET || !gdev->migratable)
		return vfio_pci_core_ioctl(vdev, cmd, arg);
	seq = gpup_vfio_reset_seq(gdev);
	ret = vfio_pci_core_ioctl(vdev, cmd, arg);
	if (!ret)
		ret = gpup_vfio_reset_result(gdev, seq);
	return ret;
}

static void gpup_vfio_release_dev(struct vfio_device *vdev)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);

	mutex_destroy(&gdev->state_mutex);
	mutex_destroy(&gdev->op_lock);
	vfio_pci_core_release_dev(vdev);
}

static const struct vfio_device_ops gpup_vfio_ops = {
	.name = "gpup-vfio-pci",
	.init = gpup_vfio_init_dev,
	.release = gpup_vfio_release_dev,
	.open_device = gpup_vfio_open_device,
	.close_device = gpup_vfio_close_device,
	.ioctl = gpup_vfio_ioctl,
	.device_feature = vfio_pci_core_ioctl_feature,
	.read = vfio_pci_core_read,
	.write = vfio_pci_core_write,
	.mmap = vfio_pci_core_mmap,
	.request = vfio_pci_core_request,
	.match = vfio_pci_core_match,
	GPUP_VFIO_MATCH_TOKEN_UUID
	GPUP_VFIO_GET_REGION_INFO_CAPS
	.bind_iommufd = vfio_iommufd_physical_bind,
	.unbind_iommufd = vfio_iommufd_physical_unbind,
	.attach_ioas = vfio_iommufd_physical_attach_ioas,
	.detach_ioas = vfio_iommufd_physical_detach_ioas,
};

static int gpup_vfio_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct gpup_vfio_dev *gdev;
	int ret;

	gdev = vfio_alloc_device(gpup_vfio_dev, core.vdev, &pdev->dev,
				 &gpup_vfio_ops);
	if (IS_ERR(gdev))
		return PTR_ERR(gdev);

	dev_set_drvdata(&pdev->dev, &gdev->core);
	ret = vfio_pci_core_register_device(&gdev->core);
	if (ret)
		goto out_put;
	gpup_vfio_debugfs_init(gdev);
	return 0;

out_put:
	vfio_put_device(&gdev->core.vdev);
	return ret;
}

static void gpup_vfio_remove(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);
	struct gpup_vfio_dev *gdev = container_of(core, struct gpup_vfio_dev,
						  core);

	gpup_vfio_debugfs_exit(gdev);
	vfio_pci_core_unregister_device(core);
	vfio_put_device(&core->vdev);
}

/*
 * The VF IDs of the PF drivers the project serves, as driver_override
 * entries: the PCI core matches them only where userspace set
 * driver_override (a VF of an igb NIC stays unbound otherwise), and
 * modules.alias carries them as "vfio_pci:" lines, from which libvirt
 * (10.0 and later) picks this driver for a managed hostdev.  A PF driver's
 * VF IDs are added here, one line each (Documentation/driver.rst).
 */
static const struct pci_device_id gpup_vfio_ids[] = {
	/* QEMU's igb VF, whose PF gpup_sim drives */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_VENDOR_ID_INTEL, 0x10ca) },
	{ }
};
MODULE_DEVICE_TABLE(pci, gpup_vfio_ids);

static const struct pci_error_handlers gpup_vfio_err_handlers = {
	.reset_prepare = gpup_vfio_reset_prepare,
	.reset_done = gpup_vfio_reset_done,
	.error_detected = vfio_pci_core_aer_err_detected,
};

static struct pci_driver gpup_vfio_driver = {
	.name = KBUILD_MODNAME,
	.id_table = gpup_vfio_ids,
	.probe = gpup_vfio_probe,
	.remove = gpup_vfio_remove,
	.err_handler = &gpup_vfio_err_handlers,
	.driver_managed_dma = true,
};

/*
 * Checksums of the VRAM a save's transfers read, computed once each
 * transfer completed, beside the reader (save.c); destroyed last, so
 * that no work outlives the module.
 */
struct workqueue_struct *gpup_vfio_wq;

static int __init gpup_vfio_init(void)
{
	int ret;

	gpup_vfio_wq = alloc_workqueue("gpup_vfio", WQ_UNBOUND, 0);
	if (!gpup_vfio_wq)
		return -ENOMEM;
	gpup_vfio_debugfs_module_init();
	ret = pci_register_driver(&gpup_vfio_driver);
	if (ret)
		goto err_debugfs;
	return 0;

err_debugfs:
	gpup_vfio_debugfs_module_exit();
	destroy_workqueue(gpup_vfio_wq);
	return ret;
}
module_init(gpup_vfio_init);

static void __exit gpup_vfio_exit(void)
{
	pci_unregister_driver(&gpup_vfio_driver);
	gpup_vfio_debugfs_module_exit();
	destroy_workqueue(gpup_vfio_wq);
}
module_exit(gpup_vfio_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("The gpup-vfio authors");
MODULE_DESCRIPTION("VFIO PCI variant driver for live migration of GPU-P virtual functions");
MODULE_VERSION(GPUP_VERSION);
MODULE_IMPORT_NS(GPUP_NS(GPUP_CLIENT));
