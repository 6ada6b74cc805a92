// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_vfio_pci: vfio-pci variant driver for GPU SR-IOV virtual functions
 * that live-migrates them through a GPU-P migration provider (see
 * include/linux/gpup_migration.h).
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/vfio.h>

#include "gpup_vfio.h"

static int gpup_vfio_init_dev(struct vfio_device *vdev)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	struct pci_dev *pdev = to_pci_dev(vdev->dev);
	struct gpup_provider *prov;
	int ret;

	ret = vfio_pci_core_init_dev(vdev);
	if (ret)
		return ret;

	if (!pdev->is_virtfn) {
		pci_info(pdev, "gpup: not a VF, no migration\n");
		return 0;
	}
	gdev->vf_id = pci_iov_vf_id(pdev);

	prov = gpup_provider_get(pdev);
	if (!prov) {
		pci_info(pdev, "gpup: no migration provider for PF %s, no migration\n",
			 pci_name(pci_physfn(pdev)));
		return 0;
	}
	gpup_provider_put(prov);
	return 0;
}

static int gpup_vfio_open_device(struct vfio_device *vdev)
{
	struct vfio_pci_core_device *core = container_of(vdev,
					struct vfio_pci_core_device, vdev);
	int ret;

	ret = vfio_pci_core_enable(core);
	if (ret)
		return ret;
	vfio_pci_core_finish_enable(core);
	return 0;
}

static void gpup_vfio_close_device(struct vfio_device *vdev)
{
	vfio_pci_core_close_device(vdev);
}

static const struct vfio_device_ops gpup_vfio_ops = {
	.name = "gpup-vfio-pci",
	.init = gpup_vfio_init_dev,
	.release = vfio_pci_core_release_dev,
	.open_device = gpup_vfio_open_device,
	.close_device = gpup_vfio_close_device,
	.ioctl = vfio_pci_core_ioctl,
	.device_feature = vfio_pci_core_ioctl_feature,
	.read = vfio_pci_core_read,
	.write = vfio_pci_core_write,
	.mmap = vfio_pci_core_mmap,
	.request = vfio_pci_core_request,
	.match = vfio_pci_core_match,
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
	return 0;

out_put:
	vfio_put_device(&gdev->core.vdev);
	return ret;
}

static void gpup_vfio_remove(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);

	vfio_pci_core_unregister_device(core);
	vfio_put_device(&core->vdev);
}

/*
 * No IDs: the driver binds only where userspace asks for it with
 * driver_override, like vfio-pci itself for devices it does not know.
 */
static const struct pci_device_id gpup_vfio_ids[] = {
	{ }
};
MODULE_DEVICE_TABLE(pci, gpup_vfio_ids);

static struct pci_driver gpup_vfio_driver = {
	.name = KBUILD_MODNAME,
	.id_table = gpup_vfio_ids,
	.probe = gpup_vfio_probe,
	.remove = gpup_vfio_remove,
	.err_handler = &vfio_pci_core_err_handlers,
	.driver_managed_dma = true,
};

module_pci_driver(gpup_vfio_driver);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("The gpup-vfio authors");
MODULE_DESCRIPTION("VFIO PCI variant driver for live migration of GPU-P virtual functions");
