// SPDX-License-Identifier: GPL-2.0
/*
 * The resume data_fd of gpup_vfio_pci (RESUMING, write()).
 *
 * Writes of any size are copied from userspace into a staging buffer
 * (outside every lock an arc or a reset takes) and fed to the stream
 * parser; the page bytes of a VRAM record that a bulk gather buffer
 * checks itself are copied straight to their place in it.  VRAM payload
 * is gathered into whole pages before it reaches the provider's
 * vram_write: a page-aligned range of at most one run, or the rest of a
 * record at its end, whatever the write() and record boundaries.
 *
 * In bulk (the provider has vram_xfer and bulk_xfer=Y) a buffer of
 * GPUP_RESUME_RUNS runs' bytes (1 MiB) gathers the runs of several
 * records, up to GPUP_RESUME_SEGS segments of VRAM that do not overlap,
 * and goes out as one vram_xfer transfer when it is full, at a record
 * other than VRAM and at END; gathering goes on in the next buffer of a
 * ring of xfer_depth (default 4) while it runs: a buffer is gathered into
 * again only once its last transfer completed.  Its pages count as
 * written (@seen) when it completed.  A VRAM record that fits in a buffer
 * is gathered whole into one, and its CRC is checked there, by
 * GPUP_RESUME_CRC_PARTS work items on other CPUs while the transfer runs
 * and the writer gathers on (gpup_vfio_parser_defer_crc()): the one
 * stream check that costs more than the copies.  Waiting for a buffer
 * waits for its check too.  The END record, RESUMING -> STOP, disabling
 * the file and release wait for every buffer (gpup_resume_drain_locked()).
 *
 * The IMMUTABLE record reaches restore_immutable as soon as it is
 * complete; the MUTABLE record is kept for RESUMING -> STOP.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/bitmap.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

#include "file.h"
#include "trace.h"

/* Bounds on what a resume stream may declare, beyond the provider caps. */
#define GPUP_MAX_OPTIONAL	(64 * 1024)
#define GPUP_MAX_RUN		(64U << 20)
/* Bytes of one copy from userspace. */
#define GPUP_STAGE_BYTES	(64 * 1024)

/*
 * Runs' worth of bytes a gather buffer holds in bulk: a transfer of
 * 1 MiB, as a save slot's, so that a transfer's submission and
 * completion cost a quarter as much per byte.
 */
#define GPUP_RESUME_RUNS	4
/*
 * VRAM segments one gather buffer holds at most (1 per range): a run's
 * worth of single pages.
 */
#define GPUP_RESUME_SEGS	64
/* VRAM records whose CRC one gather buffer checks at most (bulk). */
#define GPUP_RESUME_CHKS	64
/*
 * Work items that check one buffer's CRCs, records taken in turn: the
 * check is the restore's largest CPU cost, and two CPUs halve it.  With
 * one CPU online there are none: the writer checks when it waits for
 * the buffer, without a thread hop.
 */
#define GPUP_RESUME_CRC_PARTS	2

/**
 * struct gpup_resume_chk - a VRAM record gathered whole, its CRC to check
 * @off: where its pages begin in the buffer's data
 * @len: bytes of its pages
 * @state: the CRC state of its payload before the pages
 * @crc: the stored payload CRC
 */
struct gpup_resume_chk {
	u32 off;
	u32 len;
	u32 state;
	u32 crc;
};

/**
 * struct gpup_resume_crc_part - one work item of a buffer's CRC check
 * @work: checks records @first, @first + GPUP_RESUME_CRC_PARTS, ... of
 *	@b's @chk, on gpup_vfio_wq
 * @b: the buffer
 * @first: its first record
 * @pending: its records await the check (the buffer went out)
 * @queued: @work was queued for them (else the writer checks them)
 * @err: -EBADMSG if one of its records failed the check, else 0
 */
struct gpup_resume_crc_part {
	struct work_struct work;
	struct gpup_resume_buf *b;
	unsigned int first;
	bool pending;
	bool queued;
	int err;
};

/**
 * struct gpup_resume_buf - a gather buffer and its transfer
 * @rf: the file it belongs to
 * @data: vmalloc'ed, gather_cap bytes
 * @pages: the pages of @data (bulk only)
 * @seg: the VRAM ranges of the gathered bytes, in their order in @data
 * @nsegs: entries in @seg
 * @xfer: the transfer (bulk only)
 * @done: completed by @xfer's done()
 * @status: @xfer's result
 * @inflight: @xfer was queued and not waited for; @data is the
 *	provider's
 * @chk: the VRAM records gathered whole into @data (bulk only)
 * @nchk: entries in @chk
 * @crc: the work items that check @chk's CRCs, queued with @xfer
 *
 * The resume file's @mf.lock protects all but @done and, while a part
 * is queued, its @err (its work's until it is waited for).
 */
struct gpup_resume_buf {
	struct gpup_resume_file *rf;
	u8 *data;
	struct page **pages;
	struct gpup_vram_seg seg[GPUP_RESUME_SEGS];
	unsigned int nsegs;
	struct gpup_vram_xfer xfer;
	struct completion done;
	int status;
	bool inflight;
	struct gpup_resume_chk chk[GPUP_RESUME_CHKS];
	unsigned int nchk;
	struct gpup_resume_crc_part crc[GPUP_RESUME_CRC_PARTS];
};

/**
 * struct gpup_resume_file - a resume data_fd
 * @mf: the shared part; @mf.lock protects every field below but @stage;
 *	@mf.io_lock protects @cur, @gather and @gather_len too (either
 *	lock to read them, both to change them)
 * @stage: what one copy from userspace lands in; under @mf.io_lock
 * @parser: the stream parser
 * @npages: VRAM pages of the VF
 * @gather: VRAM payload gathered into whole pages for the provider: the
 *	data of @buf[@cur]
 * @gather_cap: bytes of @gather, a whole number of pages
 * @bulk: the gathered pages go out by vram_xfer, from @nbufs of @buf;
 *	else by vram_write, from @buf[0] only
 * @nbufs: gather buffers in use, a ring: the module parameter xfer_depth
 *	in bulk (with 1, a transfer completes before gathering goes on),
 *	else 1
 * @crc_works: in bulk, the CRC checks of a buffer run as work items
 *	(more than one CPU online); else the writer does them
 * @buf: the gather buffers
 * @cur: the buffer being gathered into
 * @gather_len: bytes in @gather
 * @imm: IMMUTABLE payload being received
 * @imm_len: its length
 * @mut: MUTABLE payload being received
 * @mut_len: its length
 * @seen: VRAM pages that VRAM records wrote: END is refused unless the
 *	stream covered every page
 * @complete: END was parsed
 */
struct gpup_resume_file {
	struct gpup_mig_file mf;
	u8 *stage;
	struct gpup_parser parser;
	u64 npages;
	u8 *gather;
	size_t gather_cap;
	bool bulk;
	unsigned int nbufs;
	bool crc_works;
	struct gpup_resume_buf buf[GPUP_XFER_DEPTH];
	unsigned int cur;
	size_t gather_len;
	u8 *imm;
	size_t imm_len;
	u8 *mut;
	size_t mut_len;
	unsigned long *seen;
	bool complete;
};

/**
 * gpup_vfio_resume_filp() - the struct file of a resume file
 * @rf: the resume file
 *
 * Return: its anon file.
 */
struct file *gpup_vfio_resume_filp(struct gpup_resume_file *rf)
{
	return rf->mf.filp;
}

static int gpup_resume_header(struct gpup_resume_file *rf,
			      const struct gpup_event *ev)
{
	const struct gpup_migration_caps *caps = &rf->mf.gdev->caps;

	if (ev->hdr.provider_id != caps->provider_id ||
	    ev->hdr.profile_id != caps->profile_id ||
	    ev->hdr.page_size != caps->page_size ||
	    ev->hdr.vram_size != caps->vram_size)
		return -EPROTONOSUPPORT;
	return 0;
}

static int gpup_resume_record(struct gpup_resume_file *rf,
			      const struct gpup_event *ev)
{
	u8 **buf;

	if (ev->type == GPUP_REC_IMMUTABLE)
		buf = &rf->imm;
	else if (ev->type == GPUP_REC_MUTABLE)
		buf = &rf->mut;
	else
		return 0;
	/* The parser bounded ev->len by the provider's maxima already. */
	*buf = kvzalloc(ev->len ? ev->len : 1, GFP_KERNEL_ACCOUNT);
	if (!*buf)
		return -ENOMEM;
	if (ev->type == GPUP_REC_IMMUTABLE)
		rf->imm_len = ev->len;
	else
		rf->mut_len = ev->len;
	return 0;
}

static void gpup_resume_free(struct gpup_resume_file *rf);

static void gpup_resume_xfer_done(struct gpup_vram_xfer *xfer, int status)
{
	struct gpup_resume_buf *b = xfer->priv;
	struct gpup_resume_file *rf = b->rf;

	b->status = status > 0 ? -EIO : gpup_vfio_op_err(status);
	complete(&b->done);
	/* The transfer's reference: the file's memory may go with it. */
	if (gpup_vfio_file_put(&rf->mf))
		gpup_resume_free(rf);
}

/* The pages of @b's segments are in VRAM now. */
static void gpup_resume_written(struct gpup_resume_file *rf,
				const struct gpup_resume_buf *b)
{
	u32 ps = rf->mf.gdev->caps.page_size;
	unsigned int i;

	/* The parser kept the runs inside the VRAM size. */
	for (i = 0; i < b->nsegs; i++)
		bitmap_set(rf->seen, div_u64(b->seg[i].offset, ps),
			   div_u64(b->seg[i].len, ps));
}

/* Check the CRCs of @p's records of its buffer: 0, or -EBADMSG. */
static int gpup_resume_crc(const struct gpup_resume_crc_part *p)
{
	const struct gpup_resume_buf *b = p->b;
	const struct gpup_resume_chk *c;
	unsigned int i;
	u32 crc;

	for (i = p->first; i < b->nchk; i += GPUP_RESUME_CRC_PARTS) {
		c = &b->chk[i];
		crc = gpup_vfio_crc(c->state, b->data + c->off, c->len);
		if (gpup_vfio_crc_final(crc) != c->crc)
			return -EBADMSG;
		cond_resched();
	}
	return 0;
}

/*
 * A buffer went out: check a part of its records' CRCs here, on other
 * CPUs than the writer's while it gathers on, unless the writer comes
 * for the buffer first and cancels this (gpup_resume_check()).  Reads
 * the buffer's data as the transfer does; nothing writes it until both
 * were waited for.  Release waits for this work, module unload for
 * gpup_vfio_wq.
 */
static void gpup_resume_crc_work(struct work_struct *work)
{
	struct gpup_resume_crc_part *p;

	p = container_of(work, struct gpup_resume_crc_part, work);
	p->err = gpup_resume_crc(p);
}

/*
 * The result of @b's CRC check, once every part is done.  A part not
 * begun yet is this thread's, which would only wait for it.
 */
static int gpup_resume_check(struct gpup_resume_buf *b)
{
	struct gpup_resume_crc_part *p;
	unsigned int i;
	int ret = 0;

	for (i = 0; i < GPUP_RESUME_CRC_PARTS; i++) {
		p = &b->crc[i];
		if (!p->pending)
			continue;
		p->pending = false;
		if (!p->queued || cancel_work_sync(&p->work))
			p->err = gpup_resume_crc(p);
		p->queued = false;
		if (!ret)
			ret = p->err;
	}
	return ret;
}

/*
 * Wait for @b's CRC check, then for its transfer, if one is in flight,
 * outside op_lock (the provider completes it before any reset_vf
 * returns), xfer_timeout_ms at most.  Returns the transfer's result,
 * -ETIMEDOUT, or the check's -EBADMSG.
 */
static int gpup_resume_wait(struct gpup_resume_file *rf,
			    struct gpup_resume_buf *b)
{
	int crc, ret;

	crc = gpup_resume_check(b);
	if (!b->inflight)
		return crc;
	ret = gpup_vfio_file_wait(&rf->mf, &b->done, false);
	if (ret)
		return ret;
	b->inflight = false;
	/* As vram_write: the bytes moved, or the error. */
	trace_gpup_vfio_op(rf->mf.gdev->vf_id, "vram_xfer", b->seg[0].offset,
			   b->status ?: (s64)b->xfer.npages << PAGE_SHIFT);
	if (b->status)
		return b->status;
	if (crc)
		return crc;
	gpup_resume_written(rf, b);
	return 0;
}

/* Wait for every transfer of @rf; caller holds its lock.  First error. */
static int gpup_resume_drain_locked(struct gpup_resume_file *rf)
{
	int ret = 0, err;
	unsigned int i;

	lockdep_assert_held(&rf->mf.lock);
	for (i = 0; i < rf->nbufs; i++) {
		err = gpup_resume_wait(rf, &rf->buf[i]);
		if (!ret)
			ret = err;
	}
	return ret;
}

/**
 * gpup_vfio_resume_drain() - wait for a resume file's transfers
 * @rf: the resume file, being disabled
 *
 * Bounded as gpup_vfio_save_drain() is.
 *
 * Context: the caller holds the device's state_mutex (or is release).
 * Return: 0, or -ETIMEDOUT with a transfer still in flight.
 */
int gpup_vfio_resume_drain(struct gpup_resume_file *rf)
{
	int ret, i;

	mutex_lock(&rf->mf.lock);
	gpup_resume_drain_locked(rf);
	ret = 0;
	for (i = 0; i < rf->nbufs; i++)
		if (rf->buf[i].inflight)
			ret = -ETIMEDOUT;
	if (ret && !rf->mf.error)
		rf->mf.error = ret;
	mutex_unlock(&rf->mf.lock);
	return ret;
}

/*
 * The gathered pages as one vram_xfer; gathering goes on in the next
 * buffer of the ring once its own transfer, if any, completed (with one
 * buffer, the transfer just submitted).
 */
static int gpup_resume_xfer(struct gpup_resume_file *rf)
{
	struct gpup_vfio_dev *gdev = rf->mf.gdev;
	struct gpup_resume_buf *b = &rf->buf[rf->cur];
	unsigned int i;
	int ret;

	b->xfer.nsegs = b->nsegs;
	b->xfer.npages = DIV_ROUND_UP(rf->gather_len, PAGE_SIZE);
	b->status = 0;
	reinit_completion(&b->done);
	for (i = 0; i < min_t(unsigned int, b->nchk, GPUP_RESUME_CRC_PARTS);
	     i++) {
		b->crc[i].err = 0;
		b->crc[i].pending = true;
		b->crc[i].queued = rf->crc_works;
		if (rf->crc_works)
			queue_work(gpup_vfio_wq, &b->crc[i].work);
	}
	ret = gpup_vfio_op_enter(gdev, rf->mf.gen);
	if (ret)
		return ret;
	ret = gpup_vfio_file_xfer(&rf->mf, &b->xfer);
	gpup_vfio_op_exit(gdev);
	if (ret == -EINPROGRESS) {
		b->inflight = true;
	} else {
		trace_gpup_vfio_op(gdev->vf_id, "vram_xfer", b->seg[0].offset,
				   ret ?: (s64)rf->gather_len);
		if (ret)
			return gpup_vfio_op_err(ret);
		gpup_resume_written(rf, b);
	}
	rf->cur = (rf->cur + 1) % rf->nbufs;
	rf->gather = rf->buf[rf->cur].data;
	ret = gpup_resume_wait(rf, &rf->buf[rf->cur]);
	rf->buf[rf->cur].nsegs = 0;
	rf->buf[rf->cur].nchk = 0;
	return ret;
}

/* Hand the gathered pages to the provider: a page-aligned range. */
static int gpup_resume_flush(struct gpup_resume_file *rf)
{
	struct gpup_vfio_dev *gdev = rf->mf.gdev;
	struct gpup_resume_buf *b = &rf->buf[rf->cur];
	struct iov_iter it;
	struct kvec kv;
	ssize_t put;
	int ret;

	if (!rf->gather_len)
		return 0;
	if (rf->bulk) {
		ret = gpup_resume_xfer(rf);
		if (ret)
			return ret;
		goto done;
	}
	kv.iov_base = rf->gather;
	kv.iov_len = rf->gather_len;
	iov_iter_kvec(&it, ITER_SOURCE, &kv, 1, rf->gather_len);
	ret = gpup_vfio_op_enter(gdev, rf->mf.gen);
	if (ret)
		return ret;
	put = GPUP_OPS(gdev)->vram_write(GPUP_PF(gdev), gdev->vf_id,
					 b->seg[0].offset, rf->gather_len, &it);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "vram_write", b->seg[0].offset, put);
	if (put < 0)
		return gpup_vfio_op_err(put);
	if (put != rf->gather_len)
		return -EIO;
	gpup_resume_written(rf, b);
	b->nsegs = 0;
done:
	rf->gather_len = 0;
	return 0;
}

/* Whether one of @b's segments has a byte of [@start, @end). */
static bool gpup_resume_overlaps(const struct gpup_resume_buf *b, u64 start,
				 u64 end)
{
	unsigned int i;

	for (i = 0; i < b->nsegs; i++)
		if (start < b->seg[i].offset + b->seg[i].len &&
		    b->seg[i].offset < end)
			return true;
	return false;
}

/*
 * Before VRAM [@start, @end) is restored again (bulk): the gather buffer
 * goes out first if it has a page of it, or if @flush; then any transfer
 * in flight with a page of it (the one just submitted among them)
 * completes.  So no two restores of one page are ever in flight, and
 * the later one reaches VRAM last.
 */
static int gpup_resume_settle(struct gpup_resume_file *rf, u64 start,
			      u64 end, bool flush)
{
	struct gpup_resume_buf *b = &rf->buf[rf->cur], *o;
	unsigned int i;
	int ret;

	if (!rf->bulk)
		return 0;
	if (flush || gpup_resume_overlaps(b, start, end)) {
		ret = gpup_resume_flush(rf);
		if (ret)
			return ret;
		b = &rf->buf[rf->cur];
	}
	for (i = 0; i < rf->nbufs; i++) {
		o = &rf->buf[i];
		if (o != b && o->inflight &&
		    gpup_resume_overlaps(o, start, end)) {
			ret = gpup_resume_wait(rf, o);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/*
 * A VRAM run of @ev->npages from @ev->first_page begins (bulk).  A later
 * pass may send a page again, and transfers may complete in any order.
 * If the gather buffer has a page of the run, or no segment left for it,
 * the buffer goes out first, and gathering moves to the next one; so it
 * does if the record fits in a buffer but not in what is left of this
 * one.  Then any transfer in flight with a page of the run (the one just
 * submitted among them) completes before the run is gathered, so that no
 * two restores of one page are ever in flight, and the run's bytes reach
 * VRAM after the older ones.  A record gathered whole is checked with
 * its buffer (gpup_resume_crc_work()), not by the parser.
 */
static int gpup_resume_run(struct gpup_resume_file *rf,
			   const struct gpup_event *ev)
{
	u32 ps = rf->mf.gdev->caps.page_size;
	u64 start = ev->first_page * ps, bytes = (u64)ev->npages * ps;
	u64 end = start + bytes;
	struct gpup_resume_buf *b = &rf->buf[rf->cur];
	bool whole = bytes <= rf->gather_cap;
	struct gpup_resume_chk *c;
	int ret;

	if (!rf->bulk)
		return 0;
	ret = gpup_resume_settle(rf, start, end, b->nsegs == GPUP_RESUME_SEGS ||
				 (whole && (b->nchk == GPUP_RESUME_CHKS ||
				  bytes > rf->gather_cap - rf->gather_len)));
	if (ret)
		return ret;
	b = &rf->buf[rf->cur];
	if (!whole)
		return 0;
	/* The parser is at the record's first page byte: it cannot fail. */
	if (WARN_ON_ONCE(gpup_vfio_parser_defer_crc(&rf->parser)))
		return -EIO;
	c = &b->chk[b->nchk++];
	c->off = rf->gather_len;
	c->len = bytes;
	c->state = ev->crc_state;
	c->crc = ev->crc;
	return 0;
}

/*
 * Without vram_zero: zeros by vram_write, up to 256 KiB (and a whole
 * page) a call, each page of it the kernel's zero page; a provider call
 * each, so that a reset need not wait for a whole VRAM of them.
 */
static int gpup_resume_write_zeros(struct gpup_resume_file *rf, u64 off,
				   u64 len)
{
	struct gpup_vfio_dev *gdev = rf->mf.gdev;
	size_t chunk = max_t(size_t, SZ_256K, gdev->caps.page_size), n;
	unsigned int nvec = chunk / PAGE_SIZE, i;
	struct iov_iter it;
	struct kvec *kv;
	ssize_t put;
	int ret = 0;

	kv = kvcalloc(nvec, sizeof(*kv), GFP_KERNEL);
	if (!kv)
		return -ENOMEM;
	for (i = 0; i < nvec; i++) {
		kv[i].iov_base = page_address(ZERO_PAGE(0));
		kv[i].iov_len = PAGE_SIZE;
	}
	while (len) {
		n = min_t(u64, len, chunk);
		iov_iter_kvec(&it, ITER_SOURCE, kv, DIV_ROUND_UP(n, PAGE_SIZE),
			      n);
		ret = gpup_vfio_op_enter(gdev, rf->mf.gen);
		if (ret)
			break;
		put = GPUP_OPS(gdev)->vram_write(GPUP_PF(gdev), gdev->vf_id,
						 off, n, &it);
		gpup_vfio_op_exit(gdev);
		if (put != n) {
			ret = put < 0 ? put : -EIO;
			break;
		}
		off += n;
		len -= n;
		cond_resched();
	}
	kvfree(kv);
	return ret;
}

/*
 * A ZERO record, whose CRC the parser checked: its pages hold zeros.
 * Restored after every earlier restore of them (gpup_resume_settle()),
 * by vram_zero, or vram_write without it.
 */
static int gpup_resume_zero(struct gpup_resume_file *rf,
			    const struct gpup_event *ev)
{
	struct gpup_vfio_dev *gdev = rf->mf.gdev;
	u32 ps = gdev->caps.page_size;
	u64 off = ev->first_page * ps, len = (u64)ev->npages * ps;
	long written;
	int ret;

	ret = gpup_resume_settle(rf, off, off + len, false);
	if (ret)
		return ret;
	/*
	 * Pages this VF did not write since its reset hold zeros already;
	 * every earlier restore of the run completed (the settle), so a
	 * page the stream restored counts as written.
	 */
	written = gpup_vfio_query_written(gdev, rf->mf.gen, ev->first_page,
					  ev->npages, NULL);
	if (!written)
		goto seen;
	if (written < 0 && written != -EOPNOTSUPP)
		return written;
	ret = gpup_vfio_op_enter(gdev, rf->mf.gen);
	if (ret)
		return ret;
	if (GPUP_OPS(gdev)->vram_zero) {
		ret = GPUP_OPS(gdev)->vram_zero(GPUP_PF(gdev), gdev->vf_id, off,
						len);
		gpup_vfio_op_exit(gdev);
	} else {
		gpup_vfio_op_exit(gdev);
		ret = gpup_resume_write_zeros(rf, off, len);
	}
	trace_gpup_vfio_op(gdev->vf_id, "vram_zero", off, ret ?: (s64)len);
	if (ret)
		return gpup_vfio_op_err(ret);
seen:
	/* The parser kept the run inside the VRAM size. */
	bitmap_set(rf->seen, ev->first_page, ev->npages);
	return 0;
}

/* VRAM payload: gather it, flushing each time a run of pages is full. */
static int gpup_resume_vram(struct gpup_resume_file *rf,
			    const struct gpup_event *ev)
{
	const u8 *data = ev->data;
	u64 off = ev->vram_offset;
	size_t len = ev->data_len, n;
	struct gpup_resume_buf *b;
	struct gpup_vram_seg *seg;
	int ret;

	while (len) {
		b = &rf->buf[rf->cur];
		seg = b->nsegs ? &b->seg[b->nsegs - 1] : NULL;
		if (!seg || seg->offset + seg->len != off) {
			/* gpup_resume_run() left room for the run's segment. */
			if (WARN_ON_ONCE(b->nsegs == GPUP_RESUME_SEGS))
				return -EIO;
			seg = &b->seg[b->nsegs++];
			seg->offset = off;
			seg->len = 0;
		}
		n = min(len, rf->gather_cap - rf->gather_len);
		/* NULL: write() put the bytes there (gpup_resume_dest()). */
		if (data)
			memcpy(rf->gather + rf->gather_len, data, n);
		seg->len += n;
		rf->gather_len += n;
		data += n;
		off += n;
		len -= n;
		if (rf->gather_len == rf->gather_cap) {
			ret = gpup_resume_flush(rf);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int gpup_resume_data(struct gpup_resume_file *rf,
			    const struct gpup_event *ev)
{
	switch (ev->type) {
	case GPUP_REC_IMMUTABLE:
		memcpy(rf->imm + ev->offset, ev->data, ev->data_len);
		return 0;
	case GPUP_REC_MUTABLE:
		memcpy(rf->mut + ev->offset, ev->data, ev->data_len);
		return 0;
	case GPUP_REC_VRAM:
		return gpup_resume_vram(rf, ev);
	default:
		return 0;
	}
}

static int gpup_resume_record_end(struct gpup_resume_file *rf,
				  const struct gpup_event *ev)
{
	struct gpup_vfio_dev *gdev = rf->mf.gdev;
	int ret;

	/*
	 * A VRAM record holds whole pages: its end ends a page.  In bulk
	 * the next runs are gathered after it.
	 */
	if (ev->type == GPUP_REC_VRAM)
		return rf->bulk ? 0 : gpup_resume_flush(rf);
	if (ev->type == GPUP_REC_ZERO)
		return gpup_resume_zero(rf, ev);
	if (ev->type != GPUP_REC_IMMUTABLE)
		return 0;
	/* The compatibility check, as early as the stream allows. */
	ret = gpup_vfio_op_enter(gdev, rf->mf.gen);
	if (ret)
		return ret;
	ret = GPUP_OPS(gdev)->restore_immutable(GPUP_PF(gdev), gdev->vf_id,
						rf->imm, rf->imm_len);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "restore_immutable", rf->imm_len, ret);
	return gpup_vfio_op_err(ret);
}

/*
 * Feed @len bytes to the parser and act on its events.  A RECORD_END may
 * come one call late, so the loop goes on with an empty feed until the
 * parser has nothing left to report: a record completed by this write is
 * acted on (restore_immutable: the compatibility check) by this write.
 */
static int gpup_resume_feed(struct gpup_resume_file *rf, const u8 *buf,
			    size_t len)
{
	struct gpup_event ev;
	long used;
	int ret;

	do {
		used = gpup_vfio_parser_feed(&rf->parser, buf, len, &ev);
		if (used < 0)
			return used;
		if (buf)
			buf += used;
		len -= used;
		switch (ev.kind) {
		case GPUP_EV_HEADER:
			ret = gpup_resume_header(rf, &ev);
			break;
		case GPUP_EV_RECORD:
			/*
			 * What was gathered goes out before other records;
			 * a ZERO record waits only for its own pages.
			 */
			ret = ev.type == GPUP_REC_VRAM ||
			      ev.type == GPUP_REC_ZERO ? 0 :
			      gpup_resume_flush(rf);
			if (!ret)
				ret = gpup_resume_record(rf, &ev);
			break;
		case GPUP_EV_VRAM_RUN:
			/* A ZERO record acts at its RECORD_END. */
			ret = ev.type == GPUP_REC_VRAM ?
			      gpup_resume_run(rf, &ev) : 0;
			break;
		case GPUP_EV_DATA:
			ret = gpup_resume_data(rf, &ev);
			break;
		case GPUP_EV_RECORD_END:
			ret = gpup_resume_record_end(rf, &ev);
			break;
		case GPUP_EV_END:
			/* Every transfer done, so that @seen is up to date. */
			ret = gpup_resume_flush(rf);
			if (!ret)
				ret = gpup_resume_drain_locked(rf);
			if (ret)
				break;
			/* A stream that left a VRAM page out is not whole. */
			if (!bitmap_full(rf->seen, rf->npages)) {
				ret = -EPROTO;
				break;
			}
			rf->complete = true;
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

/*
 * Under @rf->mf.lock: feed what one copy brought in, @n bytes at @src,
 * or NULL for bytes in place.
 */
static int gpup_resume_feed_locked(struct gpup_resume_file *rf,
				   const u8 *src, size_t n)
{
	struct gpup_mig_file *mf = &rf->mf;
	int ret;

	if (mf->error)
		return mf->error;
	ret = gpup_vfio_file_alive(mf);
	if (ret)
		return ret;
	ret = gpup_resume_feed(rf, src, n);
	if (ret)
		mf->error = ret;
	return ret;
}

/*
 * Where the next bytes of a write() go, and how many at most: the page
 * bytes of a record gathered whole go straight to their place in the
 * gather buffer, since the parser does not read them (the buffer checks
 * their CRC); every other byte goes to the stage.  The copy runs under
 * io_lock only: the gather buffer is never in flight, and only a holder
 * of io_lock gathers into it or moves gathering to another buffer;
 * release cannot come during a write().
 */
static u8 *gpup_resume_dest(struct gpup_resume_file *rf, size_t *max)
{
	u32 left;

	mutex_lock(&rf->mf.lock);
	left = rf->mf.error ? 0 : gpup_vfio_parser_defer_left(&rf->parser);
	mutex_unlock(&rf->mf.lock);
	if (!left) {
		*max = GPUP_STAGE_BYTES;
		return rf->stage;
	}
	*max = left;
	return rf->gather + rf->gather_len;
}

/*
 * A stream error is sticky and returned by this write and every later
 * one.  A fault in the user buffer returns the bytes consumed before it,
 * if any, so that a writer that goes on from there repeats nothing.
 */
static ssize_t gpup_resume_write(struct file *filp, const char __user *buf,
				 size_t len, loff_t *pos)
{
	struct gpup_resume_file *rf = filp->private_data;
	struct gpup_mig_file *mf = &rf->mf;
	size_t done = 0, n, got;
	u8 *dst;
	int ret = 0;

	if (pos)
		return -ESPIPE;

	mutex_lock(&mf->io_lock);
	if (!len) {
		mutex_lock(&mf->lock);
		ret = mf->error ? mf->error : gpup_vfio_file_alive(mf);
		mutex_unlock(&mf->lock);
	}
	while (done < len) {
		dst = gpup_resume_dest(rf, &n);
		n = min(len - done, n);
		/* Only io_lock held: a fault here blocks no arc. */
		got = n - copy_from_user(dst, buf + done, n);
		if (got) {
			mutex_lock(&mf->lock);
			ret = gpup_resume_feed_locked(rf, dst == rf->stage ?
						      dst : NULL, got);
			mutex_unlock(&mf->lock);
			if (ret)
				break;
			done += got;
		}
		if (got < n) {
			ret = -EFAULT;
			break;
		}
	}
	mutex_unlock(&mf->io_lock);
	if (done)
		atomic64_add(done, &mf->gdev->stats.bytes_restored);
	if (ret)
		atomic_set(&mf->gdev->stats.last_error, ret);
	if (ret == -EFAULT && done)
		return done;
	return ret ? ret : done;
}

/* Writable while the file works; an error once disabled or broken. */
static __poll_t gpup_resume_poll(struct file *filp, poll_table *wait)
{
	struct gpup_resume_file *rf = filp->private_data;
	struct gpup_mig_file *mf = &rf->mf;
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	poll_wait(filp, &mf->gdev->waitq, wait);
	mutex_lock(&mf->lock);
	if (mf->error || gpup_vfio_file_alive(mf))
		mask = EPOLLERR;
	mutex_unlock(&mf->lock);
	return mask;
}

static void gpup_resume_bufs_free(struct gpup_resume_file *rf)
{
	unsigned int i;

	for (i = 0; i < rf->nbufs; i++) {
		kvfree(rf->buf[i].pages);
		vfree(rf->buf[i].data);
	}
}

static int gpup_resume_release(struct inode *inode, struct file *filp)
{
	struct gpup_resume_file *rf = filp->private_data;

	/*
	 * Never free pages a transfer still reads: a hung one keeps the
	 * file's memory until its done() drops the last reference.
	 */
	gpup_vfio_resume_drain(rf);
	gpup_vfio_file_fini(&rf->mf);
	if (gpup_vfio_file_put(&rf->mf))
		gpup_resume_free(rf);
	return 0;
}

/* The file's memory, once no transfer holds it (see gpup_mig_file). */
static void gpup_resume_free(struct gpup_resume_file *rf)
{
	kvfree(rf->imm);
	kvfree(rf->mut);
	gpup_vfio_bitmap_free(rf->seen);
	gpup_resume_bufs_free(rf);
	kvfree(rf->stage);
	kfree(rf);
}

static const struct file_operations gpup_resume_fops = {
	.owner = THIS_MODULE,
	.write = gpup_resume_write,
	.poll = gpup_resume_poll,
	.release = gpup_resume_release,
};

/* The gather buffers (@rf->nbufs in bulk, with their pages, transfers). */
static int gpup_resume_bufs_alloc(struct gpup_resume_file *rf)
{
	unsigned int npages = DIV_ROUND_UP(rf->gather_cap, PAGE_SIZE), i, j;
	struct gpup_resume_buf *b;

	for (i = 0; i < rf->nbufs; i++) {
		b = &rf->buf[i];
		b->rf = rf;
		init_completion(&b->done);
		b->data = __vmalloc(rf->gather_cap,
				    GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		if (!b->data)
			return -ENOMEM;
		if (!rf->bulk)
			break;
		b->pages = kvcalloc(npages, sizeof(*b->pages),
				    GFP_KERNEL_ACCOUNT);
		if (!b->pages)
			return -ENOMEM;
		for (j = 0; j < npages; j++)
			b->pages[j] = vmalloc_to_page(b->data + j * PAGE_SIZE);
		b->xfer.dir = GPUP_XFER_RESTORE;
		b->xfer.segs = b->seg;
		b->xfer.pages = b->pages;
		b->xfer.done = gpup_resume_xfer_done;
		b->xfer.priv = b;
		for (j = 0; j < GPUP_RESUME_CRC_PARTS; j++) {
			b->crc[j].b = b;
			b->crc[j].first = j;
			INIT_WORK(&b->crc[j].work, gpup_resume_crc_work);
		}
	}
	rf->gather = rf->buf[0].data;
	return 0;
}

/**
 * gpup_vfio_resume_new() - start receiving a stream
 * @gdev: the VF, paused and prepared as migration target
 *
 * Context: the caller holds @gdev->state_mutex.
 * Return: the file or ERR_PTR().
 */
struct gpup_resume_file *gpup_vfio_resume_new(struct gpup_vfio_dev *gdev)
{
	const struct gpup_migration_caps *caps = &gdev->caps;
	struct gpup_stream_limits lim = {
		.max_immutable = caps->max_immutable_size,
		.max_mutable = caps->max_mutable_size,
		.max_vram_run = GPUP_MAX_RUN,
		.max_optional = GPUP_MAX_OPTIONAL,
	};
	struct gpup_resume_file *rf;
	u32 run_pages;
	int ret = -ENOMEM;

	rf = kzalloc(sizeof(*rf), GFP_KERNEL_ACCOUNT);
	if (!rf)
		return ERR_PTR(-ENOMEM);
	rf->npages = div_u64(caps->vram_size, caps->page_size);
	rf->bulk = gpup_vfio_use_bulk(gdev);
	rf->nbufs = rf->bulk ? clamp_t(unsigned int,
				       READ_ONCE(gpup_vfio_xfer_depth), 1,
				       GPUP_XFER_DEPTH) : 1;
	rf->crc_works = num_online_cpus() > 1;
	run_pages = max_t(u32, 1, GPUP_RUN_BYTES / caps->page_size);
	rf->gather_cap = (size_t)run_pages * caps->page_size *
			 (rf->bulk ? GPUP_RESUME_RUNS : 1);
	rf->stage = kvmalloc(GPUP_STAGE_BYTES, GFP_KERNEL_ACCOUNT);
	rf->seen = gpup_vfio_bitmap_alloc(rf->npages);
	if (!rf->stage || !rf->seen)
		goto err_free;
	ret = gpup_resume_bufs_alloc(rf);
	if (ret)
		goto err_free;
	/* Geometry is checked against the caps in gpup_resume_header(). */
	gpup_vfio_parser_init(&rf->parser, &lim);
	ret = gpup_vfio_file_init(&rf->mf, gdev, "gpup_vfio_resume",
				  &gpup_resume_fops, O_WRONLY);
	if (ret)
		goto err_free;
	return rf;

err_free:
	gpup_vfio_bitmap_free(rf->seen);
	kvfree(rf->stage);
	gpup_resume_bufs_free(rf);
	kfree(rf);
	return ERR_PTR(ret);
}

/**
 * gpup_vfio_resume_finish() - RESUMING -> STOP: restore the mutable data
 * @rf: the resume file
 *
 * Context: the caller holds the device's state_mutex.
 * Return: 0; the stream's error; -ENODATA if the stream did not reach
 * its END record; or the error of restore_mutable.
 */
int gpup_vfio_resume_finish(struct gpup_resume_file *rf)
{
	struct gpup_vfio_dev *gdev = rf->mf.gdev;
	int ret;

	mutex_lock(&rf->mf.lock);
	ret = rf->mf.error;
	if (!ret)
		ret = gpup_vfio_parser_finish(&rf->parser);
	if (!ret && !rf->complete)
		ret = -ENODATA;
	if (!ret)
		ret = gpup_resume_drain_locked(rf);
	if (ret)
		goto out;
	ret = gpup_vfio_op_enter(gdev, rf->mf.gen);
	if (ret)
		goto out;
	ret = GPUP_OPS(gdev)->restore_mutable(GPUP_PF(gdev), gdev->vf_id,
					      rf->mut, rf->mut_len);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "restore_mutable", rf->mut_len, ret);
out:
	mutex_unlock(&rf->mf.lock);
	return ret;
}
