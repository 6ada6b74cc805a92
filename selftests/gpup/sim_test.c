// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_sim, the simulated GPU PF: binding by override only, VF lifetime,
 * the deterministic engine, pausing, free-running and fault injection.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

static void driver_is(struct __test_metadata *_metadata, const char *bdf,
		      const char *want)
{
	char drv[64];

	ASSERT_EQ(0, gpup_driver_of(bdf, drv, sizeof(drv)));
	EXPECT_STREQ(want, drv);
}

static void digest(struct __test_metadata *_metadata, const char *vf,
		   char *d)
{
	ASSERT_EQ(0, gpup_sim_digest(vf, d));
	ASSERT_EQ(64, strlen(d));
}

/* igb keeps its PF; gpup_sim takes it only through driver_override. */
TEST(binds_by_override_only)
{
	char pf[GPUP_BDF_LEN], path[128];

	ASSERT_EQ(0, gpup_run("modprobe -a igb gpup_vfio_pci gpup_sim"));
	ASSERT_EQ(0, gpup_find_pf(pf));
	gpup_set_numvfs(pf, 0);
	ASSERT_EQ(0, gpup_unbind(pf));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override",
		 pf);
	ASSERT_EQ(0, gpup_write_file(path, "\n"));
	/* A plain probe: igb claims it by ID, gpup_sim never does. */
	ASSERT_EQ(0, gpup_write_file("/sys/bus/pci/drivers_probe", "%s", pf));
	driver_is(_metadata, pf, "igb");
	/* Asking gpup_sim by name without the override is refused too. */
	ASSERT_EQ(0, gpup_unbind(pf));
	EXPECT_NE(0, gpup_write_file("/sys/bus/pci/drivers/gpup_sim/bind",
				     "%s", pf));
	driver_is(_metadata, pf, "");
	ASSERT_EQ(0, gpup_bind_override(pf, "gpup_sim"));
	driver_is(_metadata, pf, "gpup_sim");
	gpup_run("rmmod igb");
}

FIXTURE(sim) {
	char pf[GPUP_BDF_LEN];
	char vf[3][GPUP_BDF_LEN];
	struct gpup_vfio v[2];	/* opened by some tests, closed by teardown */
};

FIXTURE_SETUP(sim)
{
	int i;

	for (i = 0; i < 2; i++)
		gpup_vfio_init(&self->v[i]);
	ASSERT_EQ(0, gpup_setup_pf(self->pf, 3));
	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
}

FIXTURE_TEARDOWN(sim)
{
	/* An open VF would block disabling SR-IOV: close it first. */
	gpup_vfio_close(&self->v[0]);
	gpup_vfio_close(&self->v[1]);
	gpup_bind_override(self->pf, "gpup_sim");
	gpup_set_numvfs(self->pf, 0);
}

TEST_F(sim, profile)
{
	char path[128], buf[512];

	snprintf(path, sizeof(path), "/sys/kernel/debug/gpup_sim/%s/profile",
		 self->vf[0]);
	ASSERT_LT(0, gpup_read_file(path, buf, sizeof(buf)));
	EXPECT_NE(NULL, strstr(buf, "profile_id=1\n"));
	EXPECT_NE(NULL, strstr(buf, "engines=4\n"));
	EXPECT_NE(NULL, strstr(buf, "vram_size=16777216\n"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "profile", "2"));
	ASSERT_LT(0, gpup_read_file(path, buf, sizeof(buf)));
	EXPECT_NE(NULL, strstr(buf, "engines=2\n"));
	EXPECT_EQ(-EINVAL, gpup_sim_write(self->vf[0], "profile", "9"));
}

/*
 * Every VF starts from a state of its own (its seed is the module's seed
 * and its index); same seed and steps: same state; other steps or
 * seeds: other state.
 */
TEST_F(sim, deterministic_engine)
{
	char d0[GPUP_DIGEST_LEN], d1[GPUP_DIGEST_LEN], d2[GPUP_DIGEST_LEN];

	digest(_metadata, self->vf[0], d0);
	digest(_metadata, self->vf[1], d1);
	EXPECT_STRNE(d0, d1);
	EXPECT_NE(gpup_sim_read_long(self->vf[0], "seed"),
		  gpup_sim_read_long(self->vf[1], "seed"));
	ASSERT_EQ(0, gpup_sim_twin(self->vf[1], self->vf[0]));
	digest(_metadata, self->vf[1], d1);
	EXPECT_STREQ(d0, d1);
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 50));
	ASSERT_EQ(0, gpup_sim_run(self->vf[1], 49));
	digest(_metadata, self->vf[0], d0);
	digest(_metadata, self->vf[1], d1);
	EXPECT_STRNE(d0, d1);
	ASSERT_EQ(0, gpup_sim_run(self->vf[1], 1));
	digest(_metadata, self->vf[1], d1);
	EXPECT_STREQ(d0, d1);
	EXPECT_EQ(50, gpup_sim_steps(self->vf[1]));
	/* Another seed is another GPU. */
	ASSERT_EQ(0, gpup_sim_write(self->vf[2], "seed", "7"));
	ASSERT_EQ(0, gpup_sim_run(self->vf[2], 50));
	digest(_metadata, self->vf[2], d2);
	EXPECT_STRNE(d0, d2);
	/* Reset goes back to the seed's initial state. */
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "reset", "1"));
	EXPECT_EQ(0, gpup_sim_steps(self->vf[0]));
	ASSERT_EQ(0, gpup_sim_write(self->vf[1], "reset", "1"));
	digest(_metadata, self->vf[0], d0);
	digest(_metadata, self->vf[1], d1);
	EXPECT_STREQ(d0, d1);
}

TEST_F(sim, no_steps_while_paused)
{
	char d0[GPUP_DIGEST_LEN], d1[GPUP_DIGEST_LEN];
	time_t end = time(NULL) + 30;
	long t0;

	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 5));
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "pause", "1"));
	EXPECT_EQ(1, gpup_sim_read_long(self->vf[0], "paused"));
	digest(_metadata, self->vf[0], d0);
	EXPECT_EQ(-EBUSY, gpup_sim_run(self->vf[0], 1));
	/*
	 * Free-running does not step a paused VF either: wait until its
	 * timer has run a few times (ticks counts runs, stepping or not).
	 */
	t0 = gpup_sim_read_long(self->vf[0], "ticks");
	ASSERT_LE(0, t0);
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "free_run", "1"));
	while (gpup_sim_read_long(self->vf[0], "ticks") < t0 + 3 &&
	       time(NULL) < end)
		usleep(10000);
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "free_run", "0"));
	ASSERT_LE(t0 + 3, gpup_sim_read_long(self->vf[0], "ticks"));
	digest(_metadata, self->vf[0], d1);
	EXPECT_STREQ(d0, d1);
	EXPECT_EQ(5, gpup_sim_steps(self->vf[0]));
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "pause", "0"));
	EXPECT_EQ(0, gpup_sim_run(self->vf[0], 1));
}

TEST_F(sim, free_run_advances)
{
	long start = gpup_sim_steps(self->vf[0]), now = start;
	time_t end = time(NULL) + 20;

	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "free_run", "1"));
	EXPECT_EQ(1, gpup_sim_read_long(self->vf[0], "free_run"));
	while (now == start && time(NULL) < end)
		now = gpup_sim_steps(self->vf[0]);
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "free_run", "0"));
	EXPECT_GT(now, start);
}

/* The next tick of @vf's timer after @t; its time in ms, or -1. */
static double next_tick(const char *vf, long *t, time_t end)
{
	long now;

	while ((now = gpup_sim_read_long(vf, "ticks")) == *t &&
	       time(NULL) < end)
		usleep(2000);
	if (now == *t)
		return -1;
	*t = now;
	return gpup_now() * 1e3;
}

/*
 * free_run_ms sets the timer's period (1 to 1000 ms): at 1000 ms, two
 * ticks are at least that far apart (a delayed work never runs early;
 * the polling above may see the first late, hence the margin).
 */
TEST_F(sim, free_run_period)
{
	const char *vf = self->vf[0];
	time_t end = time(NULL) + 20;
	double t1, t2;
	long t;

	EXPECT_EQ(20, gpup_sim_read_long(vf, "free_run_ms"));
	EXPECT_EQ(-EINVAL, gpup_sim_write(vf, "free_run_ms", "0"));
	EXPECT_EQ(-EINVAL, gpup_sim_write(vf, "free_run_ms", "1001"));
	ASSERT_EQ(0, gpup_sim_write(vf, "free_run_ms", "1000"));
	EXPECT_EQ(1000, gpup_sim_read_long(vf, "free_run_ms"));
	t = gpup_sim_read_long(vf, "ticks");
	ASSERT_EQ(0, gpup_sim_write(vf, "free_run", "1"));
	t1 = next_tick(vf, &t, end);
	t2 = next_tick(vf, &t, end);
	ASSERT_EQ(0, gpup_sim_write(vf, "free_run", "0"));
	ASSERT_EQ(0, gpup_sim_write(vf, "free_run_ms", "20"));
	ASSERT_LT(0, t1);
	ASSERT_LT(0, t2);
	TH_LOG("ticks %.0f ms apart", t2 - t1);
	EXPECT_LE(900, t2 - t1);
}

TEST_F(sim, dirty_tracking)
{
	EXPECT_EQ(0, gpup_sim_read_long(self->vf[0], "dirty"));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 10));
	/* Not tracking: nothing is marked. */
	EXPECT_EQ(0, gpup_sim_read_long(self->vf[0], "dirty"));
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "track", "1"));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 10));
	EXPECT_GT(gpup_sim_read_long(self->vf[0], "dirty"), 0);
	EXPECT_LE(gpup_sim_read_long(self->vf[0], "dirty"), 40);
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "track", "0"));
	EXPECT_EQ(-EINVAL, gpup_sim_write(self->vf[0], "track", "0"));
}

TEST_F(sim, fault_fires_once)
{
	char path[128], buf[64];

	snprintf(path, sizeof(path), "/sys/kernel/debug/gpup_sim/%s/fault",
		 self->vf[0]);
	ASSERT_LT(0, gpup_read_file(path, buf, sizeof(buf)));
	EXPECT_STREQ("none", buf);
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "fault", "reset_vf -5"));
	ASSERT_LT(0, gpup_read_file(path, buf, sizeof(buf)));
	EXPECT_STREQ("reset_vf -5", buf);
	EXPECT_EQ(-EIO, gpup_sim_write(self->vf[0], "reset", "1"));
	EXPECT_EQ(0, gpup_sim_write(self->vf[0], "reset", "1"));
	ASSERT_LT(0, gpup_read_file(path, buf, sizeof(buf)));
	EXPECT_STREQ("none", buf);
	EXPECT_EQ(-EINVAL, gpup_sim_write(self->vf[0], "fault", "reset_vf 5"));
}

/* A fault in an op reached through VFIO: pausing fails, nothing moved. */
TEST_F(sim, fault_through_vfio)
{
	struct gpup_vfio v;
	int s = -1;

	ASSERT_EQ(0, gpup_bind_override(self->vf[0], "gpup_vfio_pci"));
	ASSERT_EQ(0, gpup_vfio_open(self->vf[0], &v));
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "fault",
				    "set_pause_state -16"));
	EXPECT_EQ(-EBUSY, gpup_mig_set(v.device, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(0, gpup_mig_get(v.device, &s));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, s);
	EXPECT_EQ(0, gpup_mig_set(v.device, VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(0, gpup_mig_set(v.device, VFIO_DEVICE_STATE_RUNNING, NULL));
	gpup_vfio_close(&v);
	gpup_unbind(self->vf[0]);
}

/* VFs come and go cleanly, many times. */
TEST_F_TIMEOUT(sim, numvfs_loops, 300)
{
	char path[128];
	int i;

	for (i = 0; i < 5; i++) {
		ASSERT_EQ(0, gpup_set_numvfs(self->pf, 0));
		ASSERT_EQ(0, gpup_set_numvfs(self->pf, 7));
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, 6, self->vf[0]));
		snprintf(path, sizeof(path),
			 "/sys/kernel/debug/gpup_sim/%s/steps", self->vf[0]);
		EXPECT_EQ(0, gpup_read_long(path));
	}
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 0));
	EXPECT_EQ(-ENOENT, gpup_vf_bdf(self->pf, 0, self->vf[0]));
}

TEST_F(sim, unbind_rebind_pf)
{
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 0));
	ASSERT_EQ(0, gpup_unbind(self->pf));
	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 2));
	ASSERT_EQ(0, gpup_vf_bdf(self->pf, 1, self->vf[1]));
	EXPECT_EQ(0, gpup_sim_run(self->vf[1], 3));
}

/*
 * Removing gpup_sim (rmmod, or unbinding the PF) disables SR-IOV when no
 * VF is owned by a VFIO user, even with VFs bound to gpup_vfio_pci, and
 * leaves nothing for the PCI core's "driver left SR-IOV enabled" warning.
 */
TEST_F(sim, remove_disables_unowned_vfs)
{
	int kmsg;

	ASSERT_EQ(0, gpup_bind_override(self->vf[0], "gpup_vfio_pci"));
	ASSERT_EQ(0, gpup_bind_override(self->vf[1], "gpup_vfio_pci"));
	kmsg = gpup_kmsg_open();
	ASSERT_LE(0, kmsg);
	ASSERT_EQ(0, gpup_run("rmmod gpup_sim"));
	EXPECT_EQ(-ENOENT, gpup_vf_bdf(self->pf, 0, self->vf[0]));
	EXPECT_EQ(0, gpup_kmsg_count(kmsg, "driver left SR-IOV enabled"));
	close(kmsg);
	/* The same through an unbind of the PF. */
	ASSERT_EQ(0, gpup_setup_pf(self->pf, 2));
	ASSERT_EQ(0, gpup_vf_bdf(self->pf, 0, self->vf[0]));
	ASSERT_EQ(0, gpup_bind_override(self->vf[0], "gpup_vfio_pci"));
	ASSERT_EQ(0, gpup_unbind(self->pf));
	EXPECT_EQ(-ENOENT, gpup_vf_bdf(self->pf, 0, self->vf[0]));
	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
}

/*
 * A VF that a VM owns (its VFIO device is open) keeps SR-IOV enabled
 * across the PF driver's removal; once the PF driver is back, the VF
 * works again.
 */
TEST_F(sim, remove_keeps_owned_vfs)
{
	char d0[GPUP_DIGEST_LEN], d1[GPUP_DIGEST_LEN];
	struct gpup_vfio *v0 = &self->v[0], *v1 = &self->v[1];
	struct gpup_buf b = { 0 };

	ASSERT_EQ(0, gpup_bind_override(self->vf[0], "gpup_vfio_pci"));
	ASSERT_EQ(0, gpup_bind_override(self->vf[1], "gpup_vfio_pci"));
	ASSERT_EQ(0, gpup_vfio_open(self->vf[0], v0));
	ASSERT_EQ(0, gpup_unbind(self->pf));
	ASSERT_EQ(0, gpup_vf_bdf(self->pf, 0, self->vf[0]));
	driver_is(_metadata, self->vf[0], "gpup_vfio_pci");
	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
	/* The provider is back: one reset and the VF migrates again. */
	ASSERT_EQ(0, gpup_device_reset(v0->device));
	ASSERT_EQ(0, gpup_vfio_open(self->vf[1], v1));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 4));
	digest(_metadata, self->vf[0], d0);
	ASSERT_EQ(0, gpup_save_stop_copy(v0->device, &b));
	ASSERT_EQ(0, gpup_load(v1->device, &b));
	digest(_metadata, self->vf[1], d1);
	EXPECT_STREQ(d0, d1);
	gpup_buf_free(&b);
	gpup_vfio_close(v0);
	gpup_vfio_close(v1);
	gpup_unbind(self->vf[0]);
	gpup_unbind(self->vf[1]);
}

FIXTURE(big) {
	char pf[GPUP_BDF_LEN];
	char vf[GPUP_BDF_LEN];
};

FIXTURE_SETUP(big)
{
	ASSERT_EQ(0, gpup_setup_pf_vram(self->pf, 1, 1024));
	ASSERT_EQ(0, gpup_vf_bdf(self->pf, 0, self->vf));
}

FIXTURE_TEARDOWN(big)
{
	/* Back to the default VRAM size for the tests that follow. */
	gpup_setup_pf(self->pf, 0);
}

/* A VF with 1 GiB of VRAM: the engine, tracking and digest all work. */
TEST_F_TIMEOUT(big, vram_1g, 600)
{
	char path[128], buf[512], d0[GPUP_DIGEST_LEN], d1[GPUP_DIGEST_LEN];

	snprintf(path, sizeof(path), "/sys/kernel/debug/gpup_sim/%s/profile",
		 self->vf);
	ASSERT_LT(0, gpup_read_file(path, buf, sizeof(buf)));
	EXPECT_NE(NULL, strstr(buf, "vram_size=1073741824\n"));
	digest(_metadata, self->vf, d0);
	ASSERT_EQ(0, gpup_sim_write(self->vf, "track", "1"));
	ASSERT_EQ(0, gpup_sim_run(self->vf, 200));
	EXPECT_GT(gpup_sim_read_long(self->vf, "dirty"), 700);
	digest(_metadata, self->vf, d1);
	EXPECT_STRNE(d0, d1);
	ASSERT_EQ(0, gpup_sim_write(self->vf, "reset", "1"));
	digest(_metadata, self->vf, d1);
	EXPECT_STREQ(d0, d1);
}

/*
 * VFs of real GPU sizes, 16 to 64 GiB, in a guest of 3 GiB: VRAM is
 * backed as it is written, the engine writes a 64 MiB working set, and
 * the digest covers all of VRAM in the time of the pages written.
 */
FIXTURE(huge) {
	char pf[GPUP_BDF_LEN];
	char vf[GPUP_BDF_LEN];
};

FIXTURE_VARIANT(huge) {
	unsigned int vram_mb;
};

FIXTURE_VARIANT_ADD(huge, vram_16g) { .vram_mb = 16384 };
FIXTURE_VARIANT_ADD(huge, vram_48g) { .vram_mb = 49152 };
FIXTURE_VARIANT_ADD(huge, vram_64g) { .vram_mb = 65536 };

FIXTURE_SETUP(huge)
{
	char params[64];

	ASSERT_EQ(0, gpup_setup_pf(self->pf, 0));
	snprintf(params, sizeof(params), "vram_mb=%u working_set_mb=64",
		 variant->vram_mb);
	ASSERT_EQ(0, gpup_reload_sim(self->pf, params));
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 1));
	ASSERT_EQ(0, gpup_vf_bdf(self->pf, 0, self->vf));
}

FIXTURE_TEARDOWN(huge)
{
	gpup_setup_pf(self->pf, 0);
}

TEST_F_TIMEOUT(huge, sparse_vram, 300)
{
	char path[128], buf[512], want[64];
	char d0[GPUP_DIGEST_LEN], d1[GPUP_DIGEST_LEN];
	long backed;

	snprintf(path, sizeof(path), "/sys/kernel/debug/gpup_sim/%s/profile",
		 self->vf);
	ASSERT_LT(0, gpup_read_file(path, buf, sizeof(buf)));
	snprintf(want, sizeof(want), "vram_size=%llu\n",
		 (unsigned long long)variant->vram_mb << 20);
	EXPECT_NE(NULL, strstr(buf, want));
	EXPECT_EQ(0, gpup_sim_read_long(self->vf, "vram_backed"));
	digest(_metadata, self->vf, d0);
	ASSERT_EQ(0, gpup_sim_write(self->vf, "track", "1"));
	ASSERT_EQ(0, gpup_sim_run(self->vf, 500));
	/* 2000 page writes, in the working set's 16384 pages. */
	backed = gpup_sim_read_long(self->vf, "vram_backed");
	ksft_print_msg("%u MiB VF: %ld pages backed after 500 steps\n",
		       variant->vram_mb, backed);
	EXPECT_GT(backed, 1500);
	EXPECT_LE(backed, 16384);
	EXPECT_EQ(backed, gpup_sim_read_long(self->vf, "dirty"));
	digest(_metadata, self->vf, d1);
	EXPECT_STRNE(d0, d1);
	/* Reset: power-on VRAM, nothing backed, the first digest again. */
	ASSERT_EQ(0, gpup_sim_write(self->vf, "reset", "1"));
	EXPECT_EQ(0, gpup_sim_read_long(self->vf, "vram_backed"));
	digest(_metadata, self->vf, d1);
	EXPECT_STREQ(d0, d1);
}

TEST_HARNESS_MAIN
