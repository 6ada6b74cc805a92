// SPDX-License-Identifier: GPL-2.0
/*
 * gpup benchmark (not a test): data_fd throughput against memcpy in the
 * same guest, save and restore throughput in bulk (vram_xfer) and per
 * range, of whole VRAM and of dirty passes of scattered pages, and with
 * a copy engine's latency emulated (20 and 200 us a transfer or call),
 * bulk with four transfers in flight against one and per range; stop-copy
 * bytes and blackout time with and without pre-copy,
 * and the kernel memory a save takes.  Prints one line per
 * figure: "BENCH <name> <value>".
 *
 * "bench big": real GPU sizes, VFs of 1 to 64 GiB with the same 256 MiB
 * written, pre-copy with the pages never written skipped against the
 * stop-copy model (no pre-copy, every page in the blackout).
 *
 * Usage: bench VRAM_MB...   (gpup_sim is reloaded with vram_mb=VRAM_MB)
 *        bench big
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <stddef.h>
#include <linux/vfio.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

static void bench(const char *name, unsigned int mb, const char *unit,
		  double v)
{
	printf("BENCH %s_%uM%s %.3f\n", name, mb, unit, v);
	fflush(stdout);
}

/*
 * CRC32C with the SSE4.2 instruction (what the kernel's crc32c-intel
 * uses), 8 bytes at a time.
 */
__attribute__((target("sse4.2")))
static u32 crc32c_sse42(u32 crc, const u8 *p, size_t len)
{
	unsigned long long c = crc;
	u64 v;

	for (; len >= 8; len -= 8, p += 8) {
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	crc = c;
	for (; len; len--, p++)
		crc = __builtin_ia32_crc32qi(crc, *p);
	return crc;
}

/*
 * memcpy of @bytes in 1 MiB pieces from a 64 MiB source (not cache
 * resident), as the data_fd moves them; MB/s.  With @crc, also a CRC32C
 * over each piece: the per-byte work of a save, whose stream carries one
 * per record.  Under TCG each CRC32 instruction is a helper call that
 * steps the CRC bit by bit, while memcpy runs as translated moves: this
 * baseline shows how much of the data_fd's gap to memcpy that costs.  The
 * barrier keeps the compiler from dropping copies whose result is never
 * read.
 */
static double copy_rate(size_t bytes, bool crc)
{
	size_t chunk = GPUP_CHUNK_READ, done;
	u8 *src = malloc(chunk * 64), *dst = malloc(chunk);
	double t = 0;
	u32 c = 0;

	if (!src || !dst)
		goto out;
	memset(src, 0x5a, chunk * 64);
	memset(dst, 0, chunk);
	t = gpup_now();
	for (done = 0; done < bytes; done += chunk) {
		memcpy(dst, src + (done / chunk % 64) * chunk, chunk);
		if (crc)
			c = crc32c_sse42(~0U, dst, chunk);
		__asm__ __volatile__("" : : "r"(dst), "r"(c) : "memory");
	}
	t = gpup_now() - t;
out:
	free(src);
	free(dst);
	return t > 0 ? bytes / t / 1e6 : 0;
}

/*
 * The kernel's own copy between a file and userspace: pread() (1 MiB
 * pieces, as the data_fd is read) or pwrite() (32 KiB, as it is written)
 * of @bytes over a 64 MiB memfd whose pages exist; MB/s.  The page-cache
 * read and write paths, with no driver and no checksum: for scale, what a
 * plain read() or write() costs in this guest next to a userspace memcpy.
 */
static double kernel_copy_rate(size_t bytes, bool write)
{
	size_t chunk = write ? GPUP_CHUNK_WRITE : GPUP_CHUNK_READ;
	size_t span = 64 * (size_t)GPUP_CHUNK_READ, done;
	u8 *buf = malloc(span);
	double t = 0;
	ssize_t n;
	int fd;

	fd = memfd_create("gpup-bench", 0);
	if (fd < 0 || !buf)
		goto out;
	memset(buf, 0x5a, span);
	if (pwrite(fd, buf, span, 0) != (ssize_t)span)
		goto out;
	t = gpup_now();
	for (done = 0; done < bytes; done += chunk) {
		if (write)
			n = pwrite(fd, buf + done % span, chunk, done % span);
		else
			n = pread(fd, buf + done % span, chunk, done % span);
		if (n != (ssize_t)chunk) {
			t = 0;
			goto out;
		}
	}
	t = gpup_now() - t;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return t > 0 ? bytes / t / 1e6 : 0;
}

static long mem_used_kb(void)
{
	char line[128];
	long total = 0, avail = 0, v;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %ld", &v) == 1)
			total = v;
		else if (sscanf(line, "MemAvailable: %ld", &v) == 1)
			avail = v;
	}
	fclose(f);
	return total - avail;
}

struct vfs {
	char pf[GPUP_BDF_LEN];
	char vf[2][GPUP_BDF_LEN];
	struct gpup_vfio v[2];
};

/* @nvfs VFs of @mb MiB, the engine writing @ws_mb MiB (0: all VRAM). */
static int setup_ws(struct vfs *s, unsigned int mb, unsigned int ws_mb,
		    int nvfs)
{
	char params[64];
	int i, ret;

	for (i = 0; i < 2; i++)
		gpup_vfio_init(&s->v[i]);
	ret = gpup_setup_pf(s->pf, 0);
	if (ret)
		return ret;
	snprintf(params, sizeof(params), "vram_mb=%u working_set_mb=%u", mb,
		 ws_mb);
	ret = gpup_reload_sim(s->pf, params);
	if (ret)
		return ret;
	ret = gpup_set_numvfs(s->pf, nvfs);
	for (i = 0; !ret && i < nvfs; i++) {
		ret = gpup_vf_bdf(s->pf, i, s->vf[i]);
		if (!ret)
			ret = gpup_bind_override(s->vf[i], "gpup_vfio_pci");
		if (!ret)
			ret = gpup_vfio_open(s->vf[i], &s->v[i]);
	}
	return ret;
}

static int setup(struct vfs *s, unsigned int mb, int nvfs)
{
	return setup_ws(s, mb, 0, nvfs);
}

static void teardown(struct vfs *s)
{
	int i;

	for (i = 0; i < 2; i++) {
		gpup_vfio_close(&s->v[i]);
		if (s->vf[i][0])
			gpup_unbind(s->vf[i]);
	}
	gpup_set_numvfs(s->pf, 0);
}

/*
 * Whether every page of VRAM moves, each as read (@all: skip_unwritten=N
 * and zero_detect=N), or the module's defaults (Y and Y).  Both are
 * written even if the first write fails, so that a failed pass still
 * puts both defaults back.  Returns 0 or the first write's -errno.
 */
static int every_page(bool all)
{
	const char *v = all ? "N" : "Y";
	int a, z;

	a = gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), v);
	z = gpup_write_file(GPUP_VFIO_PARAM("zero_detect"), v);
	return a ?: z;
}

/*
 * STOP_COPY read and RESUMING write throughput, and the memory a save
 * takes: of all of VRAM (skip_unwritten=N, zero_detect=N, as xfer_pass()).
 */
static int bench_throughput(struct vfs *s, unsigned int mb)
{
	int src = s->v[0].device, dst = s->v[1].device, fd, ret;
	struct gpup_buf b = { 0 };
	long before, peak = 0, used;
	u8 *chunk = malloc(GPUP_CHUNK_READ);
	double t, rd, wr, mc, cc, kr, kw;
	ssize_t n;

	if (!chunk)
		return -ENOMEM;
	ret = gpup_sim_run(s->vf[0], 100);
	if (!ret)
		ret = every_page(true);
	if (ret)
		goto out;
	/* Read into one reused buffer: what QEMU does per chunk. */
	before = mem_used_kb();
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY, &fd);
	if (ret)
		goto out;
	t = 0;
	for (;;) {
		double t0 = gpup_now();

		/* Only the read() is timed, not the keeping of its bytes. */
		n = read(fd, chunk, GPUP_CHUNK_READ);
		t += gpup_now() - t0;
		if (n <= 0)
			break;
		if (b.len % (16 << 20) < (size_t)n) {
			used = mem_used_kb() - before;
			if (used > peak)
				peak = used;
		}
		ret = gpup_buf_append(&b, chunk, n);
		if (ret)
			break;
	}
	close(fd);
	if (n < 0 || ret) {
		ret = n < 0 ? -errno : ret;
		goto out;
	}
	rd = b.len / t / 1e6;
	/* The bytes the test itself keeps in b.data do not count. */
	peak -= (long)(b.len >> 10);

	ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RESUMING, &fd);
	if (ret)
		goto out;
	t = gpup_now();
	ret = gpup_write_stream(fd, b.data, b.len, GPUP_CHUNK_WRITE);
	t = gpup_now() - t;
	close(fd);
	if (ret)
		goto out;
	wr = b.len / t / 1e6;
	ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (ret)
		goto out;
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (ret)
		goto out;

	mc = copy_rate(b.len, false);
	cc = copy_rate(b.len, true);
	kr = kernel_copy_rate(b.len, false);
	kw = kernel_copy_rate(b.len, true);
	bench("memcpy", mb, "_MBps", mc);
	bench("memcpy_crc32c", mb, "_MBps", cc);
	bench("kernel_read", mb, "_MBps", kr);
	bench("kernel_read", mb, "_ratio", kr / mc);
	bench("kernel_write", mb, "_MBps", kw);
	bench("kernel_write", mb, "_ratio", kw / mc);
	bench("stop_copy_read", mb, "_MBps", rd);
	bench("stop_copy_read", mb, "_ratio", rd / mc);
	bench("stop_copy_read_vs_memcpy_crc32c", mb, "_ratio", rd / cc);
	bench("stop_copy_read_vs_kernel_read", mb, "_ratio", rd / kr);
	bench("resume_write", mb, "_MBps", wr);
	bench("resume_write", mb, "_ratio", wr / mc);
	bench("resume_write_vs_memcpy_crc32c", mb, "_ratio", wr / cc);
	bench("resume_write_vs_kernel_write", mb, "_ratio", wr / kw);
	bench("stream", mb, "_bytes", b.len);
	bench("save_peak_extra_mem", mb, "_KiB", peak > 0 ? peak : 0);
out:
	every_page(false);
	gpup_buf_free(&b);
	free(chunk);
	return ret;
}

/* <what>_bulk and <what>_per_range in MB/s, and their ratio. */
static void bench_bulk_vs(const char *what, unsigned int mb, double bulk,
			  double per_range)
{
	char name[64];

	snprintf(name, sizeof(name), "%s_bulk", what);
	bench(name, mb, "_MBps", bulk);
	snprintf(name, sizeof(name), "%s_per_range", what);
	bench(name, mb, "_MBps", per_range);
	snprintf(name, sizeof(name), "%s_bulk_vs_per_range", what);
	bench(name, mb, "_ratio", bulk / per_range);
}

/*
 * Seconds of CPU the guest spent, all CPUs together, from /proc/stat:
 * what was not idle (user, nice, system, irq, softirq, steal).  Nothing
 * else runs in the bench's guest, so the difference around a pass is
 * the pass's CPU cost, the driver's, gpup_sim's engine and the reader's.
 */
static double cpu_busy(void)
{
	unsigned long long v[8];
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return 0;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
	       sysconf(_SC_CLK_TCK);
}

/**
 * struct xfer_fig - what one xfer_pass() measured, [0] the save and [1]
 *	the restore
 * @mbps: MB/s
 * @secs: seconds, the wall clock
 * @cpu: seconds of CPU (cpu_busy()) over the same interval
 */
struct xfer_fig {
	double mbps[2];
	double secs[2];
	double cpu[2];
};

/*
 * One STOP_COPY save of VF 0 read in 1 MiB pieces, and its restore into
 * the same VF (STOP -> RESUMING, written in 32 KiB pieces), with the
 * driver's bulk_xfer parameter at @bulk; the figures of each into @f.
 * One VF, so that 1 GiB of VRAM fits the guest: the stream
 * buffer is sized once from MIG_DATA_SIZE.  Every page of VRAM moves
 * (skip_unwritten=N, zero_detect=N): the figures are of moving VRAM, not
 * of the few hundred pages the VF wrote.
 */
static int xfer_pass(struct vfs *s, bool bulk, struct xfer_fig *f)
{
	int d = s->v[0].device, fd, ret;
	struct gpup_buf b = { 0 };
	double t, c;
	u64 size;
	ssize_t n;

	ret = gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), bulk ? "Y" : "N");
	if (!ret)
		ret = every_page(true);
	if (!ret)
		ret = gpup_sim_write(s->vf[0], "xfer_stats", "0");
	if (!ret)
		ret = gpup_mig_data_size(d, &size);
	if (ret)
		goto out_params;
	b.data = malloc(size);
	if (!b.data) {
		ret = -ENOMEM;
		goto out_params;
	}
	b.cap = size;
	/*
	 * Touch the buffer before the clock starts: QEMU reads into a
	 * buffer it reuses, so first-touch faults (the kernel zeroing it all
	 * on the reader's CPU, serially in both paths) are not the save's.
	 * Not zeros: malloc() and a memset() of zeros may become calloc().
	 */
	memset(b.data, 0xff, size);
	ret = gpup_mig_set(d, VFIO_DEVICE_STATE_STOP_COPY, &fd);
	if (ret)
		goto out;
	c = cpu_busy();
	t = gpup_now();
	while (b.len < b.cap) {
		n = read(fd, b.data + b.len, b.cap - b.len < GPUP_CHUNK_READ ?
			 b.cap - b.len : GPUP_CHUNK_READ);
		if (n <= 0)
			break;
		b.len += n;
	}
	t = gpup_now() - t;
	f->cpu[0] = cpu_busy() - c;
	close(fd);
	ret = b.len == size ? 0 : -EIO;
	if (ret)
		goto out;
	f->secs[0] = t;
	f->mbps[0] = b.len / t / 1e6;
	/* The path taken is the one asked for. */
	if ((gpup_sim_xfer_stat(s->vf[0], "submitted") > 0) != bulk) {
		ret = -EPROTO;
		goto out;
	}
	ret = gpup_mig_set(d, VFIO_DEVICE_STATE_RESUMING, &fd);
	if (ret)
		goto out;
	c = cpu_busy();
	t = gpup_now();
	ret = gpup_write_stream(fd, b.data, b.len, GPUP_CHUNK_WRITE);
	t = gpup_now() - t;
	f->cpu[1] = cpu_busy() - c;
	close(fd);
	if (!ret)
		ret = gpup_mig_set(d, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (!ret) {
		f->secs[1] = t;
		f->mbps[1] = b.len / t / 1e6;
	}
out:
	gpup_buf_free(&b);
out_params:
	every_page(false);
	return ret;
}

/* Save and restore throughput in bulk (vram_xfer) and per range. */
static int bench_xfer(unsigned int mb)
{
	struct xfer_fig b = { 0 }, p = { 0 };
	struct vfs s;
	int ret;

	memset(&s, 0, sizeof(s));
	ret = setup(&s, mb, 1);
	if (!ret)
		ret = gpup_sim_run(s.vf[0], 100);
	if (!ret)
		ret = xfer_pass(&s, true, &b);
	if (!ret)
		ret = xfer_pass(&s, false, &p);
	/* The module's default. */
	gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), "Y");
	teardown(&s);
	if (ret)
		return ret;
	bench_bulk_vs("save", mb, b.mbps[0], p.mbps[0]);
	bench_bulk_vs("restore", mb, b.mbps[1], p.mbps[1]);
	return 0;
}

/*
 * A copy engine's latency, @us per transfer, and the same per vram_read
 * and vram_write call (gpup_sim's xfer_delay and vram_delay), so that
 * both paths pay it: save and restore in bulk with its transfers in
 * flight (xfer_depth 4), in bulk with one (xfer_depth 1) and per range.
 *
 * With each ratio of bulk to another path, what bulk cost in CPU against
 * it (_cpu_ratio), and the ratio bulk would reach if it kept every
 * online CPU busy all the time it ran (_ceiling_ratio): the other path's
 * seconds times the CPUs over bulk's CPU seconds.  The pipeline hides the
 * latency only as far as the guest has CPUs for its stages: where the
 * work per byte costs more than the latency, no ratio can pass this.
 */
static int bench_latency(unsigned int mb, unsigned int us)
{
	static const char * const dir[2] = { "save", "restore" };
	struct xfer_fig b = { 0 }, d1 = { 0 }, p = { 0 };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char v[16], name[64];
	struct vfs s;
	int i, ret;

	snprintf(v, sizeof(v), "%u", us);
	memset(&s, 0, sizeof(s));
	ret = setup(&s, mb, 1);
	if (!ret)
		ret = gpup_sim_run(s.vf[0], 100);
	if (!ret)
		ret = gpup_sim_write(s.vf[0], "xfer_delay", v);
	if (!ret)
		ret = gpup_sim_write(s.vf[0], "vram_delay", v);
	if (!ret)
		ret = xfer_pass(&s, true, &b);
	if (!ret)
		ret = gpup_write_file(GPUP_VFIO_PARAM("xfer_depth"), "1");
	if (!ret)
		ret = xfer_pass(&s, true, &d1);
	gpup_write_file(GPUP_VFIO_PARAM("xfer_depth"), "4");
	if (!ret)
		ret = xfer_pass(&s, false, &p);
	gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), "Y");
	teardown(&s);
	if (ret)
		return ret;
	for (i = 0; i < 2; i++) {
		/* No CPU figures where /proc/stat could not be read. */
		bool cpu = b.cpu[i] > 0 && p.cpu[i] > 0 && ncpu > 0;

		snprintf(name, sizeof(name), "%s_lat%uus", dir[i], us);
		bench_bulk_vs(name, mb, b.mbps[i], p.mbps[i]);
		snprintf(name, sizeof(name), "%s_lat%uus_bulk_vs_per_range",
			 dir[i], us);
		if (cpu) {
			bench(name, mb, "_cpu_ratio", b.cpu[i] / p.cpu[i]);
			bench(name, mb, "_ceiling_ratio",
			      p.secs[i] * ncpu / b.cpu[i]);
		}
		snprintf(name, sizeof(name), "%s_lat%uus_bulk_vs_depth1",
			 dir[i], us);
		bench(name, mb, "_ratio", b.mbps[i] / d1.mbps[i]);
		if (cpu)
			bench(name, mb, "_ceiling_ratio",
			      d1.secs[i] * ncpu / b.cpu[i]);
	}
	return 0;
}

/* Whether two VFs of @mb MiB and a stream of that size fit the guest. */
static bool two_vfs_fit(unsigned int mb)
{
	char line[128];
	long total = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return true;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %ld kB", &total) == 1)
			break;
	fclose(f);
	/* VRAM of both VFs, the stream (twice, as it grows), the rest. */
	return total / 1024 >= 4L * mb + 512;
}

/*
 * Blackout: source RUNNING -> STOP_COPY drained plus destination writes
 * of that part and RESUMING -> STOP, after @steps steps of gpup_sim
 * (each rewrites 4 pages) in each pre-copy round.  Returns the time in
 * ms through @ms.
 */
static int bench_blackout(struct vfs *s, unsigned int mb, bool precopy,
			  unsigned long steps, const char *name, double *ms)
{
	int src = s->v[0].device, dst = s->v[1].device, sfd, dfd, ret;
	struct gpup_buf b = { 0 };
	size_t pre = 0;
	double t;

	ret = gpup_device_reset(src);
	if (!ret)
		ret = gpup_device_reset(dst);
	if (!ret)
		ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RESUMING, &dfd);
	if (ret)
		return ret;
	if (precopy) {
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_PRE_COPY, &sfd);
		if (!ret)
			ret = gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 1);
		if (!ret)
			ret = gpup_write_stream(dfd, b.data, b.len,
						GPUP_CHUNK_WRITE);
		pre = b.len;
		if (!ret)
			ret = gpup_sim_run(s->vf[0], steps);
		/* One more round picks up the working set while running. */
		if (!ret)
			ret = gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 1);
		if (!ret)
			ret = gpup_write_stream(dfd, b.data + pre, b.len - pre,
						GPUP_CHUNK_WRITE);
		pre = b.len;
		if (!ret)
			ret = gpup_sim_run(s->vf[0], steps);
		if (ret)
			goto out;
		t = gpup_now();
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY, NULL);
	} else {
		ret = gpup_sim_run(s->vf[0], steps);
		if (ret)
			goto out;
		t = gpup_now();
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY, &sfd);
	}
	if (!ret)
		ret = gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 0);
	if (!ret)
		ret = gpup_write_stream(dfd, b.data + pre, b.len - pre,
					GPUP_CHUNK_WRITE);
	close(dfd);
	if (!ret)
		ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_STOP, NULL);
	t = gpup_now() - t;
	close(sfd);
	if (ret)
		goto out;
	*ms = t * 1e3;
	bench(name, mb, "_ms", t * 1e3);
	bench(name, mb, "_bytes", b.len - pre);
	bench(name, mb, "_vram_pct",
	      100.0 * (b.len - pre) / ((double)mb * (1 << 20)));
	ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (!ret)
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_RUNNING, NULL);
out:
	gpup_buf_free(&b);
	return ret;
}

#define DIRTY_ROUNDS	4

/*
 * Pre-copy dirty passes of scattered pages, VF 0 to VF 1, with bulk_xfer
 * at @bulk: after the full pass, DIRTY_ROUNDS rounds of @steps steps (4
 * random pages each) and the dirty pass that sends them.  MB/s of the
 * dirty passes' bytes through read() (@save) and write() (@restore);
 * in bulk, the runs per transfer on the source (@segs).  The migration
 * is then abandoned: the source runs on, the destination is reset.
 */
static int dirty_passes(struct vfs *s, bool bulk, unsigned long steps,
			double *save, double *restore, double *segs)
{
	int src = s->v[0].device, dst = s->v[1].device, sfd = -1, dfd = -1;
	struct gpup_buf b = { 0 };
	double ts = 0, tr = 0, t;
	size_t pre, dirty = 0;
	bool used;
	int r, ret;

	ret = gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), bulk ? "Y" : "N");
	if (!ret)
		ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RESUMING, &dfd);
	if (!ret)
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_PRE_COPY, &sfd);
	if (!ret)
		ret = gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 1);
	if (!ret)
		ret = gpup_write_stream(dfd, b.data, b.len, GPUP_CHUNK_WRITE);
	if (!ret)
		ret = gpup_sim_write(s->vf[0], "xfer_stats", "0");
	for (r = 0; r < DIRTY_ROUNDS && !ret; r++) {
		pre = b.len;
		ret = gpup_sim_run(s->vf[0], steps);
		if (ret)
			break;
		t = gpup_now();
		ret = gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 1);
		ts += gpup_now() - t;
		if (ret)
			break;
		t = gpup_now();
		ret = gpup_write_stream(dfd, b.data + pre, b.len - pre,
					GPUP_CHUNK_WRITE);
		tr += gpup_now() - t;
		dirty += b.len - pre;
	}
	if (!ret && (!dirty || ts <= 0 || tr <= 0))
		ret = -EIO;
	if (!ret) {
		*save = dirty / ts / 1e6;
		*restore = dirty / tr / 1e6;
		t = gpup_sim_xfer_stat(s->vf[0], "submitted");
		used = t > 0;
		*segs = used ? gpup_sim_xfer_stat(s->vf[0], "segments") / t : 0;
		/* The path taken is the one asked for. */
		if (used != bulk)
			ret = -EPROTO;
	}
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	if (!ret)
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (!ret)
		ret = gpup_device_reset(dst);
	gpup_buf_free(&b);
	return ret;
}

/*
 * Dirty passes in bulk against per range: a sixteenth of VRAM's pages
 * written a round, scattered, so that most runs are one page.
 */
static int bench_dirty(struct vfs *s, unsigned int mb)
{
	unsigned long steps = ((unsigned long)mb << 20) / 4096 / 16 / 4;
	double sb = 0, rb = 0, sp = 0, rp = 0, segs = 0, none;
	int ret;

	ret = dirty_passes(s, true, steps, &sb, &rb, &segs);
	if (!ret)
		ret = dirty_passes(s, false, steps, &sp, &rp, &none);
	gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), "Y");
	if (ret)
		return ret;
	bench_bulk_vs("dirty_save", mb, sb, sp);
	bench_bulk_vs("dirty_restore", mb, rb, rp);
	bench("dirty_bulk_runs_per_transfer", mb, "", segs);
	return 0;
}

/* read() until -ENOMSG (or the end): the bytes read, or -errno. */
static long long drain(int fd, u8 *buf)
{
	long long total = 0;
	ssize_t n;

	for (;;) {
		n = read(fd, buf, GPUP_CHUNK_READ);
		if (n < 0)
			return errno == ENOMSG ? total : -errno;
		if (!n)
			return total;
		total += n;
	}
}

/* Calls of @req on @fd in about a second; per second. */
static double ioctl_rate(int fd, unsigned long req, void *arg)
{
	double t0 = gpup_now(), t;
	long calls = 0;

	do {
		if (ioctl(fd, req, arg))
			return 0;
		calls++;
		t = gpup_now() - t0;
	} while (t < 1.0);
	return calls / t;
}

/*
 * An idle VF migrated with pre-copy: the stream holds each page once
 * (bytes per VRAM byte, the goal 1.00 plus record headers; every page
 * moves, skip_unwritten=N and zero_detect=N as in xfer_pass(), else the
 * stream would be ZERO records and the VF's few written pages), and what a
 * VFIO_MIG_GET_PRECOPY_INFO costs once the full pass is read, against
 * the device's VFIO_DEVICE_GET_INFO (a call that does no work) in the
 * same run: O(1) in VRAM size if the ratio does not fall with VRAM.
 */
static int bench_precopy_info(struct vfs *s, unsigned int mb)
{
	struct vfio_device_info dinfo = { .argsz = sizeof(dinfo) };
	struct vfio_precopy_info pinfo = { .argsz = sizeof(pinfo) };
	int src = s->v[0].device, fd, ret;
	u8 *buf = malloc(GPUP_CHUNK_READ);
	long long pre, rest;
	double info, base;

	if (!buf)
		return -ENOMEM;
	ret = every_page(true);
	if (!ret)
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_PRE_COPY, &fd);
	if (ret)
		goto out;
	pre = drain(fd, buf);
	info = ioctl_rate(fd, VFIO_MIG_GET_PRECOPY_INFO, &pinfo);
	base = ioctl_rate(src, VFIO_DEVICE_GET_INFO, &dinfo);
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY, NULL);
	rest = ret ? 0 : drain(fd, buf);
	close(fd);
	if (!ret && (pre < 0 || rest < 0))
		ret = pre < 0 ? pre : rest;
	if (ret)
		goto out;
	bench("precopy_idle_stream_per_vram", mb, "_ratio",
	      (pre + rest) / ((double)mb * (1 << 20)));
	bench("precopy_info_calls", mb, "_per_s", info);
	bench("get_info_calls", mb, "_per_s", base);
	bench("precopy_info_vs_get_info", mb, "_ratio", base ? info / base : 0);
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_RUNNING, NULL);
out:
	every_page(false);
	free(buf);
	return ret;
}

/*
 * Real GPU sizes (issue 24): VFs of 1, 16, 48 and 64 GiB whose engine
 * writes the same 256 MiB working set (BIG_STEPS steps, about 97% of it),
 * then rewrites BIG_DIRTY_STEPS steps' pages in each pre-copy round.
 */
#define BIG_WS_MB	256
#define BIG_STEPS	60000UL
#define BIG_DIRTY_STEPS	2000UL

static const unsigned int big_sizes[] = { 1024, 16384, 49152, 65536 };

/*
 * The pre-copy migration runs BIG_REPS times at each size and each of
 * its figures is the median: one blackout of a TCG guest varies by up
 * to a fifth from run to run, which one sample cannot tell from growth.
 */
#define BIG_REPS	3

/*
 * Move what @sfd has (up to -ENOMSG when @precopy, else EOF) into @dfd,
 * chunk by chunk, never holding the stream; bytes through @n.
 */
static int pump(int sfd, int dfd, u8 *buf, bool precopy, long long *n)
{
	ssize_t r;
	int ret;

	for (;;) {
		r = read(sfd, buf, GPUP_CHUNK_READ);
		if (r < 0)
			return errno == ENOMSG && precopy ? 0 : -errno;
		if (!r)
			return 0;
		ret = gpup_write_stream(dfd, buf, r, GPUP_CHUNK_WRITE);
		if (ret)
			return ret;
		*n += r;
	}
}

static int big_steps(const char *vf, unsigned long steps)
{
	int ret = 0;

	/* In slices: each runs under the VF's lock. */
	for (; steps && !ret; steps -= steps > 10000 ? 10000 : steps)
		ret = gpup_sim_run(vf, steps > 10000 ? 10000 : steps);
	return ret;
}

struct big_fig {
	double blackout_ms;	/* STOP_COPY to the destination's STOP */
	long long blackout_bytes;	/* the stream from STOP_COPY on */
	long long total_bytes;	/* the whole stream */
	long long initial_bytes;	/* read up to pre-copy's first end */
	long long written;	/* bytes the source wrote since its reset */
	double first_byte_ms;	/* RUNNING -> PRE_COPY, first read() back */
	double precopy_info;	/* PRECOPY_INFO calls per second */
	double get_info;	/* GET_INFO calls per second, same run */
	double data_size;	/* MIG_DATA_SIZE calls per second, PRE_COPY */
	double data_size_idle;	/* the same in RUNNING, before the save */
	/* Cost of a call in GET_INFO calls timed right after it. */
	double precopy_info_cost;
	double data_size_cost;
	double data_size_idle_cost;
};

/* A VFIO_DEVICE_FEATURE_MIG_DATA_SIZE request, for ioctl_rate(). */
struct data_size_req {
	struct vfio_device_feature f;
	struct vfio_device_feature_mig_data_size d;
};

/*
 * One migration VF 0 -> VF 1 of the working set, the stream pumped
 * through this process: with pre-copy (two rounds of dirtying) and
 * the pages never written skipped, or as the stop-copy model (what
 * xe-vfio-pci does: no pre-copy, every page of VRAM in the blackout).
 */
static int big_migrate(struct vfs *s, bool model, struct big_fig *f)
{
	struct vfio_device_info dinfo = { .argsz = sizeof(dinfo) };
	struct vfio_precopy_info pinfo = { .argsz = sizeof(pinfo) };
	struct data_size_req dsize = {
		.f.argsz = sizeof(dsize),
		.f.flags = VFIO_DEVICE_FEATURE_GET |
			   VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
	};
	int src = s->v[0].device, dst = s->v[1].device, sfd = -1, dfd = -1;
	u8 *buf = malloc(GPUP_CHUNK_READ);
	long long n = 0;
	double t;
	ssize_t r;
	int ret;

	memset(f, 0, sizeof(*f));
	if (!buf)
		return -ENOMEM;
	ret = gpup_device_reset(src);
	if (!ret)
		ret = gpup_device_reset(dst);
	if (!ret)
		ret = big_steps(s->vf[0], BIG_STEPS);
	if (!ret)
		ret = every_page(model);
	if (!ret)
		ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RESUMING, &dfd);
	if (ret)
		goto out;
	f->written = gpup_sim_read_long(s->vf[0], "vram_backed") * 4096LL;
	if (!model) {
		/* What QEMU asks before it starts: a walk of the written set. */
		f->data_size_idle = ioctl_rate(src, VFIO_DEVICE_FEATURE, &dsize);
		t = gpup_now();
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_PRE_COPY, &sfd);
		if (ret)
			goto out;
		r = read(sfd, buf, GPUP_CHUNK_READ);
		f->first_byte_ms = (gpup_now() - t) * 1e3;
		if (r <= 0 || gpup_write_stream(dfd, buf, r, GPUP_CHUNK_WRITE)) {
			ret = r < 0 ? -errno : -EIO;
			goto out;
		}
		n = r;
		ret = pump(sfd, dfd, buf, true, &n);
		f->initial_bytes = n;
		if (!ret) {
			f->precopy_info = ioctl_rate(sfd,
						     VFIO_MIG_GET_PRECOPY_INFO,
						     &pinfo);
			f->get_info = ioctl_rate(src, VFIO_DEVICE_GET_INFO,
						 &dinfo);
			/* What QEMU asks on each iteration: O(1). */
			f->data_size = ioctl_rate(src, VFIO_DEVICE_FEATURE,
						  &dsize);
		}
		f->precopy_info_cost = f->get_info / f->precopy_info;
		f->data_size_cost = f->get_info / f->data_size;
		f->data_size_idle_cost = f->get_info / f->data_size_idle;
		if (!ret)
			ret = big_steps(s->vf[0], BIG_DIRTY_STEPS);
		if (!ret)
			ret = pump(sfd, dfd, buf, true, &n);
		if (ret)
			goto out;
	}
	ret = big_steps(s->vf[0], BIG_DIRTY_STEPS);
	if (ret)
		goto out;
	f->blackout_bytes = n;
	t = gpup_now();
	ret = gpup_mig_set(src, VFIO_DEVICE_STATE_STOP_COPY,
			   model ? &sfd : NULL);
	if (!ret)
		ret = pump(sfd, dfd, buf, false, &n);
	close(dfd);
	dfd = -1;
	if (!ret)
		ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_STOP, NULL);
	f->blackout_ms = (gpup_now() - t) * 1e3;
	f->blackout_bytes = n - f->blackout_bytes;
	f->total_bytes = n;
	if (!ret)
		ret = gpup_mig_set(dst, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (!ret)
		ret = gpup_mig_set(src, VFIO_DEVICE_STATE_RUNNING, NULL);
out:
	every_page(false);
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	free(buf);
	return ret;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * The timed figures of a struct big_fig that bench_big() prints, each a
 * median of BIG_REPS (the MIG_DATA_SIZE rates only through their costs).
 */
static const size_t big_timed[] = {
	offsetof(struct big_fig, blackout_ms),
	offsetof(struct big_fig, first_byte_ms),
	offsetof(struct big_fig, precopy_info),
	offsetof(struct big_fig, get_info),
	offsetof(struct big_fig, precopy_info_cost),
	offsetof(struct big_fig, data_size_cost),
	offsetof(struct big_fig, data_size_idle_cost),
};

/* The median of the BIG_REPS values of the field at @off in @r. */
static double big_median(const struct big_fig *r, size_t off)
{
	double v[BIG_REPS];
	unsigned int i;

	for (i = 0; i < BIG_REPS; i++)
		v[i] = *(const double *)((const char *)&r[i] + off);
	qsort(v, BIG_REPS, sizeof(v[0]), cmp_double);
	return v[BIG_REPS / 2];
}

/*
 * @f is the first of BIG_REPS pre-copy migrations (the byte counts are
 * the same in each), with the median of each timed figure; the fastest
 * and slowest blackouts through @lo and @hi.
 */
static int big_migrate_reps(struct vfs *s, struct big_fig *f, double *lo,
			    double *hi)
{
	struct big_fig r[BIG_REPS];
	unsigned int i;
	int ret = 0;

	for (i = 0; i < BIG_REPS && !ret; i++)
		ret = big_migrate(s, false, &r[i]);
	if (ret)
		return ret;
	*f = r[0];
	*lo = *hi = r[0].blackout_ms;
	for (i = 1; i < BIG_REPS; i++) {
		*lo = r[i].blackout_ms < *lo ? r[i].blackout_ms : *lo;
		*hi = r[i].blackout_ms > *hi ? r[i].blackout_ms : *hi;
	}
	for (i = 0; i < ARRAY_SIZE(big_timed); i++)
		*(double *)((char *)f + big_timed[i]) =
			big_median(r, big_timed[i]);
	return 0;
}

/*
 * The stop-copy model's stream size, exactly, without moving it: the
 * VF's MIG_DATA_SIZE with skip_unwritten=N (what STOP_COPY would send).
 */
static int big_model_bytes(struct vfs *s, long long *bytes)
{
	u64 size;
	int ret;

	ret = gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "N");
	if (!ret)
		ret = gpup_mig_data_size(s->v[0].device, &size);
	gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "Y");
	*bytes = size;
	return ret;
}

/*
 * BENCH lines of the real sizes, with ratios against 1 GiB and against
 * the stop-copy model in the same run; the model's blackout is measured
 * at 1 and 16 GiB (48 GiB of zeros through TCG would take a quarter of
 * an hour), its bytes at every size.
 */
static int bench_big(void)
{
	struct big_fig f = { 0 }, f1 = { 0 }, m = { 0 };
	long long model_bytes = 0;
	double lo = 0, hi = 0;
	unsigned int i, mb;
	struct vfs s;
	int ret = 0;

	for (i = 0; i < ARRAY_SIZE(big_sizes); i++) {
		mb = big_sizes[i];
		memset(&s, 0, sizeof(s));
		ret = setup_ws(&s, mb, BIG_WS_MB, 2);
		if (!ret)
			ret = big_migrate_reps(&s, &f, &lo, &hi);
		if (!ret)
			ret = big_model_bytes(&s, &model_bytes);
		if (!ret && mb <= 16384)
			ret = big_migrate(&s, true, &m);
		teardown(&s);
		if (ret) {
			fprintf(stderr, "bench: big %u MiB: %s\n", mb,
				strerror(-ret));
			break;
		}
		if (!i)
			f1 = f;
		bench("big_written", mb, "_bytes", f.written);
		bench("big_stream", mb, "_bytes", f.total_bytes);
		/* Goal 1.01 at 48 GiB: what an idle VF's pre-copy sends. */
		bench("big_initial", mb, "_bytes", f.initial_bytes);
		bench("big_initial_per_written", mb, "_ratio",
		      (double)f.initial_bytes / f.written);
		bench("big_blackout_precopy", mb, "_ms", f.blackout_ms);
		bench("big_blackout_precopy_fastest", mb, "_ms", lo);
		bench("big_blackout_precopy_slowest", mb, "_ms", hi);
		bench("big_blackout_precopy", mb, "_bytes", f.blackout_bytes);
		bench("big_blackout_precopy_vs_1024M", mb, "_ratio",
		      f.blackout_ms / f1.blackout_ms);
		bench("big_model", mb, "_bytes", model_bytes);
		bench("big_model_vs_precopy_blackout_bytes", mb, "_ratio",
		      (double)model_bytes / f.blackout_bytes);
		if (mb <= 16384) {
			bench("big_model_blackout", mb, "_ms", m.blackout_ms);
			bench("big_model_blackout", mb, "_bytes",
			      m.blackout_bytes);
			bench("big_model_vs_precopy_blackout_ms", mb, "_ratio",
			      m.blackout_ms / f.blackout_ms);
		}
		bench("big_first_byte", mb, "_ms", f.first_byte_ms);
		bench("big_first_byte_vs_1024M", mb, "_ratio",
		      f.first_byte_ms / f1.first_byte_ms);
		bench("big_precopy_info_calls", mb, "_per_s", f.precopy_info);
		bench("big_get_info_calls", mb, "_per_s", f.get_info);
		/*
		 * A call's cost in GET_INFO calls (a call that does no work,
		 * timed right after: the load of the machine cancels out),
		 * against the same at 1 GiB.  Goal 1.1 at 64 GiB.
		 */
		bench("big_precopy_info_cost_vs_1024M", mb, "_ratio",
		      f.precopy_info_cost / f1.precopy_info_cost);
		/*
		 * MIG_DATA_SIZE the same way: in PRE_COPY, from the save
		 * file's counts; in RUNNING, a walk of the written set.
		 */
		bench("big_mig_data_size_cost_vs_1024M", mb, "_ratio",
		      f.data_size_cost / f1.data_size_cost);
		bench("big_mig_data_size_running_cost_vs_1024M", mb, "_ratio",
		      f.data_size_idle_cost / f1.data_size_idle_cost);
	}
	return ret;
}

int main(int argc, char **argv)
{
	struct vfs s;
	unsigned int mb;
	int i, ret = 0;

	/*
	 * The fixed working set: 1% of the first VRAM size, the same bytes
	 * at every size, so that its blackout time shows what VRAM size
	 * alone costs (it should cost nothing but bitmap scans).
	 */
	unsigned long ws1 = 0, steps;
	double ms, fixed1 = 0;

	/* "bench big": the real sizes only. */
	if (argc > 1 && !strcmp(argv[1], "big"))
		return bench_big() ? 1 : 0;
	for (i = 1; i < argc && !ret; i++) {
		mb = atoi(argv[i]);
		steps = ((unsigned long)mb << 20) / 4096 / 100 / 4;
		if (!ws1)
			ws1 = steps;
		ret = bench_xfer(mb);
		if (!ret)
			ret = bench_latency(mb, 20);
		if (!ret)
			ret = bench_latency(mb, 200);
		if (ret) {
			fprintf(stderr, "bench: %u MiB bulk/per range: %s\n",
				mb, strerror(-ret));
			break;
		}
		if (!two_vfs_fit(mb)) {
			fprintf(stderr, "bench: %u MiB: two VFs do not fit\n",
				mb);
			continue;
		}
		memset(&s, 0, sizeof(s));
		ret = setup(&s, mb, 2);
		if (!ret)
			ret = bench_precopy_info(&s, mb);
		if (!ret)
			ret = bench_throughput(&s, mb);
		if (!ret)
			ret = bench_dirty(&s, mb);
		/* A 1% dirty working set: it grows with VRAM. */
		if (!ret)
			ret = bench_blackout(&s, mb, false, steps,
					     "blackout_stopcopy", &ms);
		if (!ret)
			ret = bench_blackout(&s, mb, true, steps,
					     "blackout_precopy", &ms);
		if (!ret)
			ret = bench_blackout(&s, mb, true, ws1,
					     "blackout_precopy_fixed_ws", &ms);
		if (!ret && i == 1)
			fixed1 = ms;
		else if (!ret && fixed1 > 0)
			bench("blackout_precopy_fixed_ws_vs_first", mb, "_ratio",
			      ms / fixed1);
		teardown(&s);
		if (ret)
			fprintf(stderr, "bench: %u MiB: %s\n", mb, strerror(-ret));
	}
	/* PRECOPY_INFO on a 1 GiB VF, one VF only (the guest's memory). */
	if (!ret) {
		memset(&s, 0, sizeof(s));
		ret = setup(&s, 1024, 1);
		if (!ret)
			ret = bench_precopy_info(&s, 1024);
		teardown(&s);
		if (ret)
			fprintf(stderr, "bench: 1024 MiB: %s\n", strerror(-ret));
	}
	return ret ? 1 : 0;
}
