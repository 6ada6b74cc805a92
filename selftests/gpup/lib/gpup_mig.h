/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup selftest library: VFIO migration v2 calls and gpup_sim debugfs.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_MIG_H
#define GPUP_MIG_H

#include <stddef.h>

#include <linux/vfio.h>

#include "gpup_lib.h"

#define GPUP_NSTATES		8	/* VFIO_DEVICE_STATE_* 0..7 */
#define GPUP_DIGEST_LEN		65
#define GPUP_CHUNK_READ		0x100000	/* QEMU reads at most 1 MiB */
#define GPUP_CHUNK_WRITE	0x8000		/* QEMU writes 32 KiB */

/**
 * struct gpup_buf - a growable byte buffer for whole streams
 * @data: the bytes
 * @len: bytes used
 * @cap: bytes allocated
 */
struct gpup_buf {
	u8 *data;
	size_t len;
	size_t cap;
};

const char *gpup_state_name(int state);
int gpup_mig_flags(int device, u64 *flags);
int gpup_mig_set(int device, int state, int *data_fd);
int gpup_mig_get(int device, int *state);
int gpup_mig_data_size(int device, u64 *size);
int gpup_precopy_info(int data_fd, u64 *initial, u64 *dirty);
int gpup_device_reset(int device);

/* VFIO_DEVICE_FEATURE_DMA_LOGGING_*: 0 or -errno. */
struct gpup_dma_range {
	u64 iova;
	u64 length;
};

int gpup_dma_log_probe(int device);
int gpup_dma_log_start(int device, const struct gpup_dma_range *ranges,
		       unsigned int n, u64 *page_size);
int gpup_dma_log_stop(int device);
int gpup_dma_log_report(int device, u64 iova, u64 length, u64 page_size,
			u64 *bitmap);

int gpup_buf_append(struct gpup_buf *b, const void *p, size_t len);
void gpup_buf_free(struct gpup_buf *b);
/* Reads until read() returns 0 (or -ENOMSG when @stop_at_enomsg). */
int gpup_read_stream(int fd, struct gpup_buf *b, size_t chunk,
		     int stop_at_enomsg);
/* Writes @len bytes in writes of @chunk bytes; returns 0 or -errno. */
int gpup_write_stream(int fd, const u8 *p, size_t len, size_t chunk);
/*
 * The end of a pre-copy from device @src (save file @sfd) to device @dst
 * (resume file @dfd): @src to STOP_COPY, the rest of its stream read into
 * @b and written to @dfd from byte @sent of @b on, both files closed and
 * @b freed, then @dst to RUNNING and @src to STOP.  Returns 0 or the first
 * step's -errno.
 */
int gpup_precopy_end(int src, int dst, int sfd, int dfd, struct gpup_buf *b,
		     size_t sent);

/* Whole migrations as QEMU drives them. */
int gpup_save_stop_copy(int src, struct gpup_buf *out);
int gpup_load(int dst, const struct gpup_buf *in);
int gpup_migrate_precopy(const char *src_vf, int src, int dst, int rounds,
			 unsigned long steps);

/* gpup_sim debugfs of a VF */
int gpup_sim_digest(const char *vf, char *digest);
int gpup_sim_run(const char *vf, unsigned long steps);
long gpup_sim_steps(const char *vf);
int gpup_sim_write(const char *vf, const char *file, const char *val);
long gpup_sim_read_long(const char *vf, const char *file);
/* Gives @vf the seed of @twin (and resets it): the two start alike. */
int gpup_sim_twin(const char *vf, const char *twin);
/* Precondition violations gpup_sim counted on @vf (0 when all is well). */
long gpup_sim_violations(const char *vf);
/*
 * A vram_xfer counter of @vf's debugfs "xfer_stats" (submitted, async,
 * errors, in_flight, max_in_flight), or -errno.
 */
long gpup_sim_xfer_stat(const char *vf, const char *name);
/*
 * VRAM passes gpup_vfio_pci logged for @vf's last save stream so far
 * (debugfs "passes": the passes that read VRAM), or -errno.
 */
long gpup_vfio_passes(const char *vf);

/*
 * The debugfs "hold" hook of gpup_vfio_pci: a thread keeps the VF's
 * state mutex from gpup_hold_start() until gpup_hold_stop().
 */
struct gpup_hold {
	char vf[GPUP_BDF_LEN];
	int ret;
	unsigned long thread;
};

int gpup_hold_start(struct gpup_hold *h, const char *vf);
int gpup_hold_stop(struct gpup_hold *h);

/* Kernel log records from @kmsg (opened and at its end) holding @needle. */
int gpup_kmsg_count(int kmsg, const char *needle);
/* /dev/kmsg opened non-blocking and positioned at its end, or -errno. */
int gpup_kmsg_open(void);

#endif /* GPUP_MIG_H */
