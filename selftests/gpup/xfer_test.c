// SPDX-License-Identifier: GPL-2.0
/*
 * Bulk VRAM transfer (the optional provider op vram_xfer): a migration
 * in bulk keeps several transfers in flight and proves the VF identical;
 * a dirty pass's scattered pages go in transfers of several segments,
 * and in a small VRAM, where later passes send pages again, neither a
 * transfer's segments nor two restores in flight overlap (the sim counts
 * either as a violation); bulk_xfer=N moves VRAM by vram_read/vram_write
 * only; an injected
 * transfer error fails read() cleanly and leaves the source as it was;
 * a reset, or leaving STOP_COPY, with transfers in flight neither hangs
 * nor leaves one running; on the destination, an injected error fails
 * the stream and a reset recovers.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"
#include "stream.h"

#define NVF		3

/* bulk_xfer as the lane left it, written back after each test. */
static char bulk_saved[8] = "Y";
/* 16 MiB of VRAM in runs of 256 KiB: the runs (VRAM records) of one full pass. */
#define FULL_PASS_RUNS	((GPUP_SIM_VRAM_MB << 20) / (256 << 10))
/* Its transfers on either side: a save slot, a gather buffer of 1 MiB. */
#define FULL_PASS_XFERS	(FULL_PASS_RUNS / 4)
/* The most runs gpup_vfio_pci puts in one transfer (GPUP_SLOT_RUNS). */
#define MAX_SEGS	64

enum { A, B, C };

/* Both fixtures: NVF VFs of @vram_mb MiB on gpup_vfio_pci, in bulk. */
static void vfs_setup(struct __test_metadata *_metadata, char *pf,
		      char vf[NVF][GPUP_BDF_LEN], struct gpup_vfio *v,
		      int vram_mb)
{
	int i;

	ASSERT_EQ(0, gpup_setup_pf_vram(pf, NVF, vram_mb));
	ASSERT_LT(0, gpup_read_file(GPUP_VFIO_PARAM("bulk_xfer"), bulk_saved,
				    sizeof(bulk_saved)));
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), "Y"));
	/*
	 * The tests count the transfers of full passes over all of VRAM, so
	 * the full pass reads every page, written or not (migration_test's
	 * big.* tests the pass over the written pages, in bulk), and sends
	 * each as read, zeros or not (zero_detect's own test is
	 * migration_test's zero_runs_detected).
	 */
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "N"));
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("zero_detect"), "N"));
	for (i = 0; i < NVF; i++)
		ASSERT_EQ(0, gpup_vf_bdf(pf, i, vf[i]));
	/* C stands for "A, had it not moved" (see migration_test). */
	ASSERT_EQ(0, gpup_sim_twin(vf[C], vf[A]));
	for (i = 0; i < NVF; i++) {
		ASSERT_EQ(0, gpup_bind_override(vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(vf[i], &v[i]));
		ASSERT_EQ(0, gpup_sim_write(vf[i], "xfer_stats", "0"));
	}
}

static void vfs_teardown(struct __test_metadata *_metadata, char *pf,
			 char vf[NVF][GPUP_BDF_LEN], struct gpup_vfio *v,
			 int vram_mb)
{
	int i;

	for (i = 0; i < NVF; i++) {
		EXPECT_EQ(0, gpup_sim_violations(vf[i]))
			TH_LOG("VF %s", vf[i]);
		/* No transfer outlives what made it. */
		EXPECT_EQ(0, gpup_sim_xfer_stat(vf[i], "in_flight"))
			TH_LOG("VF %s", vf[i]);
		gpup_sim_write(vf[i], "xfer_delay", "0");
		gpup_sim_write(vf[i], "xfer_lifo", "0");
		gpup_sim_write(vf[i], "xfer_hold", "0");
		gpup_sim_write(vf[i], "xfer_sync", "0");
		gpup_sim_write(vf[i], "free_run", "0");
		gpup_sim_write(vf[i], "free_run_ms", "20");
	}
	for (i = 0; i < NVF; i++) {
		gpup_vfio_close(&v[i]);
		gpup_unbind(vf[i]);
	}
	/* The lane's bulk_xfer, the module's default timeout. */
	gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), "%s", bulk_saved);
	gpup_write_file(GPUP_VFIO_PARAM("xfer_timeout_ms"), "10000");
	gpup_write_file(GPUP_VFIO_PARAM("xfer_depth"), "4");
	gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "Y");
	gpup_write_file(GPUP_VFIO_PARAM("zero_detect"), "Y");
	gpup_set_numvfs(pf, 0);
	/* The other tests expect gpup_sim's default VRAM. */
	if (vram_mb != GPUP_SIM_VRAM_MB)
		gpup_setup_pf(pf, 0);
}

FIXTURE(xfer) {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
};

FIXTURE_SETUP(xfer)
{
	vfs_setup(_metadata, self->pf, self->vf, self->v, GPUP_SIM_VRAM_MB);
}

FIXTURE_TEARDOWN(xfer)
{
	vfs_teardown(_metadata, self->pf, self->vf, self->v, GPUP_SIM_VRAM_MB);
}

/* 1 MiB, four windows: a dirty pass sends pages the last one sent. */
#define SMALL_VRAM_MB	1

FIXTURE(small) {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
};

FIXTURE_SETUP(small)
{
	vfs_setup(_metadata, self->pf, self->vf, self->v, SMALL_VRAM_MB);
}

FIXTURE_TEARDOWN(small)
{
	vfs_teardown(_metadata, self->pf, self->vf, self->v, SMALL_VRAM_MB);
}

static int dev(struct _test_data_xfer *self, int i)
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

/* A runs 40, moves to B by STOP_COPY, B runs 25; C runs 65 in place. */
static void roundtrip(struct __test_metadata *_metadata,
		      struct _test_data_xfer *self)
{
	char before[GPUP_DIGEST_LEN], after[GPUP_DIGEST_LEN];
	struct gpup_buf b = { 0 };

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 40));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], before));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], after));
	EXPECT_STREQ(before, after);
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 25));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 65));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	gpup_buf_free(&b);
}

/* The save went through vram_xfer, asynchronously. */
static void expect_bulk(struct __test_metadata *_metadata, const char *vf,
			long runs)
{
	long submitted = gpup_sim_xfer_stat(vf, "submitted");

	EXPECT_GE(submitted, runs);
	EXPECT_EQ(submitted, gpup_sim_xfer_stat(vf, "async"));
	EXPECT_EQ(0, gpup_sim_xfer_stat(vf, "errors"));
}

/* Some transfer of @vf carried several runs, none more than MAX_SEGS. */
static void expect_gathered(struct __test_metadata *_metadata, const char *vf)
{
	long n = gpup_sim_xfer_stat(vf, "submitted");
	long segs = gpup_sim_xfer_stat(vf, "segments");
	long most = gpup_sim_xfer_stat(vf, "max_segments");

	ksft_print_msg("VF %s: %ld transfers, %ld segments, at most %ld in one\n",
		       vf, n, segs, most);
	EXPECT_GT(segs, n);
	EXPECT_GT(most, 1);
	EXPECT_LE(most, MAX_SEGS);
}

TEST_F_TIMEOUT(xfer, bulk_roundtrip, 300)
{
	/* An engine's latency, so that transfers are seen in flight at once. */
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "5000"));
	roundtrip(_metadata, self);
	expect_bulk(_metadata, self->vf[A], FULL_PASS_XFERS);
	/* The VF stopped, the save keeps its slots submitted ahead. */
	EXPECT_EQ(4, gpup_sim_xfer_stat(self->vf[A], "max_in_flight"));
	/* The destination wrote VRAM by vram_xfer too. */
	EXPECT_GE(gpup_sim_xfer_stat(self->vf[B], "submitted"),
		  FULL_PASS_XFERS);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[B], "errors"));
}

TEST_F_TIMEOUT(xfer, bulk_precopy_running, 300)
{
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "5000"));
	/* Dirty passes go in bulk too; steps run while they do. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	ASSERT_EQ(0, gpup_migrate_precopy(self->vf[A], dev(self, A),
					  dev(self, B), 4, 7));
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 12));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 30 + 4 * 7 + 12));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	/* The full pass and at least one dirty page per round. */
	expect_bulk(_metadata, self->vf[A], FULL_PASS_XFERS + 4);
	/*
	 * While the VF runs a 1 MiB read() keeps its own slot and the next
	 * one's in flight, no more (a page read ahead and written again
	 * would go out twice), though the engine is slow.
	 */
	EXPECT_EQ(2, gpup_sim_xfer_stat(self->vf[A], "max_in_flight"));
	/*
	 * Seven steps write 28 pages all over VRAM: a dirty pass's runs
	 * share transfers, on both sides, up to MAX_SEGS each.
	 */
	expect_gathered(_metadata, self->vf[A]);
	expect_gathered(_metadata, self->vf[B]);
}

/*
 * A runs 30 steps, B goes to RESUMING and A to PRE_COPY: A's data up to
 * its first -ENOMSG is read into @b and written to B.
 */
static void precopy_begin(struct __test_metadata *_metadata,
			  struct _test_data_xfer *self, int *sfd, int *dfd,
			  struct gpup_buf *b)
{
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RESUMING,
				  dfd));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  sfd));
	ASSERT_EQ(0, gpup_read_stream(*sfd, b, GPUP_CHUNK_READ, 1));
	ASSERT_EQ(0, gpup_write_stream(*dfd, b->data, b->len,
				       GPUP_CHUNK_WRITE));
}

/*
 * A dirty pass of scattered pages fills its slots with 64 runs, 256 KiB:
 * a 1 MiB read() needs four of them, and while the VF runs the save
 * keeps in flight the slots that cover the read() and one more, counted
 * in bytes, not in slots (counted in slots, a read() kept two in flight
 * and waited for each of the other two).  The steps of
 * gpup_migrate_precopy(), with the engine's figures read between the
 * dirty pass and STOP_COPY, which submits every slot.
 */
TEST_F_TIMEOUT(xfer, dirty_pass_reads_ahead_in_bytes, 300)
{
	struct gpup_buf b = { 0 };
	int sfd = -1, dfd = -1;
	size_t sent;

	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "5000"));
	precopy_begin(_metadata, self, &sfd, &dfd, &b);
	sent = b.len;
	/* About 1200 pages all over VRAM: some 19 slots of 64 runs. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 300));
	/*
	 * Filling a slot of scattered runs takes several query_dirty calls:
	 * on a loaded host, filling three more took longer than 5 ms, the
	 * first transfer was done before the fourth went, and the count
	 * read 3 (make check of f3f3520, a second guest beside).  50 ms a
	 * transfer leaves that margin ten times over.
	 */
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "50000"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_stats", "0"));
	ASSERT_EQ(0, gpup_read_stream(sfd, &b, GPUP_CHUNK_READ, 1));
	ksft_print_msg("dirty pass: %zu bytes, %ld transfers, %ld in flight at most\n",
		       b.len - sent, gpup_sim_xfer_stat(self->vf[A], "submitted"),
		       gpup_sim_xfer_stat(self->vf[A], "max_in_flight"));
	EXPECT_GT(gpup_sim_xfer_stat(self->vf[A], "submitted"), 8);
	EXPECT_EQ(4, gpup_sim_xfer_stat(self->vf[A], "max_in_flight"));
	ASSERT_EQ(0, gpup_write_stream(dfd, b.data + sent, b.len - sent,
				       GPUP_CHUNK_WRITE));
	sent = b.len;
	ASSERT_EQ(0, gpup_precopy_end(dev(self, A), dev(self, B), sfd, dfd,
				      &b, sent));
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 12));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 30 + 300 + 12));
	expect_same(_metadata, self->vf[B], self->vf[C]);
}

/*
 * Until @vf's step count passes *@steps (it runs on its timer), 10 s at
 * most, polled every millisecond; then *@steps is the new count.
 */
static int await_steps(const char *vf, long *steps)
{
	struct timespec ms = { .tv_nsec = 1000000 };
	double end = gpup_now() + 10;
	long now;

	do {
		now = gpup_sim_steps(vf);
		if (now < 0)
			return now;
		if (now > *steps) {
			*steps = now;
			return 0;
		}
		nanosleep(&ms, NULL);
	} while (gpup_now() < end);
	return -ETIMEDOUT;
}

/*
 * While the VF runs, a read() in PRE_COPY ends with the pass that holds
 * its data and does not begin the next one.  A pass begun there would
 * chase what the VF writes meanwhile, a transfer's latency at a time,
 * with QEMU's migration thread blocked in the read().  Here the VF runs
 * on its timer (two steps, eight pages, every millisecond asked, every
 * tick at least) and a transfer takes 20 ms: every pass ends with pages
 * dirty, a few dozen, far from a 1 MiB read().  Each read() comes once
 * the VF stepped since the last one, so it has pages to send, and logs
 * one pass at most (before the fix, the reads went on until their 1 MiB
 * was full, ten passes each), and the VF arrives identical.
 */
TEST_F_TIMEOUT(xfer, precopy_read_ends_with_its_pass, 300)
{
	long before, after, most = 0, steps;
	struct gpup_buf b = { 0 };
	int sfd = -1, dfd = -1, i, data = 0;
	size_t sent;
	ssize_t n;
	u8 *buf;

	buf = malloc(GPUP_CHUNK_READ);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "20000"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "free_run_ms", "1"));
	precopy_begin(_metadata, self, &sfd, &dfd, &b);
	sent = b.len;
	steps = gpup_sim_steps(self->vf[A]);
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "free_run", "1"));
	for (i = 0; i < 20; i++) {
		ASSERT_EQ(0, await_steps(self->vf[A], &steps));
		before = gpup_vfio_passes(self->vf[A]);
		n = read(sfd, buf, GPUP_CHUNK_READ);
		after = gpup_vfio_passes(self->vf[A]);
		ASSERT_LT(0, n) TH_LOG("read %d: %s", i, strerror(errno));
		ASSERT_LE(0, before);
		most = after - before > most ? after - before : most;
		data++;
		ASSERT_EQ(0, gpup_write_stream(dfd, buf, n, GPUP_CHUNK_WRITE));
	}
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "free_run", "0"));
	ksft_print_msg("%d reads with data, %ld passes at most in one\n",
		       data, most);
	EXPECT_EQ(20, data);
	EXPECT_EQ(1, most);
	free(buf);
	ASSERT_EQ(0, gpup_precopy_end(dev(self, A), dev(self, B), sfd, dfd,
				      &b, sent));
	steps = gpup_sim_steps(self->vf[A]);
	ASSERT_LT(30, steps);
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], steps));
	expect_same(_metadata, self->vf[B], self->vf[C]);
}

/*
 * Pre-copy passes in a VRAM of four windows send pages again and again:
 * two steps a round dirty 8 of its 256 pages, so the destination's
 * gather buffer holds the runs of several passes, and a later pass's
 * page is one it holds or one a transfer in flight writes.  It never
 * gathers a page twice into one transfer and never writes a page while
 * a transfer that writes it is in flight (the sim's violations, checked
 * at teardown), and the VF is identical.
 */
TEST_F_TIMEOUT(small, precopy_sends_pages_again, 300)
{
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	ASSERT_EQ(0, gpup_migrate_precopy(self->vf[A], self->v[A].device,
					  self->v[B].device, 20, 2));
	ASSERT_EQ(0, gpup_sim_run(self->vf[B], 12));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 30 + 20 * 2 + 12));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	expect_gathered(_metadata, self->vf[A]);
	expect_gathered(_metadata, self->vf[B]);
}

/*
 * vram_xfer's synchronous branch (it returns 0, done() never called) on
 * both sides: the driver takes the bytes as moved, and B equals A.
 */
TEST_F_TIMEOUT(xfer, sync_roundtrip, 300)
{
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_sync", "1"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "xfer_sync", "1"));
	roundtrip(_metadata, self);
	EXPECT_GE(gpup_sim_xfer_stat(self->vf[A], "submitted"),
		  FULL_PASS_XFERS);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "async"));
	EXPECT_GE(gpup_sim_xfer_stat(self->vf[B], "submitted"),
		  FULL_PASS_XFERS);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[B], "async"));
}

/*
 * xfer_depth=1: one transfer in flight at a time on either side (the
 * bench's baseline for pipelining), and B equals A.
 */
TEST_F_TIMEOUT(xfer, one_in_flight_roundtrip, 300)
{
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("xfer_depth"), "1"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "2000"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "xfer_delay", "2000"));
	roundtrip(_metadata, self);
	EXPECT_GE(gpup_sim_xfer_stat(self->vf[A], "submitted"),
		  FULL_PASS_XFERS);
	EXPECT_EQ(1, gpup_sim_xfer_stat(self->vf[A], "max_in_flight"));
	EXPECT_GE(gpup_sim_xfer_stat(self->vf[B], "submitted"),
		  FULL_PASS_XFERS);
	EXPECT_EQ(1, gpup_sim_xfer_stat(self->vf[B], "max_in_flight"));
}

TEST_F_TIMEOUT(xfer, per_range_roundtrip, 300)
{
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), "N"));
	roundtrip(_metadata, self);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "submitted"));
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[B], "submitted"));
}

/*
 * A transfer that completes with an error fails read() with its errno;
 * the source goes back to RUNNING as it was, and migrates again.
 */
TEST_F_TIMEOUT(xfer, fault_in_stop_copy, 300)
{
	char before[GPUP_DIGEST_LEN], after[GPUP_DIGEST_LEN];
	struct gpup_buf b = { 0 };
	char *buf = malloc(GPUP_CHUNK_READ);
	ssize_t n;
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 9));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], before));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "fault", "vram_xfer -5"));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  &fd));
	ASSERT_GE(fd, 0);
	do
		n = read(fd, buf, GPUP_CHUNK_READ);
	while (n > 0);
	EXPECT_EQ(-1, n);
	EXPECT_EQ(EIO, errno);
	/* Sticky. */
	EXPECT_EQ(-1, read(fd, buf, GPUP_CHUNK_READ));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(1, gpup_sim_xfer_stat(self->vf[A], "errors"));
	close(fd);
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], after));
	EXPECT_STREQ(before, after);
	EXPECT_EQ(9, gpup_sim_steps(self->vf[A]));

	/* The next migration of the same source works. */
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 9));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	gpup_buf_free(&b);
	free(buf);
}

/*
 * On the destination, a transfer's error fails the stream; a reset
 * brings the VF back, and the same stream then loads.
 */
TEST_F_TIMEOUT(xfer, fault_in_resuming, 300)
{
	struct gpup_buf b = { 0 };

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 9));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "fault", "vram_xfer -5"));
	EXPECT_EQ(-EIO, gpup_load(dev(self, B), &b));
	EXPECT_EQ(1, gpup_sim_xfer_stat(self->vf[B], "errors"));
	ASSERT_EQ(0, gpup_device_reset(dev(self, B)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 9));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	gpup_buf_free(&b);
}

/*
 * Read 2 MiB of a STOP_COPY stream with slow transfers: some in flight.
 * The first slots go out together and complete together, 200 ms on;
 * the first slot read out makes room for one more, submitted then, and
 * still in flight when the read returns in the second.
 */
static int start_slow_save(struct __test_metadata *_metadata,
			   struct _test_data_xfer *self, char *buf)
{
	int fd, i;

	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "200000"));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  &fd));
	ASSERT_GE(fd, 0);
	for (i = 0; i < 2; i++)
		EXPECT_EQ(GPUP_CHUNK_READ, read(fd, buf, GPUP_CHUNK_READ));
	EXPECT_GT(gpup_sim_xfer_stat(self->vf[A], "in_flight"), 0);
	return fd;
}

TEST_F_TIMEOUT(xfer, reset_while_in_flight, 300)
{
	char *buf = malloc(GPUP_CHUNK_READ);
	struct gpup_buf b = { 0 };
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	fd = start_slow_save(_metadata, self, buf);
	/* reset_vf completes the transfers: the reset returns at once. */
	ASSERT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	EXPECT_EQ(-1, read(fd, buf, GPUP_CHUNK_READ));
	EXPECT_EQ(ENODEV, errno);
	close(fd);
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "0"));

	/* At its power-on state, and it migrates again. */
	EXPECT_EQ(0, gpup_sim_steps(self->vf[A]));
	expect_same(_metadata, self->vf[A], self->vf[C]);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 4));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 4));
	expect_same(_metadata, self->vf[B], self->vf[C]);
	gpup_buf_free(&b);
	free(buf);
}

/*
 * Each transfer in flight holds a reference on gpup_vfio_pci, dropped
 * once its done() has returned: the callback's code cannot be unloaded
 * under it.  The data_fd itself holds one the whole time.
 */
TEST_F_TIMEOUT(xfer, transfers_pin_the_module, 300)
{
	const char *refcnt = "/sys/module/gpup_vfio_pci/refcnt";
	char *buf = malloc(GPUP_CHUNK_READ);
	long inflight, during, after;
	ssize_t n;
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	fd = start_slow_save(_metadata, self, buf);
	during = gpup_read_long(refcnt);
	inflight = gpup_sim_xfer_stat(self->vf[A], "in_flight");
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_delay", "0"));
	/* To the stream's end: every transfer completed. */
	do
		n = read(fd, buf, GPUP_CHUNK_READ);
	while (n > 0);
	EXPECT_EQ(0, n);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	after = gpup_read_long(refcnt);
	ksft_print_msg("refcnt %ld with %ld in flight, %ld after\n", during,
		       inflight, after);
	EXPECT_LE(after + 1, during);
	close(fd);
	free(buf);
}

TEST_F_TIMEOUT(xfer, abort_while_in_flight, 300)
{
	char before[GPUP_DIGEST_LEN], after[GPUP_DIGEST_LEN];
	char *buf = malloc(GPUP_CHUNK_READ);
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 7));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], before));
	fd = start_slow_save(_metadata, self, buf);
	close(fd);
	/* Leaving STOP_COPY waits for the dropped file's transfers. */
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], after));
	EXPECT_STREQ(before, after);
	free(buf);
}

TEST_F_TIMEOUT(xfer, close_device_while_in_flight, 300)
{
	char *buf = malloc(GPUP_CHUNK_READ);
	int fd;

	ASSERT_NE(NULL, buf);
	fd = start_slow_save(_metadata, self, buf);
	/* The close scrub (reset_vf) completes them; the data_fd dies. */
	gpup_vfio_close(&self->v[A]);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	EXPECT_EQ(-1, read(fd, buf, GPUP_CHUNK_READ));
	close(fd);
	ASSERT_EQ(0, gpup_vfio_open(self->vf[A], &self->v[A]));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	free(buf);
}

/* Where VRAM page @pg sits in stream @s (its run's bytes), or NULL. */
static const u8 *page_in(const struct gpup_buf *s, u64 pg, u32 ps)
{
	const struct gpup_rec_hdr *rh;
	const struct gpup_vram_run *run;
	size_t off = GPUP_STREAM_HDR_SIZE;
	u64 first;

	while (off + GPUP_REC_HDR_SIZE <= s->len) {
		rh = (const void *)(s->data + off);
		run = (const void *)(rh + 1);
		first = le64_to_cpu(run->first_page);
		if (le16_to_cpu(rh->type) == GPUP_REC_VRAM && pg >= first &&
		    pg < first + le32_to_cpu(run->npages))
			return (const u8 *)(run + 1) + (pg - first) * ps;
		off += GPUP_REC_HDR_SIZE + le32_to_cpu(rh->len);
	}
	return NULL;
}

/* Append record @type with payload @p of @len at @out; its size. */
static size_t put_rec(u8 *out, u16 type, const void *p, u32 len)
{
	struct gpup_rec_hdr *rh = (void *)out;

	memmove(out + GPUP_REC_HDR_SIZE, p, len);
	rh->type = cpu_to_le16(type);
	rh->flags = 0;
	rh->len = cpu_to_le32(len);
	rh->crc = cpu_to_le32(gpup_vfio_crc32c(out + GPUP_REC_HDR_SIZE, len));
	rh->hcrc = cpu_to_le32(gpup_vfio_crc32c(rh, offsetof(struct gpup_rec_hdr,
							     hcrc)));
	return GPUP_REC_HDR_SIZE + len;
}

/* A VRAM record of page @pg holding @data (@ps bytes) at @out. */
static size_t put_page(u8 *out, u64 pg, const u8 *data, u32 ps)
{
	u8 *payload = malloc(GPUP_VRAM_RUN_SIZE + ps);
	struct gpup_vram_run *run = (void *)payload;
	size_t n;

	memset(run, 0, sizeof(*run));
	run->first_page = cpu_to_le64(pg);
	run->npages = cpu_to_le32(1);
	memcpy(payload + GPUP_VRAM_RUN_SIZE, data, ps);
	n = put_rec(out, GPUP_REC_VRAM, payload, GPUP_VRAM_RUN_SIZE + ps);
	free(payload);
	return n;
}

/*
 * The stream of one pre-copy with two dirty passes, in one write(): the
 * full pass, page 5 (stale bytes), page 9, page 5 again (its bytes),
 * MUTABLE, END.  In bulk, with slow transfers that the sim completes
 * newest first, the stale page 5 must not land last: the driver has
 * never two restores of one page in flight.  B must equal A.
 */
TEST_F_TIMEOUT(xfer, resend_ordered_under_lifo, 300)
{
	const struct gpup_stream_hdr *h;
	const struct gpup_rec_hdr *rh;
	struct gpup_buf good = { 0 };
	size_t off, end_off, n = 0, recs = 0;
	u8 *out, *stale;
	struct gpup_end e;
	u32 chain, ps;
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 40));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &good));
	h = (const void *)good.data;
	ps = le32_to_cpu(h->page_size);
	ASSERT_NE(NULL, page_in(&good, 5, ps));
	ASSERT_NE(NULL, page_in(&good, 9, ps));
	stale = malloc(ps);
	ASSERT_NE(NULL, stale);
	memset(stale, 0x5a, ps);
	out = malloc(good.len + 3 * (GPUP_REC_HDR_SIZE + GPUP_VRAM_RUN_SIZE +
				     ps));
	ASSERT_NE(NULL, out);

	/* Header, IMMUTABLE and the full pass: all but MUTABLE and END. */
	off = GPUP_STREAM_HDR_SIZE;
	while (off < good.len) {
		rh = (const void *)(good.data + off);
		if (le16_to_cpu(rh->type) == GPUP_REC_MUTABLE)
			break;
		off += GPUP_REC_HDR_SIZE + le32_to_cpu(rh->len);
		recs++;
	}
	memcpy(out, good.data, off);
	n = off;
	n += put_page(out + n, 5, stale, ps);
	n += put_page(out + n, 9, page_in(&good, 9, ps), ps);
	n += put_page(out + n, 5, page_in(&good, 5, ps), ps);
	recs += 3;
	rh = (const void *)(good.data + off);
	end_off = off + GPUP_REC_HDR_SIZE + le32_to_cpu(rh->len);
	memcpy(out + n, good.data + off, end_off - off);
	n += end_off - off;
	recs++;
	/* END over the records as they now stand. */
	chain = GPUP_CRC_INIT;
	for (off = GPUP_STREAM_HDR_SIZE; off < n;
	     off += GPUP_REC_HDR_SIZE + le32_to_cpu(rh->len)) {
		rh = (const void *)(out + off);
		chain = gpup_vfio_crc(chain, rh, GPUP_REC_CHAIN_LEN);
	}
	memset(&e, 0, sizeof(e));
	e.nrecords = cpu_to_le32(recs);
	e.stream_bytes = cpu_to_le64(n);
	e.chain = cpu_to_le32(gpup_vfio_crc_final(chain));
	n += put_rec(out + n, GPUP_REC_END, &e, sizeof(e));

	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "xfer_delay", "20000"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "xfer_lifo", "1"));
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RESUMING,
				  &fd));
	EXPECT_EQ(0, gpup_write_stream(fd, out, n, n));
	close(fd);
	EXPECT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[B], "overlaps"));
	EXPECT_GT(gpup_sim_xfer_stat(self->vf[B], "max_in_flight"), 1);
	free(out);
	free(stale);
	gpup_buf_free(&good);
}

struct reader {
	int fd;
	ssize_t ret;
	int err;
};

/* read() a data_fd to its end or first error, as QEMU's thread does. */
static void *read_all(void *arg)
{
	static char buf[GPUP_CHUNK_READ];
	struct reader *r = arg;

	do
		r->ret = read(r->fd, buf, sizeof(buf));
	while (r->ret > 0);
	r->err = errno;
	return NULL;
}

/* Until @vf has a transfer in flight: polled, for 10 s at most. */
static long await_in_flight(const char *vf)
{
	long n = 0;
	int i;

	for (i = 0; i < 10000 && n <= 0; i++) {
		n = gpup_sim_xfer_stat(vf, "in_flight");
		if (n <= 0)
			usleep(1000);
	}
	return n;
}

static const char *const hung_line =
	"gpup: a VRAM transfer did not complete in";

/*
 * A copy engine that hangs until the VF is reset (the sim holds every
 * transfer until reset_vf), then fails (GPUP_VF_EVENT_ERROR): closing the
 * device returns, at once, since its reset_vf comes before it waits for
 * the transfers, and the read() blocked on one returns an error.  The
 * device opens again and resets; nothing waited for the timeout.
 */
TEST_F_TIMEOUT(xfer, hang_until_reset_then_close, 300)
{
	struct reader r = { 0 };
	pthread_t th;
	int kmsg;

	kmsg = gpup_kmsg_open();
	ASSERT_LE(0, kmsg);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_hold", "1"));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  &r.fd));
	ASSERT_EQ(0, pthread_create(&th, NULL, read_all, &r));
	/* The reader submitted its transfers, and waits for them. */
	EXPECT_LT(0, await_in_flight(self->vf[A]));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "event", "error"));
	gpup_vfio_close(&self->v[A]);
	pthread_join(th, NULL);
	EXPECT_EQ(-1, r.ret);
	close(r.fd);
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	EXPECT_EQ(0, gpup_kmsg_count(kmsg, hung_line));
	close(kmsg);
	ASSERT_EQ(0, gpup_vfio_open(self->vf[A], &self->v[A]));
	EXPECT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	EXPECT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
}

/*
 * A copy engine that hangs for good, even across reset_vf (a provider
 * that breaks its contract): every wait ends after xfer_timeout_ms.  The
 * read() fails, VFIO_DEVICE_RESET fails with ETIMEDOUT into ERROR and
 * says so once; closing the device returns.  When the engine finally
 * completes, it writes into the buffers the driver left allocated (the
 * debug kernel's KASAN checks that), and the module reference each
 * transfer held is dropped.
 */
TEST_F_TIMEOUT(xfer, hang_for_good_is_bounded, 300)
{
	const char *refcnt = "/sys/module/gpup_vfio_pci/refcnt";
	struct reader r = { 0 };
	long before;
	int kmsg;

	kmsg = gpup_kmsg_open();
	ASSERT_LE(0, kmsg);
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("xfer_timeout_ms"), "1000"));
	before = gpup_read_long(refcnt);
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_hold", "2"));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  &r.fd));
	/* The read waits for its transfers 1 s, and fails. */
	read_all(&r);
	EXPECT_EQ(-1, r.ret);
	EXPECT_EQ(ETIMEDOUT, r.err);
	EXPECT_LT(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	/* reset_vf leaves them: the drain gives up, the reset fails. */
	EXPECT_EQ(-ETIMEDOUT, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(dev(self, A)));
	close(r.fd);
	EXPECT_LT(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	gpup_vfio_close(&self->v[A]);
	EXPECT_EQ(1, gpup_kmsg_count(kmsg, hung_line));
	close(kmsg);

	/* The engine comes back: its transfers complete, refs dropped. */
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "xfer_hold", "0"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "reset", "1"));
	EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[A], "in_flight"));
	EXPECT_EQ(before, gpup_read_long(refcnt) + 1);
	ASSERT_EQ(0, gpup_vfio_open(self->vf[A], &self->v[A]));
	EXPECT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
}

TEST_HARNESS_MAIN
