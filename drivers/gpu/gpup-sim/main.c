// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_sim: a simulated GPU PF driver.  It binds to a PCI device with
 * SR-IOV (QEMU's igb in tests) only through driver_override, enables its
 * VFs and provides GPU-P migration ops for them.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/module.h>
#include <linux/pci.h>

static unsigned int num_vfs;
module_param(num_vfs, uint, 0444);
MODULE_PARM_DESC(num_vfs, "VFs to enable at probe (default 0; see sriov_numvfs)");

static int gpup_sim_sriov_configure(struct pci_dev *pdev, int nr)
{
	int ret;

	if (!nr) {
		pci_disable_sriov(pdev);
		return 0;
	}
	ret = pci_enable_sriov(pdev, nr);
	return ret ? ret : nr;
}

static int gpup_sim_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	int ret;

	if (!pdev->is_physfn) {
		pci_info(pdev, "gpup_sim: no SR-IOV capability\n");
		return -ENODEV;
	}
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	if (num_vfs) {
		ret = gpup_sim_sriov_configure(pdev, num_vfs);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void gpup_sim_remove(struct pci_dev *pdev)
{
	pci_disable_sriov(pdev);
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

module_pci_driver(gpup_sim_driver);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("The gpup-vfio authors");
MODULE_DESCRIPTION("Simulated GPU PF providing GPU-P migration for its VFs");
