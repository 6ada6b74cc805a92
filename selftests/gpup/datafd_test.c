// SPDX-License-Identifier: GPL-2.0
/*
 * The data_fd of gpup_vfio_pci under hard use: poll() at pre-copy's
 * temporary end, writes of any size reaching the provider as whole
 * pages, a write() that faults half way, a provider that over-reports a
 * size, a reader parked on a userfaultfd page, and pre-copy sending each
 * page once per dirtying.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

#define NVF	3
#define PAGE	4096

enum { A, B, C };

FIXTURE(dfd) {
	char pf[GPUP_BDF_LEN];
	char vf[NVF][GPUP_BDF_LEN];
	struct gpup_vfio v[NVF];
};

FIXTURE_SETUP(dfd)
{
	int i;

	ASSERT_EQ(0, gpup_setup_pf(self->pf, NVF));
	for (i = 0; i < NVF; i++)
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
	ASSERT_EQ(0, gpup_sim_twin(self->vf[C], self->vf[A]));
	for (i = 0; i < NVF; i++) {
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
}

FIXTURE_TEARDOWN(dfd)
{
	int i;

	for (i = 0; i < NVF; i++)
		EXPECT_EQ(0, gpup_sim_violations(self->vf[i]))
			TH_LOG("VF %s", self->vf[i]);
	for (i = 0; i < NVF; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
	}
	gpup_set_numvfs(self->pf, 0);
	gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "Y");
}

static int dev(struct _test_data_dfd *self, int i)
{
	return self->v[i].device;
}

static int state_of(int device)
{
	int s = -1;

	return gpup_mig_get(device, &s) ? -1 : s;
}

static void expect_same(struct __test_metadata *_metadata, const char *x,
			const char *y)
{
	char dx[GPUP_DIGEST_LEN], dy[GPUP_DIGEST_LEN];

	ASSERT_EQ(0, gpup_sim_digest(x, dx));
	ASSERT_EQ(0, gpup_sim_digest(y, dy));
	EXPECT_STREQ(dx, dy);
}

/* Whether thread @tid of this process sleeps (is blocked in the kernel). */
static bool task_sleeps(pid_t tid)
{
	char path[64], buf[256], *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	if (gpup_read_file(path, buf, sizeof(buf)) <= 0)
		return false;
	p = strrchr(buf, ')');
	return p && (p[2] == 'S' || p[2] == 'D');
}

struct poller {
	int fd;
	int timeout_ms;
	pid_t tid;
	int ret;
	short revents;
};

static void *poller_run(void *arg)
{
	struct poller *p = arg;
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };

	__atomic_store_n(&p->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	p->ret = poll(&pfd, 1, p->timeout_ms);
	p->revents = pfd.revents;
	return NULL;
}

/*
 * Start a thread that polls @fd for POLLIN and return once it sleeps in
 * poll(), so that what happens next must wake it.
 */
static int poller_start(struct poller *p, pthread_t *t, int fd)
{
	time_t end = time(NULL) + 30;
	pid_t tid;

	memset(p, 0, sizeof(*p));
	p->fd = fd;
	p->timeout_ms = 60000;
	p->ret = -2;
	if (pthread_create(t, NULL, poller_run, p))
		return -EAGAIN;
	do {
		tid = __atomic_load_n(&p->tid, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&p->ret, __ATOMIC_SEQ_CST) != -2) {
			/* poll() did not sleep: it found the file ready. */
			pthread_join(*t, NULL);
			return -EALREADY;
		}
		if (time(NULL) > end)
			return -ETIMEDOUT;
		sched_yield();
	} while (!tid || !task_sleeps(tid));
	return 0;
}

static short poll_now(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1 ? pfd.revents : 0;
}

/*
 * poll() on the save file: not readable at pre-copy's temporary end;
 * woken by new dirty pages and by the arc to STOP_COPY; readable at the
 * permanent end; an error once the file is disabled by a reset.
 */
TEST_F(dfd, poll_save_file)
{
	struct gpup_buf b = { 0 };
	struct poller p;
	pthread_t t;
	int fd;

	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  &fd));
	EXPECT_EQ(POLLIN, poll_now(fd) & POLLIN);
	ASSERT_EQ(0, gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 1));
	/* The temporary end: nothing to read, poll() says so. */
	EXPECT_EQ(0, poll_now(fd));

	/* New dirty pages wake a sleeping poller. */
	ASSERT_EQ(0, poller_start(&p, &t, fd));
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 3));
	pthread_join(t, NULL);
	EXPECT_EQ(1, p.ret);
	EXPECT_EQ(POLLIN, p.revents & POLLIN);
	ASSERT_EQ(0, gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 1));
	EXPECT_EQ(0, poll_now(fd));

	/* So does the arc to STOP_COPY, which has the last data. */
	ASSERT_EQ(0, poller_start(&p, &t, fd));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  NULL));
	pthread_join(t, NULL);
	EXPECT_EQ(1, p.ret);
	EXPECT_EQ(POLLIN, p.revents & POLLIN);
	ASSERT_EQ(0, gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 0));
	/* The permanent end stays readable (read() returns 0). */
	EXPECT_EQ(POLLIN, poll_now(fd) & POLLIN);

	/* Disabled by a reset: an error, not a hang. */
	ASSERT_EQ(0, gpup_device_reset(dev(self, A)));
	EXPECT_EQ(POLLERR, poll_now(fd) & POLLERR);
	close(fd);
	gpup_buf_free(&b);
}

/* A reset wakes a poller sleeping at the temporary end. */
TEST_F(dfd, poll_woken_by_reset)
{
	struct gpup_buf b = { 0 };
	struct poller p;
	pthread_t t;
	int fd;

	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  &fd));
	ASSERT_EQ(0, gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 1));
	ASSERT_EQ(0, poller_start(&p, &t, fd));
	ASSERT_EQ(0, gpup_device_reset(dev(self, A)));
	pthread_join(t, NULL);
	EXPECT_EQ(1, p.ret);
	EXPECT_EQ(POLLERR, p.revents & POLLERR);
	close(fd);
	gpup_buf_free(&b);
}

/*
 * Writes of odd sizes, and of a byte at a time around record headers:
 * the provider's vram_write gets whole, aligned pages only (gpup_sim
 * counts a violation otherwise) and the destination matches.
 */
TEST_F(dfd, resume_writes_whole_pages)
{
	struct gpup_buf b = { 0 };
	size_t off = 0, n;
	int fd, i = 0;
	static const size_t sizes[] = { 1000, 1, 4097, 15, 65536 + 3 };

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 30));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RESUMING,
				  &fd));
	while (off < b.len) {
		n = sizes[i++ % 5];
		if (n > b.len - off)
			n = b.len - off;
		ASSERT_EQ(n, write(fd, b.data + off, n));
		off += n;
	}
	close(fd);
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	EXPECT_EQ(0, gpup_sim_violations(self->vf[B]));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	gpup_buf_free(&b);
}

/*
 * A write() whose buffer's last page is not accessible: it returns the
 * bytes it consumed (more than its first internal chunk), and a writer
 * that goes on from there restores the VF exactly.
 */
TEST_F(dfd, partial_write_returns_consumed)
{
	size_t good = 80 * PAGE, len = good + PAGE, off;
	struct gpup_buf b = { 0 };
	ssize_t n;
	u8 *map;
	int fd;

	/* About 160 pages written: a stream longer than @len. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 40));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_LT(len, b.len);
	map = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	memcpy(map, b.data, good);
	ASSERT_EQ(0, mprotect(map + good, PAGE, PROT_NONE));

	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RESUMING,
				  &fd));
	n = write(fd, map, len);
	EXPECT_LT(256 * 1024, n) TH_LOG("write: %zd (errno %d)", n, errno);
	EXPECT_GE(good, n);
	off = n > 0 ? n : 0;
	ASSERT_EQ(0, gpup_write_stream(fd, b.data + off, b.len - off,
				       GPUP_CHUNK_WRITE));
	close(fd);
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	munmap(map, len);
	gpup_buf_free(&b);
}

/*
 * A provider whose fill call reports more than the room it was given
 * (gpup_sim's "oversize" fault) fails the arc with EIO; the source is
 * left as it was and migrates exactly afterwards.  On the debug kernel
 * KASAN shows that nothing read past the buffer.
 */
TEST_F(dfd, provider_oversize_caught)
{
	struct gpup_buf b = { 0 };
	char buf[4096];
	int fd;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 8));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 8));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "fault",
				    "save_immutable oversize"));
	EXPECT_EQ(-EIO, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				     &fd));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, state_of(dev(self, A)));
	if (fd >= 0) {
		/* Had the arc succeeded: what it staged is read (KASAN). */
		gpup_read_stream(fd, &b, GPUP_CHUNK_READ, 1);
		close(fd);
		gpup_buf_free(&b);
		gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING, NULL);
	}

	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "fault",
				    "save_immutable oversize"));
	EXPECT_EQ(-EIO, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				     &fd));
	EXPECT_EQ(VFIO_DEVICE_STATE_STOP, state_of(dev(self, A)));

	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  &fd));
	ASSERT_EQ(sizeof(buf), read(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, gpup_sim_write(self->vf[A], "fault",
				    "save_mutable oversize"));
	EXPECT_EQ(-EIO, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				     NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_PRE_COPY_P2P, state_of(dev(self, A)));
	close(fd);
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_RUNNING,
				  NULL));

	expect_same(_metadata, self->vf[A], self->vf[C]);
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, A), &b));
	ASSERT_EQ(0, gpup_load(dev(self, B), &b));
	expect_same(_metadata, self->vf[A], self->vf[B]);
	gpup_buf_free(&b);
}

struct parked {
	int fd;
	void *buf;
	size_t len;
	ssize_t ret;
	int err;
};

static void *parked_read(void *arg)
{
	struct parked *p = arg;

	p->ret = read(p->fd, p->buf, p->len);
	p->err = errno;
	return NULL;
}

struct arcs {
	struct _test_data_dfd *self;
	int fd;
	int precopy_info, to_p2p, to_stop_copy, reset, state;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void *arcs_run(void *arg)
{
	struct arcs *a = arg;
	int d = a->self->v[A].device;
	u64 initial, dirty;

	a->precopy_info = gpup_precopy_info(a->fd, &initial, &dirty);
	a->to_p2p = gpup_mig_set(d, VFIO_DEVICE_STATE_PRE_COPY_P2P, NULL);
	a->to_stop_copy = gpup_mig_set(d, VFIO_DEVICE_STATE_STOP_COPY, NULL);
	a->reset = gpup_device_reset(d);
	a->state = state_of(d);
	pthread_mutex_lock(&a->lock);
	a->done = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/*
 * A reader whose buffer page is missing (userfaultfd) sleeps inside
 * read(); meanwhile PRECOPY_INFO, arcs and a reset go through: no lock
 * that they need is held across the copy to userspace.
 */
TEST_F_TIMEOUT(dfd, parked_reader_blocks_nothing, 120)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffdio_zeropage zero = { .mode = 0 };
	struct parked p = { .len = 2 * PAGE };
	struct arcs a = { .self = self };
	struct uffd_msg msg;
	struct pollfd pfd;
	struct timespec until;
	pthread_t rt, at;
	int uffd, fd, ret = 0;

	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	p.buf = mmap(NULL, p.len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p.buf);
	reg.range.start = (unsigned long)p.buf;
	reg.range.len = p.len;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));

	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  &fd));
	p.fd = fd;
	ASSERT_EQ(0, pthread_create(&rt, NULL, parked_read, &p));
	/* The reader's copy to userspace has faulted: it is parked. */
	pfd.fd = uffd;
	pfd.events = POLLIN;
	ASSERT_EQ(1, poll(&pfd, 1, 60000));
	ASSERT_EQ(sizeof(msg), read(uffd, &msg, sizeof(msg)));
	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);

	a.fd = fd;
	pthread_mutex_init(&a.lock, NULL);
	pthread_cond_init(&a.cond, NULL);
	ASSERT_EQ(0, pthread_create(&at, NULL, arcs_run, &a));
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&a.lock);
	while (!a.done && ret != ETIMEDOUT)
		ret = pthread_cond_timedwait(&a.cond, &a.lock, &until);
	pthread_mutex_unlock(&a.lock);
	EXPECT_TRUE(a.done) TH_LOG("arcs blocked behind the parked reader");

	/* Let the reader go (and the arcs, had they been stuck). */
	zero.range.start = (unsigned long)p.buf;
	zero.range.len = p.len;
	ioctl(uffd, UFFDIO_ZEROPAGE, &zero);
	pthread_join(rt, NULL);
	pthread_join(at, NULL);
	EXPECT_EQ(0, a.precopy_info);
	EXPECT_EQ(0, a.to_p2p);
	EXPECT_EQ(0, a.to_stop_copy);
	EXPECT_EQ(0, a.reset);
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, a.state);
	/* The reader got its bytes, or ENODEV once the reset disabled it. */
	EXPECT_TRUE(p.ret > 0 || p.err == ENODEV)
		TH_LOG("read: %zd, errno %d", p.ret, p.err);
	close(fd);
	close(uffd);
	munmap(p.buf, p.len);
}

/*
 * Pre-copy from RUNNING after 5 steps, 20 more before the first read:
 * the stream up to pre-copy's temporary end into @b, its initial_bytes
 * and the pages written since A's reset before and after the 20 steps.
 * PRECOPY_INFO reads 0 and 0 then.
 */
static void precopy_idle_read(struct __test_metadata *_metadata,
			      struct _test_data_dfd *self, int *sfd,
			      struct gpup_buf *b, u64 *initial,
			      long *backed0, long *backed1)
{
	u64 in, dirty;

	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 5));
	*backed0 = gpup_sim_read_long(self->vf[A], "vram_backed");
	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_PRE_COPY,
				  sfd));
	ASSERT_EQ(0, gpup_precopy_info(*sfd, initial, &dirty));
	EXPECT_EQ(0, dirty);
	/* Steps dirty pages that the full pass has not reached yet. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 20));
	*backed1 = gpup_sim_read_long(self->vf[A], "vram_backed");
	ASSERT_EQ(0, gpup_read_stream(*sfd, b, GPUP_CHUNK_READ, 1));
	ASSERT_EQ(0, gpup_precopy_info(*sfd, &in, &dirty));
	EXPECT_EQ(0, in);
	EXPECT_EQ(0, dirty);
}

/* The rest of the stream in STOP_COPY, restored into B: B equals C. */
static void precopy_finish(struct __test_metadata *_metadata,
			   struct _test_data_dfd *self, int sfd,
			   struct gpup_buf *b)
{
	size_t sent = b->len;
	int dfd;

	ASSERT_EQ(0, gpup_mig_set(dev(self, A), VFIO_DEVICE_STATE_STOP_COPY,
				  NULL));
	ASSERT_EQ(0, gpup_read_stream(sfd, b, GPUP_CHUNK_READ, 0));
	EXPECT_GT(b->len, sent);
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RESUMING,
				  &dfd));
	ASSERT_EQ(0, gpup_write_stream(dfd, b->data, b->len,
				       GPUP_CHUNK_WRITE));
	close(dfd);
	ASSERT_EQ(0, gpup_mig_set(dev(self, B), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	ASSERT_EQ(0, gpup_sim_run(self->vf[C], 25));
	expect_same(_metadata, self->vf[B], self->vf[C]);
}

/*
 * Pre-copy sends each page once per dirtying: pages dirtied ahead of the
 * first pass's cursor go out in that pass only, so an idle reader of a
 * VF that ran steps before the pass gets exactly initial_bytes.  Here
 * the full pass reads every page (skip_unwritten=N) and sends each one as
 * read (zero_detect=N).
 */
TEST_F(dfd, precopy_sends_each_page_once)
{
	struct gpup_buf b = { 0 };
	long backed0, backed1;
	u64 initial;
	int sfd = -1;

	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "N"));
	ASSERT_EQ(0, gpup_write_file(GPUP_VFIO_PARAM("zero_detect"), "N"));
	precopy_idle_read(_metadata, self, &sfd, &b, &initial, &backed0,
			  &backed1);
	gpup_write_file(GPUP_VFIO_PARAM("skip_unwritten"), "Y");
	gpup_write_file(GPUP_VFIO_PARAM("zero_detect"), "Y");
	EXPECT_EQ(initial, b.len);
	/* And the migration is exact. */
	precopy_finish(_metadata, self, sfd, &b);
	close(sfd);
	gpup_buf_free(&b);
}

/*
 * The same with the pages A never wrote sent as ZERO records (gpup_sim
 * offers query_written, the default): the pages the full pass reads are
 * those written when the save file was made; each page written first
 * after it is dirty and goes out once too, after initial_bytes, as one
 * page of a VRAM record (one record per page at most).
 */
TEST_F(dfd, precopy_sends_new_pages_once)
{
	struct gpup_buf b = { 0 };
	long backed0, backed1, fresh;
	u64 initial;
	int sfd = -1;

	precopy_idle_read(_metadata, self, &sfd, &b, &initial, &backed0,
			  &backed1);
	fresh = backed1 - backed0;
	ASSERT_LT(0, fresh);
	/* The full pass read what was written, not VRAM. */
	EXPECT_GT((u64)backed0 * 4096 * 11 / 10 + 65536, initial);
	EXPECT_LE((u64)backed0 * 4096, initial);
	EXPECT_LE(initial + fresh * 4096 + 32, b.len);
	EXPECT_GE(initial + fresh * (4096 + 32), b.len);
	precopy_finish(_metadata, self, sfd, &b);
	close(sfd);
	gpup_buf_free(&b);
}

TEST_HARNESS_MAIN
