// SPDX-License-Identifier: GPL-2.0
/*
 * Reset, close and provider lifetime of gpup_vfio_pci: a reset is done
 * when VFIO_DEVICE_RESET returns, even while another thread holds the
 * device's state mutex; closing the device scrubs the VF, whatever the
 * migration was doing; caps are checked again whenever a provider is
 * attached; ERROR only when an arc touched the device; a reset that
 * returns 0 leaves the device in RUNNING.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

#define NVF	3

enum { A, B, C };

FIXTURE(rst) {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
	/* each VF's digest as SR-IOV created it: its power-on state */
	char poweron[NVF][GPUP_DIGEST_LEN];
};

FIXTURE_SETUP(rst)
{
	int i;

	for (i = 0; i < NVF; i++)
		gpup_vfio_init(&self->v[i]);
	ASSERT_EQ(0, gpup_setup_pf(self->pf, NVF));
	/* The debugfs hold hook, for the VFs bound from now on. */
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("test_hooks"), "Y"));
	for (i = 0; i < NVF; i++) {
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
		ASSERT_EQ(0, gpup_sim_digest(self->vf[i], self->poweron[i]));
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
}

FIXTURE_TEARDOWN(rst)
{
	int i;

	for (i = 0; i < NVF; i++)
		gpup_vfio_close(&self->v[i]);
	gpup_bind_override(self->pf, "gpup_sim");
	for (i = 0; i < NVF; i++)
		gpup_unbind(self->vf[i]);
	gpup_set_numvfs(self->pf, 0);
	gpup_write_file(GPUP_VFIO_PARAM("test_hooks"), "N");
}

static int dev(struct _test_data_rst *self, int i)
{
	return self->v[i].device;
}

static int state_of(int device)
{
	int s = -1;

	return gpup_mig_get(device, &s) ? -1 : s;
}

/* The VF is at its power-on state: unpaused, idle, VRAM as created. */
static void expect_scrubbed(struct __test_metadata *_metadata,
			    struct _test_data_rst *self, int i)
{
	char d[GPUP_DIGEST_LEN];

	EXPECT_EQ(0, gpup_sim_read_long(self->vf[i], "paused"));
	EXPECT_EQ(0, gpup_sim_read_long(self->vf[i], "migrating"));
	EXPECT_EQ(0, gpup_sim_read_long(self->vf[i], "tracking"));
	EXPECT_EQ(0, gpup_sim_steps(self->vf[i]));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[i], d));
	EXPECT_STREQ(self->poweron[i], d);
}

/*
 * VFIO_DEVICE_RESET while another thread holds the state mutex (the
 * debugfs hold hook stands in for an arc calling a slow provider): the
 * VF is reset when the ioctl returns, not when the mutex is let go.
 */
TEST_F(rst, reset_while_state_mutex_held)
{
	struct gpup_hold h;
	char buf[4096];
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 10));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY_P2P,
				  &fd));
	ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));
	ASSERT_EQ(1, gpup_sim_read_long(self->vf[A], "paused"));

	ASSERT_EQ(0, gpup_hold_start(&h, self->vf[A]));
	EXPECT_EQ(0, gpup_device_reset(dev(self, A)));
	/* At once, with the mutex still held by the other thread. */
	expect_scrubbed(_metadata, self, A);
	ASSERT_EQ(0, gpup_hold_stop(&h));

	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	EXPECT_EQ(ENODEV, errno);
	close(fd);
	EXPECT_EQ(0, gpup_sim_violations(self->vf[A]));
}

/*
 * The hold hook is a test instrument: a VF bound without the module
 * parameter test_hooks (a user's modprobe) has no hold or held file.
 */
TEST_F(rst, test_hooks_off_by_default)
{
	char path[256];

	gpup_vfio_close(&self->v[C]);
	ASSERT_EQ(0, gpup_unbind(self->vf[C]));
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("test_hooks"), "N"));
	ASSERT_EQ(0, gpup_bind_override(self->vf[C], "gpup_vfio_pci"));
	snprintf(path, sizeof(path),
		 "/sys/kernel/debug/gpup_vfio_pci/%s/status", self->vf[C]);
	EXPECT_EQ(0, access(path, R_OK));
	snprintf(path, sizeof(path),
		 "/sys/kernel/debug/gpup_vfio_pci/%s/hold", self->vf[C]);
	EXPECT_EQ(-1, access(path, F_OK));
	EXPECT_EQ(ENOENT, errno);
	snprintf(path, sizeof(path),
		 "/sys/kernel/debug/gpup_vfio_pci/%s/held", self->vf[C]);
	EXPECT_EQ(-1, access(path, F_OK));
	/* Bound again with the parameter set, the VF has them. */
	ASSERT_EQ(0, gpup_unbind(self->vf[C]));
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("test_hooks"), "Y"));
	ASSERT_EQ(0, gpup_bind_override(self->vf[C], "gpup_vfio_pci"));
	EXPECT_EQ(0, access(path, R_OK));
	ASSERT_EQ(0, gpup_vfio_open(self->vf[C], &self->v[C]));
}

/* A completed migration: closing the destination scrubs it. */
TEST_F(rst, close_scrubs_after_migration)
{
	struct gpup_buf b = { 0 };

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 20));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	ASSERT_EQ(20, gpup_sim_steps(self->vf[B]));
	gpup_buf_free(&b);
	gpup_vfio_close(&self->v[B]);
	expect_scrubbed(_metadata, self, B);
	/* The source, left paused in STOP, too. */
	gpup_vfio_close(&self->v[A]);
	expect_scrubbed(_metadata, self, A);
}

/* An aborted pre-copy, the data_fd still open: closing scrubs. */
TEST_F(rst, close_scrubs_aborted_precopy)
{
	struct gpup_buf b = { 0 };
	char buf[16];
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 15));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  &fd));
	ASSERT_EQ(0, gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 1));
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 3));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY_P2P,
				  NULL));
	gpup_vfio_close(&self->v[A]);
	expect_scrubbed(_metadata, self, A);
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	EXPECT_EQ(ENODEV, errno);
	close(fd);
	gpup_buf_free(&b);
}

/* A process killed in the middle of STOP_COPY: its exit scrubs. */
TEST_F(rst, close_scrubs_killed_in_stop_copy)
{
	int p[2], status;
	pid_t pid;
	char c = 0;

	gpup_vfio_close(&self->v[A]);
	ASSERT_EQ(0, pipe(p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct gpup_vfio v;
		char buf[4096];
		int fd;

		close(p[0]);
		if (gpup_vfio_open(self->vf[A], &v) ||
		    gpup_sim_run(self->vf[A], 12) ||
		    gpup_mig_set(v.device, VFIO_DEVICE_STATE_STOP_COPY, &fd) ||
		    read(fd, buf, sizeof(buf)) != sizeof(buf))
			c = 'e';
		else
			c = 'x';
		if (write(p[1], &c, 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	close(p[1]);
	ASSERT_EQ(1, read(p[0], &c, 1));
	close(p[0]);
	EXPECT_EQ('x', c);
	EXPECT_EQ(1, gpup_sim_read_long(self->vf[A], "paused"));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	expect_scrubbed(_metadata, self, A);
}

/*
 * gpup_sim comes back with another VRAM size while the VFs stay bound:
 * open (B) and reset (A) attach the new provider, see that its caps are
 * not those the driver bound with, and refuse migration arcs with
 * ESTALE, state unchanged, saying so once in the log.
 */
TEST_F(rst, caps_checked_when_provider_attached)
{
	char needle[128];
	u64 size;
	int kmsg, fd;

	gpup_vfio_close(&self->v[B]);
	gpup_vfio_close(&self->v[C]);
	/* A stays open: SR-IOV stays enabled without the PF driver. */
	ASSERT_EQ(0, gpup_unbind(self->pf));
	/* The reset lets go of the dead provider (and its module). */
	gpup_device_reset(dev(self, A));
	ASSERT_EQ(0, gpup_run("rmmod gpup_sim && modprobe gpup_sim vram_mb=32"));
	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
	ASSERT_EQ(0, gpup_vf_bdf(self->pf, B, self->vf[B]));

	kmsg = gpup_kmsg_open();
	ASSERT_LE(0, kmsg);
	ASSERT_EQ(0, gpup_vfio_open(self->vf[B], &self->v[B]));
	EXPECT_EQ(-ESTALE, gpup_mig_set(dev(self, B),
					VFIO_DEVICE_STATE_STOP_COPY, &fd));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));
	EXPECT_EQ(-ESTALE, gpup_mig_data_size(dev(self, B), &size));
	EXPECT_EQ(-ESTALE, gpup_mig_set(dev(self, B),
					VFIO_DEVICE_STATE_RESUMING, &fd));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));

	EXPECT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(-ESTALE, gpup_mig_set(dev(self, A),
					VFIO_DEVICE_STATE_PRE_COPY, &fd));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));

	snprintf(needle, sizeof(needle), "%s: gpup: provider caps changed",
		 self->vf[B]);
	EXPECT_EQ(1, gpup_kmsg_count(kmsg, needle));
	close(kmsg);
	/* The new provider saw reset_prepare before reset_done. */
	EXPECT_EQ(0, gpup_sim_violations(self->vf[A]));
	/* The next test's set-up brings back the default VRAM size. */
}

/*
 * A VF opened while its PF has no provider: an arc fails with ENODEV
 * before it touches anything and the state stays RUNNING; a reset is a
 * plain PCI reset and succeeds.
 */
TEST_F(rst, no_provider_at_open_keeps_state)
{
	gpup_vfio_close(&self->v[B]);
	/* A stays open: SR-IOV stays enabled without the PF driver. */
	ASSERT_EQ(0, gpup_unbind(self->pf));
	ASSERT_EQ(0, gpup_vfio_open(self->vf[B], &self->v[B]));
	EXPECT_EQ(-ENODEV, gpup_mig_set(dev(self, B),
					VFIO_DEVICE_STATE_RUNNING_P2P, NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));
	EXPECT_EQ(-ENODEV, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_STOP,
					NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));
	EXPECT_EQ(0, gpup_device_reset(dev(self, B)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, B)));
}

/*
 * VFIO_DEVICE_RESET works with the provider gone (its PF driver
 * unbound) in the middle of a migration: the function reset runs, the
 * provider's state of the VF went with the provider, so the device is in
 * RUNNING and the ioctl returns 0; migration arcs then fail with ENODEV,
 * state kept.  With the provider back, one reset attaches it: the arcs
 * work again, the VF scrubbed.
 */
TEST_F(rst, reset_without_provider_returns_running)
{
	char buf[4096];
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  &fd));
	ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, gpup_unbind(self->pf));
	EXPECT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	/* The data_fd of the migration the reset ended is gone. */
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	close(fd);
	EXPECT_EQ(-ENODEV, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP,
					NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	EXPECT_EQ(-ENODEV, gpup_mig_set(dev(self, A),
					VFIO_DEVICE_STATE_RUNNING_P2P, NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	/* Again, with nothing left to undo. */
	EXPECT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));

	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
	EXPECT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	EXPECT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	expect_scrubbed(_metadata, self, A);
}

TEST_HARNESS_MAIN
