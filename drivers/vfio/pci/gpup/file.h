/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_vfio_pci: the migration data_fds (file.c, save.c, resume.c), as
 * the state machine (migrate.c) drives them.  The files call the
 * provider through ops.c only.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_VFIO_FILE_H
#define GPUP_VFIO_FILE_H

#include <linux/refcount.h>

#include "gpup_vfio.h"
#include "stream.h"

/**
 * struct gpup_mig_file - what the save and the resume data_fd share
 * @filp: the anon file
 * @gdev: the VF; the file holds a reference on its vfio_device
 * @gen: @gdev->gen when the file was made; provider calls fail once the
 *	device moved on (the file was disabled)
 * @io_lock: serialises read() or write() callers; the only lock held
 *	across a copy to or from userspace
 * @lock: protects @error and the stream state of the save or resume
 *	file around it; never held across a user copy
 * @error: sticky error; every later read/write returns it
 * @hung: a transfer of the file did not complete within xfer_timeout_ms:
 *	later waits do not wait again
 * @refs: references on the file's memory: one of the file, dropped at
 *	release, and one per transfer the provider queued, dropped by its
 *	done(); the last one frees the memory, so that a transfer that
 *	completes after release (a hung one) writes only memory still
 *	allocated
 */
struct gpup_mig_file {
	struct file *filp;
	struct gpup_vfio_dev *gdev;
	unsigned long gen;
	struct mutex io_lock;	/* callers of read()/write() */
	struct mutex lock;	/* stream state, see above */
	int error;
	bool hung;
	refcount_t refs;
};

/* file.c */
int gpup_vfio_file_init(struct gpup_mig_file *mf, struct gpup_vfio_dev *gdev,
			const char *name, const struct file_operations *fops,
		       int flags);
void gpup_vfio_file_fini(struct gpup_mig_file *mf);
int gpup_vfio_file_alive(struct gpup_mig_file *mf);
int gpup_vfio_file_xfer(struct gpup_mig_file *mf, struct gpup_vram_xfer *xfer);
bool gpup_vfio_file_put(struct gpup_mig_file *mf);
int gpup_vfio_file_wait(struct gpup_mig_file *mf, struct completion *done,
			bool killable);
unsigned long *gpup_vfio_bitmap_alloc(u64 nbits);
void gpup_vfio_bitmap_free(unsigned long *map);

/* save.c */
struct gpup_save_file *gpup_vfio_save_new(struct gpup_vfio_dev *gdev,
					  bool precopy);
int gpup_vfio_save_stop_copy(struct gpup_save_file *sf);
int gpup_vfio_save_full_size(struct gpup_vfio_dev *gdev, size_t imm,
			     size_t mut, u64 *size);
int gpup_vfio_save_pending(struct gpup_save_file *sf, u64 *initial,
			   u64 *dirty, bool precopy);
struct file *gpup_vfio_save_filp(struct gpup_save_file *sf);
int gpup_vfio_save_drain(struct gpup_save_file *sf);

/* resume.c */
struct gpup_resume_file *gpup_vfio_resume_new(struct gpup_vfio_dev *gdev);
int gpup_vfio_resume_finish(struct gpup_resume_file *rf);
struct file *gpup_vfio_resume_filp(struct gpup_resume_file *rf);
int gpup_vfio_resume_drain(struct gpup_resume_file *rf);

#endif /* GPUP_VFIO_FILE_H */
