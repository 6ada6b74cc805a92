// SPDX-License-Identifier: GPL-2.0
/*
 * Bad streams into RESUMING: each gets a clean errno from write() or from
 * RESUMING -> STOP, VFIO_DEVICE_RESET recovers the destination, and the
 * source is untouched.  Streams are real ones saved from a VF, cut,
 * flipped or re-assembled with the stream codec of the driver.
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
#include "stream.h"

enum { A, B };

/* One record of a parsed stream: where it starts and how long it is. */
struct rec {
	size_t off;
	size_t len;	/* header + payload */
	unsigned int type;
};

#define MAX_RECS 4096

FIXTURE(bad) {
	char pf[GPUP_BDF_LEN];
	char vf[2][GPUP_BDF_LEN];
	struct gpup_vfio v[2];
	struct gpup_buf good;
	char digest[GPUP_DIGEST_LEN];
	struct rec recs[MAX_RECS];
	int nrecs;
};

/* Split @s into records with the codec itself. */
static int index_stream(const struct gpup_buf *s, struct rec *recs)
{
	size_t off = GPUP_STREAM_HDR_SIZE;
	const struct gpup_rec_hdr *rh;
	int n = 0;

	while (off + GPUP_REC_HDR_SIZE <= s->len && n < MAX_RECS) {
		rh = (const void *)(s->data + off);
		recs[n].off = off;
		recs[n].type = le16_to_cpu(rh->type);
		recs[n].len = GPUP_REC_HDR_SIZE + le32_to_cpu(rh->len);
		off += recs[n].len;
		n++;
	}
	return off == s->len ? n : -1;
}

FIXTURE_SETUP(bad)
{
	int i;

	/* 1 MiB of VRAM keeps each of the many streams below short. */
	ASSERT_EQ(0, gpup_setup_pf_vram(self->pf, 2, 1));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
	memset(&self->good, 0, sizeof(self->good));
	ASSERT_EQ(0, gpup_sim_run(self->vf[A], 20));
	ASSERT_EQ(0, gpup_save_stop_copy(self->v[A].device, &self->good));
	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], self->digest));
	self->nrecs = index_stream(&self->good, self->recs);
	ASSERT_GE(self->nrecs, 4);
	ASSERT_EQ(GPUP_REC_IMMUTABLE, self->recs[0].type);
	ASSERT_EQ(GPUP_REC_END, self->recs[self->nrecs - 1].type);
	ASSERT_EQ(GPUP_REC_MUTABLE, self->recs[self->nrecs - 2].type);
}

FIXTURE_TEARDOWN(bad)
{
	int i;

	gpup_buf_free(&self->good);
	for (i = 0; i < 2; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
	}
	gpup_set_numvfs(self->pf, 0);
}

/*
 * Feed @len bytes of @p to B in RESUMING, then RESUMING -> STOP.
 * Returns the first errno met (negative), or 0 if B accepted the stream.
 * Leaves B reset to RUNNING either way.
 */
static int try_stream(struct _test_data_bad *self, const u8 *p, size_t len)
{
	int d = self->v[B].device, fd, ret, state = -1;

	ret = gpup_mig_set(d, VFIO_DEVICE_STATE_RESUMING, &fd);
	if (ret)
		return -ENOTRECOVERABLE;
	ret = gpup_write_stream(fd, p, len, GPUP_CHUNK_WRITE);
	close(fd);
	if (!ret)
		ret = gpup_mig_set(d, VFIO_DEVICE_STATE_STOP, NULL);
	/* The destination recovers with a reset, whatever happened. */
	if (gpup_device_reset(d) || gpup_mig_get(d, &state) ||
	    state != VFIO_DEVICE_STATE_RUNNING)
		return -ENOTRECOVERABLE;
	return ret;
}

static void source_untouched(struct __test_metadata *_metadata,
			     struct _test_data_bad *self)
{
	char now[GPUP_DIGEST_LEN];

	ASSERT_EQ(0, gpup_sim_digest(self->vf[A], now));
	EXPECT_STREQ(self->digest, now);
}

/* A copy of the good stream to damage. */
static u8 *copy_good(struct _test_data_bad *self)
{
	u8 *p = malloc(self->good.len + 64);

	if (p)
		memcpy(p, self->good.data, self->good.len);
	return p;
}

static void fix_hdr_crc(u8 *p)
{
	struct gpup_stream_hdr *h = (void *)p;
	u32 crc = gpup_vfio_crc32c(h, offsetof(struct gpup_stream_hdr, hdr_crc));

	h->hdr_crc = cpu_to_le32(crc);
}

static void fix_rec_hcrc(struct gpup_rec_hdr *rh)
{
	u32 crc = gpup_vfio_crc32c(rh, offsetof(struct gpup_rec_hdr, hcrc));

	rh->hcrc = cpu_to_le32(crc);
}

TEST_F(bad, good_stream_is_accepted)
{
	/* The control: the unmodified stream restores. */
	EXPECT_EQ(0, try_stream(self, self->good.data, self->good.len));
	source_untouched(_metadata, self);
}

/* Writes of any size, 1 byte to 1 MiB, parse to the same restored VF. */
TEST_F_TIMEOUT(bad, write_sizes, 600)
{
	static const size_t sizes[] = { 1, 7, 4093, 32768, 1 << 20 };
	int d = self->v[B].device, fd, i;
	char now[GPUP_DIGEST_LEN];
	size_t first;

	for (i = 0; i < 5; i++) {
		ASSERT_EQ(0, gpup_device_reset(d));
		ASSERT_EQ(0, gpup_mig_set(d, VFIO_DEVICE_STATE_RESUMING, &fd));
		/* 1-byte writes for the structure-rich first 64 KiB. */
		first = sizes[i] == 1 ? 65536 : self->good.len;
		ASSERT_EQ(0, gpup_write_stream(fd, self->good.data, first,
					       sizes[i]));
		ASSERT_EQ(0, gpup_write_stream(fd, self->good.data + first,
					       self->good.len - first,
					       GPUP_CHUNK_READ));
		close(fd);
		ASSERT_EQ(0, gpup_mig_set(d, VFIO_DEVICE_STATE_STOP, NULL))
			TH_LOG("write size %zu", sizes[i]);
		ASSERT_EQ(0, gpup_sim_digest(self->vf[B], now));
		EXPECT_STREQ(self->digest, now) TH_LOG("write size %zu",
						       sizes[i]);
	}
}

TEST_F(bad, wrong_magic)
{
	u8 *p = copy_good(self);

	ASSERT_NE(NULL, p);
	p[0] ^= 0xff;
	fix_hdr_crc(p);
	EXPECT_EQ(-EPROTO, try_stream(self, p, self->good.len));
	source_untouched(_metadata, self);
	free(p);
}

TEST_F(bad, future_major_version)
{
	struct gpup_stream_hdr *h;
	u8 *p = copy_good(self);

	ASSERT_NE(NULL, p);
	h = (void *)p;
	h->major = cpu_to_le16(GPUP_STREAM_MAJOR + 1);
	fix_hdr_crc(p);
	EXPECT_EQ(-EPROTONOSUPPORT, try_stream(self, p, self->good.len));
	free(p);
}

TEST_F(bad, foreign_provider_and_profile)
{
	struct gpup_stream_hdr *h;
	u8 *p = copy_good(self);

	ASSERT_NE(NULL, p);
	h = (void *)p;
	h->provider_id = cpu_to_le32(le32_to_cpu(h->provider_id) ^ 1);
	fix_hdr_crc(p);
	EXPECT_EQ(-EPROTONOSUPPORT, try_stream(self, p, self->good.len));
	memcpy(p, self->good.data, GPUP_STREAM_HDR_SIZE);
	h->profile_id = cpu_to_le32(le32_to_cpu(h->profile_id) + 1);
	fix_hdr_crc(p);
	EXPECT_EQ(-EPROTONOSUPPORT, try_stream(self, p, self->good.len));
	source_untouched(_metadata, self);
	free(p);
}

TEST_F(bad, target_of_another_profile)
{
	/* B becomes a VF of profile 2: restore_immutable must refuse A's. */
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "profile", "2"));
	EXPECT_EQ(-EPROTONOSUPPORT,
		  try_stream(self, self->good.data, self->good.len));
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "profile", "1"));
	EXPECT_EQ(0, try_stream(self, self->good.data, self->good.len));
}

TEST_F(bad, trailing_bytes)
{
	u8 *p = copy_good(self);

	ASSERT_NE(NULL, p);
	p[self->good.len] = 0;
	EXPECT_EQ(-EPROTO, try_stream(self, p, self->good.len + 1));
	free(p);
}

/*
 * Truncation at every byte of the header, IMMUTABLE and the END record,
 * around every record boundary, and every 8th byte of MUTABLE (each of
 * those writes the whole VRAM first).  The codec's unit tests cut a small
 * stream at every byte.
 */
/*
 * Whether the cuts around record @i's header are tried: in a row of
 * records of one type (the ZERO records, the VRAM records: about 80 each
 * here, each cut a RESUMING arc, a write and a reset), the first two and
 * the last two, whose neighbours differ; a record in between goes
 * through the same code as they do.
 */
static bool rec_sampled(struct _test_data_bad *self, int i)
{
	int t = self->recs[i].type, j, before = 0, after = 0;

	for (j = i - 1; j >= 0 && self->recs[j].type == t && before < 2; j--)
		before++;
	for (j = i + 1; j < self->nrecs && self->recs[j].type == t &&
	     after < 2; j++)
		after++;
	return before < 2 || after < 2;
}

TEST_F_TIMEOUT(bad, truncated, 900)
{
	size_t cut, head = self->recs[1].off + 64;
	size_t mut = self->recs[self->nrecs - 2].off;
	size_t end = self->recs[self->nrecs - 1].off;
	int i, ret, n = 0, bad = 0;

	for (cut = 0; cut < self->good.len; cut++) {
		bool near = cut < head || cut >= end ||
			    (cut >= mut && !(cut % 8));

		for (i = 0; !near && i < self->nrecs; i++)
			near = rec_sampled(self, i) &&
			       cut + 2 >= self->recs[i].off &&
			       cut <= self->recs[i].off + GPUP_REC_HDR_SIZE + 18;
		if (!near)
			continue;
		ret = try_stream(self, self->good.data, cut);
		n++;
		if (ret != -ENODATA && ret != -EPROTO) {
			bad++;
			TH_LOG("cut at %zu: %d", cut, ret);
		}
	}
	TH_LOG("%d cut points", n);
	EXPECT_EQ(0, bad);
	source_untouched(_metadata, self);
}

/*
 * Every bit of the header and IMMUTABLE (refused early), one bit in every
 * 4093rd byte of VRAM, one bit of every byte of the MUTABLE and END
 * records (refused only after the whole VRAM).  The codec's unit tests
 * flip every bit of a small stream.
 *
 * Each flip costs a RESUMING arc, a write and a reset, about 0.1 s under
 * TCG, so that the sweep is sampled unless GPUP_BADSTREAM_FULL is set:
 * one bit of every byte of the header and IMMUTABLE, every 16381st byte
 * of VRAM and every 7th byte of MUTABLE and END (the flipped bit is the
 * byte's offset modulo 8, so it still goes through all eight).  make
 * check sets it on the debug kernel, whose KASAN makes the full sweep
 * worth its time; the stock and sid lanes run the sample.
 */
TEST_F_TIMEOUT(bad, bit_flips, 900)
{
	bool full = getenv("GPUP_BADSTREAM_FULL");
	size_t vram_step = full ? 4093 : 16381, tail_step = full ? 1 : 7;
	size_t byte, head = self->recs[1].off + 64;
	size_t tail = self->recs[self->nrecs - 2].off;
	u8 *p = copy_good(self);
	int bit, ret, n = 0, accepted = 0;

	ASSERT_NE(NULL, p);
	for (byte = 0; byte < self->good.len; byte++) {
		if (byte >= head && byte < tail && byte % vram_step)
			continue;
		if (byte >= tail && (byte - tail) % tail_step)
			continue;
		for (bit = 0; bit < 8; bit++) {
			if ((byte >= head || !full) && bit != byte % 8)
				continue;
			p[byte] ^= 1 << bit;
			ret = try_stream(self, p, self->good.len);
			p[byte] ^= 1 << bit;
			n++;
			if (ret == -ENOTRECOVERABLE || ret >= 0) {
				accepted++;
				TH_LOG("flip %zu.%d: %d", byte, bit, ret);
			}
		}
	}
	TH_LOG("%d flips (%s)", n, full ? "full" : "sampled");
	EXPECT_EQ(0, accepted);
	source_untouched(_metadata, self);
	free(p);
}

/*
 * Re-assemble records in another order with valid CRCs and a valid END,
 * so that only the order is wrong.
 */
static size_t assemble(struct _test_data_bad *self, u8 *out,
		       const int *order, int n)
{
	const u8 *g = self->good.data;
	struct gpup_rec_hdr *rh;
	struct gpup_end *end;
	size_t off = GPUP_STREAM_HDR_SIZE;
	u32 chain = GPUP_CRC_INIT;
	int i;

	memcpy(out, g, GPUP_STREAM_HDR_SIZE);
	for (i = 0; i < n; i++) {
		const struct rec *r = &self->recs[order[i]];

		memcpy(out + off, g + r->off, r->len);
		chain = gpup_vfio_crc(chain, out + off, GPUP_REC_CHAIN_LEN);
		off += r->len;
	}
	rh = (void *)(out + off);
	end = (void *)(out + off + GPUP_REC_HDR_SIZE);
	memset(end, 0, sizeof(*end));
	end->nrecords = cpu_to_le32(n);
	end->stream_bytes = cpu_to_le64(off);
	end->chain = cpu_to_le32(gpup_vfio_crc_final(chain));
	rh->type = cpu_to_le16(GPUP_REC_END);
	rh->flags = 0;
	rh->len = cpu_to_le32(GPUP_END_SIZE);
	rh->crc = cpu_to_le32(gpup_vfio_crc32c(end, GPUP_END_SIZE));
	fix_rec_hcrc(rh);
	return off + GPUP_END_REC_SIZE;
}

TEST_F(bad, record_order)
{
	int n = self->nrecs - 1;	/* without END */
	int *order = calloc(n + 2, sizeof(int));
	u8 *p = malloc(self->good.len * 2);
	int i, k, t, type, mut = n - 1;
	size_t len;

	ASSERT_NE(NULL, order);
	ASSERT_NE(NULL, p);

	/* Control: the same order re-assembled is accepted. */
	for (i = 0; i < n; i++)
		order[i] = i;
	len = assemble(self, p, order, n);
	EXPECT_EQ(0, try_stream(self, p, len));

	/* Missing IMMUTABLE. */
	len = assemble(self, p, order + 1, n - 1);
	EXPECT_EQ(-EPROTO, try_stream(self, p, len));

	/* Duplicate IMMUTABLE. */
	order[0] = 0;
	for (i = 0; i < n; i++)
		order[i + 1] = i;
	len = assemble(self, p, order, n + 1);
	EXPECT_EQ(-EPROTO, try_stream(self, p, len));

	/* Missing MUTABLE. */
	for (i = 0; i < n; i++)
		order[i] = i;
	len = assemble(self, p, order, n - 1);
	EXPECT_EQ(-EPROTO, try_stream(self, p, len));

	/* MUTABLE before the VRAM records. */
	order[0] = 0;
	order[1] = mut;
	for (i = 1; i < mut; i++)
		order[i + 1] = i;
	len = assemble(self, p, order, n);
	EXPECT_EQ(-EPROTO, try_stream(self, p, len));

	/* Duplicate MUTABLE. */
	for (i = 0; i < n; i++)
		order[i] = i;
	order[n] = mut;
	len = assemble(self, p, order, n + 1);
	EXPECT_EQ(-EPROTO, try_stream(self, p, len));

	/*
	 * A VRAM record, or a ZERO record (the pages the source never
	 * wrote), left out, END recomputed to match: every record checks,
	 * but the stream no longer covers the whole VRAM.  Then the record
	 * twice instead of the next one: the same hole.
	 */
	for (t = 0; t < 2; t++) {
		type = t ? GPUP_REC_ZERO : GPUP_REC_VRAM;
		for (k = 1; k < n - 2 && self->recs[k].type != type; k++)
			;
		ASSERT_EQ(type, self->recs[k].type);
		for (i = 0; i < n; i++)
			order[i] = i < k ? i : i + 1;
		len = assemble(self, p, order, n - 1);
		EXPECT_EQ(-EPROTO, try_stream(self, p, len));
		for (i = 0; i < n; i++)
			order[i] = i == k + 1 ? k : i;
		len = assemble(self, p, order, n);
		EXPECT_EQ(-EPROTO, try_stream(self, p, len));
	}

	/* Duplicate END. */
	for (i = 0; i < n; i++)
		order[i] = i;
	len = assemble(self, p, order, n);
	memcpy(p + len, p + len - GPUP_END_REC_SIZE, GPUP_END_REC_SIZE);
	EXPECT_EQ(-EPROTO, try_stream(self, p, len + GPUP_END_REC_SIZE));

	source_untouched(_metadata, self);
	free(order);
	free(p);
}

/*
 * A record header claiming more than the declared maxima is refused at the
 * header, before any payload is sent (and before any allocation).
 */
TEST_F(bad, oversized_records)
{
	static const unsigned int types[] = {
		GPUP_REC_IMMUTABLE, GPUP_REC_MUTABLE, GPUP_REC_VRAM,
	};
	static const u32 lens[] = {
		(64U << 20) + 4096 + GPUP_VRAM_RUN_SIZE, 0xffffffffU,
	};
	size_t imm = self->recs[0].len, pre;
	struct gpup_rec_hdr *rh;
	unsigned int t, l;
	u8 *p;

	p = malloc(GPUP_STREAM_HDR_SIZE + imm + GPUP_REC_HDR_SIZE);
	ASSERT_NE(NULL, p);
	memcpy(p, self->good.data, GPUP_STREAM_HDR_SIZE + imm);
	for (t = 0; t < 3; t++) {
		/* IMMUTABLE comes first; the others after a good IMMUTABLE. */
		pre = GPUP_STREAM_HDR_SIZE + (t ? imm : 0);
		rh = (void *)(p + pre);
		for (l = 0; l < 2; l++) {
			memset(rh, 0, sizeof(*rh));
			rh->type = cpu_to_le16(types[t]);
			rh->len = cpu_to_le32(lens[l]);
			fix_rec_hcrc(rh);
			EXPECT_EQ(-EMSGSIZE,
				  try_stream(self, p, pre + GPUP_REC_HDR_SIZE))
				TH_LOG("type %u len %u", types[t], lens[l]);
		}
	}
	free(p);
}

/* A stream being re-assembled from the good one's records and new ones. */
struct asm_stream {
	u8 *p;
	size_t off;
	u32 chain;
	u32 nrec;
};

static int asm_start(struct _test_data_bad *self, struct asm_stream *a)
{
	/* Room for the good stream, a VRAM record and a few more. */
	a->p = malloc(self->good.len + (2 << 20));
	if (!a->p)
		return -ENOMEM;
	memcpy(a->p, self->good.data, GPUP_STREAM_HDR_SIZE);
	a->off = GPUP_STREAM_HDR_SIZE;
	a->chain = GPUP_CRC_INIT;
	a->nrec = 0;
	return 0;
}

/* The header at @a's end, once its payload of @len is in place. */
static void asm_hdr(struct asm_stream *a, u16 type, u32 len)
{
	struct gpup_rec_hdr *rh = (void *)(a->p + a->off);

	rh->type = cpu_to_le16(type);
	rh->flags = 0;
	rh->len = cpu_to_le32(len);
	rh->crc = cpu_to_le32(gpup_vfio_crc32c(rh + 1, len));
	fix_rec_hcrc(rh);
	a->chain = gpup_vfio_crc(a->chain, rh, GPUP_REC_CHAIN_LEN);
	a->off += GPUP_REC_HDR_SIZE + len;
	a->nrec++;
}

static void asm_good(struct _test_data_bad *self, struct asm_stream *a,
		     int i)
{
	const struct rec *r = &self->recs[i];

	memcpy(a->p + a->off, self->good.data + r->off, r->len);
	a->chain = gpup_vfio_crc(a->chain, a->p + a->off, GPUP_REC_CHAIN_LEN);
	a->off += r->len;
	a->nrec++;
}

/* A ZERO record, or (@pages) a VRAM record of as many zero pages. */
static void asm_zeros(struct asm_stream *a, u64 first, u32 npages,
		      bool pages)
{
	struct gpup_vram_run *run = (void *)(a->p + a->off + GPUP_REC_HDR_SIZE);
	size_t bytes = pages ? (size_t)npages * 4096 : 0;

	gpup_vfio_vram_run_build(run, first, npages);
	memset(run + 1, 0, bytes);
	asm_hdr(a, pages ? GPUP_REC_VRAM : GPUP_REC_ZERO,
		GPUP_VRAM_RUN_SIZE + bytes);
}

static size_t asm_end(struct asm_stream *a)
{
	struct gpup_rec_hdr *rh = (void *)(a->p + a->off);
	struct gpup_end *end = (void *)(rh + 1);

	memset(end, 0, sizeof(*end));
	end->nrecords = cpu_to_le32(a->nrec);
	end->stream_bytes = cpu_to_le64(a->off);
	end->chain = cpu_to_le32(gpup_vfio_crc_final(a->chain));
	rh->type = cpu_to_le16(GPUP_REC_END);
	rh->flags = 0;
	rh->len = cpu_to_le32(GPUP_END_SIZE);
	rh->crc = cpu_to_le32(gpup_vfio_crc32c(end, GPUP_END_SIZE));
	fix_rec_hcrc(rh);
	return a->off + GPUP_END_REC_SIZE;
}

/*
 * B, after it ran (its VRAM written), restores @p in one write(), then
 * RESUMING -> STOP: its digest then, and B reset to RUNNING.
 */
static int load_digest(struct _test_data_bad *self, const u8 *p, size_t len,
		       char *digest)
{
	int d = self->v[B].device, fd, ret, state = -1;

	ret = gpup_sim_run(self->vf[B], 20);
	if (!ret)
		ret = gpup_mig_set(d, VFIO_DEVICE_STATE_RESUMING, &fd);
	if (ret)
		return ret;
	ret = gpup_write_stream(fd, p, len, len);
	close(fd);
	if (!ret)
		ret = gpup_mig_set(d, VFIO_DEVICE_STATE_STOP, NULL);
	if (!ret)
		ret = gpup_sim_digest(self->vf[B], digest);
	if (gpup_device_reset(d) || gpup_mig_get(d, &state) ||
	    state != VFIO_DEVICE_STATE_RUNNING)
		return -ENOTRECOVERABLE;
	return ret;
}

/* The first page of the good stream's VRAM that does not hold zeros. */
static long first_nonzero_page(struct _test_data_bad *self)
{
	const struct gpup_vram_run *run;
	const u8 *pg;
	u32 i, k;
	int r;

	for (r = 1; r < self->nrecs - 2; r++) {
		/* A ZERO record's run has no pages after it. */
		if (self->recs[r].type != GPUP_REC_VRAM)
			continue;
		run = (const void *)(self->good.data + self->recs[r].off +
				     GPUP_REC_HDR_SIZE);
		for (i = 0; i < le32_to_cpu(run->npages); i++) {
			pg = (const u8 *)(run + 1) + (size_t)i * 4096;
			for (k = 0; k < 4096; k++)
				if (pg[k])
					return le64_to_cpu(run->first_page) + i;
		}
	}
	return -1;
}

/*
 * ZERO records (stream minor 1) restore zeros: a stream with zero runs
 * over all of VRAM before the good VRAM records and over 32 pages A had
 * written after them leaves B as the same stream with VRAM records of
 * zero pages instead does, and unlike A.  B ran before each load, so the
 * zeros are written, not found.  In bulk B's copy engine takes 5 ms a
 * transfer: the zero run over pages still in flight waits for them.
 */
static void zero_runs_restore_zeros(struct __test_metadata *_metadata,
				    struct _test_data_bad *self)
{
	char dz[GPUP_DIGEST_LEN], dp[GPUP_DIGEST_LEN];
	struct asm_stream a;
	long pg = first_nonzero_page(self);
	size_t len;
	int i, pass;

	ASSERT_LE(0, pg);
	pg = pg < 256 - 32 ? pg : 256 - 32;
	ASSERT_EQ(0, gpup_sim_write(self->vf[B], "xfer_delay", "5000"));
	for (pass = 0; pass < 2; pass++) {
		ASSERT_EQ(0, asm_start(self, &a));
		asm_good(self, &a, 0);
		asm_zeros(&a, 0, 256, pass);
		for (i = 1; i < self->nrecs - 2; i++)
			asm_good(self, &a, i);
		asm_zeros(&a, pg, 32, pass);
		asm_zeros(&a, 255, 1, pass);
		asm_good(self, &a, self->nrecs - 2);
		len = asm_end(&a);
		EXPECT_EQ(0, load_digest(self, a.p, len, pass ? dp : dz));
		free(a.p);
	}
	gpup_sim_write(self->vf[B], "xfer_delay", "0");
	EXPECT_STREQ(dp, dz);
	EXPECT_STRNE(self->digest, dz);
	source_untouched(_metadata, self);
}

TEST_F(bad, zero_runs_restore_zeros)
{
	zero_runs_restore_zeros(_metadata, self);
}

/*
 * The same where the provider has no vram_zero: gpup_vfio_pci writes the
 * zeros with vram_write.  gpup_sim's PF is probed again without the op.
 */
TEST_F(bad, zero_runs_without_vram_zero)
{
	const char *param = GPUP_SIM_PARAM("vram_zero");
	int i, ret;

	for (i = 0; i < 2; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
	}
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 0));
	ASSERT_EQ(0, gpup_write_file(param, "N"));
	ret = gpup_unbind(self->pf) ?: gpup_bind_override(self->pf, "gpup_sim");
	/* The next tests get the op back, whatever happens here. */
	gpup_write_file(param, "Y");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 2));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
	/* A is new: it holds what the stream holds once it restored it. */
	ASSERT_EQ(0, gpup_load(self->v[A].device, &self->good));
	zero_runs_restore_zeros(_metadata, self);
	/* Back to a PF with the op, for the tests after this one. */
	for (i = 0; i < 2; i++) {
		gpup_vfio_close(&self->v[i]);
		gpup_unbind(self->vf[i]);
	}
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 0));
	ASSERT_EQ(0, gpup_unbind(self->pf));
	ASSERT_EQ(0, gpup_bind_override(self->pf, "gpup_sim"));
	ASSERT_EQ(0, gpup_set_numvfs(self->pf, 2));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, gpup_vf_bdf(self->pf, i, self->vf[i]));
		ASSERT_EQ(0, gpup_bind_override(self->vf[i], "gpup_vfio_pci"));
		ASSERT_EQ(0, gpup_vfio_open(self->vf[i], &self->v[i]));
	}
}

/*
 * A zero run or a VRAM page past the destination's VRAM (256 pages here)
 * is refused, by the parser, before anything of it is restored.
 */
TEST_F(bad, zero_run_past_vram)
{
	static const struct {
		u64 first;
		u32 npages;
		bool pages;
	} runs[] = {
		{ 255, 2, false }, { 256, 1, false }, { 0, 257, false },
		{ 1ULL << 40, 1, false }, { 0, 0xffffffffU, false },
		{ 256, 1, true }, { 255, 2, true },
	};
	struct asm_stream a;
	unsigned int r;
	size_t len;
	int i;

	for (r = 0; r < ARRAY_SIZE(runs); r++) {
		ASSERT_EQ(0, asm_start(self, &a));
		for (i = 0; i < self->nrecs - 2; i++)
			asm_good(self, &a, i);
		asm_zeros(&a, runs[r].first, runs[r].npages, runs[r].pages);
		asm_good(self, &a, self->nrecs - 2);
		len = asm_end(&a);
		EXPECT_EQ(-EPROTO, try_stream(self, a.p, len))
			TH_LOG("run %u", r);
		free(a.p);
	}
	source_untouched(_metadata, self);
}

TEST_HARNESS_MAIN
