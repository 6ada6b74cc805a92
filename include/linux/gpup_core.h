/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_core.h - the consumer side of the GPU-P provider registry
 *
 * gpup_core.ko keeps the registry of GPU-P migration providers: PF drivers
 * register their ops with gpup_register_pf() (include/linux/gpup_migration.h)
 * and a VFIO variant driver bound to one of their VFs finds them here,
 * through pci_physfn().  This header is for that variant driver
 * (gpup_vfio_pci); a PF driver needs only gpup_migration.h.  The symbols
 * below are exported in the GPUP_CLIENT namespace.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef _LINUX_GPUP_CORE_H
#define _LINUX_GPUP_CORE_H

#include <linux/gpup_migration.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>

struct gpup_provider_client;

/**
 * struct gpup_provider - one registered PF and its ops
 * @node: entry in the registry list, protected by the registry mutex
 * @ref: references from the registry and from each VF that uses it
 * @pf: the PF the ops serve
 * @ops: the provider's operations; valid until gpup_unregister_pf()
 *	returns, so never touched after @dead is set
 * @owner: @ops->owner, copied at registration: the module reference a VF
 *	holds is dropped after the ops may be gone
 * @fence: held for read across every op call and for write by
 *	gpup_unregister_pf() while it sets @dead, so that unregistering
 *	waits for the calls in flight
 * @dead: set once unregistered; later calls fail with -ENODEV.
 *	Protected by @fence.
 * @clients_lock: protects @clients
 * @clients: the open VF devices that use this registration
 */
struct gpup_provider {
	struct list_head node;
	struct kref ref;
	struct pci_dev *pf;
	const struct gpup_migration_ops *ops;
	struct module *owner;
	struct rw_semaphore fence;
	bool dead;
	spinlock_t clients_lock;	/* protects clients */
	struct list_head clients;
};

/**
 * struct gpup_provider_client - an open VF device attached to a provider
 * @node: entry in &gpup_provider.clients
 * @vf: the VF index
 * @notify: called for gpup_vf_notify() on @vf and for gpup_pf_notify(),
 *	under the provider's clients_lock (a spinlock, interrupts off): it
 *	may only record the event, wake up waiters and queue work
 */
struct gpup_provider_client {
	struct list_head node;
	unsigned int vf;
	void (*notify)(struct gpup_provider_client *client,
		       enum gpup_vf_event event);
};

struct gpup_provider *gpup_provider_get(struct pci_dev *vf);
void gpup_provider_put(struct gpup_provider *prov);
int gpup_provider_enter(struct gpup_provider *prov);
void gpup_provider_exit(struct gpup_provider *prov);
void gpup_provider_attach(struct gpup_provider *prov,
			  struct gpup_provider_client *client);
void gpup_provider_detach(struct gpup_provider *prov,
			  struct gpup_provider_client *client);

#endif /* _LINUX_GPUP_CORE_H */
