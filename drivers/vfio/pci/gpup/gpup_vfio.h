/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_vfio_pci internal definitions.
 *
 * Lock order, outermost first (mmap_lock may come before memory_lock: a
 * fault on a BAR mapping takes it):
 *   gpup_mig_file.io_lock              (one read()/write() caller at a time;
 *                                       held across the copy to or from
 *                                       userspace, so nothing below is)
 *   vfio-pci core memory_lock          (held around reset_done)
 *   -> gpup_vfio_dev.state_mutex       (only ever trylocked under memory_lock)
 *   -> gpup_mig_file.lock              (a data_fd's stream state)
 *   -> gpup_vfio_dev.op_lock           (serialises provider calls)
 *   -> the provider's fence and its own locks
 *   -> gpup_provider.clients_lock, gpup_vfio_dev.waitq (spinlocks)
 * No user memory is touched while state_mutex, a file's lock or op_lock
 * is held: data moves between the provider and a file's buffers under
 * them, and between those buffers and userspace under io_lock alone.  A
 * reader parked on a user page fault therefore blocks no arc and no
 * reset.  A bulk transfer (vram_xfer) is submitted under a file's lock
 * and op_lock, and waited for under the file's lock alone (never
 * op_lock): its done() takes no lock, and the provider completes it
 * before reset_vf returns, so a wait never blocks a reset.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_VFIO_H
#define GPUP_VFIO_H

#include <linux/gpup_core.h>
#include <linux/gpup_migration.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/vfio_pci_core.h>
#include <linux/wait.h>
#include <linux/xarray.h>

/* VRAM pages move in runs of at most this many bytes (one slot buffer). */
#define GPUP_RUN_BYTES		(256 * 1024)
/*
 * Bits of gpup_vfio_dev.events.  FAILED: the provider reported the VF
 * reset underneath or failed; every provider call fails with -EIO until a
 * reset.  RESET_SEEN/ERROR_SEEN: which of the two, for the log line.
 * CAPS: the provider announced new caps, to be checked again.
 */
#define GPUP_VFIO_EV_FAILED	0
#define GPUP_VFIO_EV_RESET_SEEN	1
#define GPUP_VFIO_EV_ERROR_SEEN	2
#define GPUP_VFIO_EV_CAPS	3

/* A provider call from a holder of state_mutex: any file generation. */
#define GPUP_GEN_ANY		(~0UL)

struct gpup_save_file;
struct gpup_resume_file;

/**
 * struct gpup_vfio_stats - counters shown in debugfs
 * @bytes_saved: stream bytes read from save files
 * @bytes_restored: stream bytes written to resume files
 * @migrations_out: STOP_COPY streams read to their end
 * @migrations_in: streams restored by RESUMING -> STOP
 * @pre_copy_entries: arcs taken into PRE_COPY or PRE_COPY_P2P from a
 *	non-migrating state (a save with pre-copy began)
 * @stop_copy_entries: arcs taken into STOP_COPY (the VF stopped for the
 *	final copy: QEMU's switchover)
 * @resets: device resets done (reset_done and the close scrub)
 * @last_error: the last error an arc, a read or a write returned
 */
struct gpup_vfio_stats {
	atomic64_t bytes_saved;
	atomic64_t bytes_restored;
	atomic64_t migrations_out;
	atomic64_t migrations_in;
	atomic64_t pre_copy_entries;
	atomic64_t stop_copy_entries;
	atomic64_t resets;
	atomic_t last_error;
};

/* vram_xfer transfers a save file keeps in flight at most, one slot each. */
#define GPUP_XFER_DEPTH	4

/* Passes of the last save stream whose figures debugfs keeps. */
#define GPUP_PASS_LOG	32

/**
 * struct gpup_vfio_pass - figures of one VRAM pass of a save stream
 * @bytes: bytes of the VRAM records the pass handed out
 * @dirty_left: VRAM pages dirty when the pass ended: the next pass's
 * @reads: slots read (one vram_xfer transfer, or vram_read per run)
 * @stalls: reads read() had to wait for, still in flight when their
 *	turn came
 * @stall_us: microseconds read() waited for them
 * @read_us: microseconds from submission to completion, summed
 * @read_max_us: the longest of them
 * @us: microseconds from the pass's first read to its end
 * @stop_copy: the pass ended in STOP_COPY
 */
struct gpup_vfio_pass {
	u64 bytes;
	u64 dirty_left;
	u32 reads;
	u32 stalls;
	u64 stall_us;
	u64 read_us;
	u64 read_max_us;
	u64 us;
	bool stop_copy;
};

/**
 * struct gpup_vfio_dev - a VF bound to gpup_vfio_pci
 * @core: the vfio-pci core device, first so core callbacks can cast
 * @vf_id: VF index under its PF, as the provider ops take it
 * @migratable: a provider with the live-migration cap was found at probe
 *	and the VFIO migration ops are offered
 * @caps: the provider's capabilities for this VF, read at probe; the
 *	migration flags and every stream bound follow from them
 * @state_mutex: protects @mig_state, @saving and @resuming.  Unlocked
 *	only through gpup_vfio_state_mutex_unlock(), which finishes a reset
 *	that reset_done could not (see gpup_vfio_reset_done()).
 * @mig_state: the VFIO migration state
 * @saving: the save file of PRE_COPY/STOP_COPY, holding a file reference
 * @resuming: the resume file of RESUMING, holding a file reference
 * @drain_hung: the files' last disabling met a transfer that did not
 *	complete within xfer_timeout_ms (under @state_mutex): the arc that
 *	disabled them fails into ERROR
 * @reset_lock: protects @deferred_reset
 * @deferred_reset: a reset's device part is done; its software part (the
 *	files, @mig_state) waits for the next unlock of @state_mutex
 * @op_lock: serialises calls into the provider for this VF and protects
 *	every field below up to @waitq
 * @gen: generation of migration files; bumped whenever the files are
 *	disabled (an arc away, a reset, close), so that a file of an older
 *	generation never calls the provider again
 * @prov: the provider, attached while the device is open; NULL when
 *	there is none
 * @client: this device's entry in @prov's clients (for gpup_vf_notify())
 * @caps_ok: @prov's caps for the VF are those of @caps; when not, every
 *	migration arc and size query fails with -ESTALE
 * @log_ok: @prov logs the VF's DMA (its caps say so and it has the
 *	dma_log_* ops); DMA_LOGGING_START fails with -EOPNOTSUPP when not
 * @opened: the VFIO device is open
 * @reset_pending: a reset's device part is done and its software part is
 *	not: no provider call may be made for the old state
 * @reset_err: how the last reset's device part ended: 0, or why the VF
 *	could not be brought back (the device then goes to ERROR)
 * @reset_seq: counts device parts of resets, for the VFIO_DEVICE_RESET
 *	ioctl to find its own result
 * @prepared: prepare_live_migration succeeded, end_live_migration owed
 * @tracking: start_dirty_tracking succeeded, stop_dirty_tracking owed
 * @paused: set_pause_state(true) is in force
 * @log_running: device DMA logging was started (and not stopped)
 * @log_lost: a read of the DMA log failed: REPORT fails until a new
 *	START, as the uAPI says the log is then corrupted
 * @log_page_size: the DMA log's page size, the provider's choice
 * @log_gen: counts STARTs, so that a REPORT reads only the log it began on
 * @log_parts: log pages a REPORT covered in part: per page index, the
 *	sixteenths of the page still to report (an xarray value)
 * @log_nparts: entries in @log_parts
 * @fail_logged: the failure in @events was logged (once per failure,
 *	until a reset)
 * @events: GPUP_VFIO_EV_* bits the provider's events set (atomic bit
 *	operations: set under the provider's spinlock, read anywhere,
 *	cleared under @op_lock by open, close and reset)
 * @event_work: logs a failure and checks the caps again after an event,
 *	with @state_mutex (events arrive in atomic context); it changes no
 *	state
 * @waitq: poll() of the data_fds waits here; woken on every state change,
 *	reset and close, and when the provider reports new dirty pages or a
 *	failure
 * @debugfs: the device's debugfs directory
 * @hold_wq: the debugfs "hold" test hook's reader waits here
 * @hold_release: the hook's reader may let go of @state_mutex
 * @held: the hook's reader holds @state_mutex
 * @stats: counters for debugfs (atomics, no lock)
 * @pass_lock: protects @npasses and @passes
 * @npasses: VRAM passes of the last save stream so far
 * @passes: the last GPUP_PASS_LOG of them, pass n at n % GPUP_PASS_LOG
 */
struct gpup_vfio_dev {
	struct vfio_pci_core_device core;
	unsigned int vf_id;
	bool migratable;
	struct gpup_migration_caps caps;

	struct mutex state_mutex;	/* migration state, see above */
	enum vfio_device_mig_state mig_state;
	struct gpup_save_file *saving;
	struct gpup_resume_file *resuming;
	bool drain_hung;

	spinlock_t reset_lock;		/* protects deferred_reset */
	bool deferred_reset;

	struct mutex op_lock;		/* provider calls, see above */
	unsigned long gen;
	struct gpup_provider *prov;
	struct gpup_provider_client client;
	bool caps_ok;
	bool log_ok;
	bool opened;
	bool reset_pending;
	int reset_err;
	unsigned long reset_seq;
	bool prepared;
	bool tracking;
	bool paused;
	bool log_running;
	bool log_lost;
	u64 log_page_size;
	u64 log_gen;
	struct xarray log_parts;
	unsigned int log_nparts;
	bool fail_logged;

	unsigned long events;
	struct work_struct event_work;
	wait_queue_head_t waitq;
	struct dentry *debugfs;
	wait_queue_head_t hold_wq;
	bool hold_release;
	bool held;
	struct gpup_vfio_stats stats;

	spinlock_t pass_lock;		/* protects npasses, passes */
	unsigned int npasses;
	struct gpup_vfio_pass passes[GPUP_PASS_LOG];
};

static inline struct gpup_vfio_dev *
gpup_vfio_from_vdev(struct vfio_device *vdev)
{
	return container_of(vdev, struct gpup_vfio_dev, core.vdev);
}

#define GPUP_OPS(gdev)	((gdev)->prov->ops)
#define GPUP_PF(gdev)	((gdev)->prov->pf)

/* main.c: module parameter bulk_xfer, VRAM by vram_xfer when offered */
extern bool gpup_vfio_bulk_xfer;
extern bool gpup_vfio_skip_unwritten;
extern bool gpup_vfio_zero_detect;
extern unsigned int gpup_vfio_xfer_timeout_ms;
extern unsigned int gpup_vfio_xfer_depth;
/* main.c: where a save's completed transfers are checksummed */
extern struct workqueue_struct *gpup_vfio_wq;
/* main.c: module parameter test_hooks, debugfs's hold and held files */
extern bool gpup_vfio_test_hooks;

/* ops.c: provider calls for one VF, serialised, fenced, checked against @gen */
bool gpup_vfio_caps_match(const struct gpup_migration_caps *a,
			  const struct gpup_migration_caps *b);
int gpup_vfio_op_enter(struct gpup_vfio_dev *gdev, unsigned long gen);
bool gpup_vfio_use_bulk(struct gpup_vfio_dev *gdev);
long gpup_vfio_query_written(struct gpup_vfio_dev *gdev, unsigned long gen,
			     u64 first, u64 count, unsigned long *map);
void gpup_vfio_op_exit(struct gpup_vfio_dev *gdev);
long gpup_vfio_op_err(long ret);
int gpup_vfio_save_size(struct gpup_vfio_dev *gdev, unsigned long gen,
			size_t *imm, size_t *mut);

/* dirty.c */
void gpup_vfio_log_init(struct gpup_vfio_dev *gdev,
			const struct gpup_migration_ops *ops);
void gpup_vfio_log_drop_locked(struct gpup_vfio_dev *gdev);
void gpup_vfio_log_stop_locked(struct gpup_vfio_dev *gdev);

/* debugfs.c */
const char *gpup_vfio_state_name(enum vfio_device_mig_state state);
void gpup_vfio_debugfs_init(struct gpup_vfio_dev *gdev);
void gpup_vfio_debugfs_exit(struct gpup_vfio_dev *gdev);
void gpup_vfio_debugfs_module_init(void);
void gpup_vfio_debugfs_module_exit(void);

#endif /* GPUP_VFIO_H */
