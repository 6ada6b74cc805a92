// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO migration v2 of gpup_vfio_pci over gpup_sim: flags, every arc,
 * the digest proof (a migrated VF equals one that never moved), abort,
 * reset and data_fd rules, tracepoints.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"
#include "lib/gpup_walk.h"
#include "stream.h"

#define NVF	3
#define CHUNK_READ	GPUP_CHUNK_READ
#define CHUNK_WRITE	GPUP_CHUNK_WRITE

enum { A, B, C };

FIXTURE(mig) {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
};

/* The NVF VFs of @pf, C made A's twin, on gpup_vfio_pci and open. */
static void open_vfs(struct __test_metadata *_metadata, const char *pf,
		     char vf[NVF][GPUP_BDF_LEN], struct gpup_vfio *v)
{
	int i;

	for (i = 0; i < NVF; i++)
		ASSERT_EQ(0, gpup_vf_bdf(pf, i, vf[i]));
	/*
	 * Every VF starts from a state of its own; C, the VF that never
	 * moves, is made A's twin so that it can stand for "A, had it not
	 * moved".
	 */
	ASSERT_EQ(0, gpup_sim_twin(vf[C], vf[A]));
	for (i = 0; i < NVF; i++) {
		ASSERT_EQ(0, gpup_bind_override(vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(vf[i], &v[i]));
	}
}

/* No test may make the driver break the provider contract; then close. */
static void close_vfs(struct __test_metadata *_metadata,
		      char vf[NVF][GPUP_BDF_LEN], struct gpup_vfio *v)
{
	int i;

	for (i = 0; i < NVF; i++)
		EXPECT_EQ(0, gpup_sim_violations(vf[i]))
			TH_LOG("VF %s", vf[i]);
	for (i = 0; i < NVF; i++) {
		gpup_vfio_close(&v[i]);
		gpup_unbind(vf[i]);
	}
}

FIXTURE_SETUP(mig)
{
	ASSERT_EQ(0, gpup_setup_pf(self->pf, NVF));
	open_vfs(_metadata, self->pf, self->vf, self->v);
}

FIXTURE_TEARDOWN(mig)
{
	close_vfs(_metadata, self->vf, self->v);
	gpup_set_numvfs(self->pf, 0);
}

static int dev(struct _test_data_mig *self, int i)
{
	return self->v[i].device;
}

static int state_of(int device)
{
	int s = -1;

	if (gpup_mig_get(device, &s))
		return -1;
	return s;
}

static void expect_same(struct __test_metadata *_metadata, const char *x,
			const char *y)
{
	char dx[GPUP_DIGEST_LEN], dy[GPUP_DIGEST_LEN];

	ASSERT_EQ(0, gpup_sim_digest(x, dx));
	ASSERT_EQ(0, gpup_sim_digest(y, dy));
	EXPECT_STREQ(dx, dy);
}

static void expect_differ(struct __test_metadata *_metadata, const char *x,
			  const char *y)
{
	char dx[GPUP_DIGEST_LEN], dy[GPUP_DIGEST_LEN];

	ASSERT_EQ(0, gpup_sim_digest(x, dx));
	ASSERT_EQ(0, gpup_sim_digest(y, dy));
	EXPECT_STRNE(dx, dy);
}

TEST_F(mig, feature_flags)
{
	u64 flags;

	ASSERT_EQ(0, gpup_mig_flags(dev(self, A), &flags));
	EXPECT_EQ(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
		  VFIO_MIGRATION_PRE_COPY, flags);
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
}

TEST_F(mig, data_size_is_exact)
{
	struct gpup_buf b = { 0 };
	u64 size;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 10));
	ASSERT_EQ(0, gpup_mig_data_size(dev(self, A), &size));
	EXPECT_GT(size, 0);
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	EXPECT_EQ(size, b.len);
	gpup_buf_free(&b);
}

/* The proof: A runs N, moves to B, B runs M; C runs N+M in place. */
/*
 * The path VRAM takes is the one bulk_xfer names (the lanes differ: the
 * default, bulk, on the stock and debug lanes, per range on sid's), and
 * the driver's debugfs "passes" has the one pass of a STOP_COPY save:
 * every page A wrote (@vram bytes of them: with query_written, the pages
 * it never wrote are not read) and a record header per run, nothing
 * dirty after it.
 */
static void expect_path(struct __test_metadata *_metadata,
			struct _test_data_mig *self, unsigned long long vram)
{
	char path[128], bulk[8], t[4096], *l;
	unsigned long long bytes = 0, left = 1;
	unsigned int pass = 1, reads = 0, stop = 0, n = 0;
	bool on;
	int got;

	ASSERT_LT(0, gpup_read_file(GPUP_VFIO_PARAM("bulk_xfer"),
				    bulk, sizeof(bulk)));
	TH_LOG("bulk_xfer=%s", bulk);
	on = bulk[0] == 'Y';
	EXPECT_EQ(on, gpup_sim_xfer_stat(self->vf[A], "submitted") > 0);
	EXPECT_EQ(on, gpup_sim_xfer_stat(self->vf[B], "submitted") > 0);
	snprintf(path, sizeof(path), "/sys/kernel/debug/gpup_vfio_pci/%s/passes",
		 self->vf[A]);
	ASSERT_LT(0, gpup_read_file(path, t, sizeof(t)));
	for (l = strchr(t, '\n'); l; l = strchr(l + 1, '\n')) {
		if (!l[1])
			break;
		got = sscanf(l + 1, "%u %llu %llu %u %*u %*u %*u %*u %*u %u",
			     &pass, &bytes, &left, &reads, &stop);
		ASSERT_EQ(5, got);
		n++;
	}
	EXPECT_EQ(1, n);
	EXPECT_EQ(0, pass);
	EXPECT_LT(vram, bytes);
	/* At most a record per page. */
	EXPECT_GE(vram + vram / 128, bytes);
	EXPECT_EQ(0, left);
	EXPECT_LE(1, reads);
	EXPECT_EQ(1, stop);
}

TEST_F(mig, roundtrip_stop_copy)
{
	unsigned long long written;
	struct gpup_buf b = { 0 };
	char before[GPUP_DIGEST_LEN], after[GPUP_DIGEST_LEN];

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 40));
	written = gpup_sim_read_long(self->vf[A], "vram_backed") * 4096;
	ASSERT_LT(0, written);
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], before));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_stats", "0"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "xfer_stats", "0"));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	/* Saving does not change the source. */
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], after));
	EXPECT_STREQ(before, after);
	expect_differ(_metadata, self->vf[A], self->vf[B]);

	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	EXPECT_EQ(40, gpup_sim_steps(self->vf[B]));
	expect_path(_metadata, self, written);

	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 25));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 65));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	gpup_buf_free(&b);
}

TEST_F(mig, roundtrip_precopy_idle)
{
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	ASSERT_EQ(0, gpup_migrate_precopy(self->vf[A], dev(self, A),
					  dev(self, B), 2, 0));
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 20));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 50));
	expect_same(_metadata, self->vf[B], self->vf[C]);
}

TEST_F(mig, roundtrip_precopy_running)
{
	/* Steps run while PRE_COPY reads: dirty pages must follow. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	ASSERT_EQ(0, gpup_migrate_precopy(self->vf[A], dev(self, A),
					  dev(self, B), 4, 7));
	EXPECT_EQ(30 + 4 * 7, gpup_sim_steps(self->vf[B]));
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 12));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 30 + 4 * 7 + 12));
	expect_same(_metadata, self->vf[B], self->vf[C]);
}

TEST_F(mig, there_and_back)
{
	struct gpup_buf b = { 0 };

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 11));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	gpup_buf_free(&b);
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 13));
	/* A was left in STOP: it becomes the destination. */
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, B), &b));
	ASSERT_EQ(0, gpup_load(dev(self, A), &b));
	gpup_buf_free(&b);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 17));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 11 + 13 + 17));
	expect_same(_metadata, self->vf[A], self->vf[C]);
}

TEST_F(mig, abort_precopy_keeps_source)
{
	struct gpup_buf b = { 0 };
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 9));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  &fd));
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, gpup_read_stream(fd, &b, 4096, 1));
	EXPECT_GT(b.len, 0);
	/* Steps go on during pre-copy; then the migration is cancelled. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	close(fd);
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 6));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 20));
	expect_same(_metadata, self->vf[A], self->vf[C]);
	gpup_buf_free(&b);
}

TEST_F(mig, abort_stop_copy_keeps_source)
{
	char buf[4096];
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 9));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  &fd));
	ASSERT_GE(fd, 0);
	ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));
	close(fd);
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 6));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 15));
	expect_same(_metadata, self->vf[A], self->vf[C]);
}

TEST_F(mig, steps_refused_while_stopped)
{
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING_P2P,
				  NULL));
	EXPECT_EQ(-EBUSY, gpup_sim_run(self->vf[A], 1));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(-EBUSY, gpup_sim_run(self->vf[A], 1));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	EXPECT_EQ(0, gpup_sim_run(self->vf[A], 1));
}

TEST_F(mig, precopy_info)
{
	u64 initial, dirty, initial0;
	struct gpup_buf b = { 0 };
	char buf[64];
	int fd;

	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  &fd));
	ASSERT_EQ(0, gpup_precopy_info(fd, &initial0, &dirty));
	EXPECT_GT(initial0, 0);
	EXPECT_EQ(0, dirty);
	/* initial_bytes counts down exactly with what is read. */
	ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, gpup_precopy_info(fd, &initial, &dirty));
	EXPECT_EQ(initial0 - sizeof(buf), initial);
	ASSERT_EQ(0, gpup_read_stream(fd, &b, CHUNK_READ, 1));
	EXPECT_EQ(initial0, b.len + sizeof(buf));
	ASSERT_EQ(0, gpup_precopy_info(fd, &initial, &dirty));
	EXPECT_EQ(0, initial);
	EXPECT_EQ(0, dirty);
	/* Nothing dirty: a temporary end. */
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	EXPECT_EQ(ENOMSG, errno);
	/*
	 * Steps dirty pages: dirty_bytes estimates what the next reads
	 * return, one record per dirty page, an upper bound that two
	 * contiguous pages sharing a record undercut by 32 bytes.
	 */
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 3));
	ASSERT_EQ(0, gpup_precopy_info(fd, &initial, &dirty));
	EXPECT_EQ(0, initial);
	EXPECT_GT(dirty, 0);
	gpup_buf_free(&b);
	ASSERT_EQ(0, gpup_read_stream(fd, &b, CHUNK_READ, 1));
	EXPECT_GE(dirty, b.len);
	EXPECT_LE(dirty - b.len, 12 * 32);
	EXPECT_EQ(0, (dirty - b.len) % 32);
	/* In P2P too; and not outside pre-copy. */
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY_P2P,
				  NULL));
	EXPECT_EQ(0, gpup_precopy_info(fd, &initial, &dirty));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  NULL));
	EXPECT_EQ(-EINVAL, gpup_precopy_info(fd, &initial, &dirty));
	close(fd);
	gpup_buf_free(&b);
}

#define TRACEFS		"/sys/kernel/tracing"
#define TRACE_INST	TRACEFS "/instances/gpup_migration_test"

/*
 * Sum of the ret= values of the gpup_vfio_op events of @op on VF @vf in
 * the trace @t, and their count through @n.
 */
static long long trace_op_sum(const char *t, unsigned int vf, const char *op,
			      int *n)
{
	char key[64];
	const char *p = t;
	long long sum = 0;

	snprintf(key, sizeof(key), "gpup_vfio_op: vf=%u %s(", vf, op);
	*n = 0;
	while ((p = strstr(p, key))) {
		const char *r = strstr(p, " ret=");

		if (!r)
			break;
		sum += strtoll(r + 5, NULL, 10);
		(*n)++;
		p = r;
	}
	return sum;
}

static bool trace_has(const char *t, const char *what)
{
	return strstr(t, what);
}

/*
 * The gpup_vfio events of a stop-copy migration A -> B, read from a
 * tracing instance of our own: every arc on both sides, every provider
 * call, and the VRAM A wrote read and written exactly once, the rest
 * left as the zeros it is on B, a VF that wrote nothing.
 */
TEST_F(mig, tracepoints)
{
	long long vram = (long long)GPUP_SIM_VRAM_MB << 20, backed;
	size_t cap = 1 << 20;
	struct gpup_buf b = { 0 };
	char *t = calloc(1, cap);
	int len, cnt, cnt2;

	ASSERT_NE(NULL, t);
	if (access(TRACEFS "/instances", F_OK))
		ASSERT_EQ(0, mount("tracefs", TRACEFS, "tracefs", 0, NULL));
	rmdir(TRACE_INST);
	ASSERT_EQ(0, mkdir(TRACE_INST, 0755));
	ASSERT_EQ(0, gpup_write_file(TRACE_INST "/events/gpup_vfio/enable",
				     "1"));

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	/* A steps only when told: what it wrote no longer changes. */
	backed = gpup_sim_read_long(self->vf[A], "vram_backed") * 4096;
	ASSERT_LT(0, backed);
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	expect_same(_metadata, self->vf[A], self->vf[B]);

	ASSERT_EQ(0, gpup_write_file(TRACE_INST "/events/gpup_vfio/enable",
				     "0"));
	len = gpup_read_file(TRACE_INST "/trace", t, cap);
	rmdir(TRACE_INST);
	ASSERT_LT(0, len);

	/*
	 * Arcs, in vfio.h's numbers (STOP 1, RUNNING 2, STOP_COPY 3,
	 * RESUMING 4, RUNNING_P2P 5): with P2P, RUNNING and STOP pass
	 * through RUNNING_P2P.
	 */
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=0 2->5 ret=0"));
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=0 5->1 ret=0"));
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=0 1->3 ret=0"));
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=0 3->1 ret=0"));
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=1 1->4 ret=0"));
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=1 4->1 ret=0"));
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=1 1->5 ret=0"));
	EXPECT_TRUE(trace_has(t, "gpup_vfio_arc: vf=1 5->2 ret=0"));
	/* Provider calls of both sides. */
	EXPECT_TRUE(trace_has(t, "vf=0 set_pause_state(1) ret=0"));
	EXPECT_TRUE(trace_has(t, "vf=0 prepare_live_migration("));
	EXPECT_TRUE(trace_has(t, "vf=0 save_immutable("));
	EXPECT_TRUE(trace_has(t, "vf=0 save_mutable("));
	EXPECT_TRUE(trace_has(t, "vf=0 end_live_migration("));
	EXPECT_TRUE(trace_has(t, "vf=1 prepare_live_migration("));
	EXPECT_TRUE(trace_has(t, "vf=1 restore_immutable("));
	EXPECT_TRUE(trace_has(t, "vf=1 restore_mutable("));
	EXPECT_TRUE(trace_has(t, "vf=1 set_pause_state(0) ret=0"));
	/*
	 * Without pre-copy, each page A wrote since its reset is read once
	 * and written once: by vram_read/vram_write, or in bulk by
	 * vram_xfer (traced with its bytes when it completed).  The pages
	 * A never wrote (gpup_sim offers query_written) are not read, and
	 * B, which wrote none since its reset either, clears none of
	 * them: a query_written count per ZERO record (0 pages), no
	 * vram_zero (zero_runs_skip_untouched_pages has B with pages).
	 */
	EXPECT_EQ(backed, trace_op_sum(t, 0, "vram_read", &cnt) +
			  trace_op_sum(t, 0, "vram_xfer", &cnt2));
	EXPECT_LT(0, cnt + cnt2);
	EXPECT_EQ(backed, trace_op_sum(t, 1, "vram_write", &cnt) +
			  trace_op_sum(t, 1, "vram_xfer", &cnt2));
	EXPECT_LT(0, cnt + cnt2);
	EXPECT_EQ(0, trace_op_sum(t, 1, "vram_zero", &cnt));
	EXPECT_EQ(0, cnt);
	EXPECT_EQ(0, trace_op_sum(t, 1, "query_written", &cnt));
	EXPECT_EQ(backed < vram, cnt > 0);
	EXPECT_EQ(0, trace_op_sum(t, 0, "vram_zero", &cnt));
	EXPECT_EQ(0, trace_op_sum(t, 1, "vram_read", &cnt));
	EXPECT_EQ(0, cnt);
	gpup_buf_free(&b);
	free(t);
}

TEST_F(mig, data_fd_is_a_stream)
{
	char buf[16];
	int fd;

	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  &fd));
	EXPECT_EQ(-1, lseek(fd, 0, SEEK_SET));
	EXPECT_EQ(ESPIPE, errno);
	EXPECT_EQ(-1, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(ESPIPE, errno);
	EXPECT_EQ(-1, write(fd, buf, sizeof(buf)));
	EXPECT_EQ(EBADF, errno);
	/* After the arc away, the file's state is gone: ENODEV. */
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	EXPECT_EQ(ENODEV, errno);
	close(fd);
}

/* Drive @d from RUNNING to @s; returns the data_fd of the last arc. */
static int reach(struct __test_metadata *_metadata, int d, int s,
		 const struct gpup_buf *stream)
{
	int fd = -1;

	switch (s) {
	case VFIO_DEVICE_STATE_RESUMING:
		EXPECT_EQ(0, gpup_mig_set(d, s, &fd));
		if (fd >= 0 && stream)
			EXPECT_EQ(0, gpup_write_stream(fd, stream->data,
						       stream->len, CHUNK_WRITE));
		break;
	default:
		EXPECT_EQ(0, gpup_mig_set(d, s, &fd));
		break;
	}
	EXPECT_EQ(s, state_of(d));
	return fd;
}

static bool arc_valid(int from, int to)
{
	if (to == VFIO_DEVICE_STATE_ERROR)
		return false;
	if (from == VFIO_DEVICE_STATE_STOP_COPY &&
	    (to == VFIO_DEVICE_STATE_PRE_COPY ||
	     to == VFIO_DEVICE_STATE_PRE_COPY_P2P))
		return false;
	return true;
}

/*
 * Every target from every reachable state: valid ones succeed and GET
 * reports the target; invalid ones fail with EINVAL and change nothing.
 * RESUMING holds a complete stream (saved from C) so it can be left.
 */
TEST_F_TIMEOUT(mig, every_arc, 300)
{
	struct gpup_buf stream = { 0 };
	int from, to, fd, fd2, ret, d = dev(self, A);

	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, C), &stream));
	ASSERT_EQ(0, gpup_mig_set(dev(self, C), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	for (from = VFIO_DEVICE_STATE_STOP; from < GPUP_NSTATES; from++) {
		for (to = 0; to < GPUP_NSTATES; to++) {
			ASSERT_EQ(0, gpup_device_reset(d));
			ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(d));
			fd = reach(_metadata, d, from, &stream);
			ret = gpup_mig_set(d, to, &fd2);
			if (arc_valid(from, to)) {
				EXPECT_EQ(0, ret)
					TH_LOG("%s -> %s", gpup_state_name(from),
					       gpup_state_name(to));
				EXPECT_EQ(to, state_of(d));
			} else {
				EXPECT_EQ(-EINVAL, ret)
					TH_LOG("%s -> %s", gpup_state_name(from),
					       gpup_state_name(to));
				EXPECT_EQ(from, state_of(d));
			}
			if (fd >= 0)
				close(fd);
			if (!ret && fd2 >= 0)
				close(fd2);
		}
	}
	ASSERT_EQ(0, gpup_device_reset(d));
	gpup_buf_free(&stream);
}

static void reset_in(struct __test_metadata *_metadata,
		     struct _test_data_mig *self, int state)
{
	struct gpup_buf b = { 0 };
	char buf[64];
	ssize_t n;
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), state, &fd));
	ASSERT_GE(fd, 0);
	if (state != VFIO_DEVICE_STATE_RESUMING)
		ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	/* The old data_fd is dead. */
	n = state == VFIO_DEVICE_STATE_RESUMING ? write(fd, buf, sizeof(buf)) :
						   read(fd, buf, sizeof(buf));
	EXPECT_EQ(-1, n);
	EXPECT_EQ(ENODEV, errno);
	close(fd);
	/* The reset VF is at its power-on state and migrates again. */
	EXPECT_EQ(0, gpup_sim_steps(self->vf[A]));
	expect_same(_metadata, self->vf[A], self->vf[C]);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 4));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 4));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	gpup_buf_free(&b);
}

TEST_F(mig, reset_in_precopy)
{
	reset_in(_metadata, self, VFIO_DEVICE_STATE_PRE_COPY);
}

TEST_F(mig, reset_in_stop_copy)
{
	reset_in(_metadata, self, VFIO_DEVICE_STATE_STOP_COPY);
}

TEST_F(mig, reset_in_resuming)
{
	reset_in(_metadata, self, VFIO_DEVICE_STATE_RESUMING);
}

/*
 * Every call the driver makes keeps the contract's preconditions, in
 * every state where userspace can ask for sizes: MIG_DATA_SIZE and
 * PRECOPY_INFO from RUNNING through a whole pre-copy migration.
 */
TEST_F(mig, contract_preconditions)
{
	int sfd = -1, dfd = -1, states[] = {
		VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_PRE_COPY,
		VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_STOP_COPY,
	};
	struct gpup_buf b = { 0 };
	u64 size, initial, dirty;
	size_t sent = 0;
	unsigned int i;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 6));
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RESUMING,
				  &dfd));
	EXPECT_EQ(0, gpup_mig_data_size(dev(self, B), &size));
	for (i = 0; i < ARRAY_SIZE(states); i++) {
		if (states[i] != VFIO_DEVICE_STATE_RUNNING)
			ASSERT_EQ(0, gpup_mig_set(dev(self, A), states[i],
						  sfd < 0 ? &sfd : NULL));
		EXPECT_EQ(0, gpup_mig_data_size(dev(self, A), &size))
			TH_LOG("%s", gpup_state_name(states[i]));
		EXPECT_GT(size, 0);
		if (sfd >= 0 && states[i] != VFIO_DEVICE_STATE_STOP_COPY)
			EXPECT_EQ(0, gpup_precopy_info(sfd, &initial, &dirty));
		if (sfd >= 0) {
			ASSERT_EQ(0, gpup_read_stream(sfd, &b, CHUNK_READ, 1));
			ASSERT_EQ(0, gpup_write_stream(dfd, b.data + sent,
						       b.len - sent,
						       CHUNK_WRITE));
			sent = b.len;
		}
		if (states[i] == VFIO_DEVICE_STATE_PRE_COPY)
			ASSERT_EQ(0, gpup_sim_run(self->vf[A], 3));
	}
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(0, gpup_mig_data_size(dev(self, A), &size));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	close(sfd);
	close(dfd);
	gpup_buf_free(&b);
	EXPECT_EQ(0, gpup_sim_violations(self->vf[A]));
	EXPECT_EQ(0, gpup_sim_violations(self->vf[B]));
}

/*
 * The proof can fail.  A restore that forgets one field (gpup_sim's
 * "restore_mutable skip" fault: engine 0's first context register) is
 * caught: the destination keeps its own value, which differs from the
 * source's because every VF starts from a state of its own.  A VF that
 * has not run a step holds the seeded value in that field.
 */
TEST_F(mig, proof_catches_forgotten_field)
{
	struct gpup_buf b = { 0 };

	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "fault",
				    "restore_mutable skip"));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	expect_differ(_metadata, self->vf[A], self->vf[B]);
	/* Without the fault the same stream makes them equal. */
	ASSERT_EQ(0, gpup_device_reset(dev(self, B)));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	gpup_buf_free(&b);
}

/*
 * VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 and VFIO_PRECOPY_INFO_REINIT,
 * 7.1's uAPI: the selftests build against 6.12's headers.
 */
#define GPUP_FEATURE_PRECOPY_INFO_V2	12
#ifndef VFIO_PRECOPY_INFO_REINIT
#define VFIO_PRECOPY_INFO_REINIT	1
#endif

/* PRECOPY_INFO with .flags = @in; the .flags it returned in @out. */
/*
 * One pre-copy of @dev: RUNNING -> PRE_COPY, PRECOPY_INFO with .flags =
 * @in, back to RUNNING; *@out is the .flags the kernel returned.
 */
static int precopy_info_flags(int dev, __u32 in, __u32 *out, u64 *initial)
{
	struct vfio_precopy_info info = { .argsz = sizeof(info), .flags = in };
	int fd, ret;

	ret = gpup_mig_set(dev, VFIO_DEVICE_STATE_PRE_COPY, &fd);
	if (ret)
		return ret;
	ret = ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &info) ? -errno : 0;
	close(fd);
	*out = info.flags;
	*initial = info.initial_bytes;
	return ret ?: gpup_mig_set(dev, VFIO_DEVICE_STATE_RUNNING, NULL);
}

/* The running kernel is @maj.@min or later. */
static bool kernel_since(int maj, int min)
{
	struct utsname u;
	int a = 0, b = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &a, &b) != 2)
		return false;
	return a > maj || (a == maj && b >= min);
}

/*
 * PRECOPY_INFO v2, where the kernel has it (7.1 and later).  Until
 * userspace opts in with the PRECOPY_INFOv2 device feature, .flags
 * is reserved and comes back as it was given; after, it is an output, and
 * with no page first written since the save began (no REINIT, see
 * precopy_reinit) it reads 0 whatever it held.  On a kernel before 7.1
 * only the first half runs.
 */
TEST_F(mig, precopy_info_v2)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
			 GPUP_FEATURE_PRECOPY_INFO_V2,
	};
	int d = dev(self, A);
	u64 initial = 0;
	__u32 out = 1;
	bool v2;

	v2 = !ioctl(d, VFIO_DEVICE_FEATURE, &f);
	EXPECT_EQ(kernel_since(7, 1), v2);
	ASSERT_EQ(0, precopy_info_flags(d, 0xa5a5a5a5, &out, &initial));
	EXPECT_EQ(0xa5a5a5a5, out);
	EXPECT_GT(initial, 0);
	if (!v2)
		SKIP(return, "no PRECOPY_INFO v2 before 7.1");

	f.flags = VFIO_DEVICE_FEATURE_SET | GPUP_FEATURE_PRECOPY_INFO_V2;
	ASSERT_EQ(0, ioctl(d, VFIO_DEVICE_FEATURE, &f));
	ASSERT_EQ(0, precopy_info_flags(d, 0xa5a5a5a5, &out, &initial));
	EXPECT_EQ(0, out);
	EXPECT_GT(initial, 0);
}

/*
 * The destination skips a ZERO record whose pages it did not write since
 * its reset (query_written: they hold zeros already) and clears the
 * others, whole.  A saves after 40 steps: a ZERO record per gap of the
 * pages it wrote.  B, reset and never run, restores it without a
 * vram_zero call (gpup_sim's "zeroed" count: 0); after 50 steps of its
 * own, B restores it clearing the records its pages fall in, fewer pages
 * than all of them.  All of them: with skip_unwritten=N on gpup_vfio_pci
 * (no query_written) B clears every ZERO record, what the counts above
 * would catch.  B equals A each time.
 */
TEST_F(mig, zero_runs_skip_untouched_pages)
{
	struct gpup_buf b = { 0 };
	long some = -1, all;
	int i;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 40));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, gpup_device_reset(dev(self, B)));
		if (i == 1)
			ASSERT_EQ(0, gpup_sim_run(self->vf[B], 50));
		ASSERT_EQ(0, gpup_sim_write(self->vf[B], "xfer_stats", "0"));
		if (i == 2)
			ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"),
						     "N"));
		ASSERT_EQ(0, gpup_load(dev(self, B), &b));
		gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "Y");
		expect_same(_metadata, self->vf[A], self->vf[B]);
		if (!i)
			EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[B], "zeroed"));
		if (i == 1)
			some = gpup_sim_xfer_stat(self->vf[B], "zeroed");
	}
	all = gpup_sim_xfer_stat(self->vf[B], "zeroed");
	ksft_print_msg("B with pages of its own: %ld pages cleared of %ld\n",
		       some, all);
	EXPECT_LT(0, some);
	EXPECT_GT(all, some);
	gpup_buf_free(&b);
}

/* One read() of at most @len bytes of @fd, appended to @b. */
static int read_some(int fd, struct gpup_buf *b, size_t len)
{
	u8 tmp[4096];
	ssize_t n;

	n = read(fd, tmp, len < sizeof(tmp) ? len : sizeof(tmp));
	if (n < 0)
		return -errno;
	return gpup_buf_append(b, tmp, n);
}

/* Runs @steps of VF @vf: the pages it wrote for the first time. */
static long first_writes(const char *vf, unsigned long steps)
{
	long backed = gpup_sim_read_long(vf, "vram_backed");
	int ret = gpup_sim_run(vf, steps);

	return ret ?: gpup_sim_read_long(vf, "vram_backed") - backed;
}

/*
 * The start of a pre-copy with PRECOPY_INFO v2 asked for on A: its
 * return, whether the kernel has it.  A runs 30 steps, B goes to
 * RESUMING (*@dfd), A to PRE_COPY (*@sfd), and the first bytes of A's
 * stream, the header and a little of the initial data, are read into @b.
 */
static bool v2_precopy_start(struct __test_metadata *_metadata,
			     struct _test_data_mig *self, int *sfd, int *dfd,
			     struct gpup_buf *b)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET | GPUP_FEATURE_PRECOPY_INFO_V2,
	};
	bool v2;

	v2 = !ioctl(dev(self, A), VFIO_DEVICE_FEATURE, &f);
	EXPECT_EQ(kernel_since(7, 1), v2);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RESUMING,
				  dfd));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  sfd));
	ASSERT_EQ(0, read_some(*sfd, b, 4096));
	return v2;
}

/*
 * Its end (gpup_precopy_end(): the rest of A's stream from byte @sent of
 * @b on restored into B): B must equal C after @steps, A's steps in all.
 */
static void v2_precopy_finish(struct __test_metadata *_metadata,
			      struct _test_data_mig *self, int sfd, int dfd,
			      struct gpup_buf *b, size_t sent,
			      unsigned long steps)
{
	ASSERT_EQ(0, gpup_precopy_end(dev(self, A), dev(self, B), sfd, dfd, b,
				      sent));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], steps));
	expect_same(_metadata, self->vf[B], self->vf[C]);
}

/*
 * Pages first written during pre-copy.  The save's ZERO records
 * promised them as zeros; once written they are new initial data.  With
 * PRECOPY_INFO v2 (7.1 and later, userspace opted in) the answer says so
 * while the initial data is still being read: VFIO_PRECOPY_INFO_REINIT
 * once, with those pages in initial_bytes and no longer in dirty_bytes,
 * until a dirty pass takes them.  Once the initial data was all read,
 * pages first written are dirty bytes and there is no REINIT: the user
 * may be switching over (QEMU fails a migration on a REINIT then).
 * Without v2 (6.12, or no opt-in) .flags is reserved and the pages are
 * dirty bytes, initial_bytes only decreasing.  Either way the VF arrives
 * identical.
 */
TEST_F(mig, precopy_reinit)
{
	struct vfio_precopy_info info = { .argsz = sizeof(info) };
	struct gpup_buf b = { 0 };
	int sfd, dfd;
	long fresh;
	size_t sent;
	u64 left;
	bool v2;

	/* The initial data read in part. */
	v2 = v2_precopy_start(_metadata, self, &sfd, &dfd, &b);
	ASSERT_EQ(0, ioctl(sfd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	EXPECT_EQ(0, info.flags);
	left = info.initial_bytes;
	ASSERT_LT(0, left);

	/* 200 steps of 4 pages in 4096: most of them first writes. */
	fresh = first_writes(self->vf[A], 200);
	ksft_print_msg("%ld pages first written in pre-copy, v2 %d\n", fresh,
		       v2);
	ASSERT_LT(100, fresh);
	info.flags = v2 ? 0 : 0xa5a5a5a5;
	ASSERT_EQ(0, ioctl(sfd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	if (v2) {
		EXPECT_EQ(VFIO_PRECOPY_INFO_REINIT, info.flags);
		/* A record each: what the pages cost at most. */
		EXPECT_LE(left + fresh * 4096, info.initial_bytes);
		EXPECT_GE(left + fresh * (4096 + 64), info.initial_bytes);
		EXPECT_GT(fresh * 4096, info.dirty_bytes);
	} else {
		EXPECT_EQ(0xa5a5a5a5, info.flags);
		EXPECT_EQ(left, info.initial_bytes);
		EXPECT_LE(fresh * 4096, info.dirty_bytes);
	}
	/* Nothing new since: no REINIT again, the same figures. */
	info.flags = 0;
	ASSERT_EQ(0, ioctl(sfd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	EXPECT_EQ(0, info.flags);
	EXPECT_EQ(v2, info.initial_bytes > left);

	/* The full pass and a dirty pass: initial data is all read. */
	ASSERT_EQ(0, gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 1));
	ASSERT_EQ(0, gpup_write_stream(dfd, b.data, b.len, GPUP_CHUNK_WRITE));
	sent = b.len;
	ASSERT_EQ(0, ioctl(sfd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	EXPECT_EQ(0, info.initial_bytes);
	EXPECT_EQ(0, info.flags);

	/* First writes now are dirty bytes, REINIT or not. */
	fresh = first_writes(self->vf[A], 100);
	ASSERT_LT(20, fresh);
	info.flags = v2 ? 0 : 0xa5a5a5a5;
	ASSERT_EQ(0, ioctl(sfd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	EXPECT_EQ(v2 ? 0 : 0xa5a5a5a5, info.flags);
	EXPECT_EQ(0, info.initial_bytes);
	EXPECT_LE(fresh * 4096, info.dirty_bytes);
	v2_precopy_finish(_metadata, self, sfd, dfd, &b, sent, 330);
}

/*
 * No REINIT once the VF is quiesced, even with the initial data not all
 * read.  A user goes to PRE_COPY_P2P to switch over (QEMU when it stops
 * the VM), and then new initial data would come too late.  Pages first
 * written after the last answer in PRE_COPY are dirty bytes, for the
 * STOP_COPY pass; the pages that answer reported stay initial bytes.
 * Without v2 (6.12) .flags is reserved and they are all dirty bytes.
 */
TEST_F(mig, precopy_no_reinit_when_quiesced)
{
	struct vfio_precopy_info info = { .argsz = sizeof(info) };
	long fresh1, fresh2;
	struct gpup_buf b = { 0 };
	int sfd, dfd;
	u64 initial1;
	bool v2;

	v2 = v2_precopy_start(_metadata, self, &sfd, &dfd, &b);

	/* First writes while running: REINIT with v2. */
	fresh1 = first_writes(self->vf[A], 100);
	ASSERT_LT(50, fresh1);
	info.flags = v2 ? 0 : 0xa5a5a5a5;
	ASSERT_EQ(0, ioctl(sfd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	EXPECT_EQ(v2 ? VFIO_PRECOPY_INFO_REINIT : 0xa5a5a5a5, info.flags);
	initial1 = info.initial_bytes;
	EXPECT_LT(0, initial1);

	/* More first writes, then the switchover's quiesce. */
	fresh2 = first_writes(self->vf[A], 100);
	ksft_print_msg("pages first written: %ld, then %ld, v2 %d\n",
		       fresh1, fresh2, v2);
	ASSERT_LT(50, fresh2);
	ASSERT_EQ(0, gpup_mig_set(dev(self, A),
				  VFIO_DEVICE_STATE_PRE_COPY_P2P, NULL));
	info.flags = v2 ? 0 : 0xa5a5a5a5;
	ASSERT_EQ(0, ioctl(sfd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	EXPECT_EQ(v2 ? 0 : 0xa5a5a5a5, info.flags);
	EXPECT_EQ(initial1, info.initial_bytes);
	EXPECT_LE(fresh2 * 4096, info.dirty_bytes);
	v2_precopy_finish(_metadata, self, sfd, dfd, &b, 0, 230);
}

/*
 * A VF of real size: 48 GiB of VRAM, of which the engine writes a 256 MiB
 * working set (gpup_sim is sparse and reports the pages written since
 * the reset, query_written).  The stream carries what was written, and
 * one ZERO record per gap for the rest.  One set-up for both round trips
 * (each costs seconds under TCG): stop-copy A -> B, B having written
 * pages of its own first, which must come back as zeros; then pre-copy
 * B -> A, B writing pages for the first time during it.  A VF that was
 * read to the end of its stream is paused, so the other side's digest
 * must equal it (no twin: that would run the 60000 steps again).
 */
#define BIG_VRAM_MB	49152
#define BIG_WS_MB	256
/* 240000 page writes into 65536 pages: about 97% of them written. */
#define BIG_STEPS	60000
#define BIG_NVF		2

FIXTURE(big) {
	char pf[GPUP_BDF_LEN];
	char vf[BIG_NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[BIG_NVF];
};

FIXTURE_SETUP(big)
{
	char params[64];
	int i;

	ASSERT_EQ(0, gpup_setup_pf(self->pf, 0));
	snprintf(params, sizeof(params), "vram_mb=%u working_set_mb=%u",
		 BIG_VRAM_MB, BIG_WS_MB);
	ASSERT_EQ(0, gpup_reload_sim(self->pf, params));
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, BIG_NVF));
	for (i = 0; i < BIG_NVF; i++)
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
	for (i = 0; i < BIG_NVF; i++) {
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
}

FIXTURE_TEARDOWN(big)
{
	int i;

	for (i = 0; i < BIG_NVF; i++)
		EXPECT_EQ(0, gpup_sim_violations(self->vf[i]))
			TH_LOG("VF %s", self->vf[i]);
	for (i = 0; i < BIG_NVF; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
	}
	/* The other tests expect gpup_sim's defaults. */
	gpup_setup_pf(self->pf, 0);
}

static long long written_bytes(const char *vf)
{
	return gpup_sim_read_long(vf, "vram_backed") * 4096LL;
}

/* Seconds since the last call, for the test's time budget. */
static double lap(void)
{
	static struct timespec t0;
	struct timespec t;
	double d;

	clock_gettime(CLOCK_MONOTONIC, &t);
	d = t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9;
	t0 = t;
	return d;
}

TEST_F_TIMEOUT(big, roundtrips, 600)
{
	int a = self->v[A].device, b = self->v[B].device, sfd, i;
	struct gpup_buf s = { 0 };
	u64 size, initial, dirty;
	long long written;

	lap();
	/* In slices: each runs under the VF's lock. */
	for (i = 0; i < BIG_STEPS / 10000; i++)
		ASSERT_EQ(0, gpup_sim_run(self->vf[A], 10000));
	/* B's own pages, most of them never written by A: zeroed on B. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 2000));
	written = written_bytes(self->vf[A]);
	ksft_print_msg("%u MiB VF, %lld MiB written (%.1f s)\n", BIG_VRAM_MB,
		       written >> 20, lap());
	ASSERT_LT((long long)BIG_WS_MB << 19, written);

	/* Stop-copy: the size is known before, exactly. */
	ASSERT_EQ(0, gpup_mig_data_size(a, &size));
	ASSERT_EQ(0, gpup_save_stop_copy(a, &s));
	EXPECT_EQ(size, s.len);
	ksft_print_msg("stop-copy stream %zu bytes, %.4f of the bytes written (%.1f s)\n",
		       s.len, (double)s.len / written, lap());
	EXPECT_GE(written + written / 100, s.len);
	ASSERT_EQ(0, gpup_load(b, &s));
	ksft_print_msg("restored (%.1f s)\n", lap());
	expect_same(_metadata, self->vf[A], self->vf[B]);
	ksft_print_msg("digests (%.1f s)\n", lap());
	gpup_buf_free(&s);

	/* Pre-copy back, B writing pages during it, some for the first time. */
	ASSERT_EQ(0, gpup_mig_set(b, VFIO_DEVICE_STATE_PRE_COPY, &sfd));
	ASSERT_EQ(0, gpup_precopy_info(sfd, &initial, &dirty));
	EXPECT_GE(written + written / 100, initial);
	ASSERT_EQ(0, gpup_read_stream(sfd, &s, GPUP_CHUNK_READ, 1));
	EXPECT_EQ(initial, s.len);
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 5000));
	ASSERT_LT(written, written_bytes(self->vf[B]));
	ASSERT_EQ(0, gpup_mig_set(b, VFIO_DEVICE_STATE_STOP_COPY, NULL));
	ASSERT_EQ(0, gpup_read_stream(sfd, &s, GPUP_CHUNK_READ, 0));
	close(sfd);
	ksft_print_msg("pre-copy stream %zu bytes, %zu after the initial data (%.1f s)\n",
		       s.len, s.len - (size_t)initial, lap());
	ASSERT_EQ(0, gpup_load(a, &s));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	gpup_buf_free(&s);
}

/*
 * Zero detection (gpup_vfio_pci's zero_detect, default Y) where the
 * provider does not report the pages written since the reset: gpup_sim
 * loaded with query_written=0, a VF of 64 MiB (256 runs of 256 KiB).
 */
#define ZERO_VRAM_MB	64

FIXTURE(zero) {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
};

FIXTURE_SETUP(zero)
{
	char params[64];

	ASSERT_EQ(0, gpup_setup_pf(self->pf, 0));
	snprintf(params, sizeof(params), "vram_mb=%d query_written=0",
		 ZERO_VRAM_MB);
	ASSERT_EQ(0, gpup_reload_sim(self->pf, params));
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, NVF));
	open_vfs(_metadata, self->pf, self->vf, self->v);
}

FIXTURE_TEARDOWN(zero)
{
	close_vfs(_metadata, self->vf, self->v);
	gpup_write_file(GPUP_VFIO_PARAM("zero_detect"), "Y");
	/* The other tests expect gpup_sim's defaults (a reload). */
	gpup_setup_pf(self->pf, 0);
}

/*
 * A runs 30 steps (at most 120 pages written) and saves in STOP_COPY:
 * the full pass reads every run, and each page read as zeros goes out in
 * a ZERO record, one record for each stretch of them.  So no VRAM record
 * holds a page of zeros, every page is covered once, and VRAM records
 * cover at most the pages written.  B, which wrote pages of its own
 * first, restores it and equals A: its pages came back as zeros.  On the
 * bulk lanes the pages are checked by the checksum work, per range by
 * read().  With zero_detect=N the same save has no ZERO record and sends
 * the zero pages in VRAM records: what the checks above would catch.
 */
TEST_F_TIMEOUT(zero, zero_runs_detected, 300)
{
	const u64 npages = (u64)ZERO_VRAM_MB << 8;
	struct gpup_buf b = { 0 };
	struct gpup_vram_walk w;
	long backed;

	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 50));
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	backed = gpup_sim_read_long(self->vf[A], "vram_backed");
	ASSERT_LT(0, backed);
	ASSERT_EQ(0, gpup_save_stop_copy(self->v[A].device, &b));
	ASSERT_EQ(0, gpup_walk_vram(&b, 4096, &w));
	ksft_print_msg("%ld pages written: %zu bytes, %llu pages in VRAM, %llu in ZERO\n",
		       backed, b.len, (unsigned long long)w.vram_pages,
		       (unsigned long long)w.zero_pages);
	EXPECT_EQ(0, w.vram_zero_pages);
	EXPECT_EQ(npages, w.zero_pages + w.vram_pages);
	EXPECT_GE((u64)backed, w.vram_pages);
	EXPECT_LT(0, w.vram_pages);
	EXPECT_LT(0, w.zero_pages);
	expect_differ(_metadata, self->vf[A], self->vf[B]);
	ASSERT_EQ(0, gpup_load(self->v[B].device, &b));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	gpup_buf_free(&b);

	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("zero_detect"), "N"));
	ASSERT_EQ(0, gpup_mig_set(self->v[A].device, VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	ASSERT_EQ(0, gpup_save_stop_copy(self->v[A].device, &b));
	ASSERT_EQ(0, gpup_walk_vram(&b, 4096, &w));
	EXPECT_EQ(0, w.zero_pages);
	EXPECT_EQ(npages, w.vram_pages);
	EXPECT_LT(0, w.vram_zero_recs);
	EXPECT_LT(0, w.vram_zero_pages);
	gpup_buf_free(&b);
}

TEST_HARNESS_MAIN
