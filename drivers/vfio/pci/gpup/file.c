// SPDX-License-Identifier: GPL-2.0
/*
 * What the two migration data_fds of gpup_vfio_pci share: the anon file,
 * its locks and generation, and page bitmaps.  save.c is the save file
 * (PRE_COPY and STOP_COPY, read()), resume.c the resume file (RESUMING,
 * write()).
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/anon_inodes.h>
#include <linux/completion.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>

#include "file.h"

/**
 * gpup_vfio_file_init() - set up the shared part of a data_fd
 * @mf: the shared part, zeroed, inside the save or resume file that
 *	@fops' handlers find as the file's private_data
 * @gdev: the VF; the file takes a reference on its vfio_device
 * @name: the anon inode's name
 * @fops: the file operations
 * @flags: O_RDONLY or O_WRONLY
 *
 * The file belongs to the current generation of @gdev: the caller holds
 * @gdev->state_mutex.
 *
 * Return: 0 or -errno; on error nothing is left to undo.
 */
int gpup_vfio_file_init(struct gpup_mig_file *mf, struct gpup_vfio_dev *gdev,
			const char *name, const struct file_operations *fops,
		       int flags)
{
	mutex_init(&mf->io_lock);
	mutex_init(&mf->lock);
	refcount_set(&mf->refs, 1);
	mf->gdev = gdev;
	mutex_lock(&gdev->op_lock);
	mf->gen = gdev->gen;
	mutex_unlock(&gdev->op_lock);
	mf->filp = anon_inode_getfile(name, fops, mf, flags);
	if (IS_ERR(mf->filp)) {
		mutex_destroy(&mf->lock);
		mutex_destroy(&mf->io_lock);
		return PTR_ERR(mf->filp);
	}
	stream_open(mf->filp->f_inode, mf->filp);
	get_device(&gdev->core.vdev.device);
	return 0;
}

/**
 * gpup_vfio_file_fini() - release the shared part of a data_fd
 * @mf: the shared part; its file is being released
 */
void gpup_vfio_file_fini(struct gpup_mig_file *mf)
{
	mutex_destroy(&mf->lock);
	mutex_destroy(&mf->io_lock);
	put_device(&mf->gdev->core.vdev.device);
}

/**
 * gpup_vfio_file_alive() - whether a data_fd may still work
 * @mf: the file
 *
 * A data_fd works only while its device is in the file's generation and
 * the provider is registered: bytes already staged are not handed out
 * once either is gone, since the migration cannot complete any more.
 *
 * Return: 0 or the -errno of gpup_vfio_op_enter().
 */
int gpup_vfio_file_alive(struct gpup_mig_file *mf)
{
	int ret;

	ret = gpup_vfio_op_enter(mf->gdev, mf->gen);
	if (!ret)
		gpup_vfio_op_exit(mf->gdev);
	return ret;
}

/**
 * gpup_vfio_file_xfer() - hand a bulk transfer of the file to the provider
 * @mf: the file; the caller has entered its device (gpup_vfio_op_enter())
 * @xfer: the transfer, whose buffer is the file's
 *
 * A transfer the provider queues holds two references until its done()
 * has run: one on the file's memory, dropped by done() itself through
 * gpup_vfio_file_put(), so that a transfer completing after release
 * writes memory still allocated; and one on this module, dropped by
 * gpup_xfer_complete() once done() returned, so that the callback's code
 * cannot go while it runs.  done() may come before vram_xfer returns:
 * both are taken first.
 *
 * Return: what vram_xfer returned (-EINPROGRESS: queued); -EOPNOTSUPP
 * without the op.
 */
int gpup_vfio_file_xfer(struct gpup_mig_file *mf, struct gpup_vram_xfer *xfer)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	int ret;

	if (!GPUP_OPS(gdev)->vram_xfer)
		return -EOPNOTSUPP;
	xfer->owner = THIS_MODULE;
	refcount_inc(&mf->refs);
	__module_get(THIS_MODULE);
	ret = GPUP_OPS(gdev)->vram_xfer(GPUP_PF(gdev), gdev->vf_id, xfer);
	if (ret != -EINPROGRESS) {
		module_put(THIS_MODULE);
		refcount_dec(&mf->refs);
	}
	return ret;
}

/**
 * gpup_vfio_file_put() - drop a reference on the file's memory
 * @mf: the file
 *
 * Release drops the file's own reference, done() a transfer's.
 *
 * Return: true if it was the last: the caller frees the file's memory.
 */
bool gpup_vfio_file_put(struct gpup_mig_file *mf)
{
	return refcount_dec_and_test(&mf->refs);
}

/**
 * gpup_vfio_file_wait() - wait, bounded, for a transfer of the file
 * @mf: the file; the caller holds @mf->lock
 * @done: the transfer's completion
 * @killable: a fatal signal ends the wait
 *
 * A copy engine that hangs is what the provider's GPUP_VF_EVENT_ERROR
 * reports; no wait for it may last for ever, since some hold the
 * device's locks.  After xfer_timeout_ms the file counts as hung, says
 * so once, and later waits only look.
 *
 * Return: 0 once the transfer completed; -ETIMEDOUT; -EINTR for a fatal
 * signal.
 */
int gpup_vfio_file_wait(struct gpup_mig_file *mf, struct completion *done,
			bool killable)
{
	unsigned long t;
	long left;

	lockdep_assert_held(&mf->lock);
	if (mf->hung)
		return completion_done(done) ? 0 : -ETIMEDOUT;
	t = msecs_to_jiffies(max(READ_ONCE(gpup_vfio_xfer_timeout_ms), 1U));
	if (killable)
		left = wait_for_completion_killable_timeout(done, t);
	else
		left = wait_for_completion_timeout(done, t);
	if (left < 0)
		return -EINTR;
	if (left)
		return 0;
	mf->hung = true;
	pci_warn(mf->gdev->core.pdev,
		 "gpup: a VRAM transfer did not complete in %u ms: the data_fd fails, and its buffers stay allocated until it does\n",
		 READ_ONCE(gpup_vfio_xfer_timeout_ms));
	return -ETIMEDOUT;
}

/**
 * gpup_vfio_bitmap_alloc() - a zeroed bitmap of one bit per VRAM page
 * @nbits: bits
 *
 * A large VF has more pages than kmalloc serves bits for (4 MiB of
 * bitmap is 128 GiB of 4 KiB pages), hence kvcalloc.  The caps bound the
 * page count to what unsigned int bit indices reach.
 *
 * Return: the bitmap or NULL.
 */
unsigned long *gpup_vfio_bitmap_alloc(u64 nbits)
{
	return kvcalloc(BITS_TO_LONGS(nbits), sizeof(unsigned long),
			GFP_KERNEL_ACCOUNT);
}

/**
 * gpup_vfio_bitmap_free() - free a bitmap of gpup_vfio_bitmap_alloc()
 * @map: the bitmap or NULL
 */
void gpup_vfio_bitmap_free(unsigned long *map)
{
	kvfree(map);
}
