// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_core: the registry of GPU-P migration providers.  PF drivers
 * register their ops, the VFIO variant driver of their VFs finds them
 * through pci_physfn().  Unregistering fences calls in flight.  The module
 * depends on nothing of VFIO: a PF driver that provides migration pulls in
 * only this.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/slab.h>

#include <gpup_compat.h>

#include <linux/gpup_core.h>

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
 * @ops: the operations; every op must be set but those the header calls
 *	optional, and @ops must stay valid until gpup_unregister_pf()
 *	returns (it may live in the PF's device-managed memory)
 *
 * The three dma_log_* ops come together or not at all.  A VF whose caps
 * claim %GPUP_CAP_DMA_LOGGING from a provider without them is treated as
 * a VF without DMA logging (the caps are per VF, known only when asked).
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
	unsigned int log_ops;

	if (!pf || pf->is_virtfn || !ops || !ops->query_caps ||
	    !ops->prepare_live_migration || !ops->end_live_migration ||
	    !ops->set_pause_state || !ops->save_immutable ||
	    !ops->save_mutable || !ops->restore_immutable ||
	    !ops->restore_mutable || !ops->start_dirty_tracking ||
	    !ops->query_dirty || !ops->stop_dirty_tracking ||
	    !ops->vram_read || !ops->vram_write || !ops->reset_vf)
		return ERR_PTR(-EINVAL);
	log_ops = !!ops->dma_log_start + !!ops->dma_log_read +
		  !!ops->dma_log_stop;
	if (log_ops != 0 && log_ops != 3) {
		pci_warn(pf, "gpup: provider refused: dma_log_start, dma_log_read and dma_log_stop come together\n");
		return ERR_PTR(-EINVAL);
	}

	prov = kzalloc(sizeof(*prov), GFP_KERNEL);
	if (!prov)
		return ERR_PTR(-ENOMEM);
	kref_init(&prov->ref);
	init_rwsem(&prov->fence);
	spin_lock_init(&prov->clients_lock);
	INIT_LIST_HEAD(&prov->clients);
	prov->pf = pci_dev_get(pf);
	prov->ops = ops;
	prov->owner = ops->owner;

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
EXPORT_SYMBOL_NS_GPL(gpup_register_pf, GPUP_NS(GPUP));

/**
 * gpup_xfer_complete() - complete a transfer that vram_xfer queued
 * @xfer: the transfer, accepted with -EINPROGRESS
 * @status: 0, or a negative errno (-EIO for a failed copy)
 *
 * Calls @xfer->done, then drops the reference on @xfer->owner that the
 * variant driver took for the transfer: the module whose code @done is
 * stays loaded until @done has returned, even if the waiter it wakes
 * lets go of the device and of the module at once.  This code is
 * gpup_core's, which the provider itself depends on.
 *
 * Context: process context, none of the variant driver's locks held.
 */
void gpup_xfer_complete(struct gpup_vram_xfer *xfer, int status)
{
	struct module *owner = xfer->owner;

	xfer->done(xfer, status);
	module_put(owner);
}
EXPORT_SYMBOL_NS_GPL(gpup_xfer_complete, GPUP_NS(GPUP));

/**
 * gpup_unregister_pf() - withdraw a PF's GPU-P migration ops
 * @prov: the handle gpup_register_pf() returned; not to be used again
 *
 * Waits for every op call in flight to return; every later call through
 * this registration fails with -ENODEV, so a VF in the middle of a
 * migration cannot finish it, and nothing calls into a driver that is
 * gone.  The ops (and @prov->ops' memory) are not touched again after
 * this returns.
 *
 * The count returned tells the PF driver whether a VM owns one of its
 * VFs: a PF driver that disables SR-IOV on removal should leave it
 * enabled while the count is not 0, since removing an open VFIO device
 * waits for its user.  No VF can attach to this registration any more,
 * so the count can only fall after this returns.
 *
 * Context: process context, may sleep.  Must not be called from an op.
 * Return: the number of VF devices open through gpup_vfio_pci that were
 * using this registration, 0 for an error pointer or NULL.
 */
unsigned int gpup_unregister_pf(struct gpup_provider *prov)
{
	struct gpup_provider_client *c;
	unsigned int users = 0;

	if (IS_ERR_OR_NULL(prov))
		return 0;

	mutex_lock(&gpup_providers_lock);
	list_del(&prov->node);
	mutex_unlock(&gpup_providers_lock);

	down_write(&prov->fence);
	prov->dead = true;
	up_write(&prov->fence);

	spin_lock_irq(&prov->clients_lock);
	list_for_each_entry(c, &prov->clients, node)
		users++;
	spin_unlock_irq(&prov->clients_lock);

	pci_info(prov->pf, "gpup: migration provider unregistered\n");
	kref_put(&prov->ref, gpup_provider_release);
	return users;
}
EXPORT_SYMBOL_NS_GPL(gpup_unregister_pf, GPUP_NS(GPUP));

/**
 * gpup_vf_notify() - tell the variant driver of an event of one VF
 * @prov: the handle gpup_register_pf() returned, before it was
 *	unregistered
 * @vf: the VF index
 * @event: what happened
 *
 * Does nothing if no VFIO device of @vf is open.  Takes only spinlocks
 * and wakes up waiters: callable from any context that may take a
 * spinlock, the provider's own locks held.
 */
void gpup_vf_notify(struct gpup_provider *prov, unsigned int vf,
		    enum gpup_vf_event event)
{
	struct gpup_provider_client *c;
	unsigned long flags;

	spin_lock_irqsave(&prov->clients_lock, flags);
	list_for_each_entry(c, &prov->clients, node)
		if (c->vf == vf)
			c->notify(c, event);
	spin_unlock_irqrestore(&prov->clients_lock, flags);
}
EXPORT_SYMBOL_NS_GPL(gpup_vf_notify, GPUP_NS(GPUP));

/**
 * gpup_pf_notify() - tell the variant driver of an event of every VF
 * @prov: the handle gpup_register_pf() returned, before it was
 *	unregistered
 * @event: what happened, e.g. %GPUP_VF_EVENT_ERROR when the whole PF
 *	failed or was reset
 *
 * gpup_vf_notify() for each VF of the PF whose VFIO device is open; the
 * same context rules.
 */
void gpup_pf_notify(struct gpup_provider *prov, enum gpup_vf_event event)
{
	struct gpup_provider_client *c;
	unsigned long flags;

	spin_lock_irqsave(&prov->clients_lock, flags);
	list_for_each_entry(c, &prov->clients, node)
		c->notify(c, event);
	spin_unlock_irqrestore(&prov->clients_lock, flags);
}
EXPORT_SYMBOL_NS_GPL(gpup_pf_notify, GPUP_NS(GPUP));

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
	if (prov && try_module_get(prov->owner))
		kref_get(&prov->ref);
	else
		prov = NULL;
	mutex_unlock(&gpup_providers_lock);
	return prov;
}
EXPORT_SYMBOL_NS_GPL(gpup_provider_get, GPUP_NS(GPUP_CLIENT));

/**
 * gpup_provider_put() - drop a reference gpup_provider_get() took
 * @prov: the provider, or NULL
 */
void gpup_provider_put(struct gpup_provider *prov)
{
	if (!prov)
		return;
	module_put(prov->owner);
	kref_put(&prov->ref, gpup_provider_release);
}
EXPORT_SYMBOL_NS_GPL(gpup_provider_put, GPUP_NS(GPUP_CLIENT));

/**
 * gpup_provider_attach() - an open VF device starts using @prov
 * @prov: the provider, referenced by gpup_provider_get()
 * @client: the device's client; @client->vf and @client->notify set
 */
void gpup_provider_attach(struct gpup_provider *prov,
			  struct gpup_provider_client *client)
{
	spin_lock_irq(&prov->clients_lock);
	list_add_tail(&client->node, &prov->clients);
	spin_unlock_irq(&prov->clients_lock);
}
EXPORT_SYMBOL_NS_GPL(gpup_provider_attach, GPUP_NS(GPUP_CLIENT));

/**
 * gpup_provider_detach() - undo gpup_provider_attach()
 * @prov: the provider
 * @client: the attached client
 */
void gpup_provider_detach(struct gpup_provider *prov,
			  struct gpup_provider_client *client)
{
	spin_lock_irq(&prov->clients_lock);
	list_del(&client->node);
	spin_unlock_irq(&prov->clients_lock);
}
EXPORT_SYMBOL_NS_GPL(gpup_provider_detach, GPUP_NS(GPUP_CLIENT));

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
EXPORT_SYMBOL_NS_GPL(gpup_provider_enter, GPUP_NS(GPUP_CLIENT));

/**
 * gpup_provider_exit() - end a call gpup_provider_enter() began
 * @prov: the provider
 */
void gpup_provider_exit(struct gpup_provider *prov)
{
	up_read(&prov->fence);
}
EXPORT_SYMBOL_NS_GPL(gpup_provider_exit, GPUP_NS(GPUP_CLIENT));

MODULE_LICENSE("GPL");
MODULE_AUTHOR("The gpup-vfio authors");
MODULE_DESCRIPTION("Registry of GPU-P live migration providers");
MODULE_VERSION(GPUP_VERSION);
