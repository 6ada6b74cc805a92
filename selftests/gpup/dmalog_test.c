// SPDX-License-Identifier: GPL-2.0
/*
 * Device DMA logging of gpup_vfio_pci (VFIO_DEVICE_FEATURE_DMA_LOGGING_*):
 * every rule of the uAPI, and REPORT against real DMA.  The test maps a
 * buffer of its own for the VF's DMA (VFIO_IOMMU_MAP_DMA, or
 * IOMMU_IOAS_MAP with GPUP_VFIO_IFACE=cdev), tells gpup_sim that the VF's
 * fence and ring pages live there, and lets the engines run: REPORT must
 * name exactly the pages whose contents changed, and they must hold the
 * engines' pattern.  Fault injection shows that the comparison catches a
 * log that misses a write.
 *
 * Logging needs a kernel with CONFIG_IOMMUFD_DRIVER (the core's
 * iova_bitmap).  Elsewhere the driver offers none and says so once; the
 * tests that need it skip, unless GPUP_REQUIRE_DMA_LOGGING=1 (the debug
 * lane) makes them fail.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"

#define PAGE		4096UL
#define BUF_PAGES	64
#define WIN_PAGES	32
#define BUF_IOVA	0x10000000ULL
#define FILL		0xa5a5a5a5a5a5a5a5ULL
#define DMA_MAGIC	0x47505544ULL	/* gpup_sim's GPUP_SIM_DMA_MAGIC */

static const char *const no_log_line =
	"gpup: no device DMA logging: kernel without CONFIG_IOMMUFD_DRIVER";

FIXTURE(dl) {
	char pf[GPUP_BDF_LEN];
	char vf[2][GPUP_BDF_LEN];
	struct gpup_vfio v[2];
	u64 *buf[2];
	bool logging;
	int no_log_lines;
};

FIXTURE_SETUP(dl)
{
	int i, kmsg;

	for (i = 0; i < 2; i++)
		gpup_vfio_init(&self->v[i]);
	ASSERT_EQ(0, gpup_setup_pf(self->pf, 2));
	kmsg = gpup_kmsg_open();
	ASSERT_LE(0, kmsg);
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
		self->buf[i] = mmap(NULL, BUF_PAGES * PAGE,
				    PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, self->buf[i]);
		for (size_t w = 0; w < BUF_PAGES * PAGE / 8; w++)
			self->buf[i][w] = FILL;
		ASSERT_EQ(0, gpup_vfio_map(&self->v[i], self->buf[i], BUF_IOVA,
					   BUF_PAGES * PAGE));
	}
	self->no_log_lines = gpup_kmsg_count(kmsg, no_log_line);
	close(kmsg);
	self->logging = !gpup_dma_log_probe(self->v[0].device);
	if (!self->logging) {
		if (getenv("GPUP_REQUIRE_DMA_LOGGING"))
			ASSERT_TRUE(self->logging) TH_LOG("no DMA logging");
	}
}

FIXTURE_TEARDOWN(dl)
{
	int i;

	/* A test that changed the sim's logging leaves it as it was. */
	gpup_write_file(GPUP_SIM_PARAM("dma_log"), "0");
	gpup_write_file(GPUP_SIM_PARAM("dma_log_page_kb"), "0");
	gpup_bind_override(self->pf, "gpup_sim");
	for (i = 0; i < 2; i++)
		EXPECT_EQ(0, gpup_sim_violations(self->vf[i]))
			TH_LOG("VF %s", self->vf[i]);
	for (i = 0; i < 2; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
		if (self->buf[i])
			munmap(self->buf[i], BUF_PAGES * PAGE);
	}
	gpup_set_numvfs(self->pf, 0);
}

static const char *const no_logging = "kernel without CONFIG_IOMMUFD_DRIVER";

static int dev(struct _test_data_dl *self, int i)
{
	return self->v[i].device;
}

/* The sim's fence and ring window of VF @i: its buffer's first pages. */
static int set_window(struct _test_data_dl *self, int i, unsigned int pages)
{
	char val[64];

	snprintf(val, sizeof(val), "0x%llx %u", BUF_IOVA, pages);
	return gpup_sim_write(self->vf[i], "dma_window", val);
}

static int start_buf_log(struct _test_data_dl *self, int i)
{
	struct gpup_dma_range r[2] = {
		{ BUF_IOVA, BUF_PAGES * PAGE },
		{ 0x40000000ULL, 0x100000ULL },	/* logged, never written */
	};
	u64 ps = PAGE;

	return gpup_dma_log_start(dev(self, i), r, 2, &ps);
}

/* Pages of @now that differ from @before, as a bitmap of u64 words. */
static void changed_pages(const u64 *before, const u64 *now, u64 *map)
{
	unsigned int p;

	memset(map, 0, BUF_PAGES / 8);
	for (p = 0; p < BUF_PAGES; p++)
		if (memcmp(before + p * PAGE / 8, now + p * PAGE / 8, PAGE))
			map[p / 64] |= 1ULL << (p % 64);
}

/* Every word of page @p holds the engines' pattern. */
static bool holds_pattern(const u64 *buf, unsigned int p)
{
	const u64 *w = buf + p * PAGE / 8;
	unsigned int i;

	if (w[0] >> 32 != DMA_MAGIC)
		return false;
	for (i = 1; i < PAGE / 8; i++)
		if (w[i] != w[0])
			return false;
	return true;
}

/* Without CONFIG_IOMMUFD_DRIVER: no log_ops, and the log says so once. */
TEST_F(dl, offered_where_it_can_work)
{
	if (self->logging) {
		EXPECT_EQ(0, self->no_log_lines);
		return;
	}
	EXPECT_EQ(-ENOTTY, gpup_dma_log_probe(dev(self, 0)));
	/* One line per bind: two VFs bound. */
	EXPECT_EQ(2, self->no_log_lines);
}

/* START: page size, range count, alignment, overlap, one until STOP. */
TEST_F(dl, start_rules)
{
	struct gpup_dma_range ok = { BUF_IOVA, BUF_PAGES * PAGE };
	struct gpup_dma_range bad[2];
	struct gpup_dma_range *many;
	u64 ps;
	int i;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	ps = 0;
	EXPECT_EQ(-EINVAL, gpup_dma_log_start(dev(self, 0), &ok, 1, &ps));
	ps = 3 * 1024;
	EXPECT_EQ(-EINVAL, gpup_dma_log_start(dev(self, 0), &ok, 1, &ps));
	ps = PAGE;
	EXPECT_EQ(-EINVAL, gpup_dma_log_start(dev(self, 0), &ok, 0, &ps));
	many = calloc(PAGE / 16 + 1, sizeof(*many));
	ASSERT_NE(NULL, many);
	for (i = 0; i < PAGE / 16 + 1; i++) {
		many[i].iova = BUF_IOVA + i * 2 * PAGE;
		many[i].length = PAGE;
	}
	EXPECT_EQ(-E2BIG, gpup_dma_log_start(dev(self, 0), many, PAGE / 16 + 1,
					     &ps));
	/* A page of ranges is always accepted: merged for the provider. */
	EXPECT_EQ(0, gpup_dma_log_start(dev(self, 0), many, PAGE / 16, &ps));
	EXPECT_EQ(PAGE, ps);
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
	free(many);
	bad[0].iova = BUF_IOVA + 512;
	bad[0].length = PAGE;
	EXPECT_EQ(-EINVAL, gpup_dma_log_start(dev(self, 0), bad, 1, &ps));
	bad[0].iova = BUF_IOVA;
	bad[0].length = 4 * PAGE;
	bad[1].iova = BUF_IOVA + 2 * PAGE;
	bad[1].length = 4 * PAGE;
	EXPECT_EQ(-EINVAL, gpup_dma_log_start(dev(self, 0), bad, 2, &ps));

	EXPECT_EQ(0, gpup_dma_log_start(dev(self, 0), &ok, 1, &ps));
	EXPECT_EQ(PAGE, ps);
	EXPECT_EQ(-EBUSY, gpup_dma_log_start(dev(self, 0), &ok, 1, &ps));
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
	EXPECT_EQ(0, gpup_dma_log_start(dev(self, 0), &ok, 1, &ps));
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
}

/* REPORT: needs a log, a sane page size, and only ever sets bits. */
TEST_F(dl, report_rules)
{
	u64 map[BUF_PAGES / 64] = { 0 };

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	EXPECT_EQ(-EINVAL, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					       BUF_PAGES * PAGE, PAGE, map));
	ASSERT_EQ(0, start_buf_log(self, 0));
	EXPECT_EQ(-EINVAL, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					       BUF_PAGES * PAGE, 3000, map));
	/* Nothing written: the bits given stay as they were. */
	map[0] = 0x8000000000000001ULL;
	EXPECT_EQ(0, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					 BUF_PAGES * PAGE, PAGE, map));
	EXPECT_EQ(0x8000000000000001ULL, map[0]);
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
}

/*
 * The engines write the window; REPORT names exactly the pages whose
 * contents changed, each holding the engines' pattern, and clears them;
 * a coarser report page size ORs them.
 */
TEST_F(dl, report_is_exactly_what_was_written)
{
	u64 *before = malloc(BUF_PAGES * PAGE);
	u64 map[BUF_PAGES / 64], want[BUF_PAGES / 64], coarse = 0;
	unsigned int p, n = 0;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	ASSERT_NE(NULL, before);
	ASSERT_EQ(0, set_window(self, 0, WIN_PAGES));
	ASSERT_EQ(0, start_buf_log(self, 0));
	memcpy(before, self->buf[0], BUF_PAGES * PAGE);
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 10));
	changed_pages(before, self->buf[0], want);
	memset(map, 0, sizeof(map));
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					 BUF_PAGES * PAGE, PAGE, map));
	EXPECT_EQ(want[0], map[0]);
	for (p = 0; p < BUF_PAGES; p++) {
		if (!(want[p / 64] & (1ULL << (p % 64))))
			continue;
		n++;
		EXPECT_TRUE(holds_pattern(self->buf[0], p)) TH_LOG("page %u", p);
		EXPECT_GT(WIN_PAGES, p);
	}
	/* 10 steps: the fence page and 10 ring pages. */
	EXPECT_EQ(11, n);
	EXPECT_EQ(20, gpup_sim_read_long(self->vf[0], "dma_writes"));

	/* Read and clear: a second report finds nothing new. */
	memset(map, 0, sizeof(map));
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					 BUF_PAGES * PAGE, PAGE, map));
	EXPECT_EQ(0, map[0]);

	/* More steps; reported at 8 KiB, a bit for every page pair. */
	memcpy(before, self->buf[0], BUF_PAGES * PAGE);
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 5));
	changed_pages(before, self->buf[0], want);
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					 BUF_PAGES * PAGE, 2 * PAGE, &coarse));
	for (p = 0; p < BUF_PAGES; p += 2)
		EXPECT_EQ(!!(want[0] & (3ULL << p)), !!(coarse & 1ULL << p / 2))
			TH_LOG("pages %u-%u", p, p + 1);
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
	free(before);
}

/*
 * The provider rounds the log page up (64 KiB for 4 KiB asked): a log
 * page that two REPORTs each cover in half is reported by each, and
 * then by neither until it is written again, not forever.  A write
 * between the two REPORTs is not lost: the half reported first shows it
 * on its next REPORT.
 */
TEST_F(dl, report_over_two_halves_of_a_log_page)
{
	const u64 half = 8 * PAGE, a = BUF_IOVA, b = BUF_IOVA + 8 * PAGE;
	struct gpup_dma_range r = { BUF_IOVA, BUF_PAGES * PAGE };
	u64 map, ps = PAGE;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	ASSERT_EQ(0, gpup_write_file(GPUP_SIM_PARAM("dma_log_page_kb"), "64"));
	ASSERT_EQ(0, set_window(self, 0, WIN_PAGES));
	ASSERT_EQ(0, gpup_dma_log_start(dev(self, 0), &r, 1, &ps));
	ASSERT_EQ(16 * PAGE, ps);
	/* Step 0 writes pages 0 and 1: the first log page. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 1));
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), a, half, PAGE, &map));
	EXPECT_EQ(0xffULL, map);
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), b, half, PAGE, &map));
	EXPECT_EQ(0xffULL, map);
	/* Both halves were reported: nothing is left to report. */
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), a, half, PAGE, &map));
	EXPECT_EQ(0, map);
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), b, half, PAGE, &map));
	EXPECT_EQ(0, map);

	/* A write to the first half between the two REPORTs. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 1));
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), a, half, PAGE, &map));
	EXPECT_EQ(0xffULL, map);
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 1));
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), b, half, PAGE, &map));
	EXPECT_EQ(0xffULL, map);
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), a, half, PAGE, &map));
	EXPECT_EQ(0xffULL, map) TH_LOG("the write between the REPORTs");
	map = 0;
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), a, 2 * half, PAGE,
					 &map));
	EXPECT_EQ(0, map);
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
}

struct restarter {
	int device;
	int stop;
	int starts;
	int err;
};

/* STOP and START again, at 4 KiB and 8 KiB in turn. */
static void *restart_loop(void *arg)
{
	struct gpup_dma_range r = { 0x40000000ULL, 1ULL << 30 };
	struct restarter *t = arg;
	u64 ps;

	while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE) && !t->err) {
		t->err = gpup_dma_log_stop(t->device);
		ps = t->starts % 2 ? 2 * PAGE : PAGE;
		if (!t->err)
			t->err = gpup_dma_log_start(t->device, &r, 1, &ps);
		t->starts++;
	}
	return NULL;
}

/*
 * A REPORT that a STOP and a START at another page size overtake does
 * not read the new log with the old page size: it fails with EINVAL or
 * reads one log throughout (the sim counts a read not aligned to its
 * log's pages as a violation; the teardown checks it).
 */
TEST_F(dl, report_holds_its_log)
{
	struct gpup_dma_range r = { 0x40000000ULL, 1ULL << 30 };
	struct restarter t = { .device = dev(self, 0) };
	/* From the second 4 KiB page on: odd against 8 KiB log pages. */
	const u64 len = (1ULL << 30) - PAGE;
	int i, ret, einval = 0, ok = 0;
	pthread_t th;
	u64 *map, ps = PAGE;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	map = calloc(len / PAGE / 64 + 1, sizeof(*map));
	ASSERT_NE(NULL, map);
	ASSERT_EQ(0, gpup_dma_log_start(dev(self, 0), &r, 1, &ps));
	ASSERT_EQ(0, pthread_create(&th, NULL, restart_loop, &t));
	for (i = 0; i < 200 && !t.err; i++) {
		ret = gpup_dma_log_report(dev(self, 0), r.iova + PAGE, len,
					  PAGE, map);
		if (ret == -EINVAL)
			einval++;
		else if (!ret)
			ok++;
		else
			EXPECT_EQ(0, ret);
	}
	__atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	EXPECT_EQ(0, t.err);
	TH_LOG("%d REPORTs: %d read, %d EINVAL; %d restarts", i, ok, einval,
	       t.starts);
	gpup_dma_log_stop(dev(self, 0));
	EXPECT_EQ(0, gpup_sim_violations(self->vf[0]));
	free(map);
}

/*
 * Logging is offered by the provider attached at open, not the one the
 * VF was bound with: a PF bound again with the cap but not the ops, the
 * ops but not the cap, or neither, gives a VF whose DMA_LOGGING_START
 * fails with EOPNOTSUPP, and that migrates all the same.  A provider
 * with two of the three dma_log_* ops is refused at registration.
 */
TEST_F(dl, logging_fits_the_attached_provider)
{
	static const char *const refused =
		"gpup: provider refused: dma_log_start, dma_log_read and";
	static const struct { const char *variant; int start; } v[] = {
		{ "2", -EOPNOTSUPP },	/* the cap without the ops */
		{ "3", -EOPNOTSUPP },	/* the ops without the cap */
		{ "1", -EOPNOTSUPP },	/* neither */
		{ "0", 0 },		/* both, as when the VF was bound */
	};
	struct gpup_dma_range r = { BUF_IOVA, BUF_PAGES * PAGE };
	unsigned int i;
	int kmsg;
	u64 ps;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	/*
	 * VF 1 stays open, with the provider of the PF's last binding:
	 * SR-IOV stays enabled without the PF driver.  It is opened again
	 * to attach the new one.
	 */
	for (i = 0; i < ARRAY_SIZE(v); i++) {
		ASSERT_EQ(0, gpup_unbind(self->pf));
		ASSERT_EQ(0, gpup_write_file(GPUP_SIM_PARAM("dma_log"), "%s",
					     v[i].variant));
		ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
		gpup_vfio_close(&self->v[1]);
		ASSERT_EQ(0, gpup_vfio_open(self->vf[1], &self->v[1]));
		ASSERT_EQ(0, gpup_vfio_map(&self->v[1], self->buf[1], BUF_IOVA,
					   BUF_PAGES * PAGE));
		ps = PAGE;
		EXPECT_EQ(v[i].start, gpup_dma_log_start(dev(self, 1), &r, 1,
							 &ps))
			TH_LOG("dma_log=%s", v[i].variant);
		if (!v[i].start)
			EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 1)));
		EXPECT_EQ(0, gpup_mig_set(dev(self, 1), VFIO_DEVICE_STATE_STOP,
					  NULL));
		EXPECT_EQ(0, gpup_mig_set(dev(self, 1),
					  VFIO_DEVICE_STATE_RUNNING, NULL));
	}

	ASSERT_EQ(0, gpup_unbind(self->pf));
	ASSERT_EQ(0, gpup_write_file(GPUP_SIM_PARAM("dma_log"), "4"));
	kmsg = gpup_kmsg_open();
	ASSERT_LE(0, kmsg);
	EXPECT_NE(0, gpup_bind_override(self->pf, "gpup_sim"));
	EXPECT_EQ(1, gpup_kmsg_count(kmsg, refused));
	close(kmsg);
	ASSERT_EQ(0, gpup_write_file(GPUP_SIM_PARAM("dma_log"), "0"));
	gpup_unbind(self->pf);
	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
	gpup_vfio_close(&self->v[1]);
	ASSERT_EQ(0, gpup_vfio_open(self->vf[1], &self->v[1]));
}

/* The comparison can fail: a log that misses one write is caught. */
TEST_F(dl, a_dropped_entry_is_caught)
{
	u64 *before = malloc(BUF_PAGES * PAGE);
	u64 map = 0, want;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	ASSERT_NE(NULL, before);
	ASSERT_EQ(0, set_window(self, 0, WIN_PAGES));
	ASSERT_EQ(0, start_buf_log(self, 0));
	memcpy(before, self->buf[0], BUF_PAGES * PAGE);
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "fault", "dma_log drop"));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 6));
	changed_pages(before, self->buf[0], &want);
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					 BUF_PAGES * PAGE, PAGE, &map));
	EXPECT_NE(want, map);
	/* Exactly one page the engines wrote is missing from the log. */
	EXPECT_EQ(0, map & ~want);
	EXPECT_EQ(1, __builtin_popcountll(want & ~map));
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
	free(before);
}

/* A log that silently stops: the report misses what came after. */
TEST_F(dl, a_stopped_log_is_caught)
{
	u64 *before = malloc(BUF_PAGES * PAGE);
	u64 map = 0, want;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	ASSERT_NE(NULL, before);
	ASSERT_EQ(0, set_window(self, 0, WIN_PAGES));
	ASSERT_EQ(0, start_buf_log(self, 0));
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "fault", "dma_log stop"));
	memcpy(before, self->buf[0], BUF_PAGES * PAGE);
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 4));
	changed_pages(before, self->buf[0], &want);
	ASSERT_EQ(0, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					 BUF_PAGES * PAGE, PAGE, &map));
	EXPECT_NE(0, want);
	EXPECT_EQ(0, map);
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
	free(before);
}

/* A provider error loses the log: REPORT fails until a new START. */
TEST_F(dl, an_error_loses_the_log)
{
	u64 map = 0;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	ASSERT_EQ(0, set_window(self, 0, WIN_PAGES));
	ASSERT_EQ(0, start_buf_log(self, 0));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 2));
	ASSERT_EQ(0, gpup_sim_write(self->vf[0], "fault", "dma_log_read -5"));
	EXPECT_EQ(-EIO, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					    BUF_PAGES * PAGE, PAGE, &map));
	/* The fault fired once; the log stays lost all the same. */
	EXPECT_EQ(-EIO, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					    BUF_PAGES * PAGE, PAGE, &map));
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
	ASSERT_EQ(0, start_buf_log(self, 0));
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 1));
	EXPECT_EQ(0, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					 BUF_PAGES * PAGE, PAGE, &map));
	EXPECT_NE(0, map);
	EXPECT_EQ(0, gpup_dma_log_stop(dev(self, 0)));
}

/* Logging stops on reset, on close and on ERROR; the window goes too. */
TEST_F(dl, stops_on_reset_close_and_error)
{
	u64 map = 0;
	int fd;

	if (!self->logging)
		SKIP(return, "%s", no_logging);
	ASSERT_EQ(0, set_window(self, 0, WIN_PAGES));
	ASSERT_EQ(0, start_buf_log(self, 0));
	ASSERT_EQ(0, gpup_device_reset(dev(self, 0)));
	EXPECT_EQ(-EINVAL, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					       BUF_PAGES * PAGE, PAGE, &map));
	/* The reset cleared the window: the engines write nothing. */
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 3));
	EXPECT_EQ(0, gpup_sim_read_long(self->vf[0], "dma_writes"));

	ASSERT_EQ(0, start_buf_log(self, 0));
	gpup_vfio_close(&self->v[0]);
	ASSERT_EQ(0, gpup_vfio_open(self->vf[0], &self->v[0]));
	ASSERT_EQ(0, gpup_vfio_map(&self->v[0], self->buf[0], BUF_IOVA,
				   BUF_PAGES * PAGE));
	EXPECT_EQ(-EINVAL, gpup_dma_log_report(dev(self, 0), BUF_IOVA,
					       BUF_PAGES * PAGE, PAGE, &map));

	/* A restore that fails puts B in ERROR: its log stops. */
	ASSERT_EQ(0, start_buf_log(self, 1));
	ASSERT_EQ(0, gpup_mig_set(dev(self, 1), VFIO_DEVICE_STATE_RESUMING,
				  &fd));
	close(fd);
	EXPECT_NE(0, gpup_mig_set(dev(self, 1), VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(-EINVAL, gpup_dma_log_report(dev(self, 1), BUF_IOVA,
					       BUF_PAGES * PAGE, PAGE, &map));
	ASSERT_EQ(0, gpup_device_reset(dev(self, 1)));
}

/*
 * The engines write through the IOMMU as it maps the IOVA now: after the
 * buffer is unmapped they write nothing there (DMA faults), although the
 * sim still holds its references on the pages.  No write to memory that
 * is not the VF's any more, and KASAN (debug lane) sees no bad access.
 */
TEST_F(dl, no_dma_after_unmap)
{
	u64 *before = malloc(BUF_PAGES * PAGE);
	long faults;

	ASSERT_NE(NULL, before);
	if (set_window(self, 0, WIN_PAGES))
		SKIP(return, "no IOMMU domain for the VF");
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 2));
	EXPECT_EQ(4, gpup_sim_read_long(self->vf[0], "dma_writes"));
	memcpy(before, self->buf[0], BUF_PAGES * PAGE);
	ASSERT_EQ(0, gpup_vfio_unmap(&self->v[0], BUF_IOVA, BUF_PAGES * PAGE));
	faults = gpup_sim_read_long(self->vf[0], "dma_faults");
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 5));
	EXPECT_EQ(0, memcmp(before, self->buf[0], BUF_PAGES * PAGE));
	EXPECT_EQ(4, gpup_sim_read_long(self->vf[0], "dma_writes"));
	EXPECT_EQ(faults + 10, gpup_sim_read_long(self->vf[0], "dma_faults"));
	/* The window cannot be set where nothing is mapped. */
	EXPECT_EQ(-EFAULT, set_window(self, 0, WIN_PAGES));
	free(before);
}

/* No DMA while the VF is paused (RUNNING_P2P): no step runs. */
TEST_F(dl, no_dma_while_paused)
{
	u64 *before = malloc(BUF_PAGES * PAGE);

	ASSERT_NE(NULL, before);
	if (set_window(self, 0, WIN_PAGES))
		SKIP(return, "no IOMMU domain for the VF");
	ASSERT_EQ(0, gpup_mig_set(dev(self, 0), VFIO_DEVICE_STATE_RUNNING_P2P,
				  NULL));
	memcpy(before, self->buf[0], BUF_PAGES * PAGE);
	EXPECT_EQ(-EBUSY, gpup_sim_run(self->vf[0], 3));
	EXPECT_EQ(0, memcmp(before, self->buf[0], BUF_PAGES * PAGE));
	EXPECT_EQ(0, gpup_sim_read_long(self->vf[0], "dma_writes"));
	ASSERT_EQ(0, gpup_mig_set(dev(self, 0), VFIO_DEVICE_STATE_RUNNING,
				  NULL));
	free(before);
}

/*
 * The window is the VF's mutable state: after a migration the
 * destination's engines write the same IOVAs, in the destination's own
 * IOMMU domain (another buffer), with the pattern of the steps that
 * follow.
 */
TEST_F(dl, window_migrates)
{
	struct gpup_buf b = { 0 };
	unsigned int p;
	bool found = false;

	if (set_window(self, 0, WIN_PAGES))
		SKIP(return, "no IOMMU domain for the VF");
	ASSERT_EQ(0, gpup_sim_run(self->vf[0], 7));
	ASSERT_EQ(0, gpup_save_stop_copy(dev(self, 0), &b));
	ASSERT_EQ(0, gpup_load(dev(self, 1), &b));
	gpup_buf_free(&b);
	ASSERT_EQ(0, gpup_sim_run(self->vf[1], 1));
	EXPECT_EQ(2, gpup_sim_read_long(self->vf[1], "dma_writes"));
	/* Step 7 (the eighth) wrote the fence page and ring page 8. */
	EXPECT_TRUE(holds_pattern(self->buf[1], 0));
	EXPECT_EQ(DMA_MAGIC << 32 | 7, self->buf[1][0]);
	EXPECT_TRUE(holds_pattern(self->buf[1], 1 + 7 % (WIN_PAGES - 1)));
	for (p = 1; p < BUF_PAGES; p++)
		if (p != 1 + 7 % (WIN_PAGES - 1) &&
		    self->buf[1][p * PAGE / 8] != FILL)
			found = true;
	EXPECT_FALSE(found);
}

TEST_HARNESS_MAIN
