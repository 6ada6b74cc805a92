// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_sim VF state: the deterministic engine and the GPU-P migration ops.
 *
 * A step is a pure function of the VF's whole state: it advances a PRNG,
 * mixes in a word read from VRAM (so VRAM contents steer every later
 * step), rewrites a few VRAM pages, marks them dirty and advances one
 * engine's ring, fences and context registers.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <crypto/sha2.h>
#include <linux/bitmap.h>
#include <linux/crc32c.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/highmem.h>
#include <linux/pci.h>
#include <linux/sched.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uio.h>
#include <linux/vmalloc.h>

#include "gpup_sim.h"

#define GPUP_SIM_PAGES_PER_STEP	4
#define GPUP_SIM_IMM_MAGIC	0x4d495347	/* "GSIM" */
#define GPUP_SIM_MUT_MAGIC	0x554d5347	/* "GSMU" */
#define GPUP_SIM_MAJOR		1
#define GPUP_SIM_MINOR		1

static const struct gpup_sim_profile gpup_sim_profiles[] = {
	{ .id = 1, .engines = 4, .fw_version = 0x00010203,
	  .drv_version = 0x00060c00, .device_id = 0x1001 },
	{ .id = 2, .engines = 2, .fw_version = 0x00020001,
	  .drv_version = 0x00060c00, .device_id = 0x1002 },
};

/* Immutable data: the profile and what validates it. */
struct gpup_sim_imm {
	__le32 magic;
	__le16 major;
	__le16 minor;
	__le32 profile_id;
	__le32 engines;
	__le32 fw_version;
	__le32 drv_version;
	__le32 device_id;
	__le32 page_size;
	__le64 vram_size;
	__le32 reserved;
	__le32 crc;
} __packed;

struct gpup_sim_mut_engine {
	__le32 ctx[GPUP_SIM_CTX_REGS];
	__le32 ring_head;
	__le32 ring_tail;
	__le64 fence_seqno;
	__le64 fence_done;
} __packed;

/* Mutable data: engines, scheduler and (1.1) the DMA window. */
struct gpup_sim_mut {
	__le32 magic;
	__le16 major;
	__le16 minor;
	__le32 profile_id;
	__le32 engines;
	__le32 cur_engine;
	__le32 timeslice;
	__le64 steps;
	__le64 rng;
	struct gpup_sim_mut_engine eng[GPUP_SIM_MAX_ENGINES];
	__le64 dma_iova;
	__le32 dma_npages;
	__le32 reserved;
	__le32 crc;
} __packed;

static u32 gpup_sim_crc(const void *p, size_t len)
{
	return ~crc32c(~0U, p, len);
}

/**
 * gpup_sim_find_profile() - look up a profile
 * @id: profile id
 *
 * Return: the profile, or NULL if there is none with @id.
 */
const struct gpup_sim_profile *gpup_sim_find_profile(u32 id)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(gpup_sim_profiles); i++)
		if (gpup_sim_profiles[i].id == id)
			return &gpup_sim_profiles[i];
	return NULL;
}

/* splitmix64: the PRNG every step draws from. */
static u64 gpup_sim_next(u64 *x)
{
	u64 z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static u64 gpup_sim_npages(const struct gpup_sim_vf *vf)
{
	return vf->vram_size / GPUP_SIM_PAGE_SIZE;
}

/*
 * VRAM may be GiBs: walk it in slices and let others run in between, so
 * that a slow machine (a debug kernel under emulation) sees no soft lockup.
 */
#define GPUP_SIM_VRAM_SLICE	SZ_4M

/*
 * VRAM is sparse: @vf->vram maps a page number to the struct page that
 * backs it, allocated when the page is first written.  A page with no
 * entry was not written since the VF's last reset and reads as zeros,
 * as VRAM at power-on does here, so a VF of 64 GiB costs the guest only
 * what it wrote.
 */
static u8 *gpup_sim_vram_page(struct gpup_sim_vf *vf, u64 pg)
{
	struct page *page = xa_load(&vf->vram, pg);

	return page ? page_address(page) : NULL;
}

/* VRAM page @pg, backed (zeroed) now if it was not: for a write. */
static u8 *gpup_sim_vram_page_get(struct gpup_sim_vf *vf, u64 pg)
{
	struct page *page = xa_load(&vf->vram, pg);
	void *old;

	if (page)
		return page_address(page);
	page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!page)
		return ERR_PTR(-ENOMEM);
	old = xa_store(&vf->vram, pg, page, GFP_KERNEL);
	if (xa_is_err(old)) {
		__free_page(page);
		return ERR_PTR(xa_err(old));
	}
	vf->vram_backed++;
	return page_address(page);
}

/*
 * Pages @first to @last unbacked: they read as zeros again, as at
 * power-on; under @vf->lock.
 */
static void gpup_sim_vram_unback(struct gpup_sim_vf *vf, unsigned long first,
				 unsigned long last)
{
	unsigned int n = 0;
	struct page *page;
	unsigned long pg;

	xa_for_each_range(&vf->vram, pg, page, first, last) {
		xa_erase(&vf->vram, pg);
		__free_page(page);
		vf->vram_backed--;
		if (!(++n % 1024))
			cond_resched();
	}
}

/*
 * Copy @len bytes of VRAM at @off to @it (@write false: unbacked pages
 * read as zeros) or from it (@write true: each page it reaches is
 * backed, but for an unbacked one that still holds zeros after it, as
 * a restore of pages never written writes them: VRAM stays as sparse
 * on the target as on the source); caller holds @vf->lock.  The one
 * copy of VRAM that vram_read, vram_write, transfers and the digest all
 * use.  Returns the
 * bytes copied, or -EFAULT / -ENOMEM if none could be.
 */
static ssize_t gpup_sim_vram_copy(struct gpup_sim_vf *vf, u64 off,
				  size_t len, struct iov_iter *it, bool write)
{
	size_t done = 0, c, n;
	bool fresh;
	u64 pg;
	u8 *p;

	while (done < len) {
		c = min_t(size_t, len - done, GPUP_SIM_PAGE_SIZE -
			  off % GPUP_SIM_PAGE_SIZE);
		if (write) {
			pg = off / GPUP_SIM_PAGE_SIZE;
			fresh = !gpup_sim_vram_page(vf, pg);
			p = gpup_sim_vram_page_get(vf, pg);
			if (IS_ERR(p))
				return done ?: PTR_ERR(p);
			n = copy_from_iter(p + off % GPUP_SIM_PAGE_SIZE, c, it);
			/* Zeros into an unbacked page leave it unbacked. */
			if (fresh && !memchr_inv(p, 0, GPUP_SIM_PAGE_SIZE))
				gpup_sim_vram_unback(vf, pg, pg);
		} else {
			p = gpup_sim_vram_page(vf, off / GPUP_SIM_PAGE_SIZE);
			n = p ? copy_to_iter(p + off % GPUP_SIM_PAGE_SIZE, c,
					     it) :
			    iov_iter_zero(c, it);
		}
		done += n;
		off += n;
		if (n < c)
			break;
	}
	return done || !len ? done : -EFAULT;
}

/* Back to power-on: every page unbacked (zeros); under @vf->lock. */
static void gpup_sim_vram_clear(struct gpup_sim_vf *vf)
{
	gpup_sim_vram_unback(vf, 0, ULONG_MAX);
	xa_destroy(&vf->vram);
}

/**
 * gpup_sim_reset_locked() - put a VF in its initial state
 * @vf: the VF; caller holds @vf->lock
 *
 * The initial state is a function of the seed and the profile only:
 * VRAM cleared, engines seeded, unpaused, not migrating, not tracking.
 */
void gpup_sim_reset_locked(struct gpup_sim_vf *vf)
{
	u64 x = vf->seed * 0x2545f4914f6cdd1dULL ^ vf->profile.id;
	unsigned int e, r;

	lockdep_assert_held(&vf->lock);
	memset(vf->eng, 0, sizeof(vf->eng));
	for (e = 0; e < vf->profile.engines; e++)
		for (r = 0; r < GPUP_SIM_CTX_REGS; r++)
			vf->eng[e].ctx[r] = gpup_sim_next(&x);
	memset(&vf->sched, 0, sizeof(vf->sched));
	vf->sched.rng = gpup_sim_next(&x);
	gpup_sim_vram_clear(vf);
	gpup_sim_dma_clear_locked(vf);
	gpup_sim_dma_log_stop_locked(vf);
	bitmap_zero(vf->dirty, gpup_sim_npages(vf));
	vf->ndirty = 0;
	vf->track_refs = 0;
	vf->paused = false;
	vf->migrating = false;
	vf->imm_ok = false;
	vf->failed = false;
}

/*
 * One step of the VF's engines: GPUP_SIM_PAGES_PER_STEP pages of its
 * working set rewritten.  Returns 0, or -ENOMEM if a page could not be
 * backed (the step is cut short).
 */
static int gpup_sim_step_locked(struct gpup_sim_vf *vf)
{
	u64 npages = vf->ws_pages, r, w = 0, page;
	struct gpup_sim_engine *eng;
	bool newly_dirty = false;
	unsigned int e, k;
	u8 *p;

	r = gpup_sim_next(&vf->sched.rng);
	/* What VRAM holds steers the rest. */
	page = (r >> 8) % npages;
	p = gpup_sim_vram_page(vf, page);
	if (p)
		vf->sched.rng ^= *(u64 *)(p + (r & 0xff8));
	e = (r >> 40) % vf->profile.engines;
	eng = &vf->eng[e];
	for (k = 0; k < GPUP_SIM_PAGES_PER_STEP; k++) {
		w = gpup_sim_next(&vf->sched.rng);
		page = w % npages;
		p = gpup_sim_vram_page_get(vf, page);
		if (IS_ERR(p))
			return PTR_ERR(p);
		memset64((u64 *)p, w ^ eng->fence_seqno,
			 GPUP_SIM_PAGE_SIZE / 8);
		if (vf->track_refs && !__test_and_set_bit(page, vf->dirty)) {
			vf->ndirty++;
			newly_dirty = true;
		}
	}
	/* The engine's fence and ring writes into the VM's memory. */
	gpup_sim_dma_step_locked(vf, vf->sched.steps);
	eng->ring_tail = (eng->ring_tail + 64) & 0xffff;
	eng->ring_head = (eng->ring_tail + 0xffc0) & 0xffff;
	eng->fence_done = eng->fence_seqno;
	eng->fence_seqno++;
	eng->ctx[r % GPUP_SIM_CTX_REGS] ^= (u32)w;
	vf->sched.cur_engine = e;
	vf->sched.timeslice = (vf->sched.timeslice + 1) % 8;
	vf->sched.steps++;
	/* A poll() at pre-copy's temporary end may have data now. */
	if (newly_dirty && vf->prov)
		gpup_vf_notify(vf->prov, vf->idx, GPUP_VF_EVENT_DIRTY);
	return 0;
}

/**
 * gpup_sim_run_locked() - run steps
 * @vf: the VF; caller holds @vf->lock
 * @n: steps to run
 *
 * Return: 0, -EBUSY while the VF is paused (no step runs then), or
 * -ENOMEM if a page the engine wrote could not be backed.
 */
int gpup_sim_run_locked(struct gpup_sim_vf *vf, unsigned long n)
{
	int ret = 0;

	lockdep_assert_held(&vf->lock);
	if (vf->paused)
		return -EBUSY;
	while (n-- && !ret)
		ret = gpup_sim_step_locked(vf);
	return ret;
}

static void gpup_sim_imm_fill(const struct gpup_sim_vf *vf,
			      struct gpup_sim_imm *imm)
{
	u32 crc;

	memset(imm, 0, sizeof(*imm));
	imm->magic = cpu_to_le32(GPUP_SIM_IMM_MAGIC);
	imm->major = cpu_to_le16(GPUP_SIM_MAJOR);
	imm->minor = cpu_to_le16(GPUP_SIM_MINOR);
	imm->profile_id = cpu_to_le32(vf->profile.id);
	imm->engines = cpu_to_le32(vf->profile.engines);
	imm->fw_version = cpu_to_le32(vf->profile.fw_version);
	imm->drv_version = cpu_to_le32(vf->profile.drv_version);
	imm->device_id = cpu_to_le32(vf->profile.device_id);
	imm->page_size = cpu_to_le32(GPUP_SIM_PAGE_SIZE);
	imm->vram_size = cpu_to_le64(vf->vram_size);
	crc = gpup_sim_crc(imm, offsetof(struct gpup_sim_imm, crc));
	imm->crc = cpu_to_le32(crc);
}

static void gpup_sim_mut_fill(const struct gpup_sim_vf *vf,
			      struct gpup_sim_mut *mut)
{
	unsigned int e, r;
	u32 crc;

	memset(mut, 0, sizeof(*mut));
	mut->magic = cpu_to_le32(GPUP_SIM_MUT_MAGIC);
	mut->major = cpu_to_le16(GPUP_SIM_MAJOR);
	mut->minor = cpu_to_le16(GPUP_SIM_MINOR);
	mut->profile_id = cpu_to_le32(vf->profile.id);
	mut->engines = cpu_to_le32(vf->profile.engines);
	mut->cur_engine = cpu_to_le32(vf->sched.cur_engine);
	mut->timeslice = cpu_to_le32(vf->sched.timeslice);
	mut->steps = cpu_to_le64(vf->sched.steps);
	mut->rng = cpu_to_le64(vf->sched.rng);
	for (e = 0; e < GPUP_SIM_MAX_ENGINES; e++) {
		const struct gpup_sim_engine *s = &vf->eng[e];
		struct gpup_sim_mut_engine *d = &mut->eng[e];

		for (r = 0; r < GPUP_SIM_CTX_REGS; r++)
			d->ctx[r] = cpu_to_le32(s->ctx[r]);
		d->ring_head = cpu_to_le32(s->ring_head);
		d->ring_tail = cpu_to_le32(s->ring_tail);
		d->fence_seqno = cpu_to_le64(s->fence_seqno);
		d->fence_done = cpu_to_le64(s->fence_done);
	}
	mut->dma_iova = cpu_to_le64(vf->dma_iova);
	mut->dma_npages = cpu_to_le32(vf->dma_npages);
	crc = gpup_sim_crc(mut, offsetof(struct gpup_sim_mut, crc));
	mut->crc = cpu_to_le32(crc);
}

/**
 * gpup_sim_digest_locked() - SHA-256 over all of a VF's state
 * @vf: the VF; caller holds @vf->lock
 * @out: SHA256_DIGEST_SIZE bytes
 *
 * Covers the profile (the immutable data), the engines, scheduler and DMA
 * window (the mutable data) and every byte of VRAM: the SHA-256 of the
 * SHA-256 digests of the immutable data, the mutable data and each 4 MiB
 * slice of VRAM, in that order.  Two levels, because the one-shot
 * sha256() is the library call every supported kernel has alike.  A
 * slice no page of which is backed is all zeros: its digest is computed
 * once per call, so the time is that of the backed slices.
 *
 * Return: 0 or -ENOMEM.
 */
int gpup_sim_digest_locked(struct gpup_sim_vf *vf, u8 *out)
{
	u64 off, n, slices = DIV_ROUND_UP(vf->vram_size, GPUP_SIM_VRAM_SLICE);
	u8 zero[SHA256_DIGEST_SIZE];
	struct gpup_sim_imm imm;
	struct iov_iter it;
	struct kvec kv;
	struct gpup_sim_mut *mut;
	unsigned long first, last;
	bool have_zero = false;
	u8 *d, *p, *buf;
	int ret = 0;

	mut = kmalloc(sizeof(*mut), GFP_KERNEL);
	d = kvmalloc_array(slices + 2, SHA256_DIGEST_SIZE, GFP_KERNEL);
	buf = vmalloc(GPUP_SIM_VRAM_SLICE);
	if (!mut || !d || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	gpup_sim_imm_fill(vf, &imm);
	gpup_sim_mut_fill(vf, mut);
	p = d;
	sha256((u8 *)&imm, sizeof(imm), p);
	p += SHA256_DIGEST_SIZE;
	sha256((u8 *)mut, sizeof(*mut), p);
	p += SHA256_DIGEST_SIZE;
	for (off = 0; off < vf->vram_size; off += n) {
		n = min_t(u64, vf->vram_size - off, GPUP_SIM_VRAM_SLICE);
		first = off / GPUP_SIM_PAGE_SIZE;
		last = (off + n) / GPUP_SIM_PAGE_SIZE - 1;
		if (xa_find(&vf->vram, &first, last, XA_PRESENT)) {
			kv.iov_base = buf;
			kv.iov_len = n;
			iov_iter_kvec(&it, ITER_DEST, &kv, 1, n);
			gpup_sim_vram_copy(vf, off, n, &it, false);
			sha256(buf, n, p);
		} else if (n == GPUP_SIM_VRAM_SLICE) {
			if (!have_zero) {
				memset(buf, 0, n);
				sha256(buf, n, zero);
				have_zero = true;
			}
			memcpy(p, zero, SHA256_DIGEST_SIZE);
		} else {
			memset(buf, 0, n);
			sha256(buf, n, p);
		}
		p += SHA256_DIGEST_SIZE;
		cond_resched();
	}
	sha256(d, p - d, out);
out:
	vfree(buf);
	kvfree(d);
	kfree(mut);
	return ret;
}

/**
 * gpup_sim_fault_locked() - fire an armed fault
 * @vf: the VF; caller holds @vf->lock
 * @op: the op being called
 * @kind: the kind of fault this call site can fire
 * @err: set to the armed errno if it fires
 *
 * Return: true once, for the first call of the armed op at a site of the
 * armed kind.
 */
bool gpup_sim_fault_locked(struct gpup_sim_vf *vf, const char *op,
			   enum gpup_sim_fault_kind kind, int *err)
{
	if (!vf->fault_op[0] || vf->fault_kind != kind ||
	    strcmp(vf->fault_op, op))
		return false;
	vf->fault_op[0] = 0;
	*err = vf->fault_err;
	return true;
}

/*
 * The provider contract promises every op preconditions (the VF paused,
 * page alignment, the order of calls).  A call that breaks one is the
 * variant driver's bug: count it, warn (once), and let the op fail, so
 * that a test sees it in the kernel log and in debugfs "violations".
 */
static bool gpup_sim_violated(struct gpup_sim_vf *vf, bool broken,
			      const char *op, const char *what)
{
	if (!broken)
		return false;
	vf->violations++;
	WARN_ONCE(1, "gpup_sim: VF %u: %s called %s\n", vf->idx, op, what);
	return true;
}

static bool gpup_sim_page_aligned(u64 offset, u64 len)
{
	return !((offset | len) & (GPUP_SIM_PAGE_SIZE - 1));
}

/**
 * gpup_sim_set_pause_locked() - pause or resume a VF
 * @vf: the VF; caller holds @vf->lock
 * @pause: true to stop it
 *
 * Return: 0, or an injected fault.
 */
int gpup_sim_set_pause_locked(struct gpup_sim_vf *vf, bool pause)
{
	int err;

	if (gpup_sim_fault_locked(vf, "set_pause_state", GPUP_SIM_FAULT_ERRNO,
				  &err))
		return err;
	vf->paused = pause;
	return 0;
}

/**
 * gpup_sim_track_locked() - start or stop (nested) dirty tracking
 * @vf: the VF; caller holds @vf->lock
 * @start: true to start
 *
 * Return: 0, -EINVAL to stop what was not started, or an injected fault.
 */
int gpup_sim_track_locked(struct gpup_sim_vf *vf, bool start)
{
	int err;

	if (start && gpup_sim_fault_locked(vf, "start_dirty_tracking",
					   GPUP_SIM_FAULT_ERRNO, &err))
		return err;
	if (start) {
		if (!vf->track_refs++) {
			bitmap_zero(vf->dirty, gpup_sim_npages(vf));
			vf->ndirty = 0;
		}
		return 0;
	}
	if (!vf->track_refs)
		return -EINVAL;
	vf->track_refs--;
	return 0;
}

/**
 * gpup_sim_vf_lock() - find and lock a VF of a PF
 * @pdev: the PF
 * @idx: VF index
 *
 * Return: the VF, its lock and the PF's vfs_rwsem (read) held, or NULL if
 * it has no state.
 */
struct gpup_sim_vf *gpup_sim_vf_lock(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_pf *pf = pci_get_drvdata(pdev);
	struct gpup_sim_vf *vf = NULL;

	down_read(&pf->vfs_rwsem);
	if (idx < pf->nvfs) {
		vf = &pf->vfs[idx];
		mutex_lock(&vf->lock);
	} else {
		up_read(&pf->vfs_rwsem);
	}
	return vf;
}

/**
 * gpup_sim_vf_unlock() - undo gpup_sim_vf_lock()
 * @vf: the VF
 */
void gpup_sim_vf_unlock(struct gpup_sim_vf *vf)
{
	mutex_unlock(&vf->lock);
	up_read(&vf->pf->vfs_rwsem);
}

/*
 * The VF of op @op, locked, or NULL.  Between reset_prepare and
 * reset_done the VF is being reset and takes no call: one is counted
 * (debugfs "flr") and is a violation.
 */
static struct gpup_sim_vf *gpup_sim_op_lock(struct pci_dev *pdev,
					    unsigned int idx, const char *op)
{
	struct gpup_sim_vf *vf = gpup_sim_vf_lock(pdev, idx);

	if (vf && vf->quiesced) {
		vf->quiet_calls++;
		gpup_sim_violated(vf, true, op,
				  "between reset_prepare and reset_done");
	}
	return vf;
}

/*
 * Every op starts here: the VF, locked, unless it has no state (-ENODEV)
 * or a fault armed for @op fires (its errno).
 */
static struct gpup_sim_vf *gpup_sim_op_begin(struct pci_dev *pdev,
					     unsigned int idx, const char *op,
					     int *err)
{
	struct gpup_sim_vf *vf = gpup_sim_op_lock(pdev, idx, op);

	if (!vf) {
		*err = -ENODEV;
		return NULL;
	}
	if (gpup_sim_fault_locked(vf, op, GPUP_SIM_FAULT_ERRNO, err)) {
		gpup_sim_vf_unlock(vf);
		return NULL;
	}
	/* A failed VF (the "error" event) answers only reset_vf. */
	if (vf->failed && strcmp(op, "reset_vf")) {
		gpup_sim_vf_unlock(vf);
		*err = -EIO;
		return NULL;
	}
	*err = 0;
	return vf;
}

static int gpup_sim_query_caps(struct pci_dev *pdev, unsigned int idx,
			       struct gpup_migration_caps *caps)
{
	struct gpup_sim_vf *vf;
	int err;

	vf = gpup_sim_op_begin(pdev, idx, "query_caps", &err);
	if (!vf)
		return err;
	caps->flags = GPUP_CAP_LIVE_MIGRATION | GPUP_CAP_DIRTY_TRACKING;
	if (vf->pf->dma_log == GPUP_SIM_DMA_LOG_FULL ||
	    vf->pf->dma_log == GPUP_SIM_DMA_LOG_CAP_ONLY ||
	    vf->pf->dma_log == GPUP_SIM_DMA_LOG_NO_STOP)
		caps->flags |= GPUP_CAP_DMA_LOGGING;
	caps->provider_id = GPUP_SIM_PROVIDER_ID;
	caps->profile_id = vf->profile.id;
	caps->page_size = GPUP_SIM_PAGE_SIZE;
	caps->vram_size = vf->vram_size;
	caps->max_immutable_size = sizeof(struct gpup_sim_imm);
	caps->max_mutable_size = sizeof(struct gpup_sim_mut);
	gpup_sim_vf_unlock(vf);
	return 0;
}

static int gpup_sim_prepare(struct pci_dev *pdev, unsigned int idx,
			    enum gpup_mig_side side)
{
	struct gpup_sim_vf *vf;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "prepare_live_migration", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, vf->migrating, "prepare_live_migration",
			      "during a migration") ||
	    gpup_sim_violated(vf, side == GPUP_MIG_TARGET && !vf->paused,
			      "prepare_live_migration", "(target) unpaused")) {
		err = -EBUSY;
	} else {
		vf->migrating = true;
		vf->imm_ok = false;
	}
	gpup_sim_vf_unlock(vf);
	return err;
}

static void gpup_sim_end(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_vf *vf = gpup_sim_op_lock(pdev, idx,
						      "end_live_migration");

	if (!vf)
		return;
	gpup_sim_violated(vf, !vf->migrating, "end_live_migration",
			  "without prepare_live_migration");
	vf->migrating = false;
	vf->imm_ok = false;
	gpup_sim_vf_unlock(vf);
}

static int gpup_sim_set_pause_state(struct pci_dev *pdev, unsigned int idx,
				    bool pause)
{
	struct gpup_sim_vf *vf = gpup_sim_op_lock(pdev, idx,
						      "set_pause_state");
	int err;

	if (!vf)
		return -ENODEV;
	err = gpup_sim_set_pause_locked(vf, pause);
	gpup_sim_vf_unlock(vf);
	return err;
}

static int gpup_sim_save_immutable(struct pci_dev *pdev, unsigned int idx,
				   void *buf, size_t *size)
{
	struct gpup_sim_vf *vf;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "save_immutable", &err);
	if (!vf)
		return err;
	if (buf && *size < sizeof(struct gpup_sim_imm))
		err = -ENOSPC;
	else if (buf)
		gpup_sim_imm_fill(vf, buf);
	if (!err)
		*size = sizeof(struct gpup_sim_imm);
	if (!err && buf && gpup_sim_fault_locked(vf, "save_immutable",
						 GPUP_SIM_FAULT_OVERSIZE, &err))
		*size += GPUP_SIM_PAGE_SIZE;
	gpup_sim_vf_unlock(vf);
	return err;
}

static int gpup_sim_save_mutable(struct pci_dev *pdev, unsigned int idx,
				 void *buf, size_t *size)
{
	struct gpup_sim_vf *vf;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "save_mutable", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, !vf->paused, "save_mutable", "unpaused"))
		err = -EBUSY;
	else if (buf && *size < sizeof(struct gpup_sim_mut))
		err = -ENOSPC;
	else if (buf)
		gpup_sim_mut_fill(vf, buf);
	if (!err)
		*size = sizeof(struct gpup_sim_mut);
	if (!err && buf && gpup_sim_fault_locked(vf, "save_mutable",
						 GPUP_SIM_FAULT_OVERSIZE, &err))
		*size += GPUP_SIM_PAGE_SIZE;
	gpup_sim_vf_unlock(vf);
	return err;
}

static int gpup_sim_query_save_size(struct pci_dev *pdev, unsigned int idx,
				    size_t *immutable, size_t *mutable)
{
	struct gpup_sim_vf *vf;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "query_save_size", &err);
	if (!vf)
		return err;
	*immutable = sizeof(struct gpup_sim_imm);
	*mutable = sizeof(struct gpup_sim_mut);
	gpup_sim_vf_unlock(vf);
	return 0;
}

static int gpup_sim_restore_immutable(struct pci_dev *pdev, unsigned int idx,
				      const void *buf, size_t size)
{
	const struct gpup_sim_imm *imm = buf;
	struct gpup_sim_vf *vf;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "restore_immutable", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, !vf->paused, "restore_immutable",
			      "unpaused") ||
	    gpup_sim_violated(vf, !vf->migrating, "restore_immutable",
			      "without prepare_live_migration") ||
	    gpup_sim_violated(vf, vf->imm_ok, "restore_immutable", "twice")) {
		err = -EBUSY;
	} else if (size != sizeof(*imm) ||
		   le32_to_cpu(imm->magic) != GPUP_SIM_IMM_MAGIC ||
		   le32_to_cpu(imm->crc) !=
		   gpup_sim_crc(imm, offsetof(struct gpup_sim_imm, crc))) {
		err = -EBADMSG;
	} else if (le16_to_cpu(imm->major) != GPUP_SIM_MAJOR ||
		   le32_to_cpu(imm->profile_id) != vf->profile.id ||
		   le32_to_cpu(imm->engines) != vf->profile.engines ||
		   le32_to_cpu(imm->page_size) != GPUP_SIM_PAGE_SIZE ||
		   le64_to_cpu(imm->vram_size) != vf->vram_size) {
		/* STATUS_OBJECT_TYPE_MISMATCH */
		err = -EPROTONOSUPPORT;
	} else {
		vf->imm_ok = true;
	}
	gpup_sim_vf_unlock(vf);
	return err;
}

static int gpup_sim_restore_mutable(struct pci_dev *pdev, unsigned int idx,
				    const void *buf, size_t size)
{
	const struct gpup_sim_mut *mut = buf;
	struct gpup_sim_vf *vf;
	unsigned int e, r;
	bool skip;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "restore_mutable", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, !vf->paused, "restore_mutable", "unpaused") ||
	    gpup_sim_violated(vf, !vf->imm_ok, "restore_mutable",
			      "before restore_immutable")) {
		err = -EBUSY;
		goto out;
	}
	if (size != sizeof(*mut) ||
	    le32_to_cpu(mut->magic) != GPUP_SIM_MUT_MAGIC ||
	    le32_to_cpu(mut->crc) !=
	    gpup_sim_crc(mut, offsetof(struct gpup_sim_mut, crc)) ||
	    le32_to_cpu(mut->cur_engine) >= vf->profile.engines ||
	    le32_to_cpu(mut->dma_npages) > GPUP_SIM_DMA_MAX_PAGES ||
	    !PAGE_ALIGNED(le64_to_cpu(mut->dma_iova))) {
		err = -EBADMSG;
		goto out;
	}
	if (le16_to_cpu(mut->major) != GPUP_SIM_MAJOR ||
	    le32_to_cpu(mut->profile_id) != vf->profile.id ||
	    le32_to_cpu(mut->engines) != vf->profile.engines) {
		err = -EPROTONOSUPPORT;
		goto out;
	}
	skip = gpup_sim_fault_locked(vf, "restore_mutable",
				     GPUP_SIM_FAULT_SKIP, &err);
	err = 0;
	vf->sched.cur_engine = le32_to_cpu(mut->cur_engine);
	vf->sched.timeslice = le32_to_cpu(mut->timeslice);
	vf->sched.steps = le64_to_cpu(mut->steps);
	vf->sched.rng = le64_to_cpu(mut->rng);
	for (e = 0; e < GPUP_SIM_MAX_ENGINES; e++) {
		const struct gpup_sim_mut_engine *s = &mut->eng[e];
		struct gpup_sim_engine *d = &vf->eng[e];

		for (r = 0; r < GPUP_SIM_CTX_REGS; r++)
			if (!skip || e || r)
				d->ctx[r] = le32_to_cpu(s->ctx[r]);
		d->ring_head = le32_to_cpu(s->ring_head);
		d->ring_tail = le32_to_cpu(s->ring_tail);
		d->fence_seqno = le64_to_cpu(s->fence_seqno);
		d->fence_done = le64_to_cpu(s->fence_done);
	}
	/* The window the source's guest driver set: looked up on first use. */
	gpup_sim_dma_clear_locked(vf);
	vf->dma_iova = le64_to_cpu(mut->dma_iova);
	vf->dma_npages = le32_to_cpu(mut->dma_npages);
out:
	gpup_sim_vf_unlock(vf);
	return err;
}

static int gpup_sim_start_tracking(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_vf *vf = gpup_sim_op_lock(pdev, idx,
						      "start_dirty_tracking");
	int err;

	if (!vf)
		return -ENODEV;
	err = gpup_sim_track_locked(vf, true);
	gpup_sim_vf_unlock(vf);
	return err;
}

static void gpup_sim_stop_tracking(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_vf *vf = gpup_sim_op_lock(pdev, idx,
						      "stop_dirty_tracking");

	if (!vf)
		return;
	gpup_sim_violated(vf, !vf->track_refs, "stop_dirty_tracking",
			  "without start_dirty_tracking");
	gpup_sim_track_locked(vf, false);
	gpup_sim_vf_unlock(vf);
}

static long gpup_sim_query_dirty(struct pci_dev *pdev, unsigned int idx,
				 u64 first, u64 count, unsigned long *bitmap,
				 bool clear)
{
	struct gpup_sim_vf *vf;
	unsigned long i, end;
	long n = 0;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "query_dirty", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, !vf->track_refs, "query_dirty",
			      "without tracking") ||
	    gpup_sim_violated(vf, first > gpup_sim_npages(vf) ||
			      count > gpup_sim_npages(vf) - first,
			      "query_dirty", "past the end of VRAM")) {
		n = -EINVAL;
		goto out;
	}
	/* The whole-VRAM count PRECOPY_INFO asks for: kept, not scanned. */
	if (!first && count == gpup_sim_npages(vf) && !bitmap && !clear) {
		n = vf->ndirty;
		goto out;
	}
	if (bitmap)
		bitmap_zero(bitmap, count);
	end = first + count;
	i = first;
	for_each_set_bit_from(i, vf->dirty, end) {
		if (bitmap)
			__set_bit(i - first, bitmap);
		if (clear) {
			__clear_bit(i, vf->dirty);
			vf->ndirty--;
		}
		n++;
	}
out:
	gpup_sim_vf_unlock(vf);
	return n;
}

/*
 * query_written: the backed pages are the ones written since the reset
 * (by the engine, a restore or a test), a superset as the op allows: a
 * backed page written back to zeros stays backed (zeros written into an
 * unbacked page leave it so).  The whole-VRAM count is kept; a bitmap
 * costs the backed pages of the range.
 */
static long gpup_sim_query_written(struct pci_dev *pdev, unsigned int idx,
				   u64 first, u64 count, unsigned long *bitmap)
{
	struct gpup_sim_vf *vf;
	unsigned long pg;
	struct page *page;
	long n = 0;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "query_written", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, first > gpup_sim_npages(vf) ||
			      count > gpup_sim_npages(vf) - first,
			      "query_written", "past the end of VRAM")) {
		n = -EINVAL;
		goto out;
	}
	if (!first && count == gpup_sim_npages(vf) && !bitmap) {
		n = vf->vram_backed;
		goto out;
	}
	if (bitmap)
		bitmap_zero(bitmap, count);
	if (!count)
		goto out;
	xa_for_each_range(&vf->vram, pg, page, first, first + count - 1) {
		if (bitmap)
			__set_bit(pg - first, bitmap);
		n++;
	}
out:
	gpup_sim_vf_unlock(vf);
	return n;
}

/*
 * The latency of a CPU access to VRAM across the bus (debugfs
 * "vram_delay"), paid by each vram_read and vram_write call after its
 * copy, outside the VF's lock, as xfer_delay is by each transfer.
 */
static void gpup_sim_vram_latency(unsigned int us)
{
	if (us)
		usleep_range(us, us + us / 4 + 1);
}

static ssize_t gpup_sim_vram_read(struct pci_dev *pdev, unsigned int idx,
				  u64 offset, size_t len, struct iov_iter *to)
{
	struct gpup_sim_vf *vf;
	unsigned int delay;
	ssize_t n;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "vram_read", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, offset > vf->vram_size ||
			      len > vf->vram_size - offset, "vram_read",
			      "past the end of VRAM") ||
	    gpup_sim_violated(vf, !gpup_sim_page_aligned(offset, len),
			      "vram_read", "with a range not page aligned")) {
		n = -EINVAL;
	} else {
		n = gpup_sim_vram_copy(vf, offset, len, to, false);
	}
	delay = vf->vram_delay_us;
	gpup_sim_vf_unlock(vf);
	gpup_sim_vram_latency(delay);
	return n;
}

/*
 * The promises of a call that restores VRAM (@op: vram_write,
 * vram_zero): the VF paused, restore_immutable done, a page-aligned
 * range inside VRAM.  Returns 0, -EBUSY or -EINVAL; under @vf->lock.
 */
static int gpup_sim_restore_check(struct gpup_sim_vf *vf, const char *op,
				  u64 offset, u64 len)
{
	if (gpup_sim_violated(vf, !vf->paused, op, "unpaused") ||
	    gpup_sim_violated(vf, !vf->imm_ok, op, "before restore_immutable"))
		return -EBUSY;
	if (gpup_sim_violated(vf, offset > vf->vram_size ||
			      len > vf->vram_size - offset, op,
			      "past the end of VRAM") ||
	    gpup_sim_violated(vf, !gpup_sim_page_aligned(offset, len), op,
			      "with a range not page aligned"))
		return -EINVAL;
	return 0;
}

static ssize_t gpup_sim_vram_write(struct pci_dev *pdev, unsigned int idx,
				   u64 offset, size_t len,
				   struct iov_iter *from)
{
	struct gpup_sim_vf *vf;
	unsigned int delay;
	ssize_t n;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "vram_write", &err);
	if (!vf)
		return err;
	n = gpup_sim_restore_check(vf, "vram_write", offset, len);
	if (!n)
		n = gpup_sim_vram_copy(vf, offset, len, from, true);
	delay = vf->vram_delay_us;
	gpup_sim_vf_unlock(vf);
	gpup_sim_vram_latency(delay);
	return n;
}

/*
 * vram_zero: the pages of the range lose their backing and read as
 * zeros, as after a reset; one fill, so one vram_delay_us.
 */
static int gpup_sim_vram_zero(struct pci_dev *pdev, unsigned int idx,
			      u64 offset, u64 len)
{
	struct gpup_sim_vf *vf;
	unsigned int delay;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "vram_zero", &err);
	if (!vf)
		return err;
	err = gpup_sim_restore_check(vf, "vram_zero", offset, len);
	if (!err && len) {
		gpup_sim_vram_unback(vf, offset / GPUP_SIM_PAGE_SIZE,
				     (offset + len) / GPUP_SIM_PAGE_SIZE - 1);
		vf->zeroed_pages += len / GPUP_SIM_PAGE_SIZE;
	}
	delay = vf->vram_delay_us;
	gpup_sim_vf_unlock(vf);
	gpup_sim_vram_latency(delay);
	return err;
}

/*
 * vram_xfer: transfers are queued on the VF and run, oldest first, by a
 * worker on gpup_sim_xfer_wq, as a copy engine would run them (a
 * high-priority one: an engine does not queue behind the CPU's other
 * work, and on a busy vCPU a normal worker made each transfer wait
 * 10 to 50 ms for it); the op
 * returns -EINPROGRESS and the worker completes it through
 * gpup_xfer_complete().  The queue and the
 * counters are under the VF's lock; the copy is done under it too, so a
 * transfer sees the VF as one op call would.
 */
static struct workqueue_struct *gpup_sim_xfer_wq;

/**
 * struct gpup_sim_xfer - a transfer in a VF's queue, from when it was
 *	accepted until it completed (the worker's current one is first)
 * @node: entry in &gpup_sim_vf.xfer_queue
 * @xfer: the variant driver's transfer
 * @status: an error to complete it with instead of copying (an injected
 *	fault), else 0
 * @due: ktime (ns) before which it does not complete: its acceptance
 *	plus the VF's xfer_delay, a copy engine's latency, which transfers
 *	in flight at once pay together
 */
struct gpup_sim_xfer {
	struct list_head node;
	struct gpup_vram_xfer *xfer;
	int status;
	u64 due;
};

/* Bytes of @x's segments, or 0 if one of them is bad. */
static u64 gpup_sim_xfer_bytes(struct gpup_sim_vf *vf,
			       const struct gpup_vram_xfer *x)
{
	u64 total = 0;
	unsigned int i;

	for (i = 0; i < x->nsegs; i++) {
		const struct gpup_vram_seg *sg = &x->segs[i];

		if (!sg->len || sg->offset > vf->vram_size ||
		    sg->len > vf->vram_size - sg->offset ||
		    !gpup_sim_page_aligned(sg->offset, sg->len))
			return 0;
		total += sg->len;
	}
	return total;
}

/* Whether a segment of @a and one of @b share a byte (@a == @b: two). */
static bool gpup_sim_segs_overlap(const struct gpup_vram_xfer *a,
				  const struct gpup_vram_xfer *b)
{
	const struct gpup_vram_seg *s, *t;
	unsigned int i, j;

	for (i = 0; i < a->nsegs; i++) {
		s = &a->segs[i];
		for (j = a == b ? i + 1 : 0; j < b->nsegs; j++) {
			t = &b->segs[j];
			if (s->offset < t->offset + t->len &&
			    t->offset < s->offset + s->len)
				return true;
		}
	}
	return false;
}

/*
 * Whether restore transfer @x writes a page that an accepted one, not
 * completed, writes too: the two may complete in any order, so the
 * contract leaves such a pair to the variant driver to avoid.
 */
static bool gpup_sim_xfer_races_locked(struct gpup_sim_vf *vf,
				       const struct gpup_vram_xfer *x)
{
	struct gpup_sim_xfer *t;

	if (x->dir != GPUP_XFER_RESTORE)
		return false;
	list_for_each_entry(t, &vf->xfer_queue, node)
		if (t->xfer->dir == GPUP_XFER_RESTORE &&
		    gpup_sim_segs_overlap(x, t->xfer))
			return true;
	return false;
}

/*
 * Copy @x's bytes between VRAM and its pages; caller holds @vf->lock.
 * Returns 0, or -ENOMEM if a restore could not back a page.
 */
static int gpup_sim_xfer_copy_locked(struct gpup_sim_vf *vf,
				     const struct gpup_vram_xfer *x)
{
	bool save = x->dir == GPUP_XFER_SAVE;
	size_t pos = 0, n;
	struct iov_iter it;
	struct kvec kv;
	unsigned int i;
	u64 off, left;
	ssize_t got;
	int ret = 0;
	u8 *p;

	for (i = 0; i < x->nsegs && !ret; i++) {
		off = x->segs[i].offset;
		for (left = x->segs[i].len; left && !ret; left -= n) {
			n = min_t(u64, left, PAGE_SIZE - offset_in_page(pos));
			p = kmap_local_page(x->pages[pos >> PAGE_SHIFT]);
			kv.iov_base = p + offset_in_page(pos);
			kv.iov_len = n;
			iov_iter_kvec(&it, save ? ITER_DEST : ITER_SOURCE,
				      &kv, 1, n);
			got = gpup_sim_vram_copy(vf, off, n, &it, !save);
			kunmap_local(p);
			/* Short only when a page could not be backed. */
			if (got != n)
				ret = got < 0 ? got : -ENOMEM;
			pos += n;
			off += n;
		}
		cond_resched();
	}
	return ret;
}

static void gpup_sim_xfer_run(struct work_struct *work)
{
	struct gpup_sim_vf *vf = container_of(work, struct gpup_sim_vf,
					      xfer_work);
	struct gpup_sim_xfer *t;
	u64 now, wait;
	int status;

	for (;;) {
		mutex_lock(&vf->lock);
		/* It stays queued, in flight, until it completed. */
		t = list_first_entry_or_null(&vf->xfer_queue,
					     struct gpup_sim_xfer, node);
		/* A held engine takes nothing (see gpup_sim_xfer_flush()). */
		if (vf->xfer_hold)
			t = NULL;
		now = ktime_get_ns();
		wait = t && t->due > now ? t->due - now : 0;
		mutex_unlock(&vf->lock);
		if (!t)
			return;
		wait = div_u64(wait, NSEC_PER_USEC);
		if (wait)
			usleep_range(wait, wait + wait / 4 + 1);
		mutex_lock(&vf->lock);
		/* Newest first: whatever came in while the engine slept. */
		if (vf->xfer_lifo)
			t = list_last_entry(&vf->xfer_queue,
					    struct gpup_sim_xfer, node);
		status = t->status;
		if (!status)
			status = gpup_sim_xfer_copy_locked(vf, t->xfer);
		if (status)
			vf->xfer_errors++;
		vf->xfer_async++;
		vf->xfer_inflight--;
		list_del(&t->node);
		mutex_unlock(&vf->lock);
		gpup_xfer_complete(t->xfer, status);
		kfree(t);
	}
}

static int gpup_sim_vram_xfer(struct pci_dev *pdev, unsigned int idx,
			      struct gpup_vram_xfer *xfer)
{
	struct gpup_sim_xfer *t;
	struct gpup_sim_vf *vf;
	bool save = xfer->dir == GPUP_XFER_SAVE;
	const char *op = save ? "vram_xfer save" : "vram_xfer restore";
	int err = 0;
	u64 bytes;

	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t)
		return -ENOMEM;
	vf = gpup_sim_op_lock(pdev, idx, op);
	if (!vf) {
		kfree(t);
		return -ENODEV;
	}
	bytes = xfer->segs ? gpup_sim_xfer_bytes(vf, xfer) : 0;
	if (!vf->prov) {
		/* The PF driver is going away: its queues are closed. */
		err = -ENODEV;
	} else if (gpup_sim_violated(vf, !save && (!vf->paused || !vf->imm_ok),
				     op, "unpaused or before restore_immutable")) {
		err = -EBUSY;
	} else if (gpup_sim_violated(vf, (!save &&
					  xfer->dir != GPUP_XFER_RESTORE) ||
				     !xfer->nsegs || !bytes || !xfer->pages ||
				     !xfer->done ||
				     xfer->npages != DIV_ROUND_UP_ULL(bytes,
								      PAGE_SIZE) ||
				     gpup_sim_segs_overlap(xfer, xfer),
				     op, "with bad segments or pages")) {
		err = -EINVAL;
	} else if (!vf->xfer_lifo &&
		   gpup_sim_violated(vf, gpup_sim_xfer_races_locked(vf, xfer),
				     op, "over a page a restore in flight writes")) {
		err = -EINVAL;
	} else if (vf->xfer_sync) {
		/* The engine was idle and quick: done before the call returns. */
		if (!gpup_sim_fault_locked(vf, "vram_xfer",
					   GPUP_SIM_FAULT_ERRNO, &err))
			err = gpup_sim_xfer_copy_locked(vf, xfer);
		vf->xfer_submitted++;
		vf->xfer_segments += xfer->nsegs;
		vf->xfer_max_segments = max(vf->xfer_max_segments,
					    xfer->nsegs);
	} else {
		if (vf->xfer_lifo && gpup_sim_xfer_races_locked(vf, xfer))
			vf->xfer_overlaps++;
		t->xfer = xfer;
		t->due = ktime_get_ns() + (u64)vf->xfer_delay_us *
					   NSEC_PER_USEC;
		/* An armed fault: accepted, and completed with its errno. */
		gpup_sim_fault_locked(vf, "vram_xfer", GPUP_SIM_FAULT_ERRNO,
				      &t->status);
		list_add_tail(&t->node, &vf->xfer_queue);
		vf->xfer_submitted++;
		vf->xfer_segments += xfer->nsegs;
		vf->xfer_max_segments = max(vf->xfer_max_segments,
					    xfer->nsegs);
		vf->xfer_inflight++;
		vf->xfer_max_inflight = max(vf->xfer_max_inflight,
					    vf->xfer_inflight);
		queue_work(gpup_sim_xfer_wq, &vf->xfer_work);
		t = NULL;
		err = -EINPROGRESS;
	}
	gpup_sim_vf_unlock(vf);
	kfree(t);
	return err;
}

/**
 * gpup_sim_xfer_flush() - complete every transfer queued on a VF
 * @vf: the VF; the caller holds neither its lock nor op calls of it
 *	that could queue more
 * @all: also those held for good (debugfs "xfer_hold" 2): the PF or the
 *	VF's state goes
 *
 * Transfers held until a reset (xfer_hold 1), and with @all those held
 * for good, complete with -EIO, as a reset engine's work would.  A VF
 * held for good keeps its transfers otherwise: the hung engine a reset
 * does not reach.
 */
void gpup_sim_xfer_flush(struct gpup_sim_vf *vf, bool all)
{
	struct gpup_sim_xfer *t;

	mutex_lock(&vf->lock);
	if (vf->xfer_hold == 1 || (all && vf->xfer_hold)) {
		vf->xfer_hold = 0;
		list_for_each_entry(t, &vf->xfer_queue, node)
			if (!t->status)
				t->status = -EIO;
		queue_work(gpup_sim_xfer_wq, &vf->xfer_work);
	}
	mutex_unlock(&vf->lock);
	flush_work(&vf->xfer_work);
}

/**
 * gpup_sim_xfer_kick() - let the VF's engine look at its queue again
 * @vf: the VF
 */
void gpup_sim_xfer_kick(struct gpup_sim_vf *vf)
{
	queue_work(gpup_sim_xfer_wq, &vf->xfer_work);
}

/**
 * gpup_sim_xfer_init() - create the transfer workqueue
 *
 * Return: 0 or -ENOMEM.
 */
int gpup_sim_xfer_init(void)
{
	gpup_sim_xfer_wq = alloc_workqueue("gpup_sim_xfer", WQ_UNBOUND | WQ_HIGHPRI,
					   0);
	return gpup_sim_xfer_wq ? 0 : -ENOMEM;
}

/** gpup_sim_xfer_exit() - destroy the transfer workqueue */
void gpup_sim_xfer_exit(void)
{
	destroy_workqueue(gpup_sim_xfer_wq);
}

/* Every accepted transfer completes before the reset: flush them first. */
static int gpup_sim_reset_vf(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_pf *pf = pci_get_drvdata(pdev);
	struct gpup_sim_vf *vf;
	int err = 0;

	down_read(&pf->vfs_rwsem);
	if (idx < pf->nvfs)
		gpup_sim_xfer_flush(&pf->vfs[idx], false);
	up_read(&pf->vfs_rwsem);
	vf = gpup_sim_op_begin(pdev, idx, "reset_vf", &err);
	if (!vf)
		return err;
	gpup_sim_reset_locked(vf);
	gpup_sim_vf_unlock(vf);
	return 0;
}

static int gpup_sim_dma_log_start(struct pci_dev *pdev, unsigned int idx,
				  const struct gpup_dma_range *ranges,
				  unsigned int nranges, u64 *page_size)
{
	struct gpup_sim_vf *vf;
	int err = 0;

	vf = gpup_sim_op_begin(pdev, idx, "dma_log_start", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, vf->log_running, "dma_log_start",
			      "with a log running") ||
	    gpup_sim_violated(vf, !nranges || *page_size < GPUP_SIM_PAGE_SIZE ||
			      !is_power_of_2(*page_size), "dma_log_start",
			      "without ranges or with a bad page size"))
		err = -EINVAL;
	else
		err = gpup_sim_dma_log_start_locked(vf, ranges, nranges,
						    page_size);
	gpup_sim_vf_unlock(vf);
	return err;
}

static long gpup_sim_dma_log_read(struct pci_dev *pdev, unsigned int idx,
				  u64 iova, u64 length, unsigned long *bitmap,
				  bool clear)
{
	struct gpup_sim_vf *vf;
	int err = 0;
	long n;

	vf = gpup_sim_op_begin(pdev, idx, "dma_log_read", &err);
	if (!vf)
		return err;
	if (gpup_sim_violated(vf, !vf->log_running, "dma_log_read",
			      "without a log") ||
	    gpup_sim_violated(vf, (iova | length) &
			      ((1ULL << vf->log_shift) - 1), "dma_log_read",
			      "with a range not aligned to the log's pages"))
		n = -EINVAL;
	else
		n = gpup_sim_dma_log_read_locked(vf, iova, length, bitmap,
						 clear);
	gpup_sim_vf_unlock(vf);
	return n;
}

static void gpup_sim_dma_log_stop(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_vf *vf = gpup_sim_op_lock(pdev, idx, "dma_log_stop");

	if (!vf)
		return;
	gpup_sim_violated(vf, !vf->log_running, "dma_log_stop",
			  "without a log");
	gpup_sim_dma_log_stop_locked(vf);
	gpup_sim_vf_unlock(vf);
}

const struct gpup_migration_ops gpup_sim_ops = {
	.owner = THIS_MODULE,
	.query_caps = gpup_sim_query_caps,
	.prepare_live_migration = gpup_sim_prepare,
	.end_live_migration = gpup_sim_end,
	.set_pause_state = gpup_sim_set_pause_state,
	.save_immutable = gpup_sim_save_immutable,
	.save_mutable = gpup_sim_save_mutable,
	.restore_immutable = gpup_sim_restore_immutable,
	.restore_mutable = gpup_sim_restore_mutable,
	.query_save_size = gpup_sim_query_save_size,
	.start_dirty_tracking = gpup_sim_start_tracking,
	.query_dirty = gpup_sim_query_dirty,
	.stop_dirty_tracking = gpup_sim_stop_tracking,
	.query_written = gpup_sim_query_written,
	.vram_read = gpup_sim_vram_read,
	.vram_write = gpup_sim_vram_write,
	.vram_xfer = gpup_sim_vram_xfer,
	.vram_zero = gpup_sim_vram_zero,
	.reset_vf = gpup_sim_reset_vf,
	.dma_log_start = gpup_sim_dma_log_start,
	.dma_log_read = gpup_sim_dma_log_read,
	.dma_log_stop = gpup_sim_dma_log_stop,
};

static void gpup_sim_free_run(struct work_struct *work)
{
	struct gpup_sim_vf *vf = container_of(to_delayed_work(work),
					      struct gpup_sim_vf, work);
	bool again;

	mutex_lock(&vf->lock);
	if (vf->free_run && !vf->paused && !vf->quiesced)
		gpup_sim_run_locked(vf, 2);
	if (vf->free_run)
		vf->ticks++;
	again = vf->free_run;
	mutex_unlock(&vf->lock);
	if (again)
		schedule_delayed_work(&vf->work,
				      msecs_to_jiffies(READ_ONCE(vf->free_run_ms)));
}

/**
 * gpup_sim_vf_seed() - the seed of a VF's initial state
 * @seed: the module's seed parameter
 * @idx: VF index
 *
 * Every VF of a PF starts from a state of its own, so that a field a
 * restore forgets cannot go unnoticed because both VFs happen to hold the
 * same value: seed << 16 | idx, unique for every seed below 2^48 and VF
 * index below 2^16.
 *
 * Return: the VF's seed.
 */
u64 gpup_sim_vf_seed(u64 seed, unsigned int idx)
{
	return seed << 16 | (idx & 0xffff);
}

/**
 * gpup_sim_vf_init() - set up a VF's state
 * @vf: zeroed VF state
 * @pf: its PF
 * @idx: VF index
 *
 * Return: 0 or -ENOMEM.
 */
int gpup_sim_vf_init(struct gpup_sim_vf *vf, struct gpup_sim_pf *pf,
		     unsigned int idx)
{
	const struct gpup_sim_profile *prof;

	vf->pf = pf;
	vf->idx = idx;
	mutex_init(&vf->lock);
	xa_init(&vf->log);
	INIT_DELAYED_WORK(&vf->work, gpup_sim_free_run);
	vf->free_run_ms = GPUP_SIM_FREE_RUN_MS;
	INIT_LIST_HEAD(&vf->xfer_queue);
	INIT_WORK(&vf->xfer_work, gpup_sim_xfer_run);
	prof = gpup_sim_find_profile(gpup_sim_profile_id);
	vf->profile = *(prof ? prof : &gpup_sim_profiles[0]);
	vf->seed = gpup_sim_vf_seed(gpup_sim_seed, idx);
	vf->vram_size = (u64)gpup_sim_vram_mb << 20;
	vf->ws_pages = gpup_sim_npages(vf);
	if (gpup_sim_working_set_mb)
		vf->ws_pages = min_t(u64, vf->ws_pages,
				     ((u64)gpup_sim_working_set_mb << 20) /
				     GPUP_SIM_PAGE_SIZE);
	xa_init(&vf->vram);
	/* 2 MiB at 64 GiB: not always a contiguous allocation. */
	vf->dirty = kvcalloc(BITS_TO_LONGS(gpup_sim_npages(vf)),
			     sizeof(unsigned long), GFP_KERNEL);
	if (!vf->dirty) {
		mutex_destroy(&vf->lock);
		return -ENOMEM;
	}
	mutex_lock(&vf->lock);
	gpup_sim_reset_locked(vf);
	mutex_unlock(&vf->lock);
	return 0;
}

/**
 * gpup_sim_vf_fini() - free a VF's state
 * @vf: the VF
 */
void gpup_sim_vf_fini(struct gpup_sim_vf *vf)
{
	mutex_lock(&vf->lock);
	vf->free_run = false;
	mutex_unlock(&vf->lock);
	cancel_delayed_work_sync(&vf->work);
	gpup_sim_xfer_flush(vf, true);
	debugfs_remove_recursive(vf->dir);
	mutex_lock(&vf->lock);
	gpup_sim_dma_clear_locked(vf);
	gpup_sim_dma_log_stop_locked(vf);
	mutex_unlock(&vf->lock);
	pci_dev_put(vf->vfdev);
	mutex_lock(&vf->lock);
	gpup_sim_vram_clear(vf);
	mutex_unlock(&vf->lock);
	kvfree(vf->dirty);
	mutex_destroy(&vf->lock);
}
