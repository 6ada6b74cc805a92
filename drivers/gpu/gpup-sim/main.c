// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_sim: a simulated GPU PF driver.  It binds to a PCI device with
 * SR-IOV (QEMU's igb in tests) only through driver_override, enables its
 * VFs and provides GPU-P migration ops for them, keeping per-VF GPU state
 * that a deterministic engine advances (see vf.c).
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>

#include <gpup_compat.h>

#include "gpup_sim.h"

static unsigned int num_vfs;
module_param(num_vfs, uint, 0444);
MODULE_PARM_DESC(num_vfs, "VFs to enable at probe (default 0; see sriov_numvfs)");

unsigned int gpup_sim_vram_mb = 16;
module_param_named(vram_mb, gpup_sim_vram_mb, uint, 0444);
MODULE_PARM_DESC(vram_mb, "VRAM of each VF in MiB (default 16, 1..65536); sparse: a page is backed when first written");

unsigned int gpup_sim_working_set_mb;
module_param_named(working_set_mb, gpup_sim_working_set_mb, uint, 0444);
MODULE_PARM_DESC(working_set_mb, "MiB at the start of VRAM the engine writes (default 0: all of it)");

unsigned int gpup_sim_profile_id = 1;
module_param_named(profile, gpup_sim_profile_id, uint, 0444);
MODULE_PARM_DESC(profile, "profile of new VFs (1: 4 engines, 2: 2 engines)");

static unsigned int gpup_sim_dma_log;
module_param_named(dma_log, gpup_sim_dma_log, uint, 0644);
MODULE_PARM_DESC(dma_log, "DMA logging a PF bound from then on offers, for the selftests: 0 cap and ops (default), 1 neither, 2 the cap without the ops, 3 the ops without the cap, 4 dma_log_start and dma_log_read without dma_log_stop");

static bool gpup_sim_vram_zero_op = true;
module_param_named(vram_zero, gpup_sim_vram_zero_op, bool, 0644);
MODULE_PARM_DESC(vram_zero, "a PF bound from then on offers the vram_zero op (default Y; N: gpup_vfio_pci writes zeros with vram_write)");

static bool gpup_sim_query_written_op = true;
module_param_named(query_written, gpup_sim_query_written_op, bool, 0644);
MODULE_PARM_DESC(query_written, "a PF bound from then on offers the query_written op, the pages written since a VF's reset (default Y; N: gpup_vfio_pci reads every page in its first pass)");

unsigned int gpup_sim_dma_log_page_kb;
module_param_named(dma_log_page_kb, gpup_sim_dma_log_page_kb, uint, 0644);
MODULE_PARM_DESC(dma_log_page_kb, "smallest DMA log page in KiB, a power of two; a DMA_LOGGING_START asking for less gets this (default 0: the page asked)");

unsigned long gpup_sim_seed = 1;
module_param_named(seed, gpup_sim_seed, ulong, 0444);
MODULE_PARM_DESC(seed, "seed of the VFs' initial state, each VF's own: seed << 16 | VF index (default 1)");

/*
 * Let the VFs' steps notify @prov (or stop them: NULL).  Under each VF's
 * lock, so that no step still uses a registration being withdrawn.
 */
static void gpup_sim_set_notify(struct gpup_sim_pf *pf,
				struct gpup_provider *prov)
{
	unsigned int i;

	down_read(&pf->vfs_rwsem);
	for (i = 0; i < pf->nvfs; i++) {
		mutex_lock(&pf->vfs[i].lock);
		pf->vfs[i].prov = prov;
		mutex_unlock(&pf->vfs[i].lock);
	}
	up_read(&pf->vfs_rwsem);
}

/*
 * The PF driver is going away: stop the VFs' notifications and close
 * their transfer queues (vram_xfer fails with -ENODEV from here), then
 * complete every transfer already accepted, as the contract asks before
 * gpup_unregister_pf().
 */
static void gpup_sim_quiesce(struct gpup_sim_pf *pf)
{
	unsigned int i;

	gpup_sim_set_notify(pf, NULL);
	down_read(&pf->vfs_rwsem);
	for (i = 0; i < pf->nvfs; i++)
		gpup_sim_xfer_flush(&pf->vfs[i], true);
	up_read(&pf->vfs_rwsem);
}

static void gpup_sim_free_vfs(struct gpup_sim_pf *pf)
{
	unsigned int i, n;
	struct gpup_sim_vf *vfs;

	down_write(&pf->vfs_rwsem);
	vfs = pf->vfs;
	n = pf->nvfs;
	pf->vfs = NULL;
	pf->nvfs = 0;
	up_write(&pf->vfs_rwsem);
	for (i = 0; i < n; i++)
		gpup_sim_vf_fini(&vfs[i]);
	kfree(vfs);
}

static int gpup_sim_alloc_vfs(struct gpup_sim_pf *pf, unsigned int n)
{
	struct gpup_sim_vf *vfs;
	unsigned int i;
	int ret;

	vfs = kcalloc(n, sizeof(*vfs), GFP_KERNEL);
	if (!vfs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		ret = gpup_sim_vf_init(&vfs[i], pf, i);
		if (ret)
			goto err;
	}
	down_write(&pf->vfs_rwsem);
	pf->vfs = vfs;
	pf->nvfs = n;
	up_write(&pf->vfs_rwsem);
	return 0;
err:
	while (i--)
		gpup_sim_vf_fini(&vfs[i]);
	kfree(vfs);
	return ret;
}

/*
 * Once the VFs' PCI devices exist: each VF state keeps a reference on its
 * device (the DMA of its engines goes through that device's IOMMU
 * domain), and its debugfs directory carries the device's name.
 */
static void gpup_sim_name_vfs(struct gpup_sim_pf *pf)
{
	struct pci_dev *vf = NULL;
	int id;

	while ((vf = pci_get_device(PCI_ANY_ID, PCI_ANY_ID, vf))) {
		if (!vf->is_virtfn || pci_physfn(vf) != pf->pdev)
			continue;
		id = pci_iov_vf_id(vf);
		if (id < 0 || id >= pf->nvfs)
			continue;
		mutex_lock(&pf->vfs[id].lock);
		if (!pf->vfs[id].vfdev)
			pf->vfs[id].vfdev = pci_dev_get(vf);
		mutex_unlock(&pf->vfs[id].lock);
		gpup_sim_debugfs_vf(&pf->vfs[id], pci_name(vf));
	}
}

static int gpup_sim_sriov_configure(struct pci_dev *pdev, int nr)
{
	struct gpup_sim_pf *pf = pci_get_drvdata(pdev);
	int ret;

	if (!nr) {
		pci_disable_sriov(pdev);
		gpup_sim_free_vfs(pf);
		return 0;
	}
	/* State first: a VF driver may probe and call ops at once. */
	ret = gpup_sim_alloc_vfs(pf, nr);
	if (ret)
		return ret;
	gpup_sim_set_notify(pf, pf->prov);
	ret = pci_enable_sriov(pdev, nr);
	if (ret) {
		gpup_sim_free_vfs(pf);
		return ret;
	}
	gpup_sim_name_vfs(pf);
	return nr;
}

static int gpup_sim_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct gpup_migration_ops *ops;
	struct gpup_sim_pf *pf;
	int ret;

	if (!pdev->is_physfn) {
		pci_info(pdev, "gpup_sim: no SR-IOV capability\n");
		return -ENODEV;
	}
	if (!gpup_sim_vram_mb || gpup_sim_vram_mb > 65536 ||
	    !gpup_sim_find_profile(gpup_sim_profile_id))
		return -EINVAL;
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	pf = devm_kzalloc(&pdev->dev, sizeof(*pf), GFP_KERNEL);
	if (!pf)
		return -ENOMEM;
	pf->pdev = pdev;
	init_rwsem(&pf->vfs_rwsem);
	pci_set_drvdata(pdev, pf);

	/* VFs left enabled by an earlier binding get fresh state. */
	if (pci_num_vf(pdev)) {
		ret = gpup_sim_alloc_vfs(pf, pci_num_vf(pdev));
		if (ret)
			return ret;
		gpup_sim_name_vfs(pf);
	}
	ops = devm_kmemdup(&pdev->dev, &gpup_sim_ops, sizeof(gpup_sim_ops),
			   GFP_KERNEL);
	if (!ops) {
		ret = -ENOMEM;
		goto err_free;
	}
	gpup_sim_events_ops(ops);
	pf->dma_log = READ_ONCE(gpup_sim_dma_log);
	if (pf->dma_log == GPUP_SIM_DMA_LOG_NONE ||
	    pf->dma_log == GPUP_SIM_DMA_LOG_CAP_ONLY) {
		ops->dma_log_start = NULL;
		ops->dma_log_read = NULL;
		ops->dma_log_stop = NULL;
	} else if (pf->dma_log == GPUP_SIM_DMA_LOG_NO_STOP) {
		ops->dma_log_stop = NULL;
	}
	if (!READ_ONCE(gpup_sim_vram_zero_op))
		ops->vram_zero = NULL;
	if (!READ_ONCE(gpup_sim_query_written_op))
		ops->query_written = NULL;
	pf->ops = ops;
	pf->prov = gpup_register_pf(pdev, pf->ops);
	if (IS_ERR(pf->prov)) {
		ret = PTR_ERR(pf->prov);
		goto err_free;
	}
	gpup_sim_set_notify(pf, pf->prov);
	if (num_vfs && !pci_num_vf(pdev)) {
		ret = gpup_sim_sriov_configure(pdev, num_vfs);
		if (ret < 0)
			goto err_unregister;
	}
	pci_info(pdev, "gpup_sim: simulated GPU PF, %u MiB VRAM per VF\n",
		 gpup_sim_vram_mb);
	return 0;

err_unregister:
	gpup_sim_quiesce(pf);
	gpup_unregister_pf(pf->prov);
err_free:
	gpup_sim_free_vfs(pf);
	return ret;
}

/*
 * Fence the ops first: calls in flight finish, later ones fail.  Then
 * SR-IOV goes, unless a VM owns a VF (its VFIO device is open): removing
 * that VF would wait for the VM, so it stays, and the PCI core says that
 * SR-IOV was left enabled.  VFs merely bound to a driver go.
 */
static void gpup_sim_remove(struct pci_dev *pdev)
{
	struct gpup_sim_pf *pf = pci_get_drvdata(pdev);
	unsigned int owned;

	gpup_sim_quiesce(pf);
	owned = gpup_unregister_pf(pf->prov);
	if (owned)
		pci_info(pdev, "gpup_sim: %u VFs owned by VFIO users, SR-IOV stays enabled\n",
			 owned);
	else
		pci_disable_sriov(pdev);
	gpup_sim_free_vfs(pf);
}

/* Empty: gpup_sim binds only through driver_override, never by ID. */
static const struct pci_device_id gpup_sim_ids[] = {
	{ }
};

static struct pci_driver gpup_sim_driver = {
	.name = "gpup_sim",
	.id_table = gpup_sim_ids,
	.probe = gpup_sim_probe,
	.remove = gpup_sim_remove,
	.sriov_configure = gpup_sim_sriov_configure,
};

static int __init gpup_sim_init(void)
{
	int ret;

	ret = gpup_sim_xfer_init();
	if (ret)
		return ret;
	gpup_sim_debugfs_init();
	ret = pci_register_driver(&gpup_sim_driver);
	if (ret) {
		gpup_sim_debugfs_exit();
		gpup_sim_xfer_exit();
	}
	return ret;
}
module_init(gpup_sim_init);

static void __exit gpup_sim_exit(void)
{
	pci_unregister_driver(&gpup_sim_driver);
	gpup_sim_debugfs_exit();
	gpup_sim_xfer_exit();
}
module_exit(gpup_sim_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("The gpup-vfio authors");
MODULE_DESCRIPTION("Simulated GPU PF providing GPU-P migration for its VFs");
MODULE_VERSION(GPUP_VERSION);
MODULE_IMPORT_NS(GPUP_NS(GPUP));
