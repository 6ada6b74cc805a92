// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the gpup stream parser (drivers/vfio/pci/gpup/
 * stream.c).  The Makefile names the entry point through GPUP_FUZZ_ENTRY.
 *
 * Input layout:
 *   byte 0         control: bits 0-2 = number of chunk sizes - 1 (1..8);
 *                  bit 3 = feed 0 bytes before each chunk;
 *                  bit 4 = limits demand page_size 4096, vram_size 64 KiB;
 *                  bit 5 = recompute every CRC of the stream first, so
 *                  that mutations reach the checks behind the CRCs;
 *                  bit 6 = with bit 5, also set END's nrecords,
 *                  stream_bytes and chain to what precedes it;
 *                  bit 7 = the chunked pass checks the CRC of each VRAM
 *                  record's pages itself (gpup_vfio_parser_defer_crc()),
 *                  at its RECORD_END, as the driver's bulk restore does,
 *                  and feeds those pages as NULL
 *   next k bytes   chunk sizes, used in turn (0: the rest of the input)
 *   the rest       the stream
 *
 * The stream is parsed twice: in the chunks the input asks for, and in one
 * buffer.  Every call and event is checked against the API contract, the
 * one-buffer pass rebuilds each record header with gpup_writer and
 * compares it with the input, and both passes must end alike.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <stdio.h>
#include <stdlib.h>

#include "stream.h"

#ifndef GPUP_FUZZ_ENTRY
#error "build with -DGPUP_FUZZ_ENTRY=<the libFuzzer entry point>"
#endif

static void check(bool cond, const char *what, int line)
{
	if (!cond) {
		fprintf(stderr, "stream_fuzz.c:%d: invariant broken: %s\n",
			line, what);
		abort();
	}
}

#define CHECK(cond)	check(!!(cond), #cond, __LINE__)

static const struct gpup_stream_limits loose_lim = {
	.max_immutable = 4096,
	.max_mutable = 4096,
	.max_vram_run = 65536,
	.max_optional = 4096,
};

static const struct gpup_stream_limits strict_lim = {
	.page_size = 4096,
	.vram_size = 65536,
	.max_immutable = 256,
	.max_mutable = 1024,
	.max_vram_run = 8192,
	.max_optional = 64,
};

/* What one pass saw. */
struct pass {
	long err;
	int fin;
	u64 pos;
	u32 ev_digest;		/* CRC over every event but DATA */
	u32 data_digest;	/* CRC over all DATA bytes in order */
	/* the record being read */
	bool hdr_seen, end_seen, in_rec;
	u16 type;
	u32 len, next_off, npages;
	u64 first_page;
	struct gpup_stream_info info;
	/* deferring VRAM page CRCs (chunked pass, control bit 7) */
	bool defer;
	u32 dcrc, dwant;
	/* rebuilding with the writer (one-buffer pass only) */
	bool rebuild;
	struct gpup_writer w;
};

static bool known(u16 type)
{
	return type >= GPUP_REC_IMMUTABLE && type <= GPUP_REC_MUTABLE;
}

static void digest_event(struct pass *ps, const struct gpup_event *ev)
{
	u64 v[15] = {
		ev->kind, ev->type, ev->flags, ev->len, ev->crc,
		ev->first_page, ev->npages, ev->nrecords, ev->stream_bytes,
		ev->hdr.major, ev->hdr.minor, ev->hdr.provider_id,
		ev->hdr.profile_id, ev->hdr.page_size, ev->hdr.vram_size,
	};

	ps->ev_digest = gpup_vfio_crc(ps->ev_digest, v, sizeof(v));
}

/* @end: stream bytes up to and including the ones this call consumed. */
static void on_event(struct pass *ps, const struct gpup_stream_limits *lim,
		     const struct gpup_event *ev, const u8 *stream, size_t end,
		     const u8 *in, long consumed)
{
	struct gpup_stream_hdr h;
	struct gpup_rec_hdr rh;
	struct gpup_end e;
	u32 max;

	if (ev->kind == GPUP_EV_NONE)
		return;
	CHECK(!ps->end_seen);
	if (ev->kind != GPUP_EV_DATA)
		digest_event(ps, ev);

	switch (ev->kind) {
	case GPUP_EV_HEADER:
		CHECK(!ps->hdr_seen);
		CHECK(end == GPUP_STREAM_HDR_SIZE);
		ps->hdr_seen = true;
		ps->info = ev->hdr;
		CHECK(ev->hdr.major == GPUP_STREAM_MAJOR);
		CHECK(ev->hdr.page_size >= GPUP_PAGE_SIZE_MIN &&
		      ev->hdr.page_size <= GPUP_PAGE_SIZE_MAX &&
		      !(ev->hdr.page_size & (ev->hdr.page_size - 1)));
		CHECK(ev->hdr.vram_size % ev->hdr.page_size == 0);
		CHECK(!lim->page_size || lim->page_size == ev->hdr.page_size);
		CHECK(!lim->vram_size || lim->vram_size == ev->hdr.vram_size);
		if (ps->rebuild) {
			gpup_vfio_stream_hdr_build(&h, ev->hdr.provider_id,
						   ev->hdr.profile_id,
					      ev->hdr.page_size,
					      ev->hdr.vram_size);
			CHECK(ev->hdr.minor != GPUP_STREAM_MINOR ||
			      !memcmp(&h, stream, sizeof(h)));
			CHECK(!gpup_vfio_writer_hdr(&ps->w, &h));
		}
		break;
	case GPUP_EV_RECORD:
		CHECK(ps->hdr_seen && !ps->in_rec);
		CHECK(!(ev->flags & ~GPUP_REC_F_OPTIONAL));
		ps->in_rec = true;
		ps->type = ev->type;
		ps->len = ev->len;
		ps->next_off = 0;
		ps->npages = 0;
		if (ev->type == GPUP_REC_IMMUTABLE)
			max = lim->max_immutable;
		else if (ev->type == GPUP_REC_MUTABLE)
			max = lim->max_mutable;
		else if (ev->type == GPUP_REC_VRAM)
			max = lim->max_vram_run + GPUP_VRAM_RUN_SIZE;
		else if (ev->type == GPUP_REC_ZERO)
			max = GPUP_VRAM_RUN_SIZE;
		else
			max = lim->max_optional;
		CHECK(ev->len <= max);
		CHECK(ev->type != GPUP_REC_END);
		CHECK(known(ev->type) || ev->type == GPUP_REC_ZERO ||
		      (ev->flags & GPUP_REC_F_OPTIONAL));
		CHECK(ev->type != GPUP_REC_ZERO || ev->len == GPUP_VRAM_RUN_SIZE);
		if (ps->rebuild) {
			CHECK(!gpup_vfio_rec_hdr_build(&ps->w, &rh, ev->type,
						       ev->flags, ev->len, ev->crc));
			CHECK(!memcmp(&rh, stream + end - sizeof(rh),
				      sizeof(rh)));
			CHECK(ps->w.stream_bytes == end + ev->len);
		}
		break;
	case GPUP_EV_VRAM_RUN:
		CHECK(ps->in_rec && !ps->npages &&
		      (ps->type == GPUP_REC_VRAM || ps->type == GPUP_REC_ZERO));
		CHECK(ev->npages);
		CHECK(ev->first_page <= ps->info.vram_size / ps->info.page_size);
		CHECK(ev->npages <= ps->info.vram_size / ps->info.page_size -
		      ev->first_page);
		CHECK(ps->type == GPUP_REC_ZERO ||
		      (u64)ev->npages * ps->info.page_size ==
		      ps->len - GPUP_VRAM_RUN_SIZE);
		ps->first_page = ev->first_page;
		ps->npages = ev->npages;
		ps->next_off = GPUP_VRAM_RUN_SIZE;
		break;
	case GPUP_EV_DATA:
		CHECK(ps->in_rec && ev->type == ps->type && known(ev->type));
		CHECK(ev->data == in && ev->data_len == consumed);
		CHECK(ev->data_len && ev->offset == ps->next_off);
		CHECK((u64)ev->offset + ev->data_len <= ps->len);
		if (ev->type == GPUP_REC_VRAM) {
			CHECK(ps->npages);
			CHECK(ev->vram_offset == ps->first_page *
			      ps->info.page_size + ev->offset - GPUP_VRAM_RUN_SIZE);
			CHECK(ev->vram_offset + ev->data_len <= ps->info.vram_size);
		}
		ps->next_off += ev->data_len;
		ps->data_digest = gpup_vfio_crc(ps->data_digest, ev->data,
						ev->data_len);
		break;
	case GPUP_EV_RECORD_END:
		CHECK(ps->in_rec && ev->type == ps->type && ev->len == ps->len);
		CHECK(!known(ev->type) || ps->next_off == ps->len);
		ps->in_rec = false;
		break;
	case GPUP_EV_END:
		CHECK(ps->hdr_seen && !ps->in_rec);
		CHECK(ev->stream_bytes + GPUP_END_REC_SIZE == end);
		ps->end_seen = true;
		if (ps->rebuild) {
			CHECK(!gpup_vfio_end_build(&ps->w, &rh, &e));
			CHECK(!memcmp(&rh, stream + end - GPUP_END_REC_SIZE,
				      sizeof(rh)));
			CHECK(!memcmp(&e, stream + end - sizeof(e), sizeof(e)));
			CHECK(ps->w.stream_bytes == end);
		}
		break;
	default:
		CHECK(!"unknown event kind");
	}
}

/* Walk @s as a stream and make its CRCs (and END fields) match. */
static void fix_crcs(u8 *s, size_t len, bool fix_end)
{
	struct gpup_stream_hdr *h = (struct gpup_stream_hdr *)s;
	struct gpup_rec_hdr *rh;
	struct gpup_end *end;
	size_t off = GPUP_STREAM_HDR_SIZE, plen;
	u32 chain = GPUP_CRC_INIT, nrec = 0;

	if (len < GPUP_STREAM_HDR_SIZE)
		return;
	h->hdr_crc = cpu_to_le32(gpup_vfio_crc32c(h, 44));
	while (len - off >= GPUP_REC_HDR_SIZE) {
		rh = (struct gpup_rec_hdr *)(s + off);
		plen = le32_to_cpu(rh->len);
		if (plen > len - off - GPUP_REC_HDR_SIZE)
			plen = len - off - GPUP_REC_HDR_SIZE;
		if (le16_to_cpu(rh->type) == GPUP_REC_END &&
		    plen == GPUP_END_SIZE && fix_end) {
			end = (struct gpup_end *)(rh + 1);
			end->nrecords = cpu_to_le32(nrec);
			end->stream_bytes = cpu_to_le64(off);
			end->chain = cpu_to_le32(gpup_vfio_crc_final(chain));
		}
		rh->crc = cpu_to_le32(gpup_vfio_crc32c(rh + 1, plen));
		rh->hcrc = cpu_to_le32(gpup_vfio_crc32c(rh, 12));
		chain = gpup_vfio_crc(chain, rh, GPUP_REC_CHAIN_LEN);
		nrec++;
		off += GPUP_REC_HDR_SIZE + plen;
	}
}

static bool is_stream_error(long err)
{
	return err == -EPROTO || err == -EBADMSG || err == -EPROTONOSUPPORT ||
	       err == -EMSGSIZE || err == -EINVAL;
}

/*
 * As a reader that checks VRAM pages itself: defer at VRAM_RUN, sum the
 * pages, compare at RECORD_END.  Returns -EBADMSG on a mismatch, which
 * ends the pass before the event counts, as the parser's own check would
 * have ended it at the record's last byte.
 */
static long defer_event(struct pass *ps, struct gpup_parser *p,
			const struct gpup_event *ev)
{
	struct gpup_event ev2;

	if (!ps->defer || ev->kind == GPUP_EV_NONE)
		return 0;
	if (ev->kind == GPUP_EV_VRAM_RUN && ev->type == GPUP_REC_VRAM) {
		CHECK(!gpup_vfio_parser_defer_crc(p));
		ps->dcrc = ev->crc_state;
		ps->dwant = ev->crc;
		return 0;
	}
	/* Anywhere else there is nothing to defer, nor to feed as NULL. */
	CHECK(gpup_vfio_parser_defer_crc(p) == -EINVAL);
	if (!gpup_vfio_parser_defer_left(p))
		CHECK(gpup_vfio_parser_feed(p, NULL, 1, &ev2) == -EINVAL &&
		      ev2.kind == GPUP_EV_NONE);
	if (ev->type != GPUP_REC_VRAM)
		return 0;
	if (ev->kind == GPUP_EV_DATA)
		ps->dcrc = gpup_vfio_crc(ps->dcrc, ev->data, ev->data_len);
	if (ev->kind == GPUP_EV_RECORD_END &&
	    gpup_vfio_crc_final(ps->dcrc) != ps->dwant)
		return -EBADMSG;
	return 0;
}

static void run(struct pass *ps, const struct gpup_stream_limits *lim,
		const u8 *s, size_t len, const u8 *chunks, unsigned int nchunks,
		bool zero_feeds)
{
	struct gpup_parser p;
	struct gpup_event ev;
	size_t off = 0, n, done, want;
	unsigned int ci = 0;
	u32 left;
	long r;

	ps->ev_digest = GPUP_CRC_INIT;
	ps->data_digest = GPUP_CRC_INIT;
	gpup_vfio_writer_init(&ps->w);
	gpup_vfio_parser_init(&p, lim);

	while (off < len) {
		n = nchunks ? chunks[ci++ % nchunks] : 0;
		if (!n || n > len - off)
			n = len - off;
		if (zero_feeds) {
			r = gpup_vfio_parser_feed(&p, s + off, 0, &ev);
			CHECK(r == 0);
			if (defer_event(ps, &p, &ev)) {
				ps->err = -EBADMSG;
				ps->fin = -EBADMSG;
				return;
			}
			on_event(ps, lim, &ev, s, off, NULL, 0);
		}
		for (done = 0; done < n; done += r) {
			/* Deferred pages go in as NULL, placed by the reader. */
			want = n - done;
			left = ps->defer ? gpup_vfio_parser_defer_left(&p) : 0;
			if (left && want > left)
				want = left;
			r = gpup_vfio_parser_feed(&p, left ? NULL : s + off + done,
						  want, &ev);
			if (r > 0 && left) {
				CHECK(ev.kind == GPUP_EV_DATA && !ev.data &&
				      ev.data_len == r);
				ev.data = s + off + done;
			}
			if (r < 0) {
				CHECK(is_stream_error(r));
				CHECK(ev.kind == GPUP_EV_NONE);
				ps->err = r;
				goto out;
			}
			/* Progress on every call, never past the buffer. */
			CHECK(r >= 1 && (size_t)r <= want);
			CHECK(p.pos == off + done + r);
			if (defer_event(ps, &p, &ev)) {
				ps->err = -EBADMSG;
				ps->fin = -EBADMSG;
				return;
			}
			on_event(ps, lim, &ev, s, off + done + r,
				 s + off + done, r);
		}
		off += n;
	}
	r = gpup_vfio_parser_feed(&p, NULL, 0, &ev);
	CHECK(r == 0);
	if (defer_event(ps, &p, &ev)) {
		ps->err = -EBADMSG;
		ps->fin = -EBADMSG;
		return;
	}
	on_event(ps, lim, &ev, s, off, NULL, 0);
	r = gpup_vfio_parser_feed(&p, NULL, 0, &ev);
	CHECK(r == 0 && ev.kind == GPUP_EV_NONE);
out:
	ps->fin = gpup_vfio_parser_finish(&p);
	ps->pos = p.pos;
	if (ps->err) {
		/* Sticky: whatever comes next gets the same error. */
		CHECK(ps->fin == ps->err);
		CHECK(gpup_vfio_parser_feed(&p, s, len, &ev) == ps->err);
		CHECK(gpup_vfio_parser_feed(&p, NULL, 0, &ev) == ps->err);
		CHECK(gpup_vfio_parser_finish(&p) == ps->err);
	} else if (ps->end_seen) {
		CHECK(ps->fin == 0 && ps->pos == len);
		CHECK(gpup_vfio_parser_feed(&p, "", 1, &ev) == -EPROTO);
	} else {
		CHECK(ps->fin == -ENODATA && ps->pos == len);
	}
}

int GPUP_FUZZ_ENTRY(const u8 *data, size_t size);

int GPUP_FUZZ_ENTRY(const u8 *data, size_t size)
{
	static struct pass a, b;
	const struct gpup_stream_limits *lim;
	const u8 *s;
	u8 *copy = NULL;
	unsigned int k;
	size_t len;
	u8 ctl;

	if (!size)
		return 0;
	ctl = data[0];
	k = (ctl & 7) + 1;
	if (size < 1 + k)
		return 0;
	lim = ctl & 0x10 ? &strict_lim : &loose_lim;
	s = data + 1 + k;
	len = size - 1 - k;
	if (ctl & 0x20) {
		/* A copy of exactly @len bytes, so ASan sees any overrun. */
		copy = malloc(len ? len : 1);
		if (!copy)
			return 0;
		memcpy(copy, s, len);
		fix_crcs(copy, len, ctl & 0x40);
		s = copy;
	}

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.defer = ctl & 0x80;
	b.rebuild = true;
	run(&a, lim, s, len, data + 1, k, ctl & 8);
	run(&b, lim, s, len, NULL, 0, false);
	free(copy);

	/* However the stream was split, the outcome is the same. */
	CHECK(a.err == b.err);
	CHECK(a.fin == b.fin);
	CHECK(a.ev_digest == b.ev_digest);
	if (!a.err)
		CHECK(a.data_digest == b.data_digest && a.pos == b.pos);
	return 0;
}
