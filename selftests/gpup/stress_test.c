// SPDX-License-Identifier: GPL-2.0
/*
 * The hard cases of gpup_vfio_pci: the provider's PF driver unbound in
 * the middle of a migration, all seven VFs migrating at once, and threads
 * hammering set_state, read, write and reset.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

#define MAX_VF	7

static int open_vfs(char *pf, int n, char vf[][GPUP_BDF_LEN],
		    struct gpup_vfio *v)
{
	int i, ret;

	ret = gpup_setup_pf(pf, n);
	for (i = 0; !ret && i < n; i++) {
		ret = gpup_vf_bdf(pf, i, vf[i]);
		if (!ret)
			ret = gpup_bind_override(vf[i], "gpup_vfio_pci");
		if (!ret)
			ret = gpup_vfio_open(vf[i], &v[i]);
	}
	return ret;
}

static void close_vfs(const char *pf, int n, char vf[][GPUP_BDF_LEN],
		      struct gpup_vfio *v)
{
	int i;

	for (i = 0; i < n; i++) {
		gpup_vfio_close(&v[i]);
		gpup_unbind(vf[i]);
	}
	gpup_bind_override(pf, "gpup_sim");
	gpup_set_numvfs(pf, 0);
}

static int state_of(int device)
{
	int s = -1;

	return gpup_mig_get(device, &s) ? -1 : s;
}

FIXTURE(unbind) {
	char pf[GPUP_BDF_LEN];
	char vf[2][GPUP_BDF_LEN];
	struct gpup_vfio v[2];
};

FIXTURE_SETUP(unbind)
{
	ASSERT_EQ(0, open_vfs(self->pf, 2, self->vf, self->v));
}

FIXTURE_TEARDOWN(unbind)
{
	close_vfs(self->pf, 2, self->vf, self->v);
}

/*
 * The PF driver goes while A is mid-way through @state: calls fail with
 * ENODEV, A goes to ERROR, a reset fails while no provider is there and
 * recovers A once gpup_sim is bound to the PF again.
 */
static void unbind_during(struct __test_metadata *_metadata,
			  struct _test_data_unbind *self, int state)
{
	int a = self->v[0].device, b = self->v[1].device, fd;
	struct gpup_buf s = { 0 };
	char buf[4096], d0[GPUP_DIGEST_LEN], d1[GPUP_DIGEST_LEN], drv[64];
	ssize_t n;

	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 8));
	ASSERT_EQ(0, gpup_mig_set(a, state, &fd));
	ASSERT_GE(fd, 0);
	if (state == VFIO_DEVICE_STATE_STOP_COPY)
		ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));

	/* The VFs are in use, so gpup_sim leaves SR-IOV enabled. */
	ASSERT_EQ(0, gpup_unbind(self->pf));
	ASSERT_EQ(0, gpup_driver_of(self->pf, drv, sizeof(drv)));
	EXPECT_STREQ("", drv);
	ASSERT_EQ(0, gpup_driver_of(self->vf[0], drv, sizeof(drv)));
	EXPECT_STREQ("gpup_vfio_pci", drv);

	memset(buf, 0, sizeof(buf));
	n = state == VFIO_DEVICE_STATE_STOP_COPY ? read(fd, buf, sizeof(buf)) :
						   write(fd, buf, sizeof(buf));
	EXPECT_EQ(-1, n);
	EXPECT_EQ(ENODEV, errno);
	close(fd);
	/*
	 * Leaving the state needs the provider: the arc that would unpause
	 * the VF (or restore it) fails, and the device stays short of
	 * RUNNING (in ERROR when a restore was cut off).
	 */
	EXPECT_NE(0, gpup_mig_set(a, VFIO_DEVICE_STATE_RUNNING, NULL));
	EXPECT_NE(VFIO_DEVICE_STATE_RUNNING, state_of(a));
	EXPECT_NE(0, gpup_mig_set(a, VFIO_DEVICE_STATE_RUNNING, NULL));
	/*
	 * A reset works without the provider: the function reset runs,
	 * and what the provider held of the VF went with it.  Its arcs
	 * then fail with ENODEV, the state kept.
	 */
	EXPECT_EQ(0, gpup_device_reset(a));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(a));
	EXPECT_EQ(-ENODEV, gpup_mig_set(a, VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(a));

	/* The provider is back: one reset recovers, migration works again. */
	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
	ASSERT_EQ(0, gpup_device_reset(a));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(a));
	ASSERT_EQ(0, gpup_device_reset(b));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 5));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[0], d0));
	ASSERT_EQ(0, gpup_save_stop_copy(a, &s));
	ASSERT_EQ(0, gpup_load(b, &s));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[1], d1));
	EXPECT_STREQ(d0, d1);
	gpup_buf_free(&s);
}

TEST_F(unbind, during_stop_copy)
{
	unbind_during(_metadata, self, VFIO_DEVICE_STATE_STOP_COPY);
}

TEST_F(unbind, during_resuming)
{
	unbind_during(_metadata, self, VFIO_DEVICE_STATE_RESUMING);
}

FIXTURE(seven) {
	char pf[GPUP_BDF_LEN];
	char vf[MAX_VF][GPUP_BDF_LEN];
	struct gpup_vfio v[MAX_VF];
	struct gpup_buf s[MAX_VF];
	char d[MAX_VF][GPUP_DIGEST_LEN];
	int rc[MAX_VF];
};

FIXTURE_SETUP(seven)
{
	ASSERT_EQ(0, open_vfs(self->pf, MAX_VF, self->vf, self->v));
}

FIXTURE_TEARDOWN(seven)
{
	int i;

	for (i = 0; i < MAX_VF; i++)
		gpup_buf_free(&self->s[i]);
	close_vfs(self->pf, MAX_VF, self->vf, self->v);
}

struct seven_arg {
	struct _test_data_seven *self;
	int i;
	bool load;
};

static void *seven_worker(void *p)
{
	struct seven_arg *a = p;
	struct _test_data_seven *self = a->self;
	int src = (a->i + MAX_VF - 1) % MAX_VF;

	if (a->load)
		self->rc[a->i] = gpup_load(self->v[a->i].device, &self->s[src]);
	else
		self->rc[a->i] = gpup_save_stop_copy(self->v[a->i].device,
						     &self->s[a->i]);
	return NULL;
}

static void run_all(struct _test_data_seven *self, bool load)
{
	struct seven_arg args[MAX_VF];
	pthread_t t[MAX_VF];
	int i;

	for (i = 0; i < MAX_VF; i++) {
		args[i].self = self;
		args[i].i = i;
		args[i].load = load;
		pthread_create(&t[i], NULL, seven_worker, &args[i]);
	}
	for (i = 0; i < MAX_VF; i++)
		pthread_join(t[i], NULL);
}

/* Seven saves at once, then seven restores at once, rotated by one. */
TEST_F_TIMEOUT(seven, all_at_once, 300)
{
	char now[GPUP_DIGEST_LEN];
	int i;

	for (i = 0; i < MAX_VF; i++) {
		ASSERT_EQ(0, gpup_sim_run(self->vf[i], 3 * i + 1));
		ASSERT_EQ(0, gpup_sim_digest(self->vf[i], self->d[i]));
	}
	run_all(self, false);
	for (i = 0; i < MAX_VF; i++)
		ASSERT_EQ(0, self->rc[i]) TH_LOG("save %d", i);
	run_all(self, true);
	for (i = 0; i < MAX_VF; i++) {
		ASSERT_EQ(0, self->rc[i]) TH_LOG("load %d", i);
		ASSERT_EQ(0, gpup_sim_digest(self->vf[(i + 1) % MAX_VF], now));
		EXPECT_STREQ(self->d[i], now) TH_LOG("VF %d -> %d", i,
						     (i + 1) % MAX_VF);
	}
}

FIXTURE(hammer) {
	char pf[GPUP_BDF_LEN];
	char vf[2][GPUP_BDF_LEN];
	struct gpup_vfio v[2];
	pthread_mutex_t lock;
	int fd;			/* current data_fd, under lock */
	atomic_int stop;
	atomic_long ops;
};

FIXTURE_SETUP(hammer)
{
	ASSERT_EQ(0, open_vfs(self->pf, 2, self->vf, self->v));
	pthread_mutex_init(&self->lock, NULL);
	self->fd = -1;
}

FIXTURE_TEARDOWN(hammer)
{
	close_vfs(self->pf, 2, self->vf, self->v);
}

static int hammer_fd(struct _test_data_hammer *self)
{
	int fd = -1;

	pthread_mutex_lock(&self->lock);
	if (self->fd >= 0)
		fd = dup(self->fd);
	pthread_mutex_unlock(&self->lock);
	return fd;
}

static void *hammer_states(void *p)
{
	struct _test_data_hammer *self = p;
	unsigned int seed = 1;
	int fd, old;

	while (!self->stop) {
		if (gpup_mig_set(self->v[0].device, rand_r(&seed) % 8, &fd))
			continue;
		pthread_mutex_lock(&self->lock);
		old = self->fd;
		if (fd >= 0)
			self->fd = fd;
		else
			old = -1;
		pthread_mutex_unlock(&self->lock);
		if (old >= 0)
			close(old);
		self->ops++;
	}
	return NULL;
}

static void *hammer_io(void *p)
{
	struct _test_data_hammer *self = p;
	char buf[8192] = { 0 };
	int fd;

	while (!self->stop) {
		fd = hammer_fd(self);
		if (fd < 0) {
			sched_yield();
			continue;
		}
		if (read(fd, buf, sizeof(buf)) < 0 && errno == EBADF)
			write(fd, buf, sizeof(buf));
		close(fd);
		self->ops++;
	}
	return NULL;
}

static void *hammer_reset(void *p)
{
	struct _test_data_hammer *self = p;
	u64 size;

	while (!self->stop) {
		gpup_device_reset(self->v[0].device);
		gpup_mig_data_size(self->v[0].device, &size);
		gpup_sim_run(self->vf[0], 1);
		self->ops++;
	}
	return NULL;
}

/* Bounded in time; then the device must still work. */
TEST_F_TIMEOUT(hammer, states_io_reset, 120)
{
	pthread_t t[4];
	struct gpup_buf s = { 0 };
	char d0[GPUP_DIGEST_LEN], d1[GPUP_DIGEST_LEN];
	time_t end = time(NULL) + 10;

	pthread_create(&t[0], NULL, hammer_states, self);
	pthread_create(&t[1], NULL, hammer_io, self);
	pthread_create(&t[2], NULL, hammer_io, self);
	pthread_create(&t[3], NULL, hammer_reset, self);
	while (time(NULL) < end)
		usleep(100000);
	self->stop = 1;
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	TH_LOG("%ld operations", (long)self->ops);
	EXPECT_GT(self->ops, 100);
	if (self->fd >= 0)
		close(self->fd);

	ASSERT_EQ(0, gpup_device_reset(self->v[0].device));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(self->v[0].device));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 3));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[0], d0));
	ASSERT_EQ(0, gpup_save_stop_copy(self->v[0].device, &s));
	ASSERT_EQ(0, gpup_load(self->v[1].device, &s));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[1], d1));
	EXPECT_STREQ(d0, d1);
	gpup_buf_free(&s);
}

TEST_HARNESS_MAIN
