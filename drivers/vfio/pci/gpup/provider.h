/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Registry of GPU-P migration providers, internal to gpup_vfio_pci.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_VFIO_PROVIDER_H
#define GPUP_VFIO_PROVIDER_H

#include <linux/gpup_migration.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/rwsem.h>

/**
 * struct gpup_provider - one registered PF and its ops
 * @node: entry in the registry list, protected by the registry mutex
 * @ref: references from the registry and from each VF that uses it
 * @pf: the PF the ops serve
 * @ops: the provider's operations
 * @fence: held for read across every op call and for write by
 *	gpup_unregister_pf() while it sets @dead, so that unregistering
 *	waits for the calls in flight
 * @dead: set once unregistered; later calls fail with -ENODEV.
 *	Protected by @fence.
 */
struct gpup_provider {
	struct list_head node;
	struct kref ref;
	struct pci_dev *pf;
	const struct gpup_migration_ops *ops;
	struct rw_semaphore fence;
	bool dead;
};

struct gpup_provider *gpup_provider_get(struct pci_dev *vf);
void gpup_provider_put(struct gpup_provider *prov);
int gpup_provider_enter(struct gpup_provider *prov);
void gpup_provider_exit(struct gpup_provider *prov);

#endif /* GPUP_VFIO_PROVIDER_H */
