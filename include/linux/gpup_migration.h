/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_migration.h - the provider contract for GPU-P live migration
 *
 * A GPU PF driver that owns SR-IOV virtual functions implements
 * struct gpup_migration_ops and registers it for its PF with
 * gpup_register_pf(), from gpup_core.ko: a module of its own that depends
 * on nothing of VFIO, so a PF driver that uses it pulls in neither vfio,
 * vfio_pci_core nor iommufd.  The gpup_vfio_pci variant driver, bound to
 * one of the VFs, finds the ops through pci_physfn() and calls them with
 * the VF index (pci_iov_vf_id()) to carry out the VFIO migration v2
 * protocol.
 *
 * The ops are the Linux port of the Windows WDDM 3.2 GPU-P live migration
 * DDIs (DxgkDdiSave/Restore{Immutable,Mutable}MigrationData and friends).
 * Where a DDI returns an NTSTATUS, the op returns 0 or a negative errno as
 * listed in the table below.
 *
 * NTSTATUS to errno:
 *
 *  ============================== ================= =======================
 *  NTSTATUS                       errno             meaning
 *  ============================== ================= =======================
 *  STATUS_SUCCESS                 0                 done
 *  STATUS_INVALID_PARAMETER       -EINVAL           bad argument or range
 *  STATUS_BUFFER_TOO_SMALL        -ENOSPC           fill call, buffer short
 *  STATUS_NO_MEMORY               -ENOMEM           allocation failed
 *  STATUS_INSUFFICIENT_RESOURCES  -ENOMEM           allocation failed
 *  STATUS_OBJECT_TYPE_MISMATCH    -EPROTONOSUPPORT  incompatible data/VF
 *  STATUS_INVALID_DEVICE_STATE    -EBUSY            wrong state for the op
 *  STATUS_DEVICE_BUSY             -EBUSY            try again later
 *  STATUS_NOT_SUPPORTED           -EOPNOTSUPP       op or feature absent
 *  STATUS_DATA_ERROR              -EBADMSG          malformed data
 *  STATUS_DEVICE_REMOVED          -ENODEV           provider gone
 *  STATUS_UNSUCCESSFUL            -EIO              any other failure
 *  ============================== ================= =======================
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef _LINUX_GPUP_MIGRATION_H
#define _LINUX_GPUP_MIGRATION_H

#include <linux/bits.h>
#include <linux/err.h>
#include <linux/module.h>
#include <linux/types.h>

struct iov_iter;
struct module;
struct page;
struct pci_dev;
struct gpup_provider;

/**
 * enum gpup_mig_side - which end of a migration a VF is on
 * @GPUP_MIG_SOURCE: the VF's state is being saved and sent
 * @GPUP_MIG_TARGET: the VF receives a saved state
 *
 * Ports DXGK_LIVE_MIGRATION_SOURCE / TARGET of
 * DxgkDdiPrepareLiveMigration.
 */
enum gpup_mig_side {
	GPUP_MIG_SOURCE,
	GPUP_MIG_TARGET,
};

/* The provider can live-migrate this VF (the GPU-P LiveMigration cap). */
#define GPUP_CAP_LIVE_MIGRATION		BIT(0)
/* Dirty-page tracking of VF VRAM is supported (required with the above). */
#define GPUP_CAP_DIRTY_TRACKING		BIT(1)
/* Tracking costs next to nothing and may stay on for the VF's life. */
#define GPUP_CAP_DIRTY_TRACKING_CHEAP	BIT(2)
/* The provider logs the pages of VM memory the VF writes (dma_log_*). */
#define GPUP_CAP_DMA_LOGGING		BIT(3)

/**
 * struct gpup_migration_caps - what a provider offers for one VF
 * @flags: GPUP_CAP_* bits
 * @provider_id: identifies the provider's data format family; written into
 *	the stream header and compared on restore (e.g. PCI vendor << 16 |
 *	an id of the driver's choosing)
 * @profile_id: identifies the VF profile (the GPU-P partition type); a
 *	stream saved from one profile can be restored only into the same one
 * @page_size: VRAM page size for dirty tracking and transfer, power of two
 * @vram_size: bytes of VF-local memory, a multiple of @page_size
 * @max_immutable_size: upper bound of what save_immutable ever produces;
 *	the variant driver refuses larger immutable records in a stream
 *	before allocating
 * @max_mutable_size: upper bound of what save_mutable ever produces;
 *	likewise bounds allocations on restore, and stands for the mutable
 *	size in VFIO_DEVICE_FEATURE_MIG_DATA_SIZE when the provider has no
 *	@query_save_size op
 *
 * The Save DDIs document no maximum size; this port requires one so that a
 * stream from userspace can be bounded before any allocation.
 */
struct gpup_migration_caps {
	u32 flags;
	u32 provider_id;
	u32 profile_id;
	u32 page_size;
	u64 vram_size;
	u32 max_immutable_size;
	u32 max_mutable_size;
};

/**
 * struct gpup_dma_range - a range of IOVA space the VF's DMA may write
 * @iova: first byte
 * @length: bytes
 */
struct gpup_dma_range {
	u64 iova;
	u64 length;
};

/**
 * struct gpup_vram_seg - a run of VF VRAM in a bulk transfer
 * @offset: first byte, a multiple of caps.page_size
 * @len: bytes, a multiple of caps.page_size, not 0
 */
struct gpup_vram_seg {
	u64 offset;
	u64 len;
};

/**
 * enum gpup_xfer_dir - which way a bulk transfer moves VRAM
 * @GPUP_XFER_SAVE: from VF VRAM into the pages (the source side)
 * @GPUP_XFER_RESTORE: from the pages into VF VRAM (the target side)
 */
enum gpup_xfer_dir {
	GPUP_XFER_SAVE,
	GPUP_XFER_RESTORE,
};

/**
 * struct gpup_vram_xfer - one bulk VRAM transfer (see @vram_xfer)
 * @dir: which way the bytes move
 * @segs: the VRAM runs, in the order their bytes sit in @pages; they do
 *	not overlap
 * @nsegs: entries in @segs, at least 1
 * @pages: the buffer, pages the variant driver owns (kernel memory, not
 *	mapped to userspace, pinned until the transfer completes): the
 *	segments' bytes back to back from the first byte of @pages[0]
 * @npages: entries in @pages: the segments' total length in PAGE_SIZE
 *	pages, rounded up
 * @done: called exactly once when a transfer that @vram_xfer queued
 *	(-EINPROGRESS) completes, with 0 or a negative errno in @status
 *	(-EIO for a failed copy), by gpup_xfer_complete(): a provider
 *	calls that, never @done itself.  Called in process context (a
 *	worker of the provider) with none of the variant driver's locks
 *	held; it must not call back into the provider.  After it returns
 *	the provider does not touch @pages, @segs or the structure again.
 * @owner: the module of @done; the variant driver holds a reference on
 *	it for each transfer queued, which gpup_xfer_complete() drops
 *	once @done has returned, so that @done's code outlives its call
 * @priv: the variant driver's, untouched by the provider
 *
 * The variant driver fills every field but none is written by the
 * provider; the structure stays valid and unchanged until the transfer
 * completes.
 */
struct gpup_vram_xfer {
	enum gpup_xfer_dir dir;
	const struct gpup_vram_seg *segs;
	unsigned int nsegs;
	struct page **pages;
	unsigned int npages;
	void (*done)(struct gpup_vram_xfer *xfer, int status);
	struct module *owner;
	void *priv;
};

/**
 * struct gpup_migration_ops - GPU-P migration operations of a PF driver
 * @owner: the module implementing the ops (THIS_MODULE); the variant
 *	driver pins it while a VF uses the ops
 *
 * Every op is called in process context and may sleep (the DDIs are
 * PASSIVE_LEVEL).  @pf is the PF the ops were registered for; @vf is the
 * VF index, 0-based as pci_iov_vf_id() returns it.  The variant driver
 * serialises the calls for one VF; calls for different VFs may run
 * concurrently.  All ops except @vram_read and @vram_write return 0 or a
 * negative errno from the NTSTATUS table at the top of this header.
 *
 * Preconditions stated for an op are promises of the variant driver; a
 * provider may check them and fail a call that breaks one with -EBUSY
 * (wrong state) or -EINVAL (bad range), as gpup_sim does.  Every op is
 * optional only where its text says so.
 *
 * @query_caps: fill @caps for VF @vf.  Ports the GPU-P capability query
 *	(DXGKQAITYPE_DIRTYBITTRACKINGCAPS and the LiveMigration cap).
 *	Returns 0, or -EOPNOTSUPP if the VF cannot migrate.
 *
 * @prepare_live_migration: a migration starts with @vf on @side.  Ports
 *	DxgkDdiPrepareLiveMigration.  For %GPUP_MIG_SOURCE the VF is running
 *	(RUNNING -> PRE_COPY) or already paused (RUNNING_P2P ->
 *	PRE_COPY_P2P, STOP -> STOP_COPY); for %GPUP_MIG_TARGET it is paused
 *	and about to receive data.
 *	Returns 0 or -errno; on error no migration is in progress.
 *
 * @end_live_migration: the migration of @vf ended, successfully or not,
 *	on either side; return to non-migrating scheduling.  Ports
 *	DxgkDdiEndLiveMigration.  Dirty tracking has been stopped before.
 *	Must not fail: the VF keeps its current state.
 *
 * @set_pause_state: @pause true removes @vf from scheduling: it stops
 *	executing and initiating DMA, and its state stops changing.  @pause
 *	false puts it back in its natural state.  Ports
 *	DxgkDdiSetVirtualFunctionPauseState.  Idempotent.  Returns 0 or -errno.
 *
 * @save_immutable: the data that never changes during the VF's life plus
 *	validation data (driver, firmware and hardware versions).  Two-call
 *	pattern of DxgkDdiSaveImmutableMigrationData: with @buf NULL, store
 *	the size needed in *@size and return 0; otherwise fill @buf, whose
 *	room is *@size bytes, store the bytes written in *@size and return
 *	0, or return -ENOSPC if the room is short.  The size never exceeds
 *	caps.max_immutable_size.  Called while the VF runs; must not change
 *	the VF.
 *
 * @save_mutable: all remaining device and driver state of @vf that VRAM
 *	does not hold.  Same two-call pattern, bounded by
 *	caps.max_mutable_size.  Ports DxgkDdiSaveMutableMigrationData.
 *	Precondition: the VF is paused, for both calls.  Must not change
 *	the VF, so that an aborted migration can resume the source where
 *	it stopped.  The fill call must not report more bytes than the room
 *	it was given; the variant driver fails the arc with -EIO if it does.
 *
 * @query_save_size: optional.  Store in *@immutable and *@mutable the
 *	bytes @save_immutable and @save_mutable would produce if called
 *	now.  Valid in every state of the VF (running or paused, migrating
 *	or not) and must not change it; the mutable size of a running VF
 *	may be an estimate, at most caps.max_mutable_size.  The variant
 *	driver asks it for VFIO_DEVICE_FEATURE_MIG_DATA_SIZE at any time
 *	(VFIO_MIG_GET_PRECOPY_INFO answers from the save file's own state);
 *	without it, it takes the caps' maxima instead.  There is no DDI for it: the GPU-P size query
 *	is the first call of the Save DDIs, which for the mutable data is
 *	only valid while the VF is paused.
 *
 * @restore_immutable: check that data saved by @save_immutable on some
 *	source fits @vf and prepare for it.  Ports
 *	DxgkDdiRestoreImmutableMigrationData, called once with the whole
 *	buffer while @vf is paused on the target, before any VRAM or
 *	mutable data.  Returns 0; -EPROTONOSUPPORT if the data is of another
 *	profile, another major version or otherwise incompatible
 *	(STATUS_OBJECT_TYPE_MISMATCH); -EBADMSG if it is malformed.
 *
 * @restore_mutable: load state saved by @save_mutable into @vf.  Ports
 *	DxgkDdiRestoreMutableMigrationData.  Precondition: @vf is paused,
 *	@restore_immutable succeeded and all VRAM pages have been written.
 *	Returns 0, -EBADMSG for malformed data or -EPROTONOSUPPORT.  On
 *	error the VF state is undefined until @reset_vf.
 *
 * @start_dirty_tracking: start tracking VRAM pages @vf writes.  Ports
 *	DxgkDdiStartDirtyTracking.  Calls nest: tracking stops only when
 *	@stop_dirty_tracking was called as often.  The bitplane starts clear.
 *
 * @query_dirty: report dirty pages of @vf in [@first, @first + @count)
 *	(page numbers).  If @bitmap is not NULL, bit i of it (a bitmap of
 *	@count bits, BITS_TO_LONGS(@count) longs) is set for each dirty page
 *	@first + i.  With @clear the pages reported are cleared in the same
 *	atomic step, with or without a @bitmap.  Returns the number of
 *	dirty pages in the range, or -errno.  Without @clear it is a count
 *	that leaves the bitplane as is.  Tracking coarser than a page may
 *	report more pages than were written.  Precondition: tracking is on.
 *	The variant driver queries one run of pages (at most 256 KiB of
 *	VRAM) just before it reads it, and asks the count of the whole VRAM
 *	(@first 0, @count all pages, no @bitmap, no @clear) for every
 *	VFIO_MIG_GET_PRECOPY_INFO and poll(): that count should cost O(1),
 *	not a scan.  Ports DxgkDdiQueryDirtyBitData
 *	(DXGK_DIRTYBITTRACKING_CLEARDATA).
 *
 * @query_written: optional.  Report which pages of @vf in [@first,
 *	@first + @count) were written since @vf's last reset (@reset_vf, an
 *	FLR): those not reported hold what they held at power-on, zeros,
 *	so the variant driver sends them as a ZERO record without reading
 *	them.  @bitmap as for @query_dirty; returns the number of written
 *	pages in the range, or -errno.  Reporting more pages than were
 *	written is allowed (a coarser granule, pages restored with zeros);
 *	fewer never is.  Valid in every state, tracking on or off.  The
 *	variant driver takes one snapshot of the whole VRAM when a save
 *	stream starts, after @start_dirty_tracking: a page written after
 *	the snapshot is dirty and goes out in a dirty pass.  It asks the
 *	whole-VRAM count (no @bitmap) for VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
 *	and, where userspace enabled PRECOPY_INFO v2, for each
 *	VFIO_MIG_GET_PRECOPY_INFO (pages first written after the snapshot
 *	are new initial data, VFIO_PRECOPY_INFO_REINIT); on the destination
 *	it asks the count of each ZERO record's range, and a range with no
 *	page written gets no @vram_zero, so a page that @vram_write or a
 *	restore by @vram_xfer wrote must count as written (a @vram_zero may
 *	make it unwritten again):
 *	that count should cost O(1), and the snapshot time proportional to
 *	the pages written, not to VRAM.  Offer it only where the GPU keeps
 *	this set at no cost, always on (GPU-P's DIRTYBITTRACKINGCAPS
 *	reports tracking that "costs next to nothing"): without the op
 *	every page goes out in the first pass.  No DDI returns the set;
 *	it is what a memory basis tracked since the VF's creation reports
 *	(DxgkDdiCreateMemoryBasis, DxgkDdiQueryDirtyBitData without
 *	CLEARDATA).
 *
 * @stop_dirty_tracking: balance one @start_dirty_tracking.  Ports
 *	DxgkDdiStopDirtyTracking.  Precondition: tracking is on.
 *
 * @vram_read: copy @len bytes of @vf's VRAM at byte @offset into @to, the
 *	destination iterator (a user buffer or a kernel buffer).  The port of
 *	GPU-P "VRAM paging" on the source.  @offset and @len are multiples of
 *	caps.page_size.  Must not change the VF or its dirty bits.  Returns
 *	the bytes copied (short only at a fault in @to) or -errno.
 *
 * @vram_write: copy @len bytes from @from into @vf's VRAM at byte
 *	@offset.  VRAM paging on the target.  Preconditions: the VF is
 *	paused and @restore_immutable accepted the stream; @offset and @len
 *	are multiples of caps.page_size (the variant driver gathers whole
 *	pages, whatever the write() sizes of userspace), so a copy engine
 *	never needs a read-modify-write.  Returns the bytes copied or -errno.
 *
 * @vram_xfer: optional.  Move the VRAM runs of @xfer between @vf's VRAM
 *	and @xfer->pages, the bulk form of @vram_read (%GPUP_XFER_SAVE)
 *	and @vram_write (%GPUP_XFER_RESTORE), for a copy engine or DMA
 *	that needs no CPU mapping of VRAM.  The preconditions are those of
 *	@vram_read or @vram_write, checked when the call is made; a save
 *	transfer must not change the VF or its dirty bits.  Returns 0 when
 *	the transfer is done already (@xfer->done is not called);
 *	-EINPROGRESS when it was queued, and the provider then calls
 *	gpup_xfer_complete(@xfer, result) exactly once, later; any other
 *	-errno when it was refused (-EINVAL: bad segments, -EBUSY: wrong
 *	state, -ENOMEM), and @xfer->done is not called.  A provider may
 *	run several transfers of a VF at once and complete them in any
 *	order; the variant
 *	driver keeps a few in flight while it checksums earlier ones, and
 *	never has two restore transfers in flight that write one page.
 *	Every accepted transfer of @vf completes (its @done returned)
 *	before @reset_vf of @vf returns, and every one of the PF before
 *	gpup_unregister_pf() is called.  Without the op, or with the
 *	gpup_vfio_pci parameter bulk_xfer=N (its default is Y), VRAM moves by
 *	@vram_read and @vram_write.  There is no DDI for it: GPU-P's VRAM paging is the
 *	kernel driver's own business.
 *
 * @vram_zero: optional.  Fill @len bytes of @vf's VRAM at byte @offset
 *	with zeros, as one copy-engine fill, or by dropping the backing of
 *	pages that then read as zeros.  The target's side of a ZERO record
 *	(stream minor 1): a run of pages that held zeros on the source.
 *	Preconditions of @vram_write; @len may be the whole VRAM.  Returns 0
 *	once the pages read as zeros, or -errno.  Without it the variant
 *	driver writes zero pages with @vram_write.  There is no DDI for it.
 *
 * @reset_vf: bring @vf back to its power-on state, as a function level
 *	reset does: unpaused, not migrating, no dirty tracking, engine state
 *	and VRAM cleared, nothing of the last user left.  Called in any
 *	state: from the VF's reset_done (FLR, VFIO_DEVICE_RESET, the reset
 *	at open), before the ioctl returns and, for VFIO_DEVICE_RESET and a
 *	hot reset, with the vfio-pci core's memory lock held, so it must not
 *	wait for the VF's userspace; when
 *	the VFIO device is closed (the close scrub); and to leave the VFIO
 *	ERROR state.  Returns 0 or -errno.
 *
 * Device DMA logging: which pages of the VM's memory the VF's engines
 * wrote (fences, rings, buffers the GPU MMU maps), for VFIO's
 * VFIO_DEVICE_FEATURE_DMA_LOGGING_* and QEMU's dirty tracking of guest
 * RAM.  The three ops are optional, all or none: without them the VF
 * still migrates, but userspace must find guest RAM dirtied by the VF
 * another way (see Documentation/qemu.rst).  They are independent of the
 * migration state; the variant driver serialises them with the other
 * ops, so a provider needs no lock between them and its other ops beyond
 * what its engines need.  There is no GPU-P DDI for them: on Windows the
 * hypervisor tracks the guest memory a VF writes in the IOMMU.  The
 * errnos are those of the NTSTATUS table, plus -E2BIG (too many ranges),
 * which no DDI has.  The three come together or not at all
 * (gpup_register_pf() refuses two of them), and a provider that
 * implements them sets %GPUP_CAP_DMA_LOGGING for each VF whose DMA it
 * logs.  The variant driver offers logging only for a VF with both: the
 * cap without the ops, or the ops without the cap, is a VF without
 * logging, and DMA_LOGGING_START fails with -EOPNOTSUPP on it.  The cap
 * is not part of the caps a migration stream depends on: a provider
 * attached later with or without logging migrates the VF all the same.
 *
 * @dma_log_start: optional.  Start logging the DMA writes of @vf into
 *	the @nranges IOVA ranges at @ranges (sorted by IOVA, not
 *	overlapping, each start and length a multiple of *@page_size).
 *	*@page_size holds the granularity asked (a power of two, at least
 *	4096); the provider may round it up and stores what it chose.  The
 *	log starts empty.  Returns 0; -EBUSY if a log is running already;
 *	-E2BIG if the provider cannot track that many ranges (the variant
 *	driver then merges ranges and asks again); -EINVAL for a page size
 *	it cannot serve; -ENOMEM.
 *
 * @dma_log_read: report the pages of [@iova, @iova + @length) that @vf
 *	wrote since they were last cleared (or since the start): bit i of
 *	@bitmap (BITS_TO_LONGS(@length / page size) longs, zeroed by the
 *	caller) for the page at @iova + i * page size, the page size being
 *	the one @dma_log_start chose; @iova and @length are multiples of
 *	it.  With @clear the reported pages are cleared in the same atomic
 *	step.  Pages outside the logged ranges read as clean.  Returns the
 *	number of pages reported, or -errno (-EINVAL when no log runs);
 *	after an error the variant driver treats the log as lost until it
 *	is started again.
 *
 * @dma_log_stop: stop logging and drop the log.  Called on
 *	VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP and, with a log running, when
 *	the device is reset, closed or goes to ERROR.  Must not fail.
 *
 * Function level reset.  The PCI core resets the VF (an FLR for
 * VFIO_DEVICE_RESET, the reset at open, a hot reset) between the VF
 * driver's reset_prepare and reset_done handlers; a PF whose firmware
 * keeps per-VF state must take part: quiesce the VF before, and wait
 * for its own FLR handling after.  Both ops are optional; called, for
 * VFIO_DEVICE_RESET and a hot reset, with the vfio-pci core's memory
 * lock held (the reset at open runs before userspace has the device,
 * without it), so they must not wait for the VF's userspace.  There is
 * no GPU-P DDI for them: on Windows the PF driver sees a VF's FLR
 * through its own interrupt.
 *
 * @reset_prepare: optional.  A reset of @vf is about to happen: stop
 *	scheduling it and fence its engines, so that the reset finds it
 *	idle.  Called in any state; @reset_done or @reset_vf follows.
 *	Must not fail.
 *
 * @reset_done: optional.  The PCI reset of @vf is done: wait (bounded)
 *	until the PF has finished its own handling of it.  Called before
 *	@reset_vf, which then scrubs the VF.  Returns 0, or -errno if the
 *	VF cannot be brought back (the device then goes to ERROR, and
 *	only another reset may recover it).
 */
struct gpup_migration_ops {
	struct module *owner;

	int (*query_caps)(struct pci_dev *pf, unsigned int vf,
			  struct gpup_migration_caps *caps);

	int (*prepare_live_migration)(struct pci_dev *pf, unsigned int vf,
				      enum gpup_mig_side side);
	void (*end_live_migration)(struct pci_dev *pf, unsigned int vf);
	int (*set_pause_state)(struct pci_dev *pf, unsigned int vf, bool pause);

	int (*save_immutable)(struct pci_dev *pf, unsigned int vf, void *buf,
			      size_t *size);
	int (*save_mutable)(struct pci_dev *pf, unsigned int vf, void *buf,
			    size_t *size);
	int (*restore_immutable)(struct pci_dev *pf, unsigned int vf,
				 const void *buf, size_t size);
	int (*restore_mutable)(struct pci_dev *pf, unsigned int vf,
			       const void *buf, size_t size);
	int (*query_save_size)(struct pci_dev *pf, unsigned int vf,
			       size_t *immutable, size_t *mutable);

	int (*start_dirty_tracking)(struct pci_dev *pf, unsigned int vf);
	long (*query_dirty)(struct pci_dev *pf, unsigned int vf, u64 first,
			    u64 count, unsigned long *bitmap, bool clear);
	void (*stop_dirty_tracking)(struct pci_dev *pf, unsigned int vf);
	long (*query_written)(struct pci_dev *pf, unsigned int vf, u64 first,
			      u64 count, unsigned long *bitmap);

	ssize_t (*vram_read)(struct pci_dev *pf, unsigned int vf, u64 offset,
			     size_t len, struct iov_iter *to);
	ssize_t (*vram_write)(struct pci_dev *pf, unsigned int vf, u64 offset,
			      size_t len, struct iov_iter *from);
	int (*vram_xfer)(struct pci_dev *pf, unsigned int vf,
			 struct gpup_vram_xfer *xfer);
	int (*vram_zero)(struct pci_dev *pf, unsigned int vf, u64 offset,
			 u64 len);

	int (*reset_vf)(struct pci_dev *pf, unsigned int vf);

	int (*dma_log_start)(struct pci_dev *pf, unsigned int vf,
			     const struct gpup_dma_range *ranges,
			     unsigned int nranges, u64 *page_size);
	long (*dma_log_read)(struct pci_dev *pf, unsigned int vf, u64 iova,
			     u64 length, unsigned long *bitmap, bool clear);
	void (*dma_log_stop)(struct pci_dev *pf, unsigned int vf);

	void (*reset_prepare)(struct pci_dev *pf, unsigned int vf);
	int (*reset_done)(struct pci_dev *pf, unsigned int vf);
};

/**
 * enum gpup_vf_event - what a provider tells the variant driver of a VF
 * @GPUP_VF_EVENT_DIRTY: the VF marked VRAM pages dirty while tracking was
 *	on: a poll() waiting at pre-copy's temporary end of stream may have
 *	data now.  A hint; one per batch of pages is enough.
 * @GPUP_VF_EVENT_RESET: the VF was reset underneath the variant driver
 *	(a PF-initiated FLR, an engine reset that lost its context): the
 *	state a migration was saving or restoring is gone.  The arc
 *	running and the data_fds fail at once; the device state does not
 *	change by itself (vfio.h allows no asynchronous transition), but
 *	the user's next arc fails with -EIO into the VFIO ERROR state,
 *	until userspace resets the device.
 * @GPUP_VF_EVENT_ERROR: the VF failed and cannot run or migrate until it
 *	is reset (a GPU hang, a firmware error).  Handled as
 *	%GPUP_VF_EVENT_RESET.
 * @GPUP_VF_EVENT_CAPS_CHANGED: the VF was re-provisioned (another
 *	profile, another VRAM size): the variant driver queries the caps
 *	again and refuses migration (-ESTALE) while they differ from those
 *	it bound with.
 */
enum gpup_vf_event {
	GPUP_VF_EVENT_DIRTY,
	GPUP_VF_EVENT_RESET,
	GPUP_VF_EVENT_ERROR,
	GPUP_VF_EVENT_CAPS_CHANGED,
};

/*
 * The registry lives in gpup_core.ko, which depends on nothing of VFIO.
 * Without it (or when a built-in PF driver cannot reach a modular core)
 * the calls are stubs: registering fails with -EOPNOTSUPP and the PF
 * driver runs on without migration.
 */
#if IS_REACHABLE(CONFIG_GPUP_CORE)
struct gpup_provider *gpup_register_pf(struct pci_dev *pf,
				       const struct gpup_migration_ops *ops);
unsigned int gpup_unregister_pf(struct gpup_provider *prov);
void gpup_vf_notify(struct gpup_provider *prov, unsigned int vf,
		    enum gpup_vf_event event);
void gpup_pf_notify(struct gpup_provider *prov, enum gpup_vf_event event);
void gpup_xfer_complete(struct gpup_vram_xfer *xfer, int status);
#else
static inline struct gpup_provider *
gpup_register_pf(struct pci_dev *pf, const struct gpup_migration_ops *ops)
{
	return ERR_PTR(-EOPNOTSUPP);
}

static inline unsigned int gpup_unregister_pf(struct gpup_provider *prov)
{
	return 0;
}

static inline void gpup_vf_notify(struct gpup_provider *prov,
				  unsigned int vf, enum gpup_vf_event event)
{
}

static inline void gpup_pf_notify(struct gpup_provider *prov,
				  enum gpup_vf_event event)
{
}

static inline void gpup_xfer_complete(struct gpup_vram_xfer *xfer,
				      int status)
{
	struct module *owner = xfer->owner;

	xfer->done(xfer, status);
	module_put(owner);
}
#endif

#endif /* _LINUX_GPUP_MIGRATION_H */
