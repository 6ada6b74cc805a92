// SPDX-License-Identifier: GPL-2.0
/*
 * The save data_fd of gpup_vfio_pci (PRE_COPY and STOP_COPY, read()).
 *
 * The stream is produced lazily, one piece per refill: the stream header
 * with the IMMUTABLE record; ZERO records for the pages never written
 * (below); the full pass over VRAM; with pre-copy,
 * passes over the pages dirtied since; once in STOP_COPY, the MUTABLE
 * record and END.  VRAM moves through a few buffers of one run
 * (GPUP_RUN_BYTES) each, the slots, so the memory a migration needs does
 * not grow with VRAM.
 *
 * Each VRAM record is one run of pages, at most one window.  A slot
 * holds the runs of one window of the full pass (GPUP_SLOT_WINDOWS in
 * bulk), or up to GPUP_SLOT_RUNS runs of dirty pages from as many windows
 * as it takes to fill it, their bytes back to back;
 * its records go out one by one, each as two pieces, its headers then its
 * bytes.  Per range (the provider has no vram_xfer, or bulk_xfer=N) there
 * is one slot, filled by one vram_read per run when read() needs the next
 * record.  In bulk, up to GPUP_XFER_DEPTH slots are in flight, each as one
 * vram_xfer transfer of one segment per run: each refill submits the free
 * slots and then waits for the oldest, whose records it checksums and
 * hands out while the others run.  A dirty pass of scattered pages thus
 * costs a transfer per 64 runs, not per page.  Records go out in the
 * order their runs were submitted.  A slot's pages belong to its
 * transfer until the transfer completed: disabling the file waits for
 * its transfers (gpup_vfio_save_drain()), and so does release, before
 * anything is freed.  The provider completes every transfer before
 * reset_vf returns and before it unregisters; a copy engine that hangs
 * anyway is waited for xfer_timeout_ms at most (gpup_vfio_file_wait()).
 *
 * Pages never written.  A provider with query_written (and the module
 * parameter skip_unwritten, default Y) tells which pages were written
 * since the VF's reset; the others hold zeros.  The file takes one
 * snapshot of that set when it is made, after dirty tracking started,
 * into a bitmap of one bit per page (2 MiB at 64 GiB, the driver's only
 * memory that grows with VRAM besides the resume side's one).  The
 * stream then carries one ZERO record per gap of the snapshot, before
 * the full pass, and the full pass reads the snapshot's runs only, each
 * inside one window: every page is covered once, as the destination's
 * END check wants.  A page first written after the snapshot is dirty and
 * goes out in a dirty pass (or in STOP_COPY), after its ZERO record.
 * Both walks cost the bitmap and the written pages, not VRAM reads;
 * PRECOPY_INFO counts what is left of them from two sums the snapshot
 * made.  Without the op, or with all of VRAM written, there is no
 * snapshot and the full pass reads every window.
 *
 * Every pass walks VRAM in windows of one run.  With dirty tracking on,
 * each window's dirty bits are read and cleared just before the window is
 * read (submitted, in bulk): the full pass clears the bits of the pages
 * it is about to send, so a page dirtied ahead of its cursor goes out
 * once; a dirty pass sends the window's dirty pages, and finds the next
 * window with some by reading GPUP_SKIP_PAGES bits at a time
 * (gpup_save_skip_clean()).  A page written after its window was
 * queried is dirty again and goes out in a later pass.
 *
 * read() copies to userspace outside the file's lock (and every lock an
 * arc or a reset takes): io_lock alone keeps the piece being copied
 * stable, since only read() refills it.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/bitmap.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/vfio.h>
#include <linux/vmalloc.h>

#include <gpup_compat.h>

#include "file.h"
#include "trace.h"

enum gpup_save_phase {
	GPUP_SAVE_HEAD,		/* stream header + IMMUTABLE record */
	GPUP_SAVE_ZEROS,	/* ZERO records: the gaps of the written set */
	GPUP_SAVE_FULL,		/* the first full pass over VRAM */
	GPUP_SAVE_DIRTY,	/* passes over the dirty pages */
	GPUP_SAVE_MUTABLE,	/* the MUTABLE record */
	GPUP_SAVE_END,		/* the END record */
	GPUP_SAVE_DONE,		/* read() returns 0 */
};

/* A VRAM record's bytes besides its pages. */
#define GPUP_VRAM_REC_EXTRA	(GPUP_REC_HDR_SIZE + GPUP_VRAM_RUN_SIZE)
/*
 * Runs (records, and segments of its transfer) one slot holds at most:
 * a window's worth of single pages.
 */
#define GPUP_SLOT_RUNS		64
/*
 * Windows one slot holds in bulk: a transfer of 1 MiB, so that the
 * submission and completion of each cost a quarter as much per byte.
 */
#define GPUP_SLOT_WINDOWS	4
/* Pages one ZERO record covers at most (its npages is a u32). */
#define GPUP_ZERO_MAX_PAGES	BIT(30)
/*
 * Pages a dirty pass looks at in one query to find its next dirty window
 * (a page of bits): a pass over clean VRAM costs a query per 128 MiB
 * of 4 KiB pages, not one per window.
 */
#define GPUP_SKIP_PAGES		(PAGE_SIZE * BITS_PER_BYTE)
/* ZERO records one piece holds: a page of them. */
#define GPUP_ZBUF_RECS		128

/**
 * enum gpup_slot_state - what a slot holds
 * @GPUP_SLOT_FREE: nothing; may be submitted
 * @GPUP_SLOT_INFLIGHT: runs whose vram_xfer was queued: the pages are
 *	the provider's until @done completes
 * @GPUP_SLOT_READY: runs read (or failed: @status), waiting for their
 *	turn, or the slot whose records are being read out
 */
enum gpup_slot_state {
	GPUP_SLOT_FREE,
	GPUP_SLOT_INFLIGHT,
	GPUP_SLOT_READY,
};

/*
 * Work items that checksum one slot's runs, taken in turn: the CRC is
 * the save's largest CPU cost, and two CPUs halve it.  With one CPU
 * online there are none: read() computes them, without a thread hop.
 */
#define GPUP_SAVE_CRC_PARTS	2

/**
 * struct gpup_save_crc_part - one work item of a slot's checksums
 * @work: computes the CRCs of runs @first, @first + GPUP_SAVE_CRC_PARTS,
 *	... of @slot once its transfer read them, beside the reader; it
 *	holds a reference on the file (the transfer's own, for the first)
 *	until it ran, or until the reader cancelled it
 * @slot: the slot
 * @first: its first run
 * @queued: done() queued @work (set before the slot's @done completes)
 * @ok: the slot's @crc and @zmask hold its runs' CRCs and zero pages
 *	(set by @work, with release); else read() finds out
 */
struct gpup_save_crc_part {
	struct work_struct work;
	struct gpup_save_slot *slot;
	unsigned int first;
	bool queued;
	bool ok;
};

/**
 * struct gpup_save_slot - the buffer of a few VRAM records
 * @sf: the file it belongs to
 * @buf: vmalloc'ed, slot_pages pages: the runs' bytes back
 *	to back
 * @pages: the pages of @buf (bulk only)
 * @seg: the runs in VRAM bytes, @nruns of them, for @xfer
 * @xfer: the transfer (bulk only)
 * @done: completed by @xfer's done()
 * @crc_part: the work items that compute @crc once @xfer read the runs
 * @crc: per run without a page of zeros, the CRC of its run header and
 *	bytes (see @crc_part's @ok)
 * @zmask: per run, with zero detection, bit i: its page i holds zeros
 *	only (see @crc_part's @ok)
 * @status: @xfer's result, or the synchronous reads'
 * @nruns: runs in the slot, at least 1 once filled
 * @npages: pages of all its runs
 * @next: the run whose records go out next (or are going out)
 * @next_page: the first page of run @next not gone out yet: a run goes
 *	out as one record per stretch of pages of zeros or not
 * @next_off: where page @next_page of run @next starts in @buf
 * @zeros: the zero pages of run @next, as in @zmask
 * @hdr_out: @rec, the headers of a VRAM record of @data_len bytes at
 *	@next_off, is the piece being read; those bytes are the next piece
 * @data_len: see @hdr_out
 * @initial: the runs belong to the full pass (initial data)
 * @t_sub: ktime (ns) of the submission
 * @t_done: ktime (ns) of the completion, set before @done completes
 * @state: see enum gpup_slot_state; written under the file's lock, never
 *	by the provider
 * @rec: the record and run headers of run @next
 */
struct gpup_save_slot {
	struct gpup_save_file *sf;
	u8 *buf;
	struct page **pages;
	struct gpup_vram_seg seg[GPUP_SLOT_RUNS];
	struct gpup_vram_xfer xfer;
	struct completion done;
	struct gpup_save_crc_part crc_part[GPUP_SAVE_CRC_PARTS];
	u32 crc[GPUP_SLOT_RUNS];
	u64 zmask[GPUP_SLOT_RUNS];
	int status;
	unsigned int nruns;
	u32 npages;
	unsigned int next;
	u32 next_page;
	size_t next_off;
	u64 zeros;
	bool hdr_out;
	size_t data_len;
	bool initial;
	u64 t_sub;
	u64 t_done;
	enum gpup_slot_state state;
	u8 rec[GPUP_VRAM_REC_EXTRA] __aligned(8);
};

/**
 * struct gpup_save_file - a save data_fd
 * @mf: the shared part; @mf.lock protects every field below
 * @npages: VRAM pages of the VF
 * @run_pages: pages in one VRAM run (one window)
 * @page_size: the VF's VRAM page size, for the checksum work (which may
 *	run after a hung transfer outlived the device's binding)
 * @slot_pages: pages one slot holds: GPUP_SLOT_WINDOWS windows in bulk,
 *	one per range
 * @bulk: VRAM moves by vram_xfer, @depth transfers at most in flight;
 *	else by vram_read, one run at a time (@depth 1)
 * @depth: slots in use
 * @crc_parts: work items that checksum a slot's runs in bulk: none with
 *	one CPU online, else GPUP_SAVE_CRC_PARTS
 * @zero_detect: pages read as zeros go out in ZERO records (module
 *	parameter zero_detect, and no @written snapshot)
 * @slot: the VRAM record buffers, a ring
 * @slot_head: the oldest slot submitted and not handed out
 * @queued: slots submitted and not handed out, from @slot_head on
 * @queued_bytes: bytes of the records of the @queued slots
 * @newest_bytes: bytes of the records of the slot submitted last
 * @out_slot: the slot whose records are going out, taken off the ring;
 *	free again once the last one was read
 * @w: the stream writer (record chain, counts)
 * @phase: where the stream stands
 * @tracking: dirty tracking runs (pre-copy): dirty passes follow the full
 *	pass; else the full pass is the only VRAM pass
 * @stop_copy: the device reached STOP_COPY; no more -ENOMSG
 * @eof_seen: read() reached the end of the stream
 * @cursor: next page of the current pass
 * @written: the snapshot of the pages written since the VF's reset, one
 *	bit per page; NULL: every page goes out in the full pass.  A dirty
 *	pass sets the bits of the pages it takes that were first written
 *	after the snapshot
 * @nwritten: bits set in @written
 * @reinit_seen: the provider's written count when PRECOPY_INFO last
 *	reported VFIO_PRECOPY_INFO_REINIT (or at the snapshot)
 * @zcursor: next page to look for a gap of @written at
 * @zero_left: bytes of the ZERO records not yet built
 * @full_left: bytes of the VRAM records of the full pass not yet taken
 *	into a slot (with @written)
 * @zbuf: ZERO records going out, GPUP_ZBUF_RECS at most (with @written)
 * @skip: dirty bits of GPUP_SKIP_PAGES pages from the cursor on, read
 *	without clearing them, to find the next window with some
 * @win: dirty bits of the window being sent, @win_len bits
 * @win_first: first page of the window
 * @win_len: pages in the window
 * @win_next: next bit of @win to look at
 * @win_pending: set bits of @win from @win_next on
 * @out: the piece being read; points into @head, a slot, @mut or @tail
 * @out_len: bytes in @out
 * @out_pos: bytes of @out already read
 * @out_initial: @out belongs to the initial data (PRE_COPY initial_bytes)
 * @head: stream header and IMMUTABLE record
 * @head_len: bytes in @head
 * @mut: MUTABLE payload, saved by the arc to STOP_COPY
 * @mut_len: bytes in @mut
 * @mut_crc: CRC of @mut
 * @tail: MUTABLE record header or END record being sent
 * @want: bytes the read() under way still asks for
 * @pass: figures of the current VRAM pass so far
 * @pass_t0: ktime (ns) of the current pass's first read, 0 before it
 */
struct gpup_save_file {
	struct gpup_mig_file mf;
	u64 npages;
	u32 run_pages;
	u32 slot_pages;
	u32 page_size;
	bool bulk;
	unsigned int depth;
	unsigned int crc_parts;
	bool zero_detect;
	struct gpup_save_slot slot[GPUP_XFER_DEPTH];
	unsigned int slot_head;
	unsigned int queued;
	u64 queued_bytes;
	u64 newest_bytes;
	struct gpup_save_slot *out_slot;
	struct gpup_writer w;
	enum gpup_save_phase phase;
	bool tracking;
	bool stop_copy;
	bool eof_seen;
	u64 cursor;
	unsigned long *written;
	u64 nwritten;
	u64 reinit_seen;
	u64 zcursor;
	u64 zero_left;
	u64 full_left;
	u8 *zbuf;
	unsigned long *skip;
	unsigned long *win;
	u64 win_first;
	u32 win_len;
	u32 win_next;
	u32 win_pending;
	const u8 *out;
	size_t out_len;
	size_t out_pos;
	bool out_initial;
	u8 *head;
	size_t head_len;
	u8 *mut;
	size_t mut_len;
	u32 mut_crc;
	u8 tail[GPUP_REC_HDR_SIZE + GPUP_END_SIZE];
	u64 want;
	struct gpup_vfio_pass pass;
	u64 pass_t0;
};

/**
 * gpup_vfio_save_filp() - the struct file of a save file
 * @sf: the save file
 *
 * Return: its anon file.
 */
struct file *gpup_vfio_save_filp(struct gpup_save_file *sf)
{
	return sf->mf.filp;
}

/* Bytes of the VRAM records that send @n contiguous pages. */
static u64 gpup_run_bytes(u64 n, u32 run_pages, u32 page_size)
{
	u64 runs = div_u64(n + run_pages - 1, run_pages);

	return runs * GPUP_VRAM_REC_EXTRA + n * page_size;
}

static u64 gpup_save_run_bytes(const struct gpup_save_file *sf, u64 n)
{
	return gpup_run_bytes(n, sf->run_pages, sf->mf.gdev->caps.page_size);
}

/* Exact bytes of the records for the window's pages still to send. */
static u64 gpup_save_win_bytes(const struct gpup_save_file *sf)
{
	unsigned long start, end;
	u64 bytes = 0;

	if (!sf->win_pending)
		return 0;
	start = find_next_bit(sf->win, sf->win_len, sf->win_next);
	while (start < sf->win_len) {
		end = find_next_zero_bit(sf->win, sf->win_len, start);
		bytes += gpup_save_run_bytes(sf, end - start);
		start = find_next_bit(sf->win, sf->win_len, end);
	}
	return bytes;
}

/*
 * The next gap of @map (@npages bits) from page @from on: pages never
 * written, GPUP_ZERO_MAX_PAGES at most.  Returns false when there is
 * none.
 */
static bool gpup_written_gap(const unsigned long *map, u64 npages, u64 from,
			     u64 *first, u32 *n)
{
	unsigned long start, end;

	if (from >= npages)
		return false;
	start = find_next_zero_bit(map, npages, from);
	if (start >= npages)
		return false;
	end = find_next_bit(map, min_t(u64, npages,
				       start + GPUP_ZERO_MAX_PAGES), start);
	*first = start;
	*n = end - start;
	return true;
}

/*
 * The next run of written pages of @map (@npages bits) from page @from
 * on, inside the window of @run_pages it starts in.  Returns false when
 * there is none.
 */
static bool gpup_written_run(const unsigned long *map, u64 npages,
			     u32 run_pages, u64 from, u64 *first, u32 *n)
{
	unsigned long start, end;
	u64 win_end;

	if (from >= npages)
		return false;
	start = find_next_bit(map, npages, from);
	if (start >= npages)
		return false;
	win_end = min_t(u64, npages, start - start % run_pages + run_pages);
	end = find_next_zero_bit(map, win_end, start);
	*first = start;
	*n = end - start;
	return true;
}

/* What a first pass over the written pages sends: gpup_written_walk(). */
struct gpup_written_sum {
	u64 zero;	/* bytes of its ZERO records */
	u64 full;	/* bytes of its VRAM records */
	u64 nwritten;	/* pages written */
	u64 gap;	/* pages of the gap not yet closed by a written page */
};

/* The ZERO records of the gap so far, which a written page or the end closes. */
static void gpup_written_close_gap(struct gpup_written_sum *sum)
{
	sum->zero += div64_u64(sum->gap + GPUP_ZERO_MAX_PAGES - 1,
			       GPUP_ZERO_MAX_PAGES) * GPUP_VRAM_REC_EXTRA;
	sum->gap = 0;
}

/*
 * The gaps and runs of the @n bits at @bits (whole windows of @run_pages
 * from a window's start, but for VRAM's last) into @sum: the runs as
 * gpup_written_run() finds them, one record each.
 */
static void gpup_written_sum_bits(const unsigned long *bits, u32 n,
				  u32 run_pages, u32 page_size,
				  struct gpup_written_sum *sum)
{
	u64 pos, first;
	u32 len;

	for (pos = 0; gpup_written_run(bits, n, run_pages, pos, &first, &len);
	     pos = first + len) {
		sum->gap += first - pos;
		gpup_written_close_gap(sum);
		sum->full += gpup_run_bytes(len, run_pages, page_size);
	}
	sum->gap += n - pos;
}

/*
 * The pages of @gdev written since its reset, GPUP_SKIP_PAGES at a time
 * (whole windows: @run_pages is a power of two of at most 64): each
 * chunk's count first, which the contract has cost O(1), and its bitmap
 * only where some of its pages were written.  The walk
 * costs a count per chunk (128 MiB of 4 KiB pages) and the pages
 * written, not a bit per page of VRAM.  With @map (@npages bits,
 * zeroed) the bits are kept there; else @scratch holds one chunk's.
 */
static int gpup_written_walk(struct gpup_vfio_dev *gdev, unsigned long gen,
			     u64 npages, u32 run_pages, u32 page_size,
			     unsigned long *map, unsigned long *scratch,
			     struct gpup_written_sum *sum)
{
	unsigned long *bits = scratch;
	u64 first;
	long ret;
	u32 n;

	memset(sum, 0, sizeof(*sum));
	for (first = 0; first < npages; first += n) {
		n = min_t(u64, GPUP_SKIP_PAGES, npages - first);
		ret = gpup_vfio_query_written(gdev, gen, first, n, NULL);
		if (ret > 0) {
			if (map)
				bits = map + BIT_WORD(first);
			ret = gpup_vfio_query_written(gdev, gen, first, n,
						      bits);
		}
		if (ret < 0)
			return ret == -EOPNOTSUPP ? -EIO : ret;
		sum->nwritten += ret;
		if (ret)
			gpup_written_sum_bits(bits, n, run_pages, page_size,
					      sum);
		else
			sum->gap += n;
	}
	gpup_written_close_gap(sum);
	return 0;
}

/*
 * The written set of @gdev's VRAM, if the provider reports it and some
 * page was not written: what a first pass over it sends in @sum, and,
 * with @map, its bits in a new bitmap of @npages bits there.  Returns 1
 * after such a walk, 0 if there is no written set to walk, or -errno.
 */
static int gpup_written_map(struct gpup_vfio_dev *gdev, unsigned long gen,
			    u64 npages, u32 run_pages, u32 page_size,
			    unsigned long **map, struct gpup_written_sum *sum)
{
	unsigned long *bits;
	long ret;

	ret = gpup_vfio_query_written(gdev, gen, 0, npages, NULL);
	if (ret == -EOPNOTSUPP || ret == npages)
		return 0;
	if (ret < 0)
		return ret;
	bits = gpup_vfio_bitmap_alloc(map ? npages : GPUP_SKIP_PAGES);
	if (!bits)
		return -ENOMEM;
	ret = gpup_written_walk(gdev, gen, npages, run_pages, page_size,
				map ? bits : NULL, bits, sum);
	if (ret || !map) {
		gpup_vfio_bitmap_free(bits);
		return ret ?: 1;
	}
	*map = bits;
	return 1;
}

/*
 * Take the snapshot of the pages written since the VF's reset (see
 * gpup_written_map()) and sum up what the ZERO records and the full pass
 * will send.  Returns 0 (with or without a snapshot) or -errno.
 */
static int gpup_save_snapshot(struct gpup_save_file *sf)
{
	struct gpup_written_sum sum;
	int ret;

	ret = gpup_written_map(sf->mf.gdev, sf->mf.gen, sf->npages,
			       sf->run_pages, sf->page_size, &sf->written,
			       &sum);
	if (ret <= 0)
		return ret;
	sf->nwritten = sum.nwritten;
	sf->reinit_seen = sf->nwritten;
	sf->zero_left = sum.zero;
	sf->full_left = sum.full;
	sf->zbuf = kmalloc(GPUP_ZBUF_RECS * GPUP_VRAM_REC_EXTRA,
			   GFP_KERNEL_ACCOUNT);
	if (!sf->zbuf)
		return -ENOMEM;
	return 0;
}

/*
 * The next piece of ZERO records, built from the gaps of @sf->written.
 * Returns 1 with a piece, 0 when every gap went out, or -errno.
 */
static int gpup_save_zeros(struct gpup_save_file *sf)
{
	u8 *p = sf->zbuf;
	unsigned int i;
	u64 first;
	u32 n;
	int ret;

	if (!sf->written)
		return 0;
	for (i = 0; i < GPUP_ZBUF_RECS &&
	     gpup_written_gap(sf->written, sf->npages, sf->zcursor, &first,
			      &n); i++) {
		ret = gpup_vfio_zero_rec_build(&sf->w, (struct gpup_rec_hdr *)p,
					       (struct gpup_vram_run *)(p +
						GPUP_REC_HDR_SIZE),
					       first, n);
		if (ret)
			return ret;
		p += GPUP_VRAM_REC_EXTRA;
		sf->zcursor = first + n;
	}
	if (!i)
		return 0;
	sf->out = sf->zbuf;
	sf->out_len = p - sf->zbuf;
	sf->out_initial = true;
	sf->zero_left -= sf->out_len;
	return 1;
}

/**
 * gpup_vfio_save_full_size() - bytes of a whole save stream
 * @gdev: the VF
 * @imm: bytes of immutable data
 * @mut: bytes of mutable data
 * @size: the size of the stream STOP_COPY would produce from STOP
 *
 * Header, IMMUTABLE, one pass over VRAM, MUTABLE and END; where the
 * provider reports the pages written since the VF's reset, the pass is
 * the ZERO records and the written runs a save file made now would send
 * (gpup_written_walk(): a count per chunk of VRAM and the pages written).
 *
 * Context: the caller holds @gdev->state_mutex.
 * Return: 0 or -errno.
 */
int gpup_vfio_save_full_size(struct gpup_vfio_dev *gdev, size_t imm,
			     size_t mut, u64 *size)
{
	const struct gpup_migration_caps *caps = &gdev->caps;
	u64 npages = div_u64(caps->vram_size, caps->page_size);
	u32 run_pages = max_t(u32, 1, GPUP_RUN_BYTES / caps->page_size);
	struct gpup_written_sum sum;
	int ret;

	ret = gpup_written_map(gdev, GPUP_GEN_ANY, npages, run_pages,
			       caps->page_size, NULL, &sum);
	if (ret < 0)
		return ret;
	if (!ret) {
		*size = gpup_vfio_stream_full_size(imm, caps->vram_size,
						   caps->page_size,
						   GPUP_RUN_BYTES, mut);
		return 0;
	}
	*size = gpup_vfio_stream_full_size(imm, 0, caps->page_size,
					   GPUP_RUN_BYTES, mut) +
		sum.zero + sum.full;
	return 0;
}

/*
 * query_dirty for the save file: pages [@first, @first + @count), into
 * @map if not NULL, clearing them if @clear.  The whole VRAM without a
 * map or clear is the cheap count PRECOPY_INFO and poll() ask for.
 */
static long gpup_save_query(struct gpup_save_file *sf, u64 first, u64 count,
			    unsigned long *map, bool clear)
{
	struct gpup_vfio_dev *gdev = sf->mf.gdev;
	long ret;

	ret = gpup_vfio_op_enter(gdev, sf->mf.gen);
	if (ret)
		return ret;
	ret = GPUP_OPS(gdev)->query_dirty(GPUP_PF(gdev), gdev->vf_id, first,
					  count, map, clear);
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, "query_dirty", clear, ret);
	if (ret > (long)count)
		return -EIO;
	return gpup_vfio_op_err(ret);
}

static void gpup_save_free(struct gpup_save_file *sf);

/*
 * The CRC of the VRAM record of @npages pages from page @first, whose
 * bytes are at @data: its run header and bytes.
 */
static u32 gpup_run_crc(u64 first, u32 npages, u32 ps, const u8 *data)
{
	struct gpup_vram_run run;
	u32 crc;

	gpup_vfio_vram_run_build(&run, first, npages);
	crc = gpup_vfio_crc(GPUP_CRC_INIT, &run, GPUP_VRAM_RUN_SIZE);
	return gpup_vfio_crc(crc, data, (size_t)npages * ps);
}

/* Bit i: page i of the @len bytes at @data holds zeros only. */
static u64 gpup_zero_pages(const u8 *data, size_t len, u32 ps)
{
	u64 mask = 0;
	unsigned int i;

	/* A run is one window at most: 64 pages at 4 KiB, 1 at 256 KiB on. */
	BUILD_BUG_ON(GPUP_RUN_BYTES / PAGE_SIZE > 64);
	for (i = 0; (size_t)i * ps < len; i++)
		if (!memchr_inv(data + (size_t)i * ps, 0, ps))
			mask |= BIT_ULL(i);
	return mask;
}

/* Drop a transfer's reference on @sf: its memory may go with it. */
static void gpup_save_xfer_put(struct gpup_save_file *sf)
{
	if (gpup_vfio_file_put(&sf->mf))
		gpup_save_free(sf);
}

/*
 * A transfer read its runs: checksum a part of them here, on other CPUs
 * than the reader's while it copies out earlier slots, unless the reader
 * comes for the slot first and cancels this (gpup_save_take()).  Module
 * unload waits for this work (gpup_vfio_wq).
 */
static void gpup_save_crc_work(struct work_struct *work)
{
	struct gpup_save_crc_part *p;
	struct gpup_save_slot *slot;
	const struct gpup_vram_seg *seg;
	size_t off = 0;
	unsigned int i;
	u32 ps;

	p = container_of(work, struct gpup_save_crc_part, work);
	slot = p->slot;
	ps = slot->sf->page_size;
	for (i = 0; i < slot->nruns; i++) {
		seg = &slot->seg[i];
		if (i % GPUP_SAVE_CRC_PARTS != p->first) {
			off += seg->len;
			continue;
		}
		slot->zmask[i] = 0;
		if (slot->sf->zero_detect)
			slot->zmask[i] = gpup_zero_pages(slot->buf + off,
							 seg->len, ps);
		/* A run with pages of zeros goes out in pieces: read()'s. */
		if (!slot->zmask[i])
			slot->crc[i] = gpup_run_crc(div_u64(seg->offset, ps),
						    div_u64(seg->len, ps), ps,
						    slot->buf + off);
		off += seg->len;
		cond_resched();
	}
	/* Pairs with gpup_save_piece(): its CRCs are there before the flag. */
	smp_store_release(&p->ok, true);
	gpup_save_xfer_put(slot->sf);
}

static void gpup_save_xfer_done(struct gpup_vram_xfer *xfer, int status)
{
	struct gpup_save_slot *slot = xfer->priv;
	struct gpup_save_file *sf = slot->sf;
	int st = status > 0 ? -EIO : gpup_vfio_op_err(status);
	unsigned int i;

	slot->status = st;
	slot->t_done = ktime_get_ns();
	if (st || !sf->crc_parts) {
		complete(&slot->done);
		gpup_save_xfer_put(sf);
		return;
	}
	/*
	 * The first work takes over the transfer's reference, the others
	 * take one each while it is held.
	 */
	for (i = 0; i < min(slot->nruns, sf->crc_parts); i++) {
		if (i)
			refcount_inc(&sf->mf.refs);
		slot->crc_part[i].queued = true;
		queue_work(gpup_vfio_wq, &slot->crc_part[i].work);
	}
	complete(&slot->done);
}

/* Bytes of the records of @slot's runs from @from on. */
static u64 gpup_slot_bytes(const struct gpup_save_slot *slot,
			   unsigned int from)
{
	u64 bytes = 0;

	for (; from < slot->nruns; from++)
		bytes += GPUP_VRAM_REC_EXTRA + slot->seg[from].len;
	return bytes;
}

/* Where run @slot->next's bytes end in @slot->buf. */
static size_t gpup_slot_run_end(const struct gpup_save_slot *slot)
{
	return slot->next_off - (size_t)slot->next_page * slot->sf->page_size +
	       slot->seg[slot->next].len;
}

/*
 * Bytes of @sf->out_slot's records still to go out after the piece, at
 * most: a run that goes out in several records sends a page of zeros
 * less for each record more.
 */
static u64 gpup_save_out_left(const struct gpup_save_file *sf)
{
	const struct gpup_save_slot *slot = sf->out_slot;
	u64 left;

	if (!slot)
		return 0;
	left = gpup_slot_bytes(slot, slot->next) -
	       (u64)slot->next_page * sf->page_size;
	/*
	 * While the headers of the run's last record go out, its bytes are
	 * all that is left of the run.
	 */
	if (slot->hdr_out && slot->next_off + slot->data_len ==
	    gpup_slot_run_end(slot))
		left -= GPUP_VRAM_REC_EXTRA;
	return left;
}

/*
 * Read @slot's runs: queue one vram_xfer for all of them, or copy them
 * now, one vram_read each.  Returns 0 with the slot queued, or -errno.
 */
static int gpup_save_submit(struct gpup_save_file *sf,
			    struct gpup_save_slot *slot)
{
	struct gpup_vfio_dev *gdev = sf->mf.gdev;
	const struct gpup_vram_seg *seg;
	struct iov_iter it;
	struct kvec kv;
	unsigned int i;
	size_t off = 0;
	ssize_t got;
	int ret;

	slot->initial = sf->phase == GPUP_SAVE_FULL;
	slot->next = 0;
	slot->next_page = 0;
	slot->next_off = 0;
	slot->hdr_out = false;
	slot->status = 0;
	for (i = 0; i < GPUP_SAVE_CRC_PARTS; i++) {
		slot->crc_part[i].ok = false;
		slot->crc_part[i].queued = false;
	}
	slot->t_sub = ktime_get_ns();
	if (!sf->pass_t0)
		sf->pass_t0 = slot->t_sub;
	ret = gpup_vfio_op_enter(gdev, sf->mf.gen);
	if (ret)
		return ret;
	if (sf->bulk) {
		slot->xfer.nsegs = slot->nruns;
		slot->xfer.npages = ((size_t)slot->npages *
				     gdev->caps.page_size) >> PAGE_SHIFT;
		reinit_completion(&slot->done);
		ret = gpup_vfio_file_xfer(&sf->mf, &slot->xfer);
		/* Traced with its bytes when handed out, here if refused. */
		if (ret && ret != -EINPROGRESS)
			trace_gpup_vfio_op(gdev->vf_id, "vram_xfer",
					   slot->seg[0].offset, ret);
		if (ret == -EINPROGRESS) {
			slot->state = GPUP_SLOT_INFLIGHT;
			ret = 0;
		} else if (!ret) {
			slot->state = GPUP_SLOT_READY;
			slot->t_done = ktime_get_ns();
		}
		ret = gpup_vfio_op_err(ret);
	} else {
		for (i = 0; i < slot->nruns && !ret; i++) {
			seg = &slot->seg[i];
			kv.iov_base = slot->buf + off;
			kv.iov_len = seg->len;
			iov_iter_kvec(&it, ITER_DEST, &kv, 1, seg->len);
			got = GPUP_OPS(gdev)->vram_read(GPUP_PF(gdev),
							gdev->vf_id,
							seg->offset, seg->len,
							&it);
			trace_gpup_vfio_op(gdev->vf_id, "vram_read",
					   seg->offset, got);
			ret = got < 0 ? gpup_vfio_op_err(got) :
			      got != seg->len ? -EIO : 0;
			off += seg->len;
		}
		if (!ret)
			slot->state = GPUP_SLOT_READY;
		slot->t_done = ktime_get_ns();
	}
	gpup_vfio_op_exit(gdev);
	if (!ret) {
		sf->queued++;
		sf->newest_bytes = gpup_slot_bytes(slot, 0);
		sf->queued_bytes += sf->newest_bytes;
	}
	return ret;
}

/*
 * Wait for @slot's transfer: -EINTR (not sticky) for a fatal signal,
 * -ETIMEDOUT for a transfer that did not complete in time.
 */
static int gpup_save_slot_wait(struct gpup_save_file *sf,
			       struct gpup_save_slot *slot, bool killable)
{
	int ret;

	if (slot->state != GPUP_SLOT_INFLIGHT)
		return 0;
	ret = gpup_vfio_file_wait(&sf->mf, &slot->done, killable);
	if (ret)
		return ret;
	slot->state = GPUP_SLOT_READY;
	return 0;
}

/*
 * Run @slot->next begins: its zero pages, as its part's work found them
 * (@p, @ok) or now, with zero detection.  @data: the run's bytes.
 */
static u64 gpup_slot_zeros(const struct gpup_save_slot *slot,
			   const struct gpup_save_crc_part *p, bool ok,
			   const u8 *data)
{
	if (!slot->sf->zero_detect)
		return 0;
	if (ok)
		return slot->zmask[slot->next];
	return gpup_zero_pages(data, slot->seg[slot->next].len,
			       slot->sf->page_size);
}

/* Move past @len bytes of run @slot->next; past the run at its end. */
static void gpup_slot_advance(struct gpup_save_slot *slot, size_t len)
{
	slot->next_off += len;
	slot->next_page += len / slot->sf->page_size;
	if (slot->next_off == gpup_slot_run_end(slot)) {
		slot->next++;
		slot->next_page = 0;
	}
}

/*
 * The next piece of @sf->out_slot.  Run @next goes out as one record
 * per stretch of its pages that hold zeros (with zero detection) or not:
 * a ZERO record alone, or a VRAM record's headers, checksummed over its
 * bytes, then those bytes.  Returns 0 with a piece, 1 once every run
 * went out, or -errno.
 */
static int gpup_save_piece(struct gpup_save_file *sf)
{
	struct gpup_save_slot *slot = sf->out_slot;
	u32 ps = sf->page_size, npages, end, n;
	const struct gpup_save_crc_part *p;
	const struct gpup_vram_seg *seg;
	const u8 *data;
	bool ok, zero;
	u64 first;
	u32 crc;
	int ret;

	if (slot->next == slot->nruns)
		return 1;
	seg = &slot->seg[slot->next];
	data = slot->buf + slot->next_off;
	sf->out_initial = slot->initial;
	if (slot->hdr_out) {
		sf->out = data;
		sf->out_len = slot->data_len;
		slot->hdr_out = false;
		gpup_slot_advance(slot, slot->data_len);
		return 0;
	}
	p = &slot->crc_part[slot->next % GPUP_SAVE_CRC_PARTS];
	/* Pairs with gpup_save_crc_work(): the flag, then @crc and @zmask. */
	ok = smp_load_acquire(&p->ok);
	if (!slot->next_page)
		slot->zeros = gpup_slot_zeros(slot, p, ok, data);
	npages = div_u64(seg->len, ps);
	zero = slot->zeros & BIT_ULL(slot->next_page);
	for (end = slot->next_page + 1; end < npages; end++)
		if (!!(slot->zeros & BIT_ULL(end)) != zero)
			break;
	n = end - slot->next_page;
	first = div_u64(seg->offset, ps) + slot->next_page;
	/*
	 * The pass counted each run as one VRAM record when it took the
	 * slot: a record more costs its headers, a ZERO one spares bytes.
	 */
	if (slot->next_page)
		sf->pass.bytes += GPUP_VRAM_REC_EXTRA;
	if (zero) {
		ret = gpup_vfio_zero_rec_build(&sf->w,
					       (struct gpup_rec_hdr *)slot->rec,
					       (struct gpup_vram_run *)(slot->rec +
						GPUP_REC_HDR_SIZE), first, n);
		if (ret)
			return ret;
		sf->out = slot->rec;
		sf->out_len = GPUP_VRAM_REC_EXTRA;
		sf->pass.bytes -= (u64)n * ps;
		gpup_slot_advance(slot, (size_t)n * ps);
		return 0;
	}
	gpup_vfio_vram_run_build((struct gpup_vram_run *)(slot->rec +
						     GPUP_REC_HDR_SIZE),
			    first, n);
	if (ok && n == npages)
		crc = slot->crc[slot->next];
	else
		crc = gpup_run_crc(first, n, ps, data);
	ret = gpup_vfio_rec_hdr_build(&sf->w, (struct gpup_rec_hdr *)slot->rec,
				      GPUP_REC_VRAM, 0,
				      GPUP_VRAM_RUN_SIZE + (size_t)n * ps,
				      gpup_vfio_crc_final(crc));
	if (ret)
		return ret;
	sf->out = slot->rec;
	sf->out_len = GPUP_VRAM_REC_EXTRA;
	slot->hdr_out = true;
	slot->data_len = (size_t)n * ps;
	return 0;
}

/* Take the oldest queued slot off the ring; its first piece is current. */
static int gpup_save_take(struct gpup_save_file *sf)
{
	struct gpup_save_slot *slot = &sf->slot[sf->slot_head];
	struct gpup_vfio_pass *p = &sf->pass;
	bool stalled = slot->state == GPUP_SLOT_INFLIGHT;
	u64 t0 = stalled ? ktime_get_ns() : 0, us;
	unsigned int i;
	int ret;

	ret = gpup_save_slot_wait(sf, slot, true);
	if (ret)
		return ret;
	if (stalled) {
		p->stalls++;
		p->stall_us += div_u64(ktime_get_ns() - t0, NSEC_PER_USEC);
	}
	/*
	 * The checksums not begun yet are this thread's, which would only
	 * wait for them: no hop to another thread inside a blackout.
	 */
	for (i = 0; i < GPUP_SAVE_CRC_PARTS; i++) {
		if (!slot->crc_part[i].queued)
			continue;
		slot->crc_part[i].queued = false;
		if (cancel_work_sync(&slot->crc_part[i].work))
			gpup_save_xfer_put(sf);
	}
	us = div_u64(slot->t_done - slot->t_sub, NSEC_PER_USEC);
	p->reads++;
	p->read_us += us;
	p->read_max_us = max(p->read_max_us, us);
	if (!slot->status)
		p->bytes += gpup_slot_bytes(slot, 0);
	sf->slot_head = (sf->slot_head + 1) % sf->depth;
	sf->queued--;
	sf->queued_bytes -= gpup_slot_bytes(slot, 0);
	sf->out_slot = slot;
	if (sf->bulk)
		trace_gpup_vfio_op(sf->mf.gdev->vf_id, "vram_xfer",
				   slot->seg[0].offset, slot->status ?:
				   (s64)slot->npages *
				   sf->mf.gdev->caps.page_size);
	if (slot->status)
		return slot->status;
	return gpup_save_piece(sf);
}

/*
 * A dirty pass took pages [@first, @first + @n): those first written
 * after the snapshot join it, so that PRECOPY_INFO counts them as
 * initial data no longer (see gpup_save_ioctl()).
 */
static void gpup_save_fresh_taken(struct gpup_save_file *sf, u64 first,
				  u32 n)
{
	u64 end = first + n, pg;

	if (!sf->written)
		return;
	for (pg = find_next_zero_bit(sf->written, end, first); pg < end;
	     pg = find_next_zero_bit(sf->written, end, pg + 1)) {
		__set_bit(pg, sf->written);
		sf->nwritten++;
	}
}

/*
 * A dirty pass: move the cursor (at a window's start) to the window of
 * the next dirty page, or to the end of VRAM.  The bits are read, not
 * cleared: the window's own query clears them just before its pages are
 * read.  Returns 0 or -errno.
 */
static long gpup_save_skip_clean(struct gpup_save_file *sf)
{
	unsigned long bit;
	long ret;
	u64 n;

	while (sf->cursor < sf->npages) {
		n = min_t(u64, GPUP_SKIP_PAGES, sf->npages - sf->cursor);
		ret = gpup_save_query(sf, sf->cursor, n, sf->skip, false);
		if (ret < 0)
			return ret;
		bit = ret ? find_first_bit(sf->skip, n) : n;
		if (bit < n) {
			sf->cursor += bit - bit % sf->run_pages;
			return 0;
		}
		sf->cursor += n;
	}
	return 0;
}

/*
 * The next run of the current pass, if it has at most @room pages: the
 * full pass's next window (or written run of it), its dirty bits
 * cleared; or a run of the dirty
 * pages of the current window, querying (and clearing) the next window's
 * bits when it is used up.  Returns 1 with a run, 2 if the next run has
 * more than @room pages (it stays next), 0 at the end of the pass, or
 * -errno.
 */
static int gpup_save_next_run(struct gpup_save_file *sf, u32 room,
			      u64 *first, u32 *n)
{
	unsigned long start, end;
	long ret;
	u64 pos;
	u32 w;

	if (sf->phase == GPUP_SAVE_FULL) {
		if (!sf->written) {
			if (sf->cursor >= sf->npages)
				return 0;
			pos = sf->cursor;
			w = min_t(u64, sf->run_pages, sf->npages - sf->cursor);
		} else if (!gpup_written_run(sf->written, sf->npages,
					     sf->run_pages, sf->cursor, &pos,
					     &w)) {
			sf->cursor = sf->npages;
			return 0;
		}
		if (w > room)
			return 2;
		if (sf->tracking) {
			ret = gpup_save_query(sf, pos, w, NULL, true);
			if (ret < 0)
				return ret;
		}
		*first = pos;
		*n = w;
		sf->cursor = pos + w;
		if (sf->written)
			sf->full_left -= gpup_save_run_bytes(sf, w);
		return 1;
	}
	for (;;) {
		if (sf->win_pending) {
			start = find_next_bit(sf->win, sf->win_len,
					      sf->win_next);
			end = find_next_zero_bit(sf->win, sf->win_len, start);
			if (end - start > room)
				return 2;
			sf->win_next = end;
			sf->win_pending -= end - start;
			*first = sf->win_first + start;
			*n = end - start;
			gpup_save_fresh_taken(sf, *first, *n);
			return 1;
		}
		ret = gpup_save_skip_clean(sf);
		if (ret < 0)
			return ret;
		if (sf->cursor >= sf->npages)
			return 0;
		w = min_t(u64, sf->run_pages, sf->npages - sf->cursor);
		ret = gpup_save_query(sf, sf->cursor, w, sf->win, true);
		if (ret < 0)
			return ret;
		sf->win_first = sf->cursor;
		sf->win_len = w;
		sf->win_next = 0;
		sf->win_pending = ret;
		sf->cursor += w;
	}
}

/*
 * Fill @slot with runs of the current pass: windows of the full pass, or
 * dirty runs, until GPUP_SLOT_RUNS of them or @sf->slot_pages pages.
 * Returns 1 with runs in it, 0 if the pass has none left, or -errno.
 */
static int gpup_save_fill(struct gpup_save_file *sf,
			  struct gpup_save_slot *slot)
{
	u32 ps = sf->mf.gdev->caps.page_size, n;
	struct gpup_vram_seg *seg;
	u64 first;
	int ret;

	slot->nruns = 0;
	slot->npages = 0;
	do {
		ret = gpup_save_next_run(sf, sf->slot_pages - slot->npages,
					 &first, &n);
		if (ret != 1)
			break;
		seg = &slot->seg[slot->nruns++];
		seg->offset = first * ps;
		seg->len = (u64)n * ps;
		slot->npages += n;
	} while (slot->nruns < GPUP_SLOT_RUNS &&
		 slot->npages < sf->slot_pages);
	if (ret < 0)
		return ret;
	return slot->nruns ? 1 : 0;
}

/*
 * Whether to submit one more slot.  Once the VF is stopped (STOP_COPY,
 * or a save without pre-copy) nothing it holds can go stale: every free
 * slot.  While it runs, a page read ahead and written again before it
 * goes out is sent twice, so the slots that cover what the read() under
 * way asks for, and one more: the transfer of the next read()'s first
 * slot runs while userspace sends this one's bytes, and that read()
 * does not wait for it.  A slot of a dirty pass may hold less than its
 * 1 MiB (64 runs of scattered pages): the slots are counted in bytes.
 */
static bool gpup_save_more(const struct gpup_save_file *sf)
{
	if (sf->queued >= sf->depth)
		return false;
	if (sf->stop_copy || !sf->tracking || !sf->queued)
		return true;
	return sf->queued_bytes - sf->newest_bytes < sf->want;
}

/*
 * The next piece of the current pass: the next of the slot going out;
 * else, with free slots filled and submitted (gpup_save_more()), the
 * first of the oldest.  Returns 0 with a piece, 1 when the pass has
 * nothing left, or -errno.
 */
static int gpup_save_vram_step(struct gpup_save_file *sf)
{
	struct gpup_save_slot *slot;
	int ret;

	if (sf->out_slot) {
		ret = gpup_save_piece(sf);
		if (ret != 1)
			return ret;
		/* Its last record was read out: the slot is free again. */
		sf->out_slot->state = GPUP_SLOT_FREE;
		sf->out_slot = NULL;
	}
	while (gpup_save_more(sf)) {
		slot = &sf->slot[(sf->slot_head + sf->queued) % sf->depth];
		if (WARN_ON_ONCE(slot->state != GPUP_SLOT_FREE))
			return -EIO;
		ret = gpup_save_fill(sf, slot);
		if (ret < 0)
			return ret;
		if (!ret)
			break;
		ret = gpup_save_submit(sf, slot);
		if (ret)
			return ret;
	}
	return sf->queued ? gpup_save_take(sf) : 1;
}

/*
 * The current pass ended with @dirty pages dirty: its figures go to the
 * device's log, if it read anything.
 */
static void gpup_save_pass_log(struct gpup_save_file *sf, u64 dirty)
{
	struct gpup_vfio_dev *gdev = sf->mf.gdev;
	struct gpup_vfio_pass *p = &sf->pass;

	if (!p->reads)
		return;
	p->dirty_left = dirty;
	p->stop_copy = sf->stop_copy;
	p->us = div_u64(ktime_get_ns() - sf->pass_t0, NSEC_PER_USEC);
	spin_lock(&gdev->pass_lock);
	gdev->passes[gdev->npasses++ % GPUP_PASS_LOG] = *p;
	spin_unlock(&gdev->pass_lock);
	memset(p, 0, sizeof(*p));
	sf->pass_t0 = 0;
}

/*
 * The end of a dirty pass: a new pass if pages are dirty (1), -ENOMSG at
 * pre-copy's temporary end, 2 when STOP_COPY has sent every page, or
 * -errno.
 */
static int gpup_save_pass_end(struct gpup_save_file *sf)
{
	long ret;

	ret = gpup_save_query(sf, 0, sf->npages, NULL, false);
	if (ret < 0)
		return ret;
	gpup_save_pass_log(sf, ret);
	if (ret) {
		sf->cursor = 0;
		return 1;
	}
	return sf->stop_copy ? 2 : -ENOMSG;
}

/*
 * Make the next piece of the save stream current in @sf->out.  With
 * @at_pass_end, a pre-copy pass that ended with pages dirty ends the
 * call (2) instead of beginning the next pass.  Returns 0, 1 at the end
 * of the stream, 2 at such a pass's end, -ENOMSG when PRE_COPY has
 * nothing more for now, or -errno.
 */
static int gpup_save_next(struct gpup_save_file *sf, bool at_pass_end)
{
	int ret;

	sf->out_pos = 0;
	sf->out_len = 0;
	sf->out_initial = false;
	for (;;) {
		switch (sf->phase) {
		case GPUP_SAVE_HEAD:
			sf->out = sf->head;
			sf->out_len = sf->head_len;
			sf->out_initial = true;
			sf->phase = GPUP_SAVE_ZEROS;
			return 0;
		case GPUP_SAVE_ZEROS:
			ret = gpup_save_zeros(sf);
			if (ret)
				return ret < 0 ? ret : 0;
			sf->phase = GPUP_SAVE_FULL;
			break;
		case GPUP_SAVE_FULL:
			ret = gpup_save_vram_step(sf);
			if (ret != 1)
				return ret;
			ret = sf->tracking ? gpup_save_query(sf, 0, sf->npages,
							     NULL, false) : 0;
			if (ret < 0)
				return ret;
			gpup_save_pass_log(sf, ret);
			sf->phase = sf->tracking ? GPUP_SAVE_DIRTY :
						   GPUP_SAVE_MUTABLE;
			sf->cursor = 0;
			if (ret && at_pass_end && !sf->stop_copy)
				return 2;
			break;
		case GPUP_SAVE_DIRTY:
			ret = gpup_save_vram_step(sf);
			if (ret != 1)
				return ret;
			ret = gpup_save_pass_end(sf);
			if (ret == 1 && at_pass_end && !sf->stop_copy)
				return 2;
			if (ret == 1)
				break;
			if (ret == 2) {
				sf->phase = GPUP_SAVE_MUTABLE;
				break;
			}
			return ret;
		case GPUP_SAVE_MUTABLE:
			if (!sf->stop_copy)
				return -ENOMSG;
			ret = gpup_vfio_rec_hdr_build(&sf->w,
						      (struct gpup_rec_hdr *)sf->tail,
						 GPUP_REC_MUTABLE, 0,
						 sf->mut_len, sf->mut_crc);
			if (ret)
				return ret;
			/* Header and payload go out as two pieces. */
			sf->out = sf->tail;
			sf->out_len = GPUP_REC_HDR_SIZE;
			sf->phase = GPUP_SAVE_END;
			return 0;
		case GPUP_SAVE_END:
			if (sf->out != sf->mut && sf->mut_len) {
				sf->out = sf->mut;
				sf->out_len = sf->mut_len;
				return 0;
			}
			ret = gpup_vfio_end_build(&sf->w,
						  (struct gpup_rec_hdr *)sf->tail,
					     (struct gpup_end *)(sf->tail +
						GPUP_REC_HDR_SIZE));
			if (ret)
				return ret;
			sf->out = sf->tail;
			sf->out_len = sizeof(sf->tail);
			sf->phase = GPUP_SAVE_DONE;
			return 0;
		case GPUP_SAVE_DONE:
			return 1;
		}
	}
}

/*
 * Under @sf->mf.lock: make a piece current if the last one was read;
 * @at_pass_end as for gpup_save_next().  Returns 0 with bytes in the
 * piece, 1 at the end of the stream, 2 at the end of a pre-copy pass, or
 * an -errno (-ENOMSG in pre-copy when nothing is there for now).
 */
static int gpup_save_refill_locked(struct gpup_save_file *sf,
				   bool at_pass_end)
{
	struct gpup_mig_file *mf = &sf->mf;
	int ret;

	if (mf->error)
		return mf->error;
	ret = gpup_vfio_file_alive(mf);
	if (ret)
		return ret;
	if (sf->out_pos < sf->out_len)
		return 0;
	ret = gpup_save_next(sf, at_pass_end);
	if (ret == 1 && !sf->eof_seen) {
		/* The end: count the stream once. */
		atomic64_inc(&mf->gdev->stats.migrations_out);
		sf->eof_seen = true;
	}
	if (ret < 0 && ret != -ENOMSG && ret != -EINTR)
		mf->error = ret;
	return ret;
}

static ssize_t gpup_save_read(struct file *filp, char __user *buf,
			      size_t len, loff_t *pos)
{
	struct gpup_save_file *sf = filp->private_data;
	struct gpup_mig_file *mf = &sf->mf;
	const u8 *src;
	size_t done = 0, n, left;
	int ret = 0;

	if (pos)
		return -ESPIPE;

	mutex_lock(&mf->io_lock);
	while (done < len) {
		mutex_lock(&mf->lock);
		sf->want = len - done;
		/*
		 * While the VF runs, a read() that holds data ends with its
		 * pass: a pass begun now would chase the pages the VF
		 * writes meanwhile, a transfer's latency at a time, with
		 * the reader (QEMU's migration thread) blocked in it.
		 */
		ret = gpup_save_refill_locked(sf, done > 0);
		if (ret) {
			if (ret == 2)
				ret = 0;
			mutex_unlock(&mf->lock);
			break;
		}
		src = sf->out + sf->out_pos;
		n = min_t(size_t, len - done, sf->out_len - sf->out_pos);
		mutex_unlock(&mf->lock);

		/* No lock but io_lock: only read() refills the piece. */
		left = copy_to_user(buf + done, src, n);

		mutex_lock(&mf->lock);
		sf->out_pos += n - left;
		mutex_unlock(&mf->lock);
		done += n - left;
		if (left) {
			ret = -EFAULT;
			break;
		}
	}
	mutex_unlock(&mf->io_lock);
	if (done) {
		atomic64_add(done, &mf->gdev->stats.bytes_saved);
		return done;
	}
	if (ret == 1)
		return 0;
	atomic_set(&mf->gdev->stats.last_error, ret);
	return ret;
}

/*
 * Bytes the save stream still holds: @initial of the initial data (header,
 * IMMUTABLE, full pass), @dirty of everything else up to now; with
 * @precopy false @dirty also counts the MUTABLE and END records, i.e. what
 * STOP_COPY would produce from here.  The pages the provider counts as
 * dirty are reckoned as one record each (an upper bound: contiguous pages
 * share a record), and during the full pass they may include pages the
 * full pass will send anyway.  Caller holds @sf->mf.lock.
 */
static int gpup_save_pending_locked(struct gpup_save_file *sf, u64 *initial,
				    u64 *dirty, bool precopy)
{
	struct gpup_vfio_dev *gdev = sf->mf.gdev;
	u64 in = 0, dt = 0, rest = sf->out_len - sf->out_pos, bytes;
	size_t imm, mut = sf->mut_len;
	struct gpup_save_slot *slot;
	unsigned int i;
	long ret;

	if (sf->out_initial)
		in += rest + gpup_save_out_left(sf);
	else
		dt += rest + gpup_save_out_left(sf);
	if (sf->phase == GPUP_SAVE_HEAD)
		in += sf->head_len;
	if (sf->phase <= GPUP_SAVE_ZEROS)
		in += sf->zero_left;
	if (sf->phase <= GPUP_SAVE_FULL)
		in += sf->written ? sf->full_left :
		      gpup_save_run_bytes(sf, sf->npages - sf->cursor);
	for (i = 0; i < sf->queued; i++) {
		slot = &sf->slot[(sf->slot_head + i) % sf->depth];
		bytes = gpup_slot_bytes(slot, 0);
		if (slot->initial)
			in += bytes;
		else
			dt += bytes;
	}
	if (sf->phase <= GPUP_SAVE_DIRTY && sf->tracking) {
		dt += gpup_save_win_bytes(sf);
		ret = gpup_save_query(sf, 0, sf->npages, NULL, false);
		if (ret < 0)
			return ret;
		dt += (u64)ret * (GPUP_VRAM_REC_EXTRA + gdev->caps.page_size);
	}
	if (!precopy) {
		if (!sf->stop_copy) {
			ret = gpup_vfio_save_size(gdev, sf->mf.gen, &imm, &mut);
			if (ret)
				return ret;
		}
		if (sf->phase <= GPUP_SAVE_MUTABLE)
			dt += GPUP_REC_HDR_SIZE + mut;
		else if (sf->phase == GPUP_SAVE_END && sf->out != sf->mut)
			dt += mut;
		if (sf->phase <= GPUP_SAVE_END)
			dt += GPUP_END_REC_SIZE;
	}
	*initial = in;
	*dirty = dt;
	return 0;
}

/**
 * gpup_vfio_save_pending() - bytes a save file still holds
 * @sf: the save file
 * @initial: initial bytes left (header, IMMUTABLE, ZERO records, the
 *	full VRAM pass)
 * @dirty: other bytes: dirty pages so far, and with @precopy false the
 *	MUTABLE and END records as well
 * @precopy: count as VFIO_MIG_GET_PRECOPY_INFO does
 *
 * Context: the caller holds the device's state_mutex.  O(1) in VRAM
 * size, given a provider whose whole-VRAM dirty count is.
 * Return: 0 or -errno.
 */
int gpup_vfio_save_pending(struct gpup_save_file *sf, u64 *initial,
			   u64 *dirty, bool precopy)
{
	int ret;

	mutex_lock(&sf->mf.lock);
	ret = sf->mf.error ? sf->mf.error :
	      gpup_save_pending_locked(sf, initial, dirty, precopy);
	mutex_unlock(&sf->mf.lock);
	return ret;
}

/*
 * PRECOPY_INFO v2 (userspace opted in, 7.1 and later): the pages first
 * written after the snapshot, which the ZERO records promised as zeros,
 * are new initial data until a dirty pass takes them, and no longer
 * dirty bytes.  When their count grew since the last report, the
 * answer carries VFIO_PRECOPY_INFO_REINIT.
 *
 * Only while the initial data of the snapshot is still being read
 * (@info->initial_bytes, which does not count those pages, is not 0) and
 * the VF runs.  Until then userspace cannot have seen the initial data
 * end, so it has not decided to switch over: QEMU waits for its
 * switchover ACK, which the destination gives once the initial data
 * arrived.  Later, a REINIT could reach a switchover under way, which
 * QEMU (11.1 and later) then fails; it asks PRECOPY_INFO a last time
 * when it stops the VM.  @quiesced (PRE_COPY_P2P) is such a stop too.
 * Then the pages first written since the last report are dirty bytes,
 * which a dirty pass or STOP_COPY sends; those it reported stay initial
 * bytes.  Caller holds @sf->mf.lock.
 */
static int gpup_save_reinit_locked(struct gpup_save_file *sf,
				   struct vfio_precopy_info *info,
				   bool quiesced)
{
	struct gpup_vfio_dev *gdev = sf->mf.gdev;
	u64 fresh, bytes;
	long now;

	if (!sf->written)
		return 0;
	now = gpup_vfio_query_written(gdev, sf->mf.gen, 0, sf->npages, NULL);
	if (now == -EOPNOTSUPP)
		return 0;
	if (now < 0)
		return now;
	if (quiesced || !info->initial_bytes)
		now = min_t(u64, now, sf->reinit_seen);
	if (now <= sf->nwritten)
		return 0;
	fresh = now - sf->nwritten;
	bytes = fresh * (GPUP_VRAM_REC_EXTRA + gdev->caps.page_size);
	info->initial_bytes += bytes;
	info->dirty_bytes -= min(info->dirty_bytes, bytes);
	if (now > sf->reinit_seen) {
		info->flags |= VFIO_PRECOPY_INFO_REINIT;
		sf->reinit_seen = now;
	}
	return 0;
}

/*
 * VFIO_MIG_GET_PRECOPY_INFO, valid in PRE_COPY and PRE_COPY_P2P only: the
 * file tells from its own state, without the state machine.  A pre-copy
 * file (@sf->tracking) is the device's save file in those two states
 * exactly: the arc to STOP_COPY sets @sf->stop_copy, and every arc away
 * disables the file (its generation is no longer the device's).
 */
static long gpup_save_ioctl(struct file *filp, unsigned int cmd,
			    unsigned long arg)
{
	struct gpup_save_file *sf = filp->private_data;
	struct gpup_vfio_dev *gdev = sf->mf.gdev;
	unsigned long minsz = offsetofend(struct vfio_precopy_info,
					  dirty_bytes);
	struct vfio_precopy_info info;
	u64 initial = 0, dirty = 0;
	bool cur, quiesced;
	int ret;

	ret = gpup_check_precopy_ioctl(&gdev->core.vdev, cmd, arg, &info);
	if (ret)
		return ret;

	mutex_lock(&sf->mf.lock);
	mutex_lock(&gdev->op_lock);
	cur = sf->mf.gen == gdev->gen;
	quiesced = gdev->paused;
	mutex_unlock(&gdev->op_lock);
	if (!cur || !sf->tracking || sf->stop_copy)
		ret = -EINVAL;
	else
		ret = sf->mf.error ? sf->mf.error :
		      gpup_save_pending_locked(sf, &initial, &dirty, true);
	info.initial_bytes = initial;
	info.dirty_bytes = dirty;
	if (!ret && gpup_precopy_info_v2(&gdev->core.vdev))
		ret = gpup_save_reinit_locked(sf, &info, quiesced);
	mutex_unlock(&sf->mf.lock);
	if (ret)
		return ret;
	return copy_to_user((void __user *)arg, &info, minsz) ? -EFAULT : 0;
}

/*
 * Readable when read() would not return -ENOMSG: bytes are staged or can
 * be made, or the stream is at its (permanent) end; an error once the
 * file is disabled or broken.  The device's waitq is woken on every
 * state change, reset and close, and when the provider reports new dirty
 * pages.
 */
static __poll_t gpup_save_poll(struct file *filp, poll_table *wait)
{
	struct gpup_save_file *sf = filp->private_data;
	struct gpup_mig_file *mf = &sf->mf;
	__poll_t mask = EPOLLIN | EPOLLRDNORM;
	long ret;

	poll_wait(filp, &mf->gdev->waitq, wait);
	mutex_lock(&mf->lock);
	if (mf->error || gpup_vfio_file_alive(mf)) {
		mask = EPOLLERR;
	} else if (sf->phase == GPUP_SAVE_DIRTY && !sf->stop_copy &&
		   sf->out_pos == sf->out_len && !sf->win_pending &&
		   !sf->queued && !gpup_save_out_left(sf)) {
		/* Between pieces of a dirty pass: data iff pages are dirty. */
		ret = gpup_save_query(sf, 0, sf->npages, NULL, false);
		if (ret < 0)
			mask = EPOLLERR;
		else if (!ret)
			mask = 0;
	}
	mutex_unlock(&mf->lock);
	return mask;
}

/*
 * Wait until no slot's pages are a transfer's, or one timed out; caller
 * holds mf.lock.  Returns 0 or -ETIMEDOUT.
 */
static int gpup_save_drain_locked(struct gpup_save_file *sf)
{
	unsigned int i;
	int ret = 0;

	lockdep_assert_held(&sf->mf.lock);
	for (i = 0; i < sf->depth; i++)
		ret = gpup_save_slot_wait(sf, &sf->slot[i], false) ?: ret;
	return ret;
}

/**
 * gpup_vfio_save_drain() - wait for a save file's transfers in flight
 * @sf: the save file, being disabled
 *
 * The provider completes every transfer it accepted (before reset_vf
 * returns, before it unregisters); a copy engine that hangs anyway is
 * waited for xfer_timeout_ms at most, once per file.  The results stay
 * in their slots; a disabled file never hands them out.
 *
 * Context: the caller holds the device's state_mutex (or is release).
 * Return: 0, or -ETIMEDOUT with a transfer still in flight.
 */
int gpup_vfio_save_drain(struct gpup_save_file *sf)
{
	int ret;

	mutex_lock(&sf->mf.lock);
	ret = gpup_save_drain_locked(sf);
	if (ret && !sf->mf.error)
		sf->mf.error = ret;
	mutex_unlock(&sf->mf.lock);
	return ret;
}

static void gpup_save_slots_free(struct gpup_save_file *sf)
{
	unsigned int i;

	for (i = 0; i < GPUP_XFER_DEPTH; i++) {
		kvfree(sf->slot[i].pages);
		vfree(sf->slot[i].buf);
	}
}

/*
 * @sf->depth slots of one window each; in bulk, with their pages and
 * transfers set up.
 */
static int gpup_save_slots_alloc(struct gpup_save_file *sf)
{
	size_t len = (size_t)sf->slot_pages * sf->mf.gdev->caps.page_size;
	unsigned int npages = len >> PAGE_SHIFT, i, j;
	struct gpup_save_slot *slot;

	for (i = 0; i < sf->depth; i++) {
		slot = &sf->slot[i];
		slot->sf = sf;
		init_completion(&slot->done);
		for (j = 0; j < GPUP_SAVE_CRC_PARTS; j++) {
			slot->crc_part[j].slot = slot;
			slot->crc_part[j].first = j;
			INIT_WORK(&slot->crc_part[j].work, gpup_save_crc_work);
		}
		slot->buf = __vmalloc(len, GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
		if (!slot->buf)
			return -ENOMEM;
		if (!sf->bulk)
			continue;
		slot->pages = kvcalloc(npages, sizeof(*slot->pages),
				       GFP_KERNEL_ACCOUNT);
		if (!slot->pages)
			return -ENOMEM;
		for (j = 0; j < npages; j++)
			slot->pages[j] = vmalloc_to_page(slot->buf +
							 j * PAGE_SIZE);
		slot->xfer.dir = GPUP_XFER_SAVE;
		slot->xfer.segs = slot->seg;
		slot->xfer.pages = slot->pages;
		slot->xfer.done = gpup_save_xfer_done;
		slot->xfer.priv = slot;
	}
	return 0;
}

static int gpup_save_release(struct inode *inode, struct file *filp)
{
	struct gpup_save_file *sf = filp->private_data;

	/*
	 * Never free pages a transfer still writes: a hung one keeps the
	 * file's memory until its done() drops the last reference.
	 */
	gpup_vfio_save_drain(sf);
	gpup_vfio_file_fini(&sf->mf);
	if (gpup_vfio_file_put(&sf->mf))
		gpup_save_free(sf);
	return 0;
}

/* The file's memory, once no transfer holds it (see gpup_mig_file). */
static void gpup_save_free(struct gpup_save_file *sf)
{
	kvfree(sf->head);
	kvfree(sf->mut);
	gpup_vfio_bitmap_free(sf->win);
	gpup_vfio_bitmap_free(sf->skip);
	gpup_vfio_bitmap_free(sf->written);
	kfree(sf->zbuf);
	gpup_save_slots_free(sf);
	kfree(sf);
}

static const struct file_operations gpup_save_fops = {
	.owner = THIS_MODULE,
	.read = gpup_save_read,
	.poll = gpup_save_poll,
	.unlocked_ioctl = gpup_save_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = gpup_save_release,
};

/*
 * Two-call save of a provider blob into a new buffer of at most @max
 * bytes after @room_before.  A fill call that reports more than the room
 * it was given is refused: nothing past the buffer is ever read.
 */
static int gpup_save_blob(struct gpup_save_file *sf, bool mutable, u32 max,
			  size_t room_before, u8 **out, size_t *len)
{
	struct gpup_vfio_dev *gdev = sf->mf.gdev;
	int (*save)(struct pci_dev *pf, unsigned int vf, void *buf,
		    size_t *size);
	size_t size = 0, room;
	u8 *buf = NULL;
	int ret;

	ret = gpup_vfio_op_enter(gdev, sf->mf.gen);
	if (ret)
		return ret;
	save = mutable ? GPUP_OPS(gdev)->save_mutable :
			 GPUP_OPS(gdev)->save_immutable;
	ret = gpup_vfio_op_err(save(GPUP_PF(gdev), gdev->vf_id, NULL, &size));
	if (ret)
		goto out;
	ret = -EIO;
	if (size > max)
		goto out;
	ret = -ENOMEM;
	room = size;
	buf = kvzalloc(room_before + room, GFP_KERNEL_ACCOUNT);
	if (!buf)
		goto out;
	ret = gpup_vfio_op_err(save(GPUP_PF(gdev), gdev->vf_id,
				    buf + room_before, &size));
	if (!ret && size > room)
		ret = -EIO;
	if (!ret) {
		*out = buf;
		*len = size;
		buf = NULL;
	}
out:
	gpup_vfio_op_exit(gdev);
	trace_gpup_vfio_op(gdev->vf_id, mutable ? "save_mutable" :
			   "save_immutable", size, ret);
	kvfree(buf);
	return ret;
}

/**
 * gpup_vfio_save_new() - start a save stream
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
struct gpup_save_file *gpup_vfio_save_new(struct gpup_vfio_dev *gdev,
					  bool precopy)
{
	const struct gpup_migration_caps *caps = &gdev->caps;
	size_t pre = GPUP_STREAM_HDR_SIZE + GPUP_REC_HDR_SIZE;
	struct gpup_save_file *sf;
	size_t imm_len;
	u32 crc;
	int ret;

	sf = kzalloc(sizeof(*sf), GFP_KERNEL_ACCOUNT);
	if (!sf)
		return ERR_PTR(-ENOMEM);
	sf->npages = div_u64(caps->vram_size, caps->page_size);
	sf->run_pages = max_t(u32, 1, GPUP_RUN_BYTES / caps->page_size);
	sf->tracking = precopy;
	sf->mf.gdev = gdev;
	spin_lock(&gdev->pass_lock);
	gdev->npasses = 0;
	spin_unlock(&gdev->pass_lock);
	sf->bulk = gpup_vfio_use_bulk(gdev);
	sf->depth = sf->bulk ? clamp_t(unsigned int,
				       READ_ONCE(gpup_vfio_xfer_depth), 1,
				       GPUP_XFER_DEPTH) : 1;
	sf->crc_parts = num_online_cpus() > 1 ? GPUP_SAVE_CRC_PARTS : 0;
	BUILD_BUG_ON(GPUP_SLOT_RUNS > 64);
	sf->page_size = caps->page_size;
	sf->slot_pages = sf->run_pages * (sf->bulk ? GPUP_SLOT_WINDOWS : 1);
	ret = gpup_save_slots_alloc(sf);
	if (ret)
		goto err_free;
	sf->win = gpup_vfio_bitmap_alloc(sf->run_pages);
	sf->skip = gpup_vfio_bitmap_alloc(GPUP_SKIP_PAGES);
	ret = -ENOMEM;
	if (!sf->win || !sf->skip)
		goto err_free;
	ret = gpup_vfio_file_init(&sf->mf, gdev, "gpup_vfio_save",
				  &gpup_save_fops, O_RDONLY);
	if (ret)
		goto err_free;

	/* From here the file owns everything: fput() releases it all. */
	ret = gpup_save_blob(sf, false, caps->max_immutable_size, pre,
			     &sf->head, &imm_len);
	if (ret)
		goto err_put;
	gpup_vfio_writer_init(&sf->w);
	gpup_vfio_stream_hdr_build((struct gpup_stream_hdr *)sf->head,
				   caps->provider_id, caps->profile_id,
			      caps->page_size, caps->vram_size);
	ret = gpup_vfio_writer_hdr(&sf->w, (struct gpup_stream_hdr *)sf->head);
	if (ret)
		goto err_put;
	crc = gpup_vfio_crc(GPUP_CRC_INIT, sf->head + pre, imm_len);
	ret = gpup_vfio_rec_hdr_build(&sf->w, (struct gpup_rec_hdr *)(sf->head +
					GPUP_STREAM_HDR_SIZE),
				 GPUP_REC_IMMUTABLE, 0, imm_len,
				 gpup_vfio_crc_final(crc));
	if (ret)
		goto err_put;
	sf->head_len = pre + imm_len;
	ret = gpup_save_snapshot(sf);
	if (ret)
		goto err_put;
	sf->zero_detect = READ_ONCE(gpup_vfio_zero_detect) && !sf->written;

	if (!precopy) {
		ret = gpup_vfio_save_stop_copy(sf);
		if (ret)
			goto err_put;
	}
	return sf;

err_put:
	fput(sf->mf.filp);
	return ERR_PTR(ret);
err_free:
	gpup_vfio_bitmap_free(sf->win);
	gpup_vfio_bitmap_free(sf->skip);
	gpup_save_slots_free(sf);
	kfree(sf);
	return ERR_PTR(ret);
}

/**
 * gpup_vfio_save_stop_copy() - the device entered STOP_COPY
 * @sf: the save file
 *
 * Saves the mutable data (the VF is paused); reads then run to the END
 * record and return 0 after it.
 *
 * Context: the caller holds the device's state_mutex.
 * Return: 0 or -errno; on error the file is as it was.
 */
int gpup_vfio_save_stop_copy(struct gpup_save_file *sf)
{
	u8 *mut;
	size_t len;
	int ret;

	mutex_lock(&sf->mf.lock);
	ret = sf->mf.error;
	if (ret)
		goto out;
	ret = gpup_save_blob(sf, true, sf->mf.gdev->caps.max_mutable_size, 0,
			     &mut, &len);
	if (ret)
		goto out;
	sf->mut = mut;
	sf->mut_len = len;
	sf->mut_crc = gpup_vfio_crc_final(gpup_vfio_crc(GPUP_CRC_INIT, mut, len));
	sf->stop_copy = true;
out:
	mutex_unlock(&sf->mf.lock);
	return ret;
}
