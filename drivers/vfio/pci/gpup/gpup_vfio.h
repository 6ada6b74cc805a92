/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_vfio_pci internal definitions.
 *
 * Lock order, outermost first:
 *   vfio-pci core memory_lock (held around reset_done)
 *   -> gpup_vfio_dev.state_mutex (only ever trylocked under memory_lock)
 *   -> gpup_mig_file.lock
 *   -> gpup_vfio_dev.op_lock
 *   -> the provider's own locks
 * No user memory is touched while op_lock is held: data moves between
 * the provider and a file's bounce buffer under op_lock, and between the
 * bounce buffer and userspace outside it.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_VFIO_H
#define GPUP_VFIO_H

#include <linux/gpup_migration.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/vfio_pci_core.h>

#include "provider.h"
#include "stream.h"

/* VRAM pages move in runs of at most this many bytes (one bounce buffer). */
#define GPUP_RUN_BYTES		(256 * 1024)

struct gpup_mig_file;

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
 * @last_error: the last error an arc, a read or a write returned
 */
struct gpup_vfio_stats {
	atomic64_t bytes_saved;
	atomic64_t bytes_restored;
	atomic64_t migrations_out;
	atomic64_t migrations_in;
	atomic64_t pre_copy_entries;
	atomic64_t stop_copy_entries;
	atomic_t last_error;
};

/**
 * struct gpup_vfio_dev - a VF bound to gpup_vfio_pci
 * @core: the vfio-pci core device, first so core callbacks can cast
 * @vf_id: VF index under its PF, as the provider ops take it
 * @migratable: a provider with the live-migration cap was found at probe
 *	and the VFIO migration ops are offered
 * @caps: the provider's capabilities for this VF, read at probe
 * @state_mutex: protects @mig_state, @prov, @saving, @resuming,
 *	@opened, @prepared, @tracking and @paused.  Unlocked only through
 *	gpup_vfio_state_mutex_unlock(), which runs a deferred reset.
 * @mig_state: the VFIO migration state
 * @reset_lock: protects @deferred_reset
 * @deferred_reset: a reset happened; the next unlock of @state_mutex
 *	carries it out (see gpup_vfio_reset_done())
 * @op_lock: serialises calls into the provider for this VF and protects
 *	@gen
 * @gen: generation of migration files; bumped under @op_lock whenever
 *	the files are disabled, so a file created in an older generation
 *	never calls the provider again
 * @prov: the provider, held while the device is open; NULL otherwise or
 *	when there was none at open
 * @opened: the VFIO device is open
 * @saving: the save file of PRE_COPY/STOP_COPY, holding a file reference
 * @resuming: the resume file of RESUMING, holding a file reference
 * @prepared: prepare_live_migration succeeded, end_live_migration owed
 * @tracking: start_dirty_tracking succeeded, stop_dirty_tracking owed
 * @paused: set_pause_state(true) is in force
 * @debugfs: the device's debugfs directory
 * @hold_wq: the debugfs "hold" test hook's reader waits here
 * @hold_release: the hook's reader may let go of @state_mutex
 * @held: the hook's reader holds @state_mutex
 * @stats: counters for debugfs (atomics, no lock)
 */
struct gpup_vfio_dev {
	struct vfio_pci_core_device core;
	unsigned int vf_id;
	bool migratable;
	struct gpup_migration_caps caps;

	struct mutex state_mutex;	/* migration state, see above */
	enum vfio_device_mig_state mig_state;
	spinlock_t reset_lock;		/* protects deferred_reset */
	bool deferred_reset;

	struct mutex op_lock;		/* provider calls and gen */
	unsigned long gen;

	struct gpup_provider *prov;
	bool opened;
	struct gpup_mig_file *saving;
	struct gpup_mig_file *resuming;
	bool prepared;
	bool tracking;
	bool paused;

	struct dentry *debugfs;
	wait_queue_head_t hold_wq;
	bool hold_release;
	bool held;
	struct gpup_vfio_stats stats;
};

static inline struct gpup_vfio_dev *
gpup_vfio_from_vdev(struct vfio_device *vdev)
{
	return container_of(vdev, struct gpup_vfio_dev, core.vdev);
}

/* migrate.c */
extern const struct vfio_migration_ops gpup_vfio_mig_ops;
void gpup_vfio_mig_init(struct gpup_vfio_dev *gdev);
void gpup_vfio_mig_open(struct gpup_vfio_dev *gdev);
void gpup_vfio_mig_close(struct gpup_vfio_dev *gdev);
void gpup_vfio_reset_done(struct pci_dev *pdev);
void gpup_vfio_state_mutex_unlock(struct gpup_vfio_dev *gdev);

/* Provider calls for one VF: serialised, fenced, checked against @gen. */
int gpup_vfio_op_enter(struct gpup_vfio_dev *gdev, unsigned long gen);
void gpup_vfio_op_exit(struct gpup_vfio_dev *gdev);

/* file.c */
struct gpup_mig_file *gpup_save_file_new(struct gpup_vfio_dev *gdev,
					 bool precopy);
int gpup_save_file_stop_copy(struct gpup_mig_file *mf);
struct gpup_mig_file *gpup_resume_file_new(struct gpup_vfio_dev *gdev);
int gpup_resume_file_finish(struct gpup_mig_file *mf);
u64 gpup_save_full_size(const struct gpup_vfio_dev *gdev, size_t imm,
			size_t mut);
long gpup_save_file_pending(struct gpup_mig_file *mf, u64 *initial,
			    u64 *dirty, bool precopy);
struct file *gpup_mig_file_filp(struct gpup_mig_file *mf);

/* debugfs.c */
const char *gpup_vfio_state_name(enum vfio_device_mig_state state);
void gpup_vfio_debugfs_init(struct gpup_vfio_dev *gdev);
void gpup_vfio_debugfs_exit(struct gpup_vfio_dev *gdev);
void gpup_vfio_debugfs_module_init(void);
void gpup_vfio_debugfs_module_exit(void);

#endif /* GPUP_VFIO_H */
