// SPDX-License-Identifier: GPL-2.0
/*
 * The provider's FLR hooks and events: reset_prepare and reset_done reach
 * the provider around every function reset, and a failed reset_done
 * leaves the device in ERROR; a VF the PF resets or loses underneath
 * (gpup_vf_notify() / gpup_pf_notify() RESET or ERROR), or re-provisions
 * (CAPS_CHANGED), in every migration state: the driver changes no state
 * on its own (vfio.h: no asynchronous state transitions), so the state
 * reads as it was; poll() on its data_fd reports EPOLLERR, read() and
 * write() fail, one kernel log line; the user's next arc fails, and
 * lands in ERROR (new caps in RUNNING: refused, the state kept); and a
 * VFIO_DEVICE_RESET recovers.  So is one whose reset_done fails in that
 * state.  gpup_sim's debugfs "event" and "pf_event" files inject the
 * events, its "fault" file the failing reset_done.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

#define NVF	2

enum { A, B };

struct env {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
	char poweron[NVF][GPUP_DIGEST_LEN];
	unsigned int profile;
};

static void env_setup(struct __test_metadata *_metadata, struct env *e)
{
	char buf[512], *p;
	int i;

	for (i = 0; i < NVF; i++)
		gpup_vfio_init(&e->v[i]);
	ASSERT_EQ(0, gpup_setup_pf(e->pf, NVF));
	for (i = 0; i < NVF; i++) {
		ASSERT_EQ(0, gpup_vf_bdf(e->pf, i, e->vf[i]));
		ASSERT_EQ(0, gpup_sim_digest(e->vf[i], e->poweron[i]));
		ASSERT_EQ(0, gpup_bind_override(e->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(e->vf[i], &e->v[i]));
	}
	snprintf(buf, sizeof(buf), "/sys/kernel/debug/gpup_sim/%s/profile",
		 e->vf[A]);
	ASSERT_LT(0, gpup_read_file(buf, buf, sizeof(buf)));
	p = strstr(buf, "profile_id=");
	ASSERT_NE(NULL, p);
	e->profile = strtoul(p + strlen("profile_id="), NULL, 0);
}

static void env_teardown(struct env *e)
{
	int i;

	for (i = 0; i < NVF; i++)
		gpup_vfio_close(&e->v[i]);
	gpup_bind_override(e->pf, "gpup_sim");
	for (i = 0; i < NVF; i++)
		gpup_unbind(e->vf[i]);
	gpup_set_numvfs(e->pf, 0);
}

FIXTURE(flr) {
	struct env e;
};

FIXTURE_SETUP(flr)
{
	env_setup(_metadata, &self->e);
}

FIXTURE_TEARDOWN(flr)
{
	env_teardown(&self->e);
}

FIXTURE(ev) {
	struct env e;
};

FIXTURE_SETUP(ev)
{
	env_setup(_metadata, &self->e);
}

FIXTURE_TEARDOWN(ev)
{
	env_teardown(&self->e);
}

static int state_of(int device)
{
	int s = -1;

	return gpup_mig_get(device, &s) ? -1 : s;
}

/* reset_prepare and reset_done calls gpup_sim counted for @vf. */
static int flr_counts(const char *vf, long *prep, long *done)
{
	char path[256], buf[64];

	snprintf(path, sizeof(path), "/sys/kernel/debug/gpup_sim/%s/flr", vf);
	if (gpup_read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	return sscanf(buf, "prepare %ld done %ld", prep, done) == 2 ? 0 : -1;
}

/* Op calls gpup_sim saw between reset_prepare and reset_done of @vf. */
static long window_calls(const char *vf)
{
	char path[256], buf[96];
	long p, d, q;

	snprintf(path, sizeof(path), "/sys/kernel/debug/gpup_sim/%s/flr", vf);
	if (gpup_read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	if (sscanf(buf, "prepare %ld done %ld quiet_calls %ld", &p, &d,
		   &q) != 3)
		return -1;
	return q;
}

/* Kernel log lines of @vf's failure line (the log is the guest's own). */
static long log_lines(const char *vf)
{
	char cmd[256];
	long n = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "dmesg | grep -c '%s: gpup: the provider'", vf);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &n) != 1)
		n = -1;
	pclose(f);
	return n;
}

/* Every VFIO_DEVICE_RESET passes through the provider's two hooks. */
TEST_F(flr, hooks_reach_provider)
{
	struct env *e = &self->e;
	long p0, d0, p1, d1;

	ASSERT_EQ(0, flr_counts(e->vf[A], &p0, &d0));
	/* The open's reset went through them already. */
	EXPECT_LE(1, p0);
	EXPECT_EQ(p0, d0);
	ASSERT_EQ(0, gpup_sim_run(e->vf[A], 10));
	ASSERT_EQ(0, gpup_device_reset(e->v[A].device));
	ASSERT_EQ(0, flr_counts(e->vf[A], &p1, &d1));
	EXPECT_EQ(p0 + 1, p1);
	EXPECT_EQ(d0 + 1, d1);
	EXPECT_EQ(0, gpup_sim_steps(e->vf[A]));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(e->v[A].device));
	EXPECT_EQ(0, gpup_sim_violations(e->vf[A]));
}

struct reader {
	int fd;
	int stop;
	long reads;
};

/* Read a PRE_COPY data_fd until it fails for good, or until told. */
static void *read_loop(void *arg)
{
	struct reader *r = arg;
	static char buf[65536];
	ssize_t n;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		n = read(r->fd, buf, sizeof(buf));
		r->reads++;
		if (n < 0 && errno != ENOMSG && errno != EAGAIN &&
		    errno != EINTR)
			break;
	}
	return NULL;
}

/*
 * No provider call of the VF between its reset_prepare and reset_done:
 * a thread reads a PRE_COPY data_fd (query_dirty, vram_read or
 * vram_xfer at each read) while VFIO_DEVICE_RESET runs, whose FLR alone
 * takes 100 ms.  gpup_sim counts a call in that window.
 */
TEST_F(flr, quiet_between_hooks)
{
	struct env *e = &self->e;
	int dev = e->v[A].device, i;
	struct reader r;
	pthread_t th;

	for (i = 0; i < 5; i++) {
		memset(&r, 0, sizeof(r));
		ASSERT_EQ(0, gpup_sim_run(e->vf[A], 10));
		ASSERT_EQ(0, gpup_mig_set(dev, VFIO_DEVICE_STATE_PRE_COPY,
					  &r.fd));
		ASSERT_EQ(0, pthread_create(&th, NULL, read_loop, &r));
		EXPECT_EQ(0, gpup_device_reset(dev));
		__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);
		close(r.fd);
		EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev));
		EXPECT_LT(0, r.reads);
	}
	EXPECT_EQ(0, window_calls(e->vf[A]));
	EXPECT_EQ(0, gpup_sim_violations(e->vf[A]));
}

/* A PF that cannot finish its FLR handling leaves the device in ERROR. */
TEST_F(flr, reset_done_failure_is_error)
{
	struct env *e = &self->e;
	char d[GPUP_DIGEST_LEN];
	int dev = e->v[A].device;

	ASSERT_EQ(0, gpup_sim_run(e->vf[A], 10));
	ASSERT_EQ(0, gpup_sim_write(e->vf[A], "fault", "reset_done -5"));
	EXPECT_EQ(-EIO, gpup_device_reset(dev));
	EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(dev));
	EXPECT_EQ(-EINVAL, gpup_mig_set(dev, VFIO_DEVICE_STATE_STOP, NULL));
	/* The next reset, with the fault spent, recovers. */
	EXPECT_EQ(0, gpup_device_reset(dev));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev));
	ASSERT_EQ(0, gpup_sim_digest(e->vf[A], d));
	EXPECT_STREQ(e->poweron[A], d);
	EXPECT_EQ(0, gpup_mig_set(dev, VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(0, gpup_sim_violations(e->vf[A]));
}

/*
 * New caps wake a poll() asleep at pre-copy's temporary end (nothing
 * dirty) with EPOLLERR, with no state query to notice them first.
 */
TEST_F(flr, caps_wake_poll_at_temporary_end)
{
	struct env *e = &self->e;
	int dev = e->v[A].device, fd;
	struct gpup_buf b = { 0 };
	struct pollfd pfd;
	char val[32];

	ASSERT_EQ(0, gpup_sim_run(e->vf[A], 10));
	ASSERT_EQ(0, gpup_mig_set(dev, VFIO_DEVICE_STATE_PRE_COPY, &fd));
	ASSERT_EQ(0, gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 1));
	gpup_buf_free(&b);
	pfd.fd = fd;
	pfd.events = POLLIN;
	ASSERT_EQ(0, poll(&pfd, 1, 0));
	snprintf(val, sizeof(val), "caps %u", e->profile == 1 ? 2 : 1);
	ASSERT_EQ(0, gpup_sim_write(e->vf[A], "event", val));
	ASSERT_EQ(1, poll(&pfd, 1, 10000));
	EXPECT_TRUE(pfd.revents & POLLERR);
	EXPECT_EQ(VFIO_DEVICE_STATE_PRE_COPY, state_of(dev));
	close(fd);
	snprintf(val, sizeof(val), "caps %u", e->profile);
	ASSERT_EQ(0, gpup_sim_write(e->vf[A], "event", val));
	EXPECT_EQ(0, gpup_device_reset(dev));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev));
}

/* The four events, and a function reset whose reset_done fails. */
enum ev_kind { EV_RESET, EV_ERROR, EV_PF_ERROR, EV_CAPS, EV_FLR_FAIL };

FIXTURE_VARIANT(ev) {
	int state;		/* the state the events hit */
};

FIXTURE_VARIANT_ADD(ev, running) {
	.state = VFIO_DEVICE_STATE_RUNNING,
};

FIXTURE_VARIANT_ADD(ev, running_p2p) {
	.state = VFIO_DEVICE_STATE_RUNNING_P2P,
};

FIXTURE_VARIANT_ADD(ev, stop) {
	.state = VFIO_DEVICE_STATE_STOP,
};

FIXTURE_VARIANT_ADD(ev, pre_copy) {
	.state = VFIO_DEVICE_STATE_PRE_COPY,
};

FIXTURE_VARIANT_ADD(ev, pre_copy_p2p) {
	.state = VFIO_DEVICE_STATE_PRE_COPY_P2P,
};

FIXTURE_VARIANT_ADD(ev, stop_copy) {
	.state = VFIO_DEVICE_STATE_STOP_COPY,
};

FIXTURE_VARIANT_ADD(ev, resuming) {
	.state = VFIO_DEVICE_STATE_RESUMING,
};

/* An arc away from @st, as QEMU makes one: RUNNING -> STOP, else -> RUNNING. */
static int next_arc(int st)
{
	return st == VFIO_DEVICE_STATE_RUNNING ? VFIO_DEVICE_STATE_STOP :
						 VFIO_DEVICE_STATE_RUNNING;
}

/*
 * Event @kind in state @st.  The device under test is VF A, or VF B as
 * the target for RESUMING; the other VF is the bystander, which only a
 * PF-wide event may touch.  Ends with the device back in RUNNING.
 */
static void event_in_state(struct __test_metadata *_metadata, struct env *e,
			   int st, enum ev_kind kind)
{
	int t = st == VFIO_DEVICE_STATE_RESUMING ? B : A;
	int o = t == A ? B : A, dev = e->v[t].device, fd = -1;
	bool caps = kind == EV_CAPS, quiet = caps || kind == EV_FLR_FAIL;
	char buf[4096], val[32], d[GPUP_DIGEST_LEN];
	struct gpup_buf b = { 0 };
	long logs, p0, d0, p1, d1;
	struct pollfd pfd;
	ssize_t n;

	ASSERT_EQ(0, gpup_sim_run(e->vf[t], 10));
	ASSERT_EQ(0, gpup_mig_set(dev, st, &fd));
	if (st == VFIO_DEVICE_STATE_PRE_COPY ||
	    st == VFIO_DEVICE_STATE_PRE_COPY_P2P ||
	    st == VFIO_DEVICE_STATE_STOP_COPY) {
		ASSERT_LE(0, fd);
		ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));
	}
	logs = log_lines(e->vf[t]);
	ASSERT_LE(0, logs);

	switch (kind) {
	case EV_RESET:
		ASSERT_EQ(0, gpup_sim_write(e->vf[t], "event", "reset"));
		break;
	case EV_ERROR:
		ASSERT_EQ(0, gpup_sim_write(e->vf[t], "event", "error"));
		break;
	case EV_PF_ERROR:
		ASSERT_EQ(0, gpup_sim_write(e->vf[t], "pf_event", "error"));
		break;
	case EV_CAPS:
		snprintf(val, sizeof(val), "caps %u", e->profile == 1 ? 2 : 1);
		ASSERT_EQ(0, gpup_sim_write(e->vf[t], "event", val));
		break;
	case EV_FLR_FAIL:
		/* Prepared, reset, but the PF cannot finish its FLR. */
		ASSERT_EQ(0, flr_counts(e->vf[t], &p0, &d0));
		ASSERT_EQ(0, gpup_sim_write(e->vf[t], "fault", "reset_done -5"));
		EXPECT_EQ(-EIO, gpup_device_reset(dev));
		ASSERT_EQ(0, flr_counts(e->vf[t], &p1, &d1));
		EXPECT_EQ(p0 + 1, p1);
		EXPECT_EQ(d0, d1);
		break;
	}

	/*
	 * No state changes by itself: the state reads as the user set it,
	 * with no arc in between (a failed reset is the user's own act).
	 */
	if (kind != EV_FLR_FAIL)
		EXPECT_EQ(st, state_of(dev));
	/*
	 * A failure is in force at once: the data_fd's poll wakes with
	 * EPOLLERR and I/O fails.
	 */
	if (fd >= 0) {
		pfd.fd = fd;
		pfd.events = st == VFIO_DEVICE_STATE_RESUMING ? POLLOUT : POLLIN;
		ASSERT_EQ(1, poll(&pfd, 1, 10000));
		EXPECT_TRUE(pfd.revents & POLLERR);
		if (st == VFIO_DEVICE_STATE_RESUMING)
			n = write(fd, buf, sizeof(buf));
		else
			n = read(fd, buf, sizeof(buf));
		EXPECT_EQ(-1, n);
	}

	if (kind != EV_FLR_FAIL)
		EXPECT_EQ(st, state_of(dev));
	if (caps && st == VFIO_DEVICE_STATE_RUNNING) {
		/* Not migrating: it stays, but refuses to start one. */
		EXPECT_EQ(-ESTALE, gpup_mig_set(dev, VFIO_DEVICE_STATE_STOP,
						NULL));
		EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev));
	} else if (kind != EV_FLR_FAIL) {
		/* The user's next arc fails, and the device is in ERROR. */
		EXPECT_EQ(caps ? -ESTALE : -EIO,
			  gpup_mig_set(dev, next_arc(st), NULL));
		EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(dev));
	}
	if (!(caps && st == VFIO_DEVICE_STATE_RUNNING)) {
		EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(dev));
		EXPECT_EQ(-EINVAL, gpup_mig_set(dev, VFIO_DEVICE_STATE_RUNNING,
						NULL));
		EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(dev));
	}
	if (fd >= 0)
		close(fd);
	/* One line per failure, however often it was met. */
	EXPECT_EQ(logs + (quiet ? 0 : 1), log_lines(e->vf[t]));

	/*
	 * Only a PF-wide failure touches the bystander, which stays in
	 * RUNNING, its next arc failing into ERROR.
	 */
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(e->v[o].device));
	if (kind == EV_PF_ERROR) {
		EXPECT_EQ(-EIO, gpup_mig_set(e->v[o].device,
					     VFIO_DEVICE_STATE_STOP, NULL));
		EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, state_of(e->v[o].device));
		EXPECT_EQ(0, gpup_device_reset(e->v[o].device));
	}
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(e->v[o].device));

	/* Re-provisioned back, a reset brings the device to RUNNING. */
	if (caps) {
		snprintf(val, sizeof(val), "caps %u", e->profile);
		ASSERT_EQ(0, gpup_sim_write(e->vf[t], "event", val));
	}
	EXPECT_EQ(0, gpup_device_reset(dev));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev));
	ASSERT_EQ(0, gpup_sim_digest(e->vf[t], d));
	EXPECT_STREQ(e->poweron[t], d);
	/*
	 * and it migrates again: its whole stream reads (short, with VRAM
	 * as at power-on: one ZERO record).
	 */
	EXPECT_EQ(0, gpup_mig_set(dev, VFIO_DEVICE_STATE_STOP_COPY, &fd));
	EXPECT_EQ(0, gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 0));
	EXPECT_LT(0, b.len);
	gpup_buf_free(&b);
	close(fd);
	EXPECT_EQ(0, gpup_mig_set(dev, VFIO_DEVICE_STATE_RUNNING, NULL));
	EXPECT_EQ(0, gpup_sim_violations(e->vf[t]));
	EXPECT_EQ(0, gpup_sim_violations(e->vf[o]));
}

/* The four events and the failed FLR, one after the other, in the state. */
TEST_F(ev, in_state)
{
	enum ev_kind kind;

	for (kind = EV_RESET; kind <= EV_FLR_FAIL; kind++)
		event_in_state(_metadata, &self->e, variant->state, kind);
}

TEST_HARNESS_MAIN
