/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_vfio_pci internal definitions.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_VFIO_H
#define GPUP_VFIO_H

#include <linux/gpup_migration.h>
#include <linux/vfio_pci_core.h>

#include "provider.h"

/**
 * struct gpup_vfio_dev - a VF bound to gpup_vfio_pci
 * @core: the vfio-pci core device, first so core callbacks can cast
 * @vf_id: VF index under its PF, as the provider ops take it
 * @migratable: a provider with the live-migration cap was found at probe;
 *	the VFIO migration ops are offered
 * @prov: the provider, held while the device is open; NULL otherwise
 */
struct gpup_vfio_dev {
	struct vfio_pci_core_device core;
	unsigned int vf_id;
	bool migratable;
	struct gpup_provider *prov;
};

static inline struct gpup_vfio_dev *
gpup_vfio_from_vdev(struct vfio_device *vdev)
{
	return container_of(vdev, struct gpup_vfio_dev, core.vdev);
}

#endif /* GPUP_VFIO_H */
