// SPDX-License-Identifier: GPL-2.0
/*
 * Allocation failures during save and resume, on a kernel with failslab
 * (the debug kernel of `make check-debug`).
 *
 * fail-nth (/proc/thread-self/fail-nth) fails the Nth slab allocation that
 * this thread makes from now on; failslab's stack-trace filter restricts
 * the count to allocations whose call chain passes through the text of
 * gpup_vfio_pci or gpup_sim.  For N = 1, 2, ... a whole save (PRE_COPY,
 * then STOP_COPY to the end) and a whole resume run with the Nth
 * allocation failing, until a migration needs fewer than N.  Each time:
 *   - the failure surfaces as -ENOMEM from the call that hit it, or is
 *     absorbed and the migration is still exact;
 *   - the source goes back to RUNNING with its state unchanged;
 *   - a destination left in ERROR is recovered by VFIO_DEVICE_RESET and a
 *     clean resume then gives the source's digest.
 * Leaks and splats are caught by the runner (kmemleak scan, kernel log).
 *
 * Without failslab the test skips, unless GPUP_REQUIRE_FAILSLAB=1 (as the
 * debug lane sets it), when it fails.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

#define FAILSLAB	"/sys/kernel/debug/failslab"
#define FAIL_NTH	"/proc/thread-self/fail-nth"
#define MAX_NTH		400	/* bound on the fault points of one migration */
#define VRAM_MB		4	/* small VRAM: the loop migrates hundreds of times */

enum { A, B };

FIXTURE(fs) {
	char pf[GPUP_BDF_LEN];
	char vf[2][GPUP_BDF_LEN];
	struct gpup_vfio v[2];
};

/* Lowest and highest text address of our two modules, from kallsyms. */
static int our_text(unsigned long *lo, unsigned long *hi)
{
	char line[512], type, name[256], mod[128];
	unsigned long addr;
	FILE *f = fopen("/proc/kallsyms", "r");

	if (!f)
		return -errno;
	*lo = ULONG_MAX;
	*hi = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx %c %255s %127s", &addr, &type, name,
			   mod) != 4)
			continue;
		if (type != 't' && type != 'T')
			continue;
		if (strcmp(mod, "[gpup_vfio_pci]") && strcmp(mod, "[gpup_sim]"))
			continue;
		if (addr < *lo)
			*lo = addr;
		if (addr > *hi)
			*hi = addr;
	}
	fclose(f);
	if (*lo == ULONG_MAX || !*lo)
		return -ENOENT;
	/* The last function's own length: modules' text is page aligned. */
	*hi = (*hi | 0xfff) + 0x1001;
	return 0;
}

static int failslab_setup(void)
{
	unsigned long lo, hi;
	int ret;

	ret = our_text(&lo, &hi);
	if (ret)
		return ret;
	if (gpup_write_file(FAILSLAB "/ignore-gfp-wait", "N") ||
	    gpup_write_file(FAILSLAB "/verbose", "0") ||
	    gpup_write_file(FAILSLAB "/stacktrace-depth", "32") ||
	    gpup_write_file(FAILSLAB "/require-start", "%lu", lo) ||
	    gpup_write_file(FAILSLAB "/require-end", "%lu", hi))
		return -EIO;
	return 0;
}

static void failslab_teardown(void)
{
	gpup_write_file(FAILSLAB "/require-start", "0");
	gpup_write_file(FAILSLAB "/require-end", "%lu", ULONG_MAX);
}

static int arm(int nth)
{
	return gpup_write_file(FAIL_NTH, "%d", nth);
}

/* Disarms; returns whether the armed failure was injected. */
static int disarm(void)
{
	long left = gpup_read_long(FAIL_NTH);

	gpup_write_file(FAIL_NTH, "0");
	return left == 0;
}

FIXTURE_SETUP(fs)
{
	int i;

	if (access(FAILSLAB, F_OK)) {
		if (getenv("GPUP_REQUIRE_FAILSLAB"))
			ASSERT_EQ(0, -ENOENT) TH_LOG("no " FAILSLAB);
		SKIP(return, "no failslab in this kernel");
	}
	ASSERT_EQ(0, gpup_setup_pf_vram(self->pf, 2, VRAM_MB));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
	ASSERT_EQ(0, failslab_setup());
}

FIXTURE_TEARDOWN(fs)
{
	int i;

	gpup_write_file(FAIL_NTH, "0");
	failslab_teardown();
	for (i = 0; i < 2; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
	}
	gpup_set_numvfs(self->pf, 0);
	/* The other tests expect gpup_sim's default VRAM. */
	gpup_setup_pf(self->pf, 0);
}

/* A whole save as QEMU drives it with pre-copy; the first error. */
static int save_precopy(int dev, struct gpup_buf *b)
{
	int fd = -1, ret;

	ret = gpup_mig_set(dev, VFIO_DEVICE_STATE_PRE_COPY, &fd);
	if (ret)
		return ret;
	ret = gpup_read_stream(fd, b, GPUP_CHUNK_READ, 1);
	if (!ret)
		ret = gpup_mig_set(dev, VFIO_DEVICE_STATE_PRE_COPY_P2P, NULL);
	if (!ret)
		ret = gpup_mig_set(dev, VFIO_DEVICE_STATE_STOP_COPY, NULL);
	if (!ret)
		ret = gpup_read_stream(fd, b, GPUP_CHUNK_READ, 0);
	if (!ret)
		ret = gpup_mig_set(dev, VFIO_DEVICE_STATE_STOP, NULL);
	close(fd);
	return ret;
}

static int state_of(int dev)
{
	int s = -1;

	return gpup_mig_get(dev, &s) ? -1 : s;
}

TEST_F_TIMEOUT(fs, save_fails_cleanly, 3600)
{
	char before[GPUP_DIGEST_LEN], after[GPUP_DIGEST_LEN];
	int a = self->v[A].device, b = self->v[B].device;
	int nth, ret, fired, hits = 0, absorbed = 0;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], before));
	for (nth = 1; nth <= MAX_NTH; nth++) {
		struct gpup_buf s = { 0 };

		ASSERT_EQ(0, arm(nth));
		ret = save_precopy(a, &s);
		fired = disarm();
		if (!fired) {
			/* The whole save needed fewer than nth allocations. */
			EXPECT_EQ(0, ret);
			gpup_buf_free(&s);
			break;
		}
		if (ret) {
			EXPECT_EQ(-ENOMEM, ret) TH_LOG("nth %d", nth);
			hits++;
		} else {
			absorbed++;
		}
		/* The abort QEMU does: back to RUNNING, which must work. */
		EXPECT_EQ(0, gpup_mig_set(a, VFIO_DEVICE_STATE_RUNNING, NULL))
			TH_LOG("nth %d: source from %s", nth,
			       gpup_state_name(state_of(a)));
		ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(a));
		ASSERT_EQ(0, gpup_sim_digest(self->vf[A], after));
		ASSERT_STREQ(before, after) TH_LOG("nth %d: source changed", nth);
		if (!ret) {
			/* An absorbed failure must still give an exact stream. */
			ASSERT_EQ(0, gpup_load(b, &s));
			ASSERT_EQ(0, gpup_sim_digest(self->vf[B], after));
			ASSERT_STREQ(before, after) TH_LOG("nth %d", nth);
		}
		gpup_buf_free(&s);
	}
	ASSERT_LE(nth, MAX_NTH) TH_LOG("more than %d fault points", MAX_NTH);
	/* The test is void unless some allocation of ours was failed. */
	ASSERT_GT(hits + absorbed, 0);
	TH_LOG("save: %d fault points, %d failed cleanly, %d absorbed",
	       nth - 1, hits, absorbed);
}

TEST_F_TIMEOUT(fs, resume_fails_cleanly, 3600)
{
	char want[GPUP_DIGEST_LEN], got[GPUP_DIGEST_LEN];
	int a = self->v[A].device, b = self->v[B].device;
	int nth, ret, fired, hits = 0, absorbed = 0;
	struct gpup_buf s = { 0 };

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 7));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], want));
	ASSERT_EQ(0, gpup_save_stop_copy(a, &s));
	for (nth = 1; nth <= MAX_NTH; nth++) {
		ASSERT_EQ(0, arm(nth));
		ret = gpup_load(b, &s);
		fired = disarm();
		if (!fired) {
			EXPECT_EQ(0, ret);
			break;
		}
		if (ret) {
			EXPECT_EQ(-ENOMEM, ret) TH_LOG("nth %d", nth);
			hits++;
			/* Whatever state it was left in, a reset recovers. */
			ASSERT_EQ(0, gpup_device_reset(b)) TH_LOG("nth %d", nth);
			ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(b));
			ASSERT_EQ(0, gpup_load(b, &s)) TH_LOG("nth %d", nth);
		} else {
			absorbed++;
		}
		ASSERT_EQ(0, gpup_sim_digest(self->vf[B], got));
		ASSERT_STREQ(want, got) TH_LOG("nth %d", nth);
	}
	gpup_buf_free(&s);
	ASSERT_LE(nth, MAX_NTH) TH_LOG("more than %d fault points", MAX_NTH);
	ASSERT_GT(hits + absorbed, 0);
	TH_LOG("resume: %d fault points, %d failed cleanly, %d absorbed",
	       nth - 1, hits, absorbed);
}

TEST_HARNESS_MAIN
