// SPDX-License-Identifier: GPL-2.0
/*
 * gpup selftest library: VFIO migration v2 calls and gpup_sim debugfs.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "gpup_lib.h"
#include "gpup_mig.h"

#define SIM_DEBUGFS "/sys/kernel/debug/gpup_sim"

static const char *const state_names[GPUP_NSTATES] = {
	"ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P",
	"PRE_COPY", "PRE_COPY_P2P",
};

const char *gpup_state_name(int state)
{
	if (state < 0 || state >= GPUP_NSTATES)
		return "?";
	return state_names[state];
}

int gpup_mig_flags(int device, u64 *flags)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_migration m;
	} req = {
		.f.argsz = sizeof(req),
		.f.flags = VFIO_DEVICE_FEATURE_GET |
			   VFIO_DEVICE_FEATURE_MIGRATION,
	};

	if (ioctl(device, VFIO_DEVICE_FEATURE, &req))
		return -errno;
	*flags = req.m.flags;
	return 0;
}

int gpup_mig_set(int device, int state, int *data_fd)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_mig_state s;
	} req = {
		.f.argsz = sizeof(req),
		.f.flags = VFIO_DEVICE_FEATURE_SET |
			   VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		.s.device_state = state,
		.s.data_fd = -1,
	};

	if (data_fd)
		*data_fd = -1;
	if (ioctl(device, VFIO_DEVICE_FEATURE, &req))
		return -errno;
	if (data_fd)
		*data_fd = req.s.data_fd;
	else if (req.s.data_fd >= 0)
		close(req.s.data_fd);
	return 0;
}

int gpup_mig_get(int device, int *state)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_mig_state s;
	} req = {
		.f.argsz = sizeof(req),
		.f.flags = VFIO_DEVICE_FEATURE_GET |
			   VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
	};

	if (ioctl(device, VFIO_DEVICE_FEATURE, &req))
		return -errno;
	*state = req.s.device_state;
	return 0;
}

int gpup_mig_data_size(int device, u64 *size)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_mig_data_size d;
	} req = {
		.f.argsz = sizeof(req),
		.f.flags = VFIO_DEVICE_FEATURE_GET |
			   VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
	};

	if (ioctl(device, VFIO_DEVICE_FEATURE, &req))
		return -errno;
	*size = req.d.stop_copy_length;
	return 0;
}

int gpup_precopy_info(int data_fd, u64 *initial, u64 *dirty)
{
	struct vfio_precopy_info info = { .argsz = sizeof(info) };

	if (ioctl(data_fd, VFIO_MIG_GET_PRECOPY_INFO, &info))
		return -errno;
	*initial = info.initial_bytes;
	*dirty = info.dirty_bytes;
	return 0;
}

int gpup_device_reset(int device)
{
	return ioctl(device, VFIO_DEVICE_RESET) ? -errno : 0;
}

int gpup_dma_log_probe(int device)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
			 VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
	};

	return ioctl(device, VFIO_DEVICE_FEATURE, &f) ? -errno : 0;
}

int gpup_dma_log_start(int device, const struct gpup_dma_range *ranges,
		       unsigned int n, u64 *page_size)
{
	struct vfio_device_feature_dma_logging_range *r;
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_logging_control c;
	} req = {
		.f.argsz = sizeof(req),
		.f.flags = VFIO_DEVICE_FEATURE_SET |
			   VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
		.c.page_size = *page_size,
		.c.num_ranges = n,
	};
	unsigned int i;
	int ret;

	r = calloc(n ? n : 1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		r[i].iova = ranges[i].iova;
		r[i].length = ranges[i].length;
	}
	req.c.ranges = (unsigned long)r;
	ret = ioctl(device, VFIO_DEVICE_FEATURE, &req) ? -errno : 0;
	free(r);
	if (!ret)
		*page_size = req.c.page_size;
	return ret;
}

int gpup_dma_log_stop(int device)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET |
			 VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
	};

	return ioctl(device, VFIO_DEVICE_FEATURE, &f) ? -errno : 0;
}

int gpup_dma_log_report(int device, u64 iova, u64 length, u64 page_size,
			u64 *bitmap)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_logging_report r;
	} req = {
		.f.argsz = sizeof(req),
		.f.flags = VFIO_DEVICE_FEATURE_GET |
			   VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
		.r.iova = iova,
		.r.length = length,
		.r.page_size = page_size,
		.r.bitmap = (unsigned long)bitmap,
	};

	return ioctl(device, VFIO_DEVICE_FEATURE, &req) ? -errno : 0;
}

int gpup_buf_append(struct gpup_buf *b, const void *p, size_t len)
{
	u8 *n;
	size_t cap;

	if (b->len + len > b->cap) {
		cap = b->cap ? b->cap : 1 << 20;
		while (cap < b->len + len)
			cap *= 2;
		n = realloc(b->data, cap);
		if (!n)
			return -ENOMEM;
		b->data = n;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	return 0;
}

void gpup_buf_free(struct gpup_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

int gpup_read_stream(int fd, struct gpup_buf *b, size_t chunk,
		     int stop_at_enomsg)
{
	u8 *tmp = malloc(chunk);
	ssize_t n;
	int ret = 0;

	if (!tmp)
		return -ENOMEM;
	for (;;) {
		n = read(fd, tmp, chunk);
		if (n < 0) {
			ret = -errno;
			if (ret == -ENOMSG && stop_at_enomsg)
				ret = 0;
			break;
		}
		if (!n)
			break;
		ret = gpup_buf_append(b, tmp, n);
		if (ret)
			break;
	}
	free(tmp);
	return ret;
}

int gpup_write_stream(int fd, const u8 *p, size_t len, size_t chunk)
{
	size_t done = 0, n;
	ssize_t w;

	while (done < len) {
		n = len - done < chunk ? len - done : chunk;
		w = write(fd, p + done, n);
		if (w < 0)
			return -errno;
		if (!w)
			return -EIO;
		done += w;
	}
	return 0;
}

int gpup_precopy_end(int src, int dst, int sfd, int dfd, struct gpup_buf *b,
		     size_t sent)
{
	int ret;

	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY, NULL);
	if (!ret)
		ret = gpup_read_stream(sfd, b, GPUP_CHUNK_READ, 0);
	if (!ret)
		ret = gpup_write_stream(dfd, b->data + sent, b->len - sent,
					GPUP_CHUNK_WRITE);
	close(dfd);
	close(sfd);
	gpup_buf_free(b);
	if (!ret)
		ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (!ret)
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP, NULL);
	return ret;
}

static void sim_path(char *path, size_t len, const char *vf, const char *f)
{
	snprintf(path, len, SIM_DEBUGFS "/%s/%s", vf, f);
}

int gpup_sim_write(const char *vf, const char *file, const char *val)
{
	char path[256];

	sim_path(path, sizeof(path), vf, file);
	return gpup_write_file(path, "%s", val);
}

long gpup_sim_read_long(const char *vf, const char *file)
{
	char path[256];

	sim_path(path, sizeof(path), vf, file);
	return gpup_read_long(path);
}

int gpup_sim_twin(const char *vf, const char *twin)
{
	char val[32];
	long seed;

	seed = gpup_sim_read_long(twin, "seed");
	if (seed < 0)
		return seed;
	snprintf(val, sizeof(val), "%ld", seed);
	return gpup_sim_write(vf, "seed", val);
}

long gpup_sim_violations(const char *vf)
{
	return gpup_sim_read_long(vf, "violations");
}

long gpup_sim_xfer_stat(const char *vf, const char *name)
{
	char path[256], buf[512], *p;
	size_t n = strlen(name);
	int ret;

	sim_path(path, sizeof(path), vf, "xfer_stats");
	ret = gpup_read_file(path, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, n) && p[n] == ' ')
			return strtol(p + n + 1, NULL, 0);
	return -ENOENT;
}

#define VFIO_DEBUGFS "/sys/kernel/debug/gpup_vfio_pci"

long gpup_vfio_passes(const char *vf)
{
	char path[128], buf[8192], *l, *last = NULL;
	int ret;

	snprintf(path, sizeof(path), VFIO_DEBUGFS "/%s/passes", vf);
	ret = gpup_read_file(path, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	/* A header line, then one per pass, numbered from 0: the last. */
	for (l = strchr(buf, '\n'); l && l[1]; l = strchr(l + 1, '\n'))
		last = l + 1;
	return last ? strtol(last, NULL, 10) + 1 : 0;
}

static void *gpup_hold_thread(void *p)
{
	struct gpup_hold *h = p;
	char path[128], c;
	int fd;

	snprintf(path, sizeof(path), VFIO_DEBUGFS "/%s/hold", h->vf);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		h->ret = -errno;
		return NULL;
	}
	h->ret = read(fd, &c, 1) < 0 ? -errno : 0;
	close(fd);
	return NULL;
}

int gpup_hold_start(struct gpup_hold *h, const char *vf)
{
	char path[128], held[8];
	pthread_t t;
	time_t end = time(NULL) + 30;

	snprintf(h->vf, sizeof(h->vf), "%s", vf);
	h->ret = 1;
	if (pthread_create(&t, NULL, gpup_hold_thread, h))
		return -EAGAIN;
	h->thread = t;
	/* The hook says when its reader has the mutex: wait for that. */
	snprintf(path, sizeof(path), VFIO_DEBUGFS "/%s/held", vf);
	while (gpup_read_file(path, held, sizeof(held)) != 1 ||
	       held[0] != 'Y') {
		if (h->ret <= 0 || time(NULL) > end)
			return h->ret < 0 ? h->ret : -ETIMEDOUT;
		sched_yield();
	}
	return 0;
}

int gpup_hold_stop(struct gpup_hold *h)
{
	char path[128];
	int ret;

	snprintf(path, sizeof(path), VFIO_DEBUGFS "/%s/hold", h->vf);
	ret = gpup_write_file(path, "0");
	pthread_join((pthread_t)h->thread, NULL);
	return ret ? ret : h->ret;
}

int gpup_kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

int gpup_kmsg_count(int kmsg, const char *needle)
{
	char rec[2048];
	ssize_t n;
	int count = 0;

	for (;;) {
		n = read(kmsg, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)	/* overwritten records */
			continue;
		if (n <= 0)
			break;
		rec[n] = 0;
		if (strstr(rec, needle))
			count++;
	}
	return count;
}

int gpup_sim_digest(const char *vf, char *digest)
{
	char path[256];
	int ret;

	sim_path(path, sizeof(path), vf, "digest");
	ret = gpup_read_file(path, digest, GPUP_DIGEST_LEN);
	return ret < 0 ? ret : 0;
}

int gpup_sim_run(const char *vf, unsigned long steps)
{
	char val[32];

	snprintf(val, sizeof(val), "%lu", steps);
	return gpup_sim_write(vf, "run", val);
}

long gpup_sim_steps(const char *vf)
{
	return gpup_sim_read_long(vf, "steps");
}

int gpup_save_stop_copy(int src, struct gpup_buf *out)
{
	int fd, ret;

	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY, &fd);
	if (ret)
		return ret;
	if (fd < 0)
		return -EBADF;
	ret = gpup_read_stream(fd, out, GPUP_CHUNK_READ, 0);
	close(fd);
	if (ret)
		return ret;
	return gpup_mig_set(src, VFIO_DEVICE_STATE_STOP, NULL);
}

int gpup_load(int dst, const struct gpup_buf *in)
{
	int fd, ret;

	ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RESUMING, &fd);
	if (ret)
		return ret;
	if (fd < 0)
		return -EBADF;
	ret = gpup_write_stream(fd, in->data, in->len, GPUP_CHUNK_WRITE);
	close(fd);
	if (ret)
		return ret;
	return gpup_mig_set(dst, VFIO_DEVICE_STATE_RUNNING, NULL);
}

int gpup_migrate_precopy(const char *src_vf, int src, int dst, int rounds,
			 unsigned long steps)
{
	struct gpup_buf b = { 0 };
	size_t sent = 0;
	int sfd = -1, dfd = -1, i, ret;

	ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RESUMING, &dfd);
	if (ret)
		goto out;
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_PRE_COPY, &sfd);
	if (ret)
		goto out;
	for (i = 0; i < rounds; i++) {
		ret = gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 1);
		if (ret)
			goto out;
		ret = gpup_write_stream(dfd, b.data + sent, b.len - sent,
					GPUP_CHUNK_WRITE);
		if (ret)
			goto out;
		sent = b.len;
		if (steps) {
			ret = gpup_sim_run(src_vf, steps);
			if (ret)
				goto out;
		}
	}
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY, NULL);
	if (ret)
		goto out;
	ret = gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 0);
	if (ret)
		goto out;
	ret = gpup_write_stream(dfd, b.data + sent, b.len - sent,
				GPUP_CHUNK_WRITE);
	if (ret)
		goto out;
	close(dfd);
	dfd = -1;
	ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (ret)
		goto out;
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP, NULL);
out:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	gpup_buf_free(&b);
	return ret;
}
