// SPDX-License-Identifier: GPL-2.0
/*
 * The provider fault matrix: every provider op that moves migration data
 * fails once, through gpup_sim's "fault" file, with -EINTR, -EIO, -ENOMEM
 * and -ETIMEDOUT (for vram_xfer: a transfer that completes with that
 * errno), at each point of a pre-copy migration where gpup_vfio_pci calls
 * it: the initial pass, a dirty pass, STOP_COPY and resume, per range and
 * in bulk.  Each run must end one of two ways:
 *   - loudly: an errno from read(), write() or an arc, and then the
 *     source, set back to RUNNING, equal to its twin that never moved;
 *   - or completed, the destination equal to that twin.
 * A run that completes with unequal digests fails the test.  The client
 * retries a read() or write() that fails with EINTR, as a program does
 * (three times in a row at most): an EINTR that is not a signal but lost
 * data would show up here as unequal digests.
 *
 * GPUP_FAULT_SAMPLE=1 (the stock and sid lanes) runs one errno per op and
 * point, a different one for each; the debug lane runs them all.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

#define NVF		3
#define VRAM_MB		2

/* bulk_xfer as the lane left it, written back after each test. */
static char bulk_saved[8] = "Y";
#define EINTR_RETRIES	3

enum { A, B, C };

enum point { P_INITIAL, P_DIRTY, P_STOP_COPY, P_RESUME };

static const char * const point_name[] = {
	"initial pass", "dirty pass", "STOP_COPY", "resume",
};

struct fcase {
	const char *op;
	enum point pt;
	bool bulk;
};

/* Where each op is called, per range and in bulk. */
static const struct fcase cases[] = {
	{ "save_immutable",	P_INITIAL,	false },
	{ "query_written",	P_INITIAL,	false },
	{ "query_dirty",	P_INITIAL,	false },
	{ "vram_read",		P_INITIAL,	false },
	{ "query_dirty",	P_DIRTY,	false },
	{ "vram_read",		P_DIRTY,	false },
	{ "query_dirty",	P_STOP_COPY,	false },
	{ "vram_read",		P_STOP_COPY,	false },
	{ "save_mutable",	P_STOP_COPY,	false },
	{ "restore_immutable",	P_RESUME,	false },
	{ "vram_write",		P_RESUME,	false },
	{ "vram_zero",		P_RESUME,	false },
	{ "restore_mutable",	P_RESUME,	false },
	{ "query_dirty",	P_INITIAL,	true },
	{ "vram_xfer",		P_INITIAL,	true },
	{ "query_dirty",	P_DIRTY,	true },
	{ "vram_xfer",		P_DIRTY,	true },
	{ "vram_xfer",		P_STOP_COPY,	true },
	{ "vram_xfer",		P_RESUME,	true },
	{ "vram_zero",		P_RESUME,	true },
};

static const int errnos[] = { -EINTR, -EIO, -ENOMEM, -ETIMEDOUT };

FIXTURE(fault) {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
};

FIXTURE_SETUP(fault)
{
	int i;

	ASSERT_EQ(0, gpup_setup_pf_vram(self->pf, NVF, VRAM_MB));
	ASSERT_LT(0, gpup_read_file(GPUP_VFIO_PARAM("bulk_xfer"), bulk_saved,
				    sizeof(bulk_saved)));
	for (i = 0; i < NVF; i++)
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
	for (i = 0; i < NVF; i++) {
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
}

FIXTURE_TEARDOWN(fault)
{
	int i;

	for (i = 0; i < NVF; i++) {
		EXPECT_EQ(0, gpup_sim_violations(self->vf[i]))
			TH_LOG("VF %s", self->vf[i]);
		EXPECT_EQ(0, gpup_sim_xfer_stat(self->vf[i], "in_flight"))
			TH_LOG("VF %s", self->vf[i]);
	}
	for (i = 0; i < NVF; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
	}
	gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"), "%s", bulk_saved);
	gpup_set_numvfs(self->pf, 0);
	/* The other tests expect gpup_sim's default VRAM. */
	gpup_setup_pf(self->pf, 0);
}

/* A read() or write() that EINTR interrupted is retried, a few times. */
static ssize_t retry_io(int fd, void *p, size_t n, bool wr)
{
	ssize_t r;
	int i;

	for (i = 0; i <= EINTR_RETRIES; i++) {
		r = wr ? write(fd, p, n) : read(fd, p, n);
		if (r >= 0 || errno != EINTR)
			return r;
	}
	return r;
}

/* Reads until EOF, or -ENOMSG when @precopy; appends to @b. */
static int read_all(int fd, struct gpup_buf *b, bool precopy)
{
	static u8 tmp[GPUP_CHUNK_READ];
	ssize_t n;
	int ret;

	for (;;) {
		n = retry_io(fd, tmp, sizeof(tmp), false);
		if (n < 0)
			return errno == ENOMSG && precopy ? 0 : -errno;
		if (!n)
			return 0;
		ret = gpup_buf_append(b, tmp, n);
		if (ret)
			return ret;
	}
}

static int write_all(int fd, const struct gpup_buf *b, size_t *sent)
{
	size_t n;
	ssize_t w;

	while (*sent < b->len) {
		n = b->len - *sent;
		if (n > GPUP_CHUNK_WRITE)
			n = GPUP_CHUNK_WRITE;
		w = retry_io(fd, b->data + *sent, n, true);
		if (w < 0)
			return -errno;
		if (!w)
			return -EIO;
		*sent += w;
	}
	return 0;
}

/*
 * One pre-copy migration from A to B, with the fault "@op @err" armed
 * on the VF that calls it at @pt: after 10 steps, a full pass, 5 steps,
 * a dirty pass, 5 steps, STOP_COPY.  B runs 10 steps of its own first
 * when the fault is its own: the pages it wrote under A's ZERO records
 * are cleared (vram_zero), where a B that wrote nothing since its reset
 * is not called at all.  Returns 0 when it completed, or the -errno of
 * the call that failed, *@where saying which; *@steps counts the steps
 * A ran.
 */
static int migrate(struct _test_data_fault *self, const struct fcase *fc,
		   int err, const char **where, int *steps)
{
	struct gpup_buf b = { 0 };
	int sfd = -1, dfd = -1, ret;
	const char *armed = fc->pt == P_RESUME ? self->vf[B] : self->vf[A];
	char fault[64];
	size_t sent = 0;

	snprintf(fault, sizeof(fault), "%s %d", fc->op, err);
	*where = "set-up";
	ret = gpup_sim_run(self->vf[A], 10);
	if (ret)
		goto out;
	*steps = 10;
	if (fc->pt == P_RESUME) {
		ret = gpup_sim_run(self->vf[B], 10);
		if (ret)
			goto out;
	}
	*where = "SET B RESUMING";
	ret = gpup_mig_set(self->v[B].device, VFIO_DEVICE_STATE_RESUMING, &dfd);
	if (ret)
		goto out;
	if (fc->pt == P_INITIAL || fc->pt == P_RESUME) {
		ret = gpup_sim_write(armed, "fault", fault);
		if (ret)
			goto out;
	}
	*where = "SET A PRE_COPY";
	ret = gpup_mig_set(self->v[A].device, VFIO_DEVICE_STATE_PRE_COPY, &sfd);
	if (ret)
		goto out;
	*where = "read of the initial data";
	ret = read_all(sfd, &b, true);
	if (ret)
		goto out;
	*where = "write of the initial data";
	ret = write_all(dfd, &b, &sent);
	if (ret)
		goto out;
	ret = gpup_sim_run(self->vf[A], 5);
	if (ret)
		goto out;
	*steps += 5;
	if (fc->pt == P_DIRTY) {
		ret = gpup_sim_write(armed, "fault", fault);
		if (ret)
			goto out;
	}
	*where = "read of a dirty pass";
	ret = read_all(sfd, &b, true);
	if (ret)
		goto out;
	*where = "write of a dirty pass";
	ret = write_all(dfd, &b, &sent);
	if (ret)
		goto out;
	ret = gpup_sim_run(self->vf[A], 5);
	if (ret)
		goto out;
	*steps += 5;
	if (fc->pt == P_STOP_COPY) {
		ret = gpup_sim_write(armed, "fault", fault);
		if (ret)
			goto out;
	}
	*where = "SET A STOP_COPY";
	ret = gpup_mig_set(self->v[A].device, VFIO_DEVICE_STATE_STOP_COPY,
			   NULL);
	if (ret)
		goto out;
	*where = "read in STOP_COPY";
	ret = read_all(sfd, &b, false);
	if (ret)
		goto out;
	*where = "write of the final data";
	ret = write_all(dfd, &b, &sent);
	if (ret)
		goto out;
	close(dfd);
	dfd = -1;
	*where = "SET B RUNNING";
	ret = gpup_mig_set(self->v[B].device, VFIO_DEVICE_STATE_RUNNING, NULL);
out:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	gpup_buf_free(&b);
	return ret;
}

/* Digests of @x and @y equal? */
static bool same(struct __test_metadata *_metadata, const char *x,
		 const char *y)
{
	char dx[GPUP_DIGEST_LEN], dy[GPUP_DIGEST_LEN];

	if (gpup_sim_digest(x, dx) || gpup_sim_digest(y, dy))
		return false;
	return !strcmp(dx, dy);
}

static int state_of(int device)
{
	int s = -1;

	return gpup_mig_get(device, &s) ? -1 : s;
}

TEST_F_TIMEOUT(fault, matrix, 1800)
{
	bool sample = getenv("GPUP_FAULT_SAMPLE") &&
		      !strcmp(getenv("GPUP_FAULT_SAMPLE"), "1");
	unsigned int i, e, runs = 0, loud = 0, done = 0, bad = 0;
	char fired[64], path[128];
	const char *where;
	int ret, k, steps;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct fcase *fc = &cases[i];

		for (e = 0; e < ARRAY_SIZE(errnos); e++) {
			if (sample && e != i % ARRAY_SIZE(errnos))
				continue;
			/* Every VF from power-on, C A's twin. */
			for (k = 0; k < NVF; k++)
				ASSERT_EQ(0, gpup_device_reset(self->v[k].device));
			ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("bulk_xfer"),
						     fc->bulk ? "Y" : "N"));
			ASSERT_EQ(0, gpup_sim_write(self->vf[A], "seed", "7"));
			ASSERT_EQ(0, gpup_sim_twin(self->vf[C], self->vf[A]));
			ASSERT_EQ(0, gpup_sim_write(self->vf[B], "seed", "8"));

			steps = 0;
			ret = migrate(self, fc, errnos[e], &where, &steps);
			runs++;
			snprintf(path, sizeof(path),
				 "/sys/kernel/debug/gpup_sim/%s/fault",
				 self->vf[fc->pt == P_RESUME ? B : A]);
			ASSERT_LT(0, gpup_read_file(path, fired, sizeof(fired)));
			/* The case tests nothing if the op was not called. */
			ASSERT_STREQ("none", fired)
				TH_LOG("%s %s at the %s: fault not reached",
				       fc->bulk ? "bulk" : "per range", fc->op,
				       point_name[fc->pt]);
			ASSERT_EQ(0, gpup_sim_run(self->vf[C], 20));
			if (!ret) {
				done++;
				if (!same(_metadata, self->vf[B], self->vf[C])) {
					bad++;
					TH_LOG("%s %s %d at the %s: completed with unequal digests",
					       fc->bulk ? "bulk" : "per range",
					       fc->op, errnos[e],
					       point_name[fc->pt]);
				}
				continue;
			}
			loud++;
			/* Loud: the source runs on, as if it never left. */
			ASSERT_EQ(0, gpup_mig_set(self->v[A].device,
						  VFIO_DEVICE_STATE_RUNNING,
						  NULL))
				TH_LOG("%s %s %d at the %s: failed at %s (%d), the source in %s",
				       fc->bulk ? "bulk" : "per range", fc->op,
				       errnos[e], point_name[fc->pt], where,
				       ret, gpup_state_name(state_of(self->v[A].device)));
			if (steps < 20)
				ASSERT_EQ(0, gpup_sim_run(self->vf[A], 20 - steps));
			EXPECT_TRUE(same(_metadata, self->vf[A], self->vf[C]))
				TH_LOG("%s %s %d at the %s: the source lost state",
				       fc->bulk ? "bulk" : "per range", fc->op,
				       errnos[e], point_name[fc->pt]);
		}
	}
	TH_LOG("%u runs: %u failed loudly, %u completed, %u of them unequal",
	       runs, loud, done, bad);
	EXPECT_EQ(0, bad);
}

TEST_HARNESS_MAIN
