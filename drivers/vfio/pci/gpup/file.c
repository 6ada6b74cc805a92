// SPDX-License-Identifier: GPL-2.0
/*
 * The migration data_fd of gpup_vfio_pci: the save file (PRE_COPY and
 * STOP_COPY, read()) and the resume file (RESUMING, write()), both
 * carrying the stream format of stream.h.
 *
 * A save file produces the stream lazily, one piece per refill: the
 * stream header with the IMMUTABLE record, then VRAM runs of the first
 * full pass, then runs of pages the dirty snapshots name, then (once in
 * STOP_COPY) the MUTABLE record and END.  VRAM moves through one bounce
 * buffer of GPUP_RUN_BYTES, so the extra memory a migration needs does not
 * grow with VRAM.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/anon_inodes.h>
#include <linux/bitmap.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/vfio.h>

#include "gpup_vfio.h"
#include "trace.h"

/* Bounds on what a resume stream may declare, beyond the provider caps. */
#define GPUP_MAX_OPTIONAL	(64 * 1024)
#define GPUP_MAX_RUN		(64U << 20)

enum gpup_save_phase {
	GPUP_SAVE_HEAD,		/* stream header + IMMUTABLE record */
	GPUP_SAVE_FULL,		/* the first full pass over VRAM */
	GPUP_SAVE_DIRTY,	/* pages named by dirty snapshots */
	GPUP_SAVE_MUTABLE,	/* the MUTABLE record */
	GPUP_SAVE_END,		/* the END record */
	GPUP_SAVE_DONE,		/* read() returns 0 */
};

/**
 * struct gpup_mig_file - a migration data_fd
 * @filp: the anon file
 * @gdev: the VF; the file holds a reference on its vfio_device
 * @gen: @gdev->gen when the file was made; provider calls fail once the
 *	device moved on (the file was disabled)
 * @lock: protects every field below
 * @save: a save file (else a resume file)
 * @error: sticky error; every later read/write returns it
 * @bounce: GPUP_RUN_BYTES plus room for a record and a run header
 * @npages: VRAM pages of the VF
 * @run_pages: pages in one VRAM run
 * @w: the stream writer (record chain, counts)
 * @phase: where the save stream stands
 * @stop_copy: the device reached STOP_COPY; no more -ENOMSG
 * @tracking: dirty snapshots are taken (PRE_COPY); else the full pass is
 *	the only VRAM pass
 * @final_snapshot: the last snapshot, taken with the VF paused, is in @snap
 * @out: the piece being read; points into @head, @bounce, @mut or @tail
 * @out_len: bytes in @out
 * @out_pos: bytes of @out already read
 * @out_initial: @out belongs to the initial data (PRE_COPY initial_bytes)
 * @head: stream header and IMMUTABLE record
 * @head_len: bytes in @head
 * @next_page: next page of the full pass
 * @snap: the dirty snapshot being sent (bitmap of @npages bits)
 * @peek: scratch bitmap to count dirty pages without clearing them
 * @snap_next: next page to look at in @snap
 * @mut: MUTABLE payload (save) or the received MUTABLE payload (resume)
 * @mut_len: bytes in @mut
 * @mut_crc: CRC of @mut (save)
 * @tail: MUTABLE record header or END record being sent
 * @parser: the stream parser (resume)
 * @imm: IMMUTABLE payload being received (resume)
 * @imm_len: its length
 * @seen: VRAM pages that VRAM records wrote (resume): END is refused
 *	unless the stream covered every page
 * @eof_seen: read() reached the end of the stream (save)
 * @complete: END was parsed (resume)
 */
struct gpup_mig_file {
	struct file *filp;
	struct gpup_vfio_dev *gdev;
	unsigned long gen;
	struct mutex lock;	/* protects the fields below */
	bool save;
	int error;
	u8 *bounce;
	u64 npages;
	u32 run_pages;

	/* save */
	struct gpup_writer w;
	enum gpup_save_phase phase;
	bool stop_copy;
	bool tracking;
	bool final_snapshot;
	const u8 *out;
	size_t out_len;
	size_t out_pos;
	bool out_initial;
	u8 *head;
	size_t head_len;
	u64 next_page;
	unsigned long *snap;
	unsigned long *peek;
	u64 snap_next;
	u8 *mut;
	size_t mut_len;
	u32 mut_crc;
	u8 tail[sizeof(struct gpup_rec_hdr) + sizeof(struct gpup_end)];

	/* resume */
	struct gpup_parser parser;
	u8 *imm;
	size_t imm_len;
	unsigned long *seen;
	bool eof_seen;
	bool complete;
};

/**
 * gpup_mig_file_filp() - the struct file of a migration file
 * @mf: the migration file
 *
 * Return: its anon file.
 */
struct file *gpup_mig_file_filp(struct gpup_mig_file *mf)
{
	return mf->filp;
}

/*
 * A data_fd works only while its device is in the file's generation and
 * the provider is registered: bytes already staged are not handed out
 * once either is gone, since the migration cannot complete any more.
 */
static int gpup_mig_file_alive(struct gpup_mig_file *mf)
{
	int ret;

	ret = gpup_vfio_op_enter(mf->gdev, mf->gen);
	if (!ret)
		gpup_vfio_op_exit(mf->gdev);
	return ret;
}

#define GPUP_OPS(mf) ((mf)->gdev->prov->ops)
#define GPUP_PF(mf) ((mf)->gdev->prov->pf)

/* Bytes of the VRAM records that send @n contiguous pages. */
static u64 gpup_run_bytes(const struct gpup_mig_file *mf, u64 n)
{
	u64 runs = div_u64(n + mf->run_pages - 1, mf->run_pages);

	return runs * (GPUP_REC_HDR_SIZE + GPUP_VRAM_RUN_SIZE) +
	       n * mf->gdev->caps.page_size;
}

/* Bytes of the VRAM records for the set bits of @map from page @from. */
static u64 gpup_bitmap_bytes(const struct gpup_mig_file *mf,
			     const unsigned long *map, u64 from)
{
	unsigned long start, end;
	u64 bytes = 0;

	start = find_next_bit(map, mf->npages, from);
	while (start < mf->npages) {
		end = find_next_zero_bit(map, mf->npages, start);
		bytes += gpup_run_bytes(mf, end - start);
		start = find_next_bit(map, mf->npages, end);
	}
	return bytes;
}

/**
 * gpup_save_full_size() - bytes of a whole save stream
 * @gdev: the VF
 * @imm: bytes of immutable data
 * @mut: bytes of mutable data
 *
 * Return: the size of the stream STOP_COPY produces from STOP: header,
 * IMMUTABLE, one pass over VRAM, MUTABLE and END.
 */
u64 gpup_save_full_size(const struct gpup_vfio_dev *gdev, size_t imm,
			size_t mut)
{
	return gpup_stream_full_size(imm, gdev->caps.vram_size,
				     gdev->caps.page_size, GPUP_RUN_BYTES, mut);
}

/* Copy pages [first, first + n) into @mf->bounce as one VRAM record. */
static int gpup_save_vram_run(struct gpup_mig_file *mf, u64 first, u32 n)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	size_t hdr = sizeof(struct gpup_rec_hdr);
	size_t len = (size_t)n * gdev->caps.page_size;
	struct gpup_vram_run *run;
	struct kvec kv;
	struct iov_iter it;
	ssize_t got;
	u32 crc;
	int ret;

	run = (struct gpup_vram_run *)(mf->bounce + hdr);
	gpup_vram_run_build(run, first, n);
	kv.iov_base = mf->bounce + hdr + sizeof(*run);
	kv.iov_len = len;
	iov_iter_kvec(&it, ITER_DEST, &kv, 1, len);

	ret = gpup_vfio_op_enter(gdev, mf->gen);
	if (ret)
		return ret;
	got = GPUP_OPS(mf)->vram_read(GPUP_PF(mf), gdev->vf_id,
				      first * gdev->caps.page_size, len, &it);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "vram_read",
			   first * gdev->caps.page_size, got);
	if (got < 0)
		return got;
	if (got != len)
		return -EIO;

	crc = gpup_crc(GPUP_CRC_INIT, run, sizeof(*run) + len);
	ret = gpup_rec_hdr_build(&mf->w, (struct gpup_rec_hdr *)mf->bounce,
				 GPUP_REC_VRAM, 0, sizeof(*run) + len,
				 gpup_crc_final(crc));
	if (ret)
		return ret;
	mf->out = mf->bounce;
	mf->out_len = hdr + sizeof(*run) + len;
	return 0;
}

/* Take a dirty snapshot (clearing the bitplane); returns dirty pages. */
static long gpup_save_snapshot(struct gpup_mig_file *mf)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	long ret;

	ret = gpup_vfio_op_enter(gdev, mf->gen);
	if (ret)
		return ret;
	ret = GPUP_OPS(mf)->query_dirty(GPUP_PF(mf), gdev->vf_id, 0,
					mf->npages, mf->snap, true);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "query_dirty", 1, ret);
	mf->snap_next = 0;
	return ret;
}

/*
 * Make the next piece of the save stream current in @mf->out.
 * Returns 0, 1 at the end of the stream, -ENOMSG when PRE_COPY has
 * nothing more for now, or -errno.
 */
static int gpup_save_next(struct gpup_mig_file *mf)
{
	unsigned long start, end;
	long ret;

	mf->out_pos = 0;
	mf->out_len = 0;
	mf->out_initial = false;
	for (;;) {
		switch (mf->phase) {
		case GPUP_SAVE_HEAD:
			mf->out = mf->head;
			mf->out_len = mf->head_len;
			mf->out_initial = true;
			mf->phase = GPUP_SAVE_FULL;
			return 0;
		case GPUP_SAVE_FULL:
			if (mf->next_page < mf->npages) {
				u32 n = min_t(u64, mf->run_pages,
					      mf->npages - mf->next_page);

				ret = gpup_save_vram_run(mf, mf->next_page, n);
				if (ret)
					return ret;
				mf->next_page += n;
				mf->out_initial = true;
				return 0;
			}
			mf->phase = mf->tracking ? GPUP_SAVE_DIRTY :
						   GPUP_SAVE_MUTABLE;
			break;
		case GPUP_SAVE_DIRTY:
			start = find_next_bit(mf->snap, mf->npages,
					      mf->snap_next);
			if (start < mf->npages) {
				end = find_next_zero_bit(mf->snap, mf->npages,
							 start);
				end = min_t(u64, end, start + mf->run_pages);
				mf->snap_next = end;
				return gpup_save_vram_run(mf, start,
							  end - start);
			}
			if (mf->final_snapshot) {
				mf->phase = GPUP_SAVE_MUTABLE;
				break;
			}
			if (mf->stop_copy)
				mf->final_snapshot = true;
			ret = gpup_save_snapshot(mf);
			if (ret < 0)
				return ret;
			if (!ret && !mf->stop_copy)
				return -ENOMSG;
			break;
		case GPUP_SAVE_MUTABLE:
			if (!mf->stop_copy)
				return -ENOMSG;
			ret = gpup_rec_hdr_build(&mf->w,
						 (struct gpup_rec_hdr *)mf->tail,
						 GPUP_REC_MUTABLE, 0,
						 mf->mut_len, mf->mut_crc);
			if (ret)
				return ret;
			/* Header and payload go out as two pieces. */
			mf->out = mf->tail;
			mf->out_len = sizeof(struct gpup_rec_hdr);
			mf->phase = GPUP_SAVE_END;
			return 0;
		case GPUP_SAVE_END:
			if (mf->out != mf->mut && mf->mut_len) {
				mf->out = mf->mut;
				mf->out_len = mf->mut_len;
				return 0;
			}
			ret = gpup_end_build(&mf->w,
					     (struct gpup_rec_hdr *)mf->tail,
					     (struct gpup_end *)(mf->tail +
						GPUP_REC_HDR_SIZE));
			if (ret)
				return ret;
			mf->out = mf->tail;
			mf->out_len = sizeof(mf->tail);
			mf->phase = GPUP_SAVE_DONE;
			return 0;
		case GPUP_SAVE_DONE:
			return 1;
		}
	}
}

static ssize_t gpup_save_read(struct file *filp, char __user *buf,
			      size_t len, loff_t *pos)
{
	struct gpup_mig_file *mf = filp->private_data;
	ssize_t done = 0;
	size_t n;
	int ret = 0;

	if (pos)
		return -ESPIPE;

	mutex_lock(&mf->lock);
	if (mf->error) {
		ret = mf->error;
		goto out;
	}
	ret = gpup_mig_file_alive(mf);
	if (ret)
		goto out;
	while (done < len) {
		if (mf->out_pos == mf->out_len) {
			ret = gpup_save_next(mf);
			if (ret == 1) {
				/* The end: count the stream once, then 0. */
				if (!mf->eof_seen)
					atomic64_inc(&mf->gdev->stats.migrations_out);
				mf->eof_seen = true;
				ret = 0;
				break;
			}
			if (ret)
				break;
		}
		n = min_t(size_t, len - done, mf->out_len - mf->out_pos);
		if (copy_to_user(buf + done, mf->out + mf->out_pos, n)) {
			ret = -EFAULT;
			break;
		}
		mf->out_pos += n;
		done += n;
	}
	if (ret && ret != -ENOMSG && ret != -EFAULT)
		mf->error = ret;
out:
	mutex_unlock(&mf->lock);
	if (done) {
		atomic64_add(done, &mf->gdev->stats.bytes_saved);
		return done;
	}
	if (ret)
		atomic_set(&mf->gdev->stats.last_error, ret);
	return ret;
}

/*
 * Bytes the save stream still holds: @initial of the initial data (header,
 * IMMUTABLE, full pass), @dirty of everything else up to now; with
 * @precopy false @dirty also counts the MUTABLE and END records, i.e. what
 * STOP_COPY would produce from here.  Caller holds @mf->lock.
 */
static int gpup_save_pending_locked(struct gpup_mig_file *mf, u64 *initial,
				    u64 *dirty, bool precopy)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	u64 in = 0, dt = 0, rest = mf->out_len - mf->out_pos;
	size_t mut = mf->mut_len;
	long ret;

	if (mf->out_initial)
		in += rest;
	else
		dt += rest;
	if (mf->phase == GPUP_SAVE_HEAD)
		in += mf->head_len;
	if (mf->phase <= GPUP_SAVE_FULL)
		in += gpup_run_bytes(mf, mf->npages - mf->next_page);
	if (mf->phase <= GPUP_SAVE_DIRTY && mf->tracking) {
		dt += gpup_bitmap_bytes(mf, mf->snap, mf->snap_next);
		if (!mf->final_snapshot) {
			ret = gpup_vfio_op_enter(gdev, mf->gen);
			if (ret)
				return ret;
			ret = GPUP_OPS(mf)->query_dirty(GPUP_PF(mf), gdev->vf_id,
							0, mf->npages, mf->peek,
							false);
			gpup_vfio_op_exit(gdev);
			trace_gpup_vfio_op(gdev->vf_id, "query_dirty", 0, ret);
			if (ret < 0)
				return ret;
			dt += gpup_bitmap_bytes(mf, mf->peek, 0);
		}
	}
	if (!precopy) {
		if (!mf->stop_copy) {
			ret = gpup_vfio_op_enter(gdev, mf->gen);
			if (ret)
				return ret;
			ret = GPUP_OPS(mf)->save_mutable(GPUP_PF(mf), gdev->vf_id,
							 NULL, &mut);
			gpup_vfio_op_exit(gdev);
			if (ret)
				return ret;
		}
		if (mf->phase <= GPUP_SAVE_MUTABLE)
			dt += sizeof(struct gpup_rec_hdr) + mut;
		else if (mf->phase == GPUP_SAVE_END && mf->out != mf->mut)
			dt += mut;
		if (mf->phase <= GPUP_SAVE_END)
			dt += GPUP_END_REC_SIZE;
	}
	*initial = in;
	*dirty = dt;
	return 0;
}

/**
 * gpup_save_file_pending() - bytes a save file still holds
 * @mf: the save file
 * @initial: initial bytes left (header, IMMUTABLE, the full VRAM pass)
 * @dirty: other bytes: dirty pages so far, and with @precopy false the
 *	MUTABLE and END records as well
 * @precopy: count as VFIO_MIG_GET_PRECOPY_INFO does
 *
 * Context: the caller holds the device's state_mutex.
 * Return: 0 or -errno.
 */
long gpup_save_file_pending(struct gpup_mig_file *mf, u64 *initial,
			    u64 *dirty, bool precopy)
{
	long ret;

	mutex_lock(&mf->lock);
	ret = mf->error ? mf->error :
	      gpup_save_pending_locked(mf, initial, dirty, precopy);
	mutex_unlock(&mf->lock);
	return ret;
}

static long gpup_save_ioctl(struct file *filp, unsigned int cmd,
			    unsigned long arg)
{
	struct gpup_mig_file *mf = filp->private_data;
	struct gpup_vfio_dev *gdev = mf->gdev;
	struct vfio_precopy_info info;
	unsigned long minsz;
	u64 initial, dirty;
	long ret;

	if (cmd != VFIO_MIG_GET_PRECOPY_INFO)
		return -ENOTTY;
	minsz = offsetofend(struct vfio_precopy_info, dirty_bytes);
	if (copy_from_user(&info, (void __user *)arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;

	mutex_lock(&gdev->state_mutex);
	if (gdev->saving != mf ||
	    (gdev->mig_state != VFIO_DEVICE_STATE_PRE_COPY &&
	     gdev->mig_state != VFIO_DEVICE_STATE_PRE_COPY_P2P)) {
		ret = -EINVAL;
		goto out;
	}
	ret = gpup_save_file_pending(mf, &initial, &dirty, true);
out:
	gpup_vfio_state_mutex_unlock(gdev);
	if (ret)
		return ret;
	info.initial_bytes = initial;
	info.dirty_bytes = dirty;
	return copy_to_user((void __user *)arg, &info, minsz) ? -EFAULT : 0;
}

/*
 * Page bitmaps: one bit per VRAM page, which for a large VF is more than
 * kmalloc gives (4 MiB of bitmap is 128 GiB of 4 KiB pages), hence
 * kvcalloc.  The caps bound the page count to what unsigned int bit
 * indices reach (GPUP_MAX_PAGES).
 */
static unsigned long *gpup_bitmap_alloc(u64 nbits)
{
	return kvcalloc(BITS_TO_LONGS(nbits), sizeof(unsigned long),
			GFP_KERNEL_ACCOUNT);
}

static void gpup_bitmap_free(unsigned long *map)
{
	kvfree(map);
}

/* Free a migration file's buffers; the file is going away. */
static void gpup_mig_file_free(struct gpup_mig_file *mf)
{
	kvfree(mf->head);
	kvfree(mf->mut);
	kvfree(mf->imm);
	gpup_bitmap_free(mf->snap);
	gpup_bitmap_free(mf->peek);
	gpup_bitmap_free(mf->seen);
	kvfree(mf->bounce);
	mutex_destroy(&mf->lock);
	put_device(&mf->gdev->core.vdev.device);
	kfree(mf);
}

static int gpup_mig_file_release(struct inode *inode, struct file *filp)
{
	gpup_mig_file_free(filp->private_data);
	return 0;
}

static ssize_t gpup_resume_write(struct file *filp, const char __user *buf,
				 size_t len, loff_t *pos);

static const struct file_operations gpup_save_fops = {
	.owner = THIS_MODULE,
	.read = gpup_save_read,
	.unlocked_ioctl = gpup_save_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = gpup_mig_file_release,
};

static const struct file_operations gpup_resume_fops = {
	.owner = THIS_MODULE,
	.write = gpup_resume_write,
	.release = gpup_mig_file_release,
};

static struct gpup_mig_file *gpup_mig_file_alloc(struct gpup_vfio_dev *gdev,
						 bool save)
{
	struct gpup_mig_file *mf;
	int ret = -ENOMEM;

	mf = kzalloc(sizeof(*mf), GFP_KERNEL_ACCOUNT);
	if (!mf)
		return ERR_PTR(-ENOMEM);
	mutex_init(&mf->lock);
	mf->gdev = gdev;
	mf->gen = gdev->gen;
	mf->save = save;
	mf->npages = div_u64(gdev->caps.vram_size, gdev->caps.page_size);
	mf->run_pages = max_t(u32, 1, GPUP_RUN_BYTES / gdev->caps.page_size);
	mf->bounce = kvmalloc(GPUP_REC_HDR_SIZE + GPUP_VRAM_RUN_SIZE +
			      (size_t)mf->run_pages * gdev->caps.page_size,
			      GFP_KERNEL_ACCOUNT);
	if (!mf->bounce)
		goto err_free;
	if (!save) {
		mf->seen = gpup_bitmap_alloc(mf->npages);
		if (!mf->seen)
			goto err_free;
	}

	mf->filp = anon_inode_getfile(save ? "gpup_vfio_save" :
					     "gpup_vfio_resume",
				      save ? &gpup_save_fops :
					     &gpup_resume_fops,
				      mf, save ? O_RDONLY : O_WRONLY);
	if (IS_ERR(mf->filp)) {
		ret = PTR_ERR(mf->filp);
		goto err_free;
	}
	stream_open(mf->filp->f_inode, mf->filp);
	get_device(&gdev->core.vdev.device);
	return mf;

err_free:
	gpup_bitmap_free(mf->seen);
	kvfree(mf->bounce);
	mutex_destroy(&mf->lock);
	kfree(mf);
	return ERR_PTR(ret);
}

/* Two-call save of a provider blob into a new buffer of at most @max. */
static int gpup_save_blob(struct gpup_mig_file *mf, bool mutable,
			  u32 max, size_t room_before, u8 **out, size_t *len)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	int (*save)(struct pci_dev *pf, unsigned int vf, void *buf,
		    size_t *size);
	size_t size = 0;
	u8 *buf;
	int ret;

	ret = gpup_vfio_op_enter(gdev, mf->gen);
	if (ret)
		return ret;
	save = mutable ? GPUP_OPS(mf)->save_mutable :
			 GPUP_OPS(mf)->save_immutable;
	ret = save(GPUP_PF(mf), gdev->vf_id, NULL, &size);
	if (ret)
		goto out;
	if (size > max) {
		ret = -EIO;
		goto out;
	}
	buf = kvzalloc(room_before + size, GFP_KERNEL_ACCOUNT);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	ret = save(GPUP_PF(mf), gdev->vf_id, buf + room_before, &size);
	if (ret) {
		kvfree(buf);
		goto out;
	}
	*out = buf;
	*len = size;
out:
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, mutable ? "save_mutable" :
			   "save_immutable", size, ret);
	return ret;
}

/**
 * gpup_save_file_new() - start a save stream
 * @gdev: the VF, prepared as migration source
 * @precopy: entered from RUNNING (dirty tracking runs, data is read in
 *	PRE_COPY); else from STOP, and the stream is complete at once
 *
 * Saves the immutable data (and, from STOP, the mutable data) now, so
 * that their errors fail the arc.
 *
 * Context: the caller holds @gdev->state_mutex.
 * Return: the file or ERR_PTR().
 */
struct gpup_mig_file *gpup_save_file_new(struct gpup_vfio_dev *gdev,
					 bool precopy)
{
	const struct gpup_migration_caps *caps = &gdev->caps;
	size_t pre = sizeof(struct gpup_stream_hdr) +
		     sizeof(struct gpup_rec_hdr);
	struct gpup_mig_file *mf;
	size_t imm_len;
	u32 crc;
	int ret;

	mf = gpup_mig_file_alloc(gdev, true);
	if (IS_ERR(mf))
		return mf;
	mf->tracking = precopy;
	if (precopy) {
		mf->snap = gpup_bitmap_alloc(mf->npages);
		mf->peek = gpup_bitmap_alloc(mf->npages);
		ret = -ENOMEM;
		if (!mf->snap || !mf->peek)
			goto err;
	}

	ret = gpup_save_blob(mf, false, caps->max_immutable_size, pre,
			     &mf->head, &imm_len);
	if (ret)
		goto err;
	gpup_writer_init(&mf->w);
	gpup_stream_hdr_build((struct gpup_stream_hdr *)mf->head,
			      caps->provider_id, caps->profile_id,
			      caps->page_size, caps->vram_size);
	ret = gpup_writer_hdr(&mf->w, (struct gpup_stream_hdr *)mf->head);
	if (ret)
		goto err;
	crc = gpup_crc(GPUP_CRC_INIT, mf->head + pre, imm_len);
	ret = gpup_rec_hdr_build(&mf->w, (struct gpup_rec_hdr *)(mf->head +
					sizeof(struct gpup_stream_hdr)),
				 GPUP_REC_IMMUTABLE, 0, imm_len,
				 gpup_crc_final(crc));
	if (ret)
		goto err;
	mf->head_len = pre + imm_len;

	if (!precopy) {
		ret = gpup_save_file_stop_copy(mf);
		if (ret)
			goto err;
	}
	return mf;

err:
	/* The file holds a device reference: fput() releases all of it. */
	fput(mf->filp);
	return ERR_PTR(ret);
}

/**
 * gpup_save_file_stop_copy() - the device entered STOP_COPY
 * @mf: the save file
 *
 * Saves the mutable data (the VF is paused); reads then run to the END
 * record and return 0 after it.
 *
 * Context: the caller holds the device's state_mutex.
 * Return: 0 or -errno.
 */
int gpup_save_file_stop_copy(struct gpup_mig_file *mf)
{
	u8 *mut;
	size_t len;
	int ret;

	mutex_lock(&mf->lock);
	ret = mf->error;
	if (ret)
		goto out;
	ret = gpup_save_blob(mf, true, mf->gdev->caps.max_mutable_size, 0,
			     &mut, &len);
	if (ret)
		goto out;
	mf->mut = mut;
	mf->mut_len = len;
	mf->mut_crc = gpup_crc_final(gpup_crc(GPUP_CRC_INIT, mut, len));
	mf->stop_copy = true;
out:
	mutex_unlock(&mf->lock);
	return ret;
}

/* ---- resume ---------------------------------------------------------- */

static int gpup_resume_header(struct gpup_mig_file *mf,
			      const struct gpup_event *ev)
{
	const struct gpup_migration_caps *caps = &mf->gdev->caps;

	if (ev->hdr.provider_id != caps->provider_id ||
	    ev->hdr.profile_id != caps->profile_id ||
	    ev->hdr.page_size != caps->page_size ||
	    ev->hdr.vram_size != caps->vram_size)
		return -EPROTONOSUPPORT;
	return 0;
}

static int gpup_resume_record(struct gpup_mig_file *mf,
			      const struct gpup_event *ev)
{
	u8 **buf;

	if (ev->type == GPUP_REC_IMMUTABLE)
		buf = &mf->imm;
	else if (ev->type == GPUP_REC_MUTABLE)
		buf = &mf->mut;
	else
		return 0;
	/* The parser bounded ev->len by the provider's maxima already. */
	*buf = kvzalloc(ev->len ? ev->len : 1, GFP_KERNEL_ACCOUNT);
	if (!*buf)
		return -ENOMEM;
	if (ev->type == GPUP_REC_IMMUTABLE)
		mf->imm_len = ev->len;
	else
		mf->mut_len = ev->len;
	return 0;
}

static int gpup_resume_data(struct gpup_mig_file *mf,
			    const struct gpup_event *ev)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	struct iov_iter it;
	struct kvec kv;
	ssize_t put;
	int ret;

	switch (ev->type) {
	case GPUP_REC_IMMUTABLE:
		memcpy(mf->imm + ev->offset, ev->data, ev->data_len);
		return 0;
	case GPUP_REC_MUTABLE:
		memcpy(mf->mut + ev->offset, ev->data, ev->data_len);
		return 0;
	case GPUP_REC_VRAM:
		break;
	default:
		return 0;
	}
	kv.iov_base = (void *)ev->data;
	kv.iov_len = ev->data_len;
	iov_iter_kvec(&it, ITER_SOURCE, &kv, 1, ev->data_len);
	ret = gpup_vfio_op_enter(gdev, mf->gen);
	if (ret)
		return ret;
	put = GPUP_OPS(mf)->vram_write(GPUP_PF(mf), gdev->vf_id,
				       ev->vram_offset, ev->data_len, &it);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "vram_write", ev->vram_offset, put);
	if (put < 0)
		return put;
	if (put != ev->data_len)
		return -EIO;
	if (ev->data_len) {
		u32 ps = gdev->caps.page_size;
		u64 first = div_u64(ev->vram_offset, ps);
		u64 last = div_u64(ev->vram_offset + ev->data_len - 1, ps);

		/* The parser kept the run inside the VRAM size. */
		bitmap_set(mf->seen, first, last - first + 1);
	}
	return 0;
}

static int gpup_resume_record_end(struct gpup_mig_file *mf,
				  const struct gpup_event *ev)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	int ret;

	if (ev->type != GPUP_REC_IMMUTABLE)
		return 0;
	/* The compatibility check, as early as the stream allows. */
	ret = gpup_vfio_op_enter(gdev, mf->gen);
	if (ret)
		return ret;
	ret = GPUP_OPS(mf)->restore_immutable(GPUP_PF(mf), gdev->vf_id,
					      mf->imm, mf->imm_len);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "restore_immutable", mf->imm_len, ret);
	return ret;
}

/*
 * Feed @len bytes to the parser and act on its events.  A RECORD_END may
 * come one call late, so the loop goes on with an empty feed until the
 * parser has nothing left to report: a record completed by this write is
 * acted on (restore_immutable: the compatibility check) by this write.
 */
static int gpup_resume_feed(struct gpup_mig_file *mf, const u8 *buf,
			    size_t len)
{
	struct gpup_event ev;
	long used;
	int ret;

	do {
		used = gpup_parser_feed(&mf->parser, buf, len, &ev);
		if (used < 0)
			return used;
		buf += used;
		len -= used;
		switch (ev.kind) {
		case GPUP_EV_HEADER:
			ret = gpup_resume_header(mf, &ev);
			break;
		case GPUP_EV_RECORD:
			ret = gpup_resume_record(mf, &ev);
			break;
		case GPUP_EV_DATA:
			ret = gpup_resume_data(mf, &ev);
			break;
		case GPUP_EV_RECORD_END:
			ret = gpup_resume_record_end(mf, &ev);
			break;
		case GPUP_EV_END:
			/* A stream that left a VRAM page out is not whole. */
			if (!bitmap_full(mf->seen, mf->npages)) {
				ret = -EPROTO;
				break;
			}
			mf->complete = true;
			ret = 0;
			break;
		default:
			ret = 0;
			break;
		}
		if (ret)
			return ret;
	} while (len || ev.kind != GPUP_EV_NONE);
	return 0;
}

static ssize_t gpup_resume_write(struct file *filp, const char __user *buf,
				 size_t len, loff_t *pos)
{
	struct gpup_mig_file *mf = filp->private_data;
	size_t done = 0, n, room;
	int ret = 0;

	if (pos)
		return -ESPIPE;

	mutex_lock(&mf->lock);
	if (mf->error) {
		ret = mf->error;
		goto out;
	}
	ret = gpup_mig_file_alive(mf);
	if (ret)
		goto out;
	room = (size_t)mf->run_pages * mf->gdev->caps.page_size;
	while (done < len) {
		n = min(len - done, room);
		if (copy_from_user(mf->bounce, buf + done, n)) {
			ret = -EFAULT;
			break;
		}
		ret = gpup_resume_feed(mf, mf->bounce, n);
		if (ret) {
			mf->error = ret;
			break;
		}
		done += n;
	}
out:
	mutex_unlock(&mf->lock);
	if (done)
		atomic64_add(done, &mf->gdev->stats.bytes_restored);
	if (ret) {
		atomic_set(&mf->gdev->stats.last_error, ret);
		return ret;
	}
	return done;
}

/**
 * gpup_resume_file_new() - start receiving a stream
 * @gdev: the VF, paused and prepared as migration target
 *
 * Context: the caller holds @gdev->state_mutex.
 * Return: the file or ERR_PTR().
 */
struct gpup_mig_file *gpup_resume_file_new(struct gpup_vfio_dev *gdev)
{
	const struct gpup_migration_caps *caps = &gdev->caps;
	struct gpup_stream_limits lim = {
		.page_size = caps->page_size,
		.vram_size = caps->vram_size,
		.max_immutable = caps->max_immutable_size,
		.max_mutable = caps->max_mutable_size,
		.max_vram_run = GPUP_MAX_RUN,
		.max_optional = GPUP_MAX_OPTIONAL,
	};
	struct gpup_mig_file *mf;

	mf = gpup_mig_file_alloc(gdev, false);
	if (IS_ERR(mf))
		return mf;
	/* Geometry is checked against the caps in gpup_resume_header(). */
	lim.page_size = 0;
	lim.vram_size = 0;
	gpup_parser_init(&mf->parser, &lim);
	return mf;
}

/**
 * gpup_resume_file_finish() - RESUMING -> STOP: restore the mutable data
 * @mf: the resume file
 *
 * Context: the caller holds the device's state_mutex.
 * Return: 0; the stream's error; -ENODATA if the stream did not reach
 * its END record; or the error of restore_mutable.
 */
int gpup_resume_file_finish(struct gpup_mig_file *mf)
{
	struct gpup_vfio_dev *gdev = mf->gdev;
	int ret;

	mutex_lock(&mf->lock);
	ret = mf->error;
	if (!ret)
		ret = gpup_parser_finish(&mf->parser);
	if (!ret && !mf->complete)
		ret = -ENODATA;
	if (ret)
		goto out;
	ret = gpup_vfio_op_enter(gdev, mf->gen);
	if (ret)
		goto out;
	ret = GPUP_OPS(mf)->restore_mutable(GPUP_PF(mf), gdev->vf_id, mf->mut,
					    mf->mut_len);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "restore_mutable", mf->mut_len, ret);
out:
	mutex_unlock(&mf->lock);
	return ret;
}
