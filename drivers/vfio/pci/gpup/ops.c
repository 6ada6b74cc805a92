// SPDX-License-Identifier: GPL-2.0
/*
 * The gate of every provider call of gpup_vfio_pci: one call at a time
 * per VF (op_lock), inside the provider's fence, and only for the
 * current generation of migration files, with no reset half done, no
 * failure reported and the caps the driver bound with.  The state machine
 * (migrate.c), the data_fds (save.c, resume.c) and DMA logging (dirty.c)
 * call the provider through here; this file calls none of them.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/pci.h>

#include "gpup_vfio.h"
#include "trace.h"

/**
 * gpup_vfio_op_enter() - begin a provider call for a VF
 * @gdev: the VF
 * @gen: the file generation the caller belongs to, or %GPUP_GEN_ANY for
 *	a caller that holds @gdev->state_mutex
 *
 * Takes @gdev->op_lock and enters the provider's fence.
 *
 * Return: 0; -ENODEV if the device has no provider, the provider was
 * unregistered or @gen is stale (the caller's file was disabled);
 * -EAGAIN while a reset's software part is pending (the caller's state
 * is about to be dropped); -EIO once the provider reported the VF reset
 * underneath or failed, until the device is reset; -ESTALE if the
 * provider's caps changed since the driver bound.
 */
int gpup_vfio_op_enter(struct gpup_vfio_dev *gdev, unsigned long gen)
{
	int ret = -ENODEV;

	mutex_lock(&gdev->op_lock);
	if ((gen != GPUP_GEN_ANY && gen != gdev->gen) || !gdev->prov)
		goto fail;
	ret = -EAGAIN;
	if (gdev->reset_pending)
		goto fail;
	ret = -EIO;
	if (test_bit(GPUP_VFIO_EV_FAILED, &gdev->events))
		goto fail;
	ret = -ESTALE;
	if (!gdev->caps_ok)
		goto fail;
	ret = gpup_provider_enter(gdev->prov);
	if (ret)
		goto fail;
	return 0;
fail:
	mutex_unlock(&gdev->op_lock);
	return ret;
}

/**
 * gpup_vfio_op_exit() - end a provider call gpup_vfio_op_enter() began
 * @gdev: the VF
 */
void gpup_vfio_op_exit(struct gpup_vfio_dev *gdev)
{
	gpup_provider_exit(gdev->prov);
	mutex_unlock(&gdev->op_lock);
}

/**
 * gpup_vfio_op_err() - a provider's error as a data_fd may pass it on
 * @ret: what a provider op returned, or a transfer's completion status
 *
 * read() and write() on a data_fd give three errnos meanings of their
 * own, after which the stream goes on: -EINTR (a signal came, nothing was
 * lost), -ENOMSG (pre-copy has nothing for now) and -EAGAIN (try again).
 * A provider's error of that family is none of these: the data its call
 * was to move is lost, and a stream that went on would lack it.  Such an
 * error becomes -EIO, which fails the stream for good, as every other
 * provider error does.
 *
 * Return: -EIO for -EINTR, -EAGAIN, -ENOMSG and the -ERESTART* codes;
 * @ret otherwise.
 */
long gpup_vfio_op_err(long ret)
{
	switch (ret) {
	case -EINTR:
	case -EAGAIN:
	case -ENOMSG:
	case -ERESTARTSYS:
	case -ERESTARTNOINTR:
	case -ERESTARTNOHAND:
	case -ERESTART_RESTARTBLOCK:
		return -EIO;
	default:
		return ret;
	}
}

/**
 * gpup_vfio_save_size() - bytes of the immutable and mutable data now
 * @gdev: the VF
 * @gen: as for gpup_vfio_op_enter()
 * @imm: the immutable size
 * @mut: the mutable size
 *
 * Asks the provider's query_save_size, valid in every state; a provider
 * without it stands for its caps' maxima.
 *
 * Return: 0 or -errno.
 */
int gpup_vfio_save_size(struct gpup_vfio_dev *gdev, unsigned long gen,
			size_t *imm, size_t *mut)
{
	int ret;

	ret = gpup_vfio_op_enter(gdev, gen);
	if (ret)
		return ret;
	if (GPUP_OPS(gdev)->query_save_size) {
		ret = GPUP_OPS(gdev)->query_save_size(GPUP_PF(gdev),
						      gdev->vf_id, imm, mut);
		trace_gpup_vfio_op(gdev->vf_id, "query_save_size", 0, ret);
	} else {
		*imm = gdev->caps.max_immutable_size;
		*mut = gdev->caps.max_mutable_size;
	}
	gpup_vfio_op_exit(gdev);
	if (!ret && (*imm > gdev->caps.max_immutable_size ||
		     *mut > gdev->caps.max_mutable_size))
		ret = -EIO;
	return ret;
}

/**
 * gpup_vfio_use_bulk() - whether a new data_fd moves VRAM by vram_xfer
 * @gdev: the VF
 *
 * Context: the caller holds @gdev->state_mutex.
 * Return: true if the bulk_xfer parameter is set and the provider has
 * the vram_xfer op.
 */
bool gpup_vfio_use_bulk(struct gpup_vfio_dev *gdev)
{
	bool bulk;

	if (!READ_ONCE(gpup_vfio_bulk_xfer) ||
	    gpup_vfio_op_enter(gdev, GPUP_GEN_ANY))
		return false;
	bulk = !!GPUP_OPS(gdev)->vram_xfer;
	gpup_vfio_op_exit(gdev);
	return bulk;
}

/**
 * gpup_vfio_query_written() - pages written since the VF's last reset
 * @gdev: the VF
 * @gen: as for gpup_vfio_op_enter()
 * @first: first page
 * @count: pages from @first, inside VRAM
 * @map: a bitmap of @count bits to fill, or NULL for the count alone
 *
 * Asks the provider's optional query_written, if the skip_unwritten
 * parameter is set.
 *
 * Return: the number of written pages in the range; -EOPNOTSUPP without
 * the op or with skip_unwritten=N; -EIO for a count past the range; or
 * -errno.
 */
long gpup_vfio_query_written(struct gpup_vfio_dev *gdev, unsigned long gen,
			     u64 first, u64 count, unsigned long *map)
{
	long ret;

	if (!READ_ONCE(gpup_vfio_skip_unwritten))
		return -EOPNOTSUPP;
	ret = gpup_vfio_op_enter(gdev, gen);
	if (ret)
		return ret;
	ret = -EOPNOTSUPP;
	if (GPUP_OPS(gdev)->query_written)
		ret = GPUP_OPS(gdev)->query_written(GPUP_PF(gdev), gdev->vf_id,
						    first, count, map);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "query_written", count, ret);
	if (ret > (long)count)
		return -EIO;
	return ret == -EOPNOTSUPP ? ret : gpup_vfio_op_err(ret);
}

/**
 * gpup_vfio_caps_match() - whether two caps describe the same migration
 * @a: caps
 * @b: caps
 *
 * Return: true if every field a stream or the migration flags depend on
 * is equal.  %GPUP_CAP_DMA_LOGGING is not one of them: whether the
 * attached provider logs DMA is checked when logging starts.
 */
bool gpup_vfio_caps_match(const struct gpup_migration_caps *a,
			  const struct gpup_migration_caps *b)
{
	return !((a->flags ^ b->flags) & ~GPUP_CAP_DMA_LOGGING) &&
	       a->provider_id == b->provider_id &&
	       a->profile_id == b->profile_id &&
	       a->page_size == b->page_size && a->vram_size == b->vram_size &&
	       a->max_immutable_size == b->max_immutable_size &&
	       a->max_mutable_size == b->max_mutable_size;
}
