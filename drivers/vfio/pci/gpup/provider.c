// SPDX-License-Identifier: GPL-2.0
/*
 * Registry of GPU-P migration providers: PF drivers register their ops, VFs
 * find them through pci_physfn().  Unregistering fences calls in flight.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/slab.h>

#include "provider.h"

/* Protects gpup_providers (membership, not the providers' contents). */
static DEFINE_MUTEX(gpup_providers_lock);
static LIST_HEAD(gpup_providers);

static void gpup_provider_release(struct kref *ref)
{
	struct gpup_provider *prov = container_of(ref, struct gpup_provider, ref);

	pci_dev_put(prov->pf);
	kfree(prov);
}

static struct gpup_provider *gpup_provider_find_locked(struct pci_dev *pf)
{
	struct gpup_provider *prov;

	lockdep_assert_held(&gpup_providers_lock);
	list_for_each_entry(prov, &gpup_providers, node)
		if (prov->pf == pf)
			return prov;
	return NULL;
}

/**
 * gpup_register_pf() - register GPU-P migration ops for a PF
 * @pf: the physical function whose VFs the ops serve
 * @ops: the operations; every op must be set, and @ops must stay valid
 *	until gpup_unregister_pf() returns
 *
 * Context: process context, may sleep.
 * Return: a handle for gpup_unregister_pf(), or ERR_PTR(-EINVAL) for
 * incomplete ops or a non-PF device, ERR_PTR(-EEXIST) if @pf already has a
 * provider, ERR_PTR(-ENOMEM).
 */
struct gpup_provider *gpup_register_pf(struct pci_dev *pf,
				       const struct gpup_migration_ops *ops)
{
	struct gpup_provider *prov;

	if (!pf || pf->is_virtfn || !ops || !ops->query_caps ||
	    !ops->prepare_live_migration || !ops->end_live_migration ||
	    !ops->set_pause_state || !ops->save_immutable ||
	    !ops->save_mutable || !ops->restore_immutable ||
	    !ops->restore_mutable || !ops->start_dirty_tracking ||
	    !ops->query_dirty || !ops->stop_dirty_tracking ||
	    !ops->vram_read || !ops->vram_write || !ops->reset_vf)
		return ERR_PTR(-EINVAL);

	prov = kzalloc(sizeof(*prov), GFP_KERNEL);
	if (!prov)
		return ERR_PTR(-ENOMEM);
	kref_init(&prov->ref);
	init_rwsem(&prov->fence);
	prov->pf = pci_dev_get(pf);
	prov->ops = ops;

	mutex_lock(&gpup_providers_lock);
	if (gpup_provider_find_locked(pf)) {
		mutex_unlock(&gpup_providers_lock);
		pci_dev_put(pf);
		kfree(prov);
		return ERR_PTR(-EEXIST);
	}
	list_add_tail(&prov->node, &gpup_providers);
	mutex_unlock(&gpup_providers_lock);

	pci_info(pf, "gpup: migration provider registered\n");
	return prov;
}
EXPORT_SYMBOL_NS_GPL(gpup_register_pf, GPUP);

/**
 * gpup_unregister_pf() - withdraw a PF's GPU-P migration ops
 * @prov: the handle gpup_register_pf() returned
 *
 * Waits for every op call in flight to return; every later call through
 * this registration fails with -ENODEV, so a VF that is migrating goes to
 * the VFIO ERROR state instead of calling into a driver that is gone.  The
 * ops are not called again after this returns.
 *
 * Context: process context, may sleep.  Must not be called from an op.
 */
void gpup_unregister_pf(struct gpup_provider *prov)
{
	if (IS_ERR_OR_NULL(prov))
		return;

	mutex_lock(&gpup_providers_lock);
	list_del(&prov->node);
	mutex_unlock(&gpup_providers_lock);

	down_write(&prov->fence);
	prov->dead = true;
	up_write(&prov->fence);

	pci_info(prov->pf, "gpup: migration provider unregistered\n");
	kref_put(&prov->ref, gpup_provider_release);
}
EXPORT_SYMBOL_NS_GPL(gpup_unregister_pf, GPUP);

/**
 * gpup_provider_get() - find the live provider of a VF's PF
 * @vf: a virtual function
 *
 * Takes a reference to the registration and to the provider's module.
 *
 * Return: the provider, or NULL if @vf is not a VF, its PF has no
 * provider, or the provider's module is going away.
 */
struct gpup_provider *gpup_provider_get(struct pci_dev *vf)
{
	struct gpup_provider *prov;

	if (!vf->is_virtfn)
		return NULL;

	mutex_lock(&gpup_providers_lock);
	prov = gpup_provider_find_locked(pci_physfn(vf));
	if (prov && try_module_get(prov->ops->owner))
		kref_get(&prov->ref);
	else
		prov = NULL;
	mutex_unlock(&gpup_providers_lock);
	return prov;
}

/**
 * gpup_provider_put() - drop a reference gpup_provider_get() took
 * @prov: the provider, or NULL
 */
void gpup_provider_put(struct gpup_provider *prov)
{
	if (!prov)
		return;
	module_put(prov->ops->owner);
	kref_put(&prov->ref, gpup_provider_release);
}

/**
 * gpup_provider_enter() - begin a call into the provider
 * @prov: the provider
 *
 * On success the caller may call @prov->ops and must then call
 * gpup_provider_exit().
 *
 * Return: 0, or -ENODEV if the provider was unregistered.
 */
int gpup_provider_enter(struct gpup_provider *prov)
{
	down_read(&prov->fence);
	if (prov->dead) {
		up_read(&prov->fence);
		return -ENODEV;
	}
	return 0;
}

/**
 * gpup_provider_exit() - end a call gpup_provider_enter() began
 * @prov: the provider
 */
void gpup_provider_exit(struct gpup_provider *prov)
{
	up_read(&prov->fence);
}
