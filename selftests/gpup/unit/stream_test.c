// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests of the gpup migration stream codec
 * (drivers/vfio/pci/gpup/stream.c), built in userspace.  Prints TAP 13 and
 * exits non-zero if a test failed.
 *
 *   stream_test                run the tests
 *   stream_test --corpus DIR   write the stream_fuzz seed corpus into DIR
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stream.h"

#define PAGE		4096U
#define NPAGES		16U
#define VRAM_SIZE	((u64)NPAGES * PAGE)
#define SCRATCH		4096U
#define OPT_TYPE	0x7f

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Reporting */

static int cur_failed;

static void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static const char *err_name(long err)
{
	switch (err) {
	case 0:
		return "0";
	case -EPROTO:
		return "-EPROTO";
	case -EBADMSG:
		return "-EBADMSG";
	case -EPROTONOSUPPORT:
		return "-EPROTONOSUPPORT";
	case -EMSGSIZE:
		return "-EMSGSIZE";
	case -ENODATA:
		return "-ENODATA";
	case -EINVAL:
		return "-EINVAL";
	case -EILSEQ:
		return "-EILSEQ (the reader's own CRC check)";
	default:
		return "other";
	}
}

static bool expect(bool cond, const char *what, int line)
{
	if (!cond) {
		diag("line %d: expected %s", line, what);
		cur_failed = 1;
	}
	return cond;
}

#define EXPECT(cond)	expect(!!(cond), #cond, __LINE__)

static bool expect_err(long got, long want, int line)
{
	if (got != want) {
		diag("line %d: got %s (%ld), want %s", line, err_name(got), got,
		     err_name(want));
		cur_failed = 1;
	}
	return got == want;
}

#define EXPECT_ERR(got, want)	expect_err((got), (want), __LINE__)

/* ------------------------------------------------------------------ */
/* Stream building: a growable buffer and a raw builder that does not use
 * gpup_writer, so that the writer is checked against it.
 */

struct buf {
	u8 *p;
	size_t len;
	size_t cap;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void pattern(u8 *p, size_t n, unsigned int seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (u8)(seed * 131 + i * 7 + (i >> 8));
}

struct raw {
	struct buf b;
	u32 chain;
	u32 nrec;
};

static void raw_init(struct raw *r)
{
	memset(r, 0, sizeof(*r));
	r->chain = GPUP_CRC_INIT;
}

static void hdr_fix_crc(struct gpup_stream_hdr *h)
{
	h->hdr_crc = cpu_to_le32(gpup_vfio_crc32c(h, 44));
}

static void hdr_make(struct gpup_stream_hdr *h, u32 page_size, u64 vram_size)
{
	memset(h, 0, sizeof(*h));
	h->magic = cpu_to_le32(0x50555047);
	h->major = cpu_to_le16(1);
	h->minor = cpu_to_le16(1);
	h->hdr_len = cpu_to_le32(48);
	h->provider_id = cpu_to_le32(0x10de0001);
	h->profile_id = cpu_to_le32(7);
	h->page_size = cpu_to_le32(page_size);
	h->vram_size = cpu_to_le64(vram_size);
	hdr_fix_crc(h);
}

static void raw_hdr(struct raw *r, const struct gpup_stream_hdr *h)
{
	buf_put(&r->b, h, sizeof(*h));
}

static void raw_std_hdr(struct raw *r)
{
	struct gpup_stream_hdr h;

	hdr_make(&h, PAGE, VRAM_SIZE);
	raw_hdr(r, &h);
}

/* A record header; chained unless it is of type END. */
static void raw_rec_hdr(struct raw *r, u16 type, u16 flags, u32 len, u32 crc)
{
	struct gpup_rec_hdr rh;

	rh.type = cpu_to_le16(type);
	rh.flags = cpu_to_le16(flags);
	rh.len = cpu_to_le32(len);
	rh.crc = cpu_to_le32(crc);
	rh.hcrc = cpu_to_le32(gpup_vfio_crc32c(&rh, 12));
	buf_put(&r->b, &rh, sizeof(rh));
	if (type != GPUP_REC_END) {
		r->chain = gpup_vfio_crc(r->chain, &rh, 12);
		r->nrec++;
	}
}

static void raw_rec(struct raw *r, u16 type, u16 flags, const void *pl,
		    u32 len)
{
	raw_rec_hdr(r, type, flags, len, gpup_vfio_crc32c(pl, len));
	buf_put(&r->b, pl, len);
}

/* A blob record of @len pattern bytes. */
static void raw_blob(struct raw *r, u16 type, u16 flags, u32 len)
{
	u8 *pl = malloc(len + 1);

	if (!pl)
		abort();
	pattern(pl, len, type * 3 + len);
	raw_rec(r, type, flags, pl, len);
	free(pl);
}

/* A VRAM record with explicit run fields and @data_pages pages of data. */
static void raw_vram_ex(struct raw *r, u64 first, u32 npages, u32 reserved,
			u32 data_pages)
{
	struct gpup_vram_run run;
	size_t n = sizeof(run) + (size_t)data_pages * PAGE;
	u8 *pl = malloc(n);

	if (!pl)
		abort();
	run.first_page = cpu_to_le64(first);
	run.npages = cpu_to_le32(npages);
	run.reserved = cpu_to_le32(reserved);
	memcpy(pl, &run, sizeof(run));
	pattern(pl + sizeof(run), n - sizeof(run), (unsigned int)first + 1000);
	raw_rec(r, GPUP_REC_VRAM, 0, pl, n);
	free(pl);
}

static void raw_vram(struct raw *r, u64 first, u32 npages)
{
	raw_vram_ex(r, first, npages, 0, npages);
}

/* A ZERO record with explicit run fields and payload length. */
static void raw_zero_ex(struct raw *r, u64 first, u32 npages, u32 reserved,
			u32 len)
{
	u8 pl[GPUP_VRAM_RUN_SIZE + 8] = { 0 };
	struct gpup_vram_run run;

	run.first_page = cpu_to_le64(first);
	run.npages = cpu_to_le32(npages);
	run.reserved = cpu_to_le32(reserved);
	memcpy(pl, &run, sizeof(run));
	raw_rec(r, GPUP_REC_ZERO, 0, pl, len);
}

static void raw_zero(struct raw *r, u64 first, u32 npages)
{
	raw_zero_ex(r, first, npages, 0, GPUP_VRAM_RUN_SIZE);
}

static void raw_end_vals(struct raw *r, u32 nrec, u64 bytes, u32 chain,
			 u32 reserved)
{
	struct gpup_end end;

	end.nrecords = cpu_to_le32(nrec);
	end.reserved = cpu_to_le32(reserved);
	end.stream_bytes = cpu_to_le64(bytes);
	end.chain = cpu_to_le32(chain);
	end.reserved2 = 0;
	raw_rec_hdr(r, GPUP_REC_END, 0, sizeof(end),
		    gpup_vfio_crc32c(&end, sizeof(end)));
	buf_put(&r->b, &end, sizeof(end));
}

static void raw_end(struct raw *r)
{
	raw_end_vals(r, r->nrec, r->b.len, gpup_vfio_crc_final(r->chain), 0);
}

/* Flag the END record just written optional, its hcrc still right. */
static void raw_flag_end(struct raw *r)
{
	struct gpup_rec_hdr *rh = (struct gpup_rec_hdr *)
		(r->b.p + r->b.len - GPUP_END_REC_SIZE);

	rh->flags = cpu_to_le16(GPUP_REC_F_OPTIONAL);
	rh->hcrc = cpu_to_le32(gpup_vfio_crc32c(rh, 12));
}

/*
 * Zero runs over pages a VRAM record sent before them (2..5) and over
 * all of VRAM, then page 5 again: all zeros but page 5.
 */
static void build_zero_runs(struct raw *r)
{
	raw_init(r);
	raw_std_hdr(r);
	raw_blob(r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_vram(r, 2, 4);
	raw_zero(r, 3, 2);
	raw_zero(r, 0, NPAGES);
	raw_vram(r, 5, 1);
	raw_blob(r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(r);
}

/*
 * The small stream of the truncation and bit flip tests: IMMUTABLE of 100
 * bytes, an optional unknown record, one VRAM page, MUTABLE of 200 bytes.
 */
static void build_small(struct raw *r)
{
	raw_init(r);
	raw_std_hdr(r);
	raw_blob(r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_blob(r, OPT_TYPE, GPUP_REC_F_OPTIONAL, 8);
	raw_vram(r, 3, 1);
	raw_blob(r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(r);
}

/* The round trip stream, built with gpup_writer as the kernel does. */
static const struct {
	u64 first;
	u32 npages;
} rt_runs[] = { { 0, 2 }, { 9, 3 }, { 0, 1 } };

static u8 rt_imm[100], rt_mut[200], rt_vram[NPAGES * PAGE];

static bool build_rt(struct buf *b)
{
	struct gpup_writer w;
	struct gpup_stream_hdr h;
	struct gpup_rec_hdr rh;
	struct gpup_vram_run run;
	struct gpup_end end;
	static u8 pages[4 * PAGE];
	unsigned int i;
	bool ok = true;
	u32 c, n;

	memset(b, 0, sizeof(*b));
	memset(rt_vram, 0, sizeof(rt_vram));
	pattern(rt_imm, sizeof(rt_imm), 1);
	pattern(rt_mut, sizeof(rt_mut), 2);

	gpup_vfio_writer_init(&w);
	gpup_vfio_stream_hdr_build(&h, 0x10de0001, 7, PAGE, VRAM_SIZE);
	ok &= EXPECT_ERR(gpup_vfio_writer_hdr(&w, &h), 0);
	buf_put(b, &h, sizeof(h));

	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_IMMUTABLE, 0,
					    sizeof(rt_imm),
					    gpup_vfio_crc32c(rt_imm, sizeof(rt_imm))),
			 0);
	buf_put(b, &rh, sizeof(rh));
	buf_put(b, rt_imm, sizeof(rt_imm));

	for (i = 0; i < ARRAY_SIZE(rt_runs); i++) {
		n = rt_runs[i].npages * PAGE;
		pattern(pages, n, 10 + i);
		memcpy(rt_vram + rt_runs[i].first * PAGE, pages, n);
		gpup_vfio_vram_run_build(&run, rt_runs[i].first, rt_runs[i].npages);
		/* The payload CRC in two pieces, as the kernel computes it. */
		c = gpup_vfio_crc(GPUP_CRC_INIT, &run, sizeof(run));
		c = gpup_vfio_crc(c, pages, n);
		ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_VRAM, 0,
						    sizeof(run) + n,
						    gpup_vfio_crc_final(c)), 0);
		ok &= EXPECT(gpup_vfio_vram_rec_size(rt_runs[i].npages, PAGE) ==
			     sizeof(rh) + sizeof(run) + n);
		buf_put(b, &rh, sizeof(rh));
		buf_put(b, &run, sizeof(run));
		buf_put(b, pages, n);
	}

	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_MUTABLE, 0,
					    sizeof(rt_mut),
					    gpup_vfio_crc32c(rt_mut, sizeof(rt_mut))),
			 0);
	buf_put(b, &rh, sizeof(rh));
	buf_put(b, rt_mut, sizeof(rt_mut));

	ok &= EXPECT_ERR(gpup_vfio_end_build(&w, &rh, &end), 0);
	buf_put(b, &rh, sizeof(rh));
	buf_put(b, &end, sizeof(end));
	ok &= EXPECT(w.stream_bytes == b->len);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Parsing with invariant checks */

static const struct gpup_stream_limits def_lim = {
	.max_immutable = 4096,
	.max_mutable = 4096,
	.max_vram_run = 4 * PAGE,
	.max_optional = 256,
};

struct res {
	long err;		/* first error of feed(), or 0 */
	int fin;		/* gpup_vfio_parser_finish() at the end */
	bool bad;		/* an API invariant broke */
	u64 pos;		/* parser position at the end */
	unsigned int ev[GPUP_EV_END + 1];	/* events by kind */
	unsigned int opt_records;		/* unknown records ended */
	unsigned int zero_records;		/* ZERO records ended */
	struct gpup_stream_info hdr;
	bool in_rec;
	u16 type;
	u32 len;
	u32 next_off;
	u64 first_page;
	u32 npages;
	u32 imm_len, mut_len;
	u8 imm[SCRATCH], mut[SCRATCH];
	u8 vram[NPAGES * PAGE];
};

static void res_bad(struct res *res, const char *what)
{
	if (!res->bad)
		diag("API invariant broken: %s", what);
	res->bad = true;
}

/* Check one event against the ones before it and collect payloads. */
static void res_event(struct res *res, const struct gpup_event *ev,
		      const u8 *in, long consumed)
{
	const u8 *d = ev->data;

	if (ev->kind > GPUP_EV_END) {
		res_bad(res, "event kind");
		return;
	}
	res->ev[ev->kind]++;
	switch (ev->kind) {
	case GPUP_EV_NONE:
		break;
	case GPUP_EV_HEADER:
		if (res->ev[GPUP_EV_HEADER] != 1 || res->ev[GPUP_EV_RECORD])
			res_bad(res, "HEADER not first");
		res->hdr = ev->hdr;
		break;
	case GPUP_EV_RECORD:
		if (res->in_rec || !res->ev[GPUP_EV_HEADER])
			res_bad(res, "RECORD inside a record");
		res->in_rec = true;
		res->type = ev->type;
		res->len = ev->len;
		res->next_off = 0;
		res->npages = 0;
		if (ev->type == GPUP_REC_IMMUTABLE)
			res->imm_len = ev->len;
		if (ev->type == GPUP_REC_MUTABLE)
			res->mut_len = ev->len;
		break;
	case GPUP_EV_VRAM_RUN:
		if (!res->in_rec || res->npages ||
		    (res->type != GPUP_REC_VRAM && res->type != GPUP_REC_ZERO))
			res_bad(res, "VRAM_RUN out of place");
		if (ev->first_page + ev->npages > res->hdr.vram_size / PAGE)
			res_bad(res, "VRAM_RUN out of range");
		res->first_page = ev->first_page;
		res->npages = ev->npages;
		res->next_off = GPUP_VRAM_RUN_SIZE;
		break;
	case GPUP_EV_DATA:
		if (!res->in_rec || ev->type != res->type)
			res_bad(res, "DATA outside a record");
		if (d != in || ev->data_len != consumed)
			res_bad(res, "DATA not the consumed bytes");
		if (ev->offset != res->next_off ||
		    (u64)ev->offset + ev->data_len > res->len)
			res_bad(res, "DATA offset");
		if (res->bad)
			break;
		res->next_off += ev->data_len;
		if (ev->type == GPUP_REC_IMMUTABLE &&
		    ev->offset + ev->data_len <= SCRATCH) {
			memcpy(res->imm + ev->offset, d, ev->data_len);
		} else if (ev->type == GPUP_REC_MUTABLE &&
			   ev->offset + ev->data_len <= SCRATCH) {
			memcpy(res->mut + ev->offset, d, ev->data_len);
		} else if (ev->type == GPUP_REC_VRAM) {
			if (!res->npages || ev->vram_offset !=
			    res->first_page * PAGE + ev->offset - GPUP_VRAM_RUN_SIZE)
				res_bad(res, "vram_offset");
			else if (ev->vram_offset + ev->data_len <= sizeof(res->vram))
				memcpy(res->vram + ev->vram_offset, d, ev->data_len);
		} else if (ev->type != GPUP_REC_IMMUTABLE &&
			   ev->type != GPUP_REC_MUTABLE) {
			res_bad(res, "DATA of an unknown record");
		}
		break;
	case GPUP_EV_RECORD_END:
		if (!res->in_rec || ev->type != res->type)
			res_bad(res, "RECORD_END outside a record");
		res->in_rec = false;
		if (ev->type == GPUP_REC_ZERO) {
			/* Its pages hold zeros; no DATA came. */
			if (res->next_off != GPUP_VRAM_RUN_SIZE ||
			    ev->first_page != res->first_page ||
			    ev->npages != res->npages)
				res_bad(res, "ZERO's RECORD_END");
			else if ((res->first_page + res->npages) * PAGE <=
				 sizeof(res->vram))
				memset(res->vram + res->first_page * PAGE, 0,
				       (size_t)res->npages * PAGE);
			res->zero_records++;
		} else if (ev->type >= GPUP_REC_IMMUTABLE &&
			   ev->type <= GPUP_REC_MUTABLE) {
			if (res->next_off != res->len)
				res_bad(res, "RECORD_END before all DATA");
		} else {
			res->opt_records++;
		}
		break;
	case GPUP_EV_END:
		if (res->in_rec)
			res_bad(res, "END inside a record");
		break;
	}
}

/*
 * Feed @s to a new parser in pieces of @chunk bytes (0: all at once),
 * each piece until it is consumed.  If @p is not NULL the parser is left
 * there for more feeding.
 */
static struct res *parse_ex(const u8 *s, size_t len,
			    const struct gpup_stream_limits *lim, size_t chunk,
			    struct gpup_parser *p)
{
	struct res *res = calloc(1, sizeof(*res));
	struct gpup_parser local;
	struct gpup_event ev;
	size_t off = 0, n, done;
	long r;

	if (!res)
		abort();
	if (!p)
		p = &local;
	gpup_vfio_parser_init(p, lim);
	while (off < len) {
		n = chunk ? chunk : len - off;
		if (n > len - off)
			n = len - off;
		for (done = 0; done < n; done += r) {
			r = gpup_vfio_parser_feed(p, s + off + done, n - done, &ev);
			if (r < 0) {
				res->err = r;
				if (ev.kind != GPUP_EV_NONE)
					res_bad(res, "event with an error");
				goto out;
			}
			if (r == 0 || (size_t)r > n - done) {
				res_bad(res, "consumed 0 or too much");
				goto out;
			}
			res_event(res, &ev, s + off + done, r);
		}
		off += n;
	}
	/* A feed of 0 bytes delivers a pending RECORD_END, consuming none. */
	r = gpup_vfio_parser_feed(p, NULL, 0, &ev);
	if (r)
		res_bad(res, "feed of 0 bytes consumed or failed");
	else
		res_event(res, &ev, NULL, 0);
out:
	res->fin = gpup_vfio_parser_finish(p);
	res->pos = p->pos;
	return res;
}

static struct res *parse(const struct buf *b,
			 const struct gpup_stream_limits *lim)
{
	return parse_ex(b->p, b->len, lim, 0, NULL);
}

/* A stream that must be refused with @want, from feed() or finish(). */
static bool expect_refused(const struct buf *b,
			   const struct gpup_stream_limits *lim, long want,
			   int line)
{
	struct res *res = parse(b, lim);
	bool ok = expect_err(res->err ? res->err : res->fin, want, line);

	ok &= expect(!res->bad, "API invariants", line);
	free(res);
	return ok;
}

#define EXPECT_REFUSED(b, want)	expect_refused((b), &def_lim, (want), __LINE__)

static bool expect_valid(const struct buf *b,
			 const struct gpup_stream_limits *lim, int line)
{
	struct res *res = parse(b, lim);
	bool ok = expect_err(res->err, 0, line);

	ok &= expect_err(res->fin, 0, line);
	ok &= expect(!res->bad, "API invariants", line);
	ok &= expect(res->ev[GPUP_EV_END] == 1, "one END event", line);
	free(res);
	return ok;
}

#define EXPECT_VALID(b)	expect_valid((b), &def_lim, __LINE__)

/* Check a parse of the round trip stream: all payloads as written. */
static bool check_rt(struct res *res, const struct buf *b)
{
	bool ok = true;

	ok &= EXPECT_ERR(res->err, 0);
	ok &= EXPECT_ERR(res->fin, 0);
	ok &= EXPECT(!res->bad);
	ok &= EXPECT(res->pos == b->len);
	ok &= EXPECT(res->ev[GPUP_EV_HEADER] == 1);
	ok &= EXPECT(res->ev[GPUP_EV_RECORD] == 5);
	ok &= EXPECT(res->ev[GPUP_EV_VRAM_RUN] == 3);
	ok &= EXPECT(res->ev[GPUP_EV_RECORD_END] == 5);
	ok &= EXPECT(res->ev[GPUP_EV_END] == 1);
	ok &= EXPECT(res->hdr.major == 1 && res->hdr.minor == 1);
	ok &= EXPECT(res->hdr.provider_id == 0x10de0001);
	ok &= EXPECT(res->hdr.profile_id == 7);
	ok &= EXPECT(res->hdr.page_size == PAGE);
	ok &= EXPECT(res->hdr.vram_size == VRAM_SIZE);
	ok &= EXPECT(res->imm_len == sizeof(rt_imm) &&
		     !memcmp(res->imm, rt_imm, sizeof(rt_imm)));
	ok &= EXPECT(res->mut_len == sizeof(rt_mut) &&
		     !memcmp(res->mut, rt_mut, sizeof(rt_mut)));
	ok &= EXPECT(!memcmp(res->vram, rt_vram, sizeof(rt_vram)));
	return ok;
}

/* ------------------------------------------------------------------ */
/* The tests */

static bool test_crc(void)
{
	static const char check[] = "123456789";
	bool ok = true;
	u32 c;

	ok &= EXPECT(gpup_vfio_crc32c(check, 9) == 0xe3069283);
	ok &= EXPECT(gpup_vfio_crc32c(NULL, 0) == 0);
	c = gpup_vfio_crc(GPUP_CRC_INIT, check, 4);
	c = gpup_vfio_crc(c, check + 4, 5);
	ok &= EXPECT(gpup_vfio_crc_final(c) == 0xe3069283);
	return ok;
}

static bool test_wire_layout(void)
{
	struct gpup_stream_hdr h;
	bool ok = true;

	gpup_vfio_stream_hdr_build(&h, 1, 2, PAGE, VRAM_SIZE);
	ok &= EXPECT(!memcmp(&h, "GPUP\1\0\1\0\x30\0\0\0", 12));
	ok &= EXPECT(sizeof(struct gpup_stream_hdr) == 48);
	ok &= EXPECT(sizeof(struct gpup_rec_hdr) == 16);
	ok &= EXPECT(sizeof(struct gpup_vram_run) == 16);
	ok &= EXPECT(sizeof(struct gpup_end) == 24);
	ok &= EXPECT(!strcmp(gpup_vfio_rec_type_name(GPUP_REC_VRAM), "VRAM"));
	ok &= EXPECT(!strcmp(gpup_vfio_rec_type_name(99), "UNKNOWN"));
	return ok;
}

static bool test_writer_matches_raw(void)
{
	struct buf b;
	struct raw r;
	unsigned int i;
	bool ok = build_rt(&b);

	raw_init(&r);
	raw_std_hdr(&r);
	raw_rec(&r, GPUP_REC_IMMUTABLE, 0, rt_imm, sizeof(rt_imm));
	for (i = 0; i < ARRAY_SIZE(rt_runs); i++) {
		struct gpup_vram_run run;
		u32 n = rt_runs[i].npages * PAGE;
		u8 *pl = malloc(sizeof(run) + n);

		if (!pl)
			abort();
		gpup_vfio_vram_run_build(&run, rt_runs[i].first, rt_runs[i].npages);
		memcpy(pl, &run, sizeof(run));
		pattern(pl + sizeof(run), n, 10 + i);
		raw_rec(&r, GPUP_REC_VRAM, 0, pl, sizeof(run) + n);
		free(pl);
	}
	raw_rec(&r, GPUP_REC_MUTABLE, 0, rt_mut, sizeof(rt_mut));
	raw_end(&r);
	ok &= EXPECT(b.len == r.b.len && !memcmp(b.p, r.b.p, b.len));
	buf_free(&b);
	buf_free(&r.b);
	return ok;
}

static bool test_rt_one_buffer(void)
{
	struct buf b;
	struct res *res;
	bool ok = build_rt(&b);

	res = parse(&b, &def_lim);
	ok &= check_rt(res, &b);
	free(res);
	buf_free(&b);
	return ok;
}

static bool test_rt_bytewise(void)
{
	struct buf b;
	struct res *res;
	bool ok = build_rt(&b);

	res = parse_ex(b.p, b.len, &def_lim, 1, NULL);
	ok &= check_rt(res, &b);
	free(res);
	buf_free(&b);
	return ok;
}

static bool test_rt_chunks(void)
{
	struct buf b;
	struct res *res;
	bool ok = build_rt(&b);
	size_t chunk;

	for (chunk = 1; chunk <= 64 && ok; chunk++) {
		res = parse_ex(b.p, b.len, &def_lim, chunk, NULL);
		ok &= check_rt(res, &b);
		if (!ok)
			diag("chunk size %zu", chunk);
		free(res);
	}
	buf_free(&b);
	return ok;
}

static bool test_limits_exact(void)
{
	struct gpup_stream_limits lim = def_lim;
	struct buf b;
	struct res *res;
	bool ok = build_rt(&b);

	/* Limits equal to the sizes in the stream are accepted. */
	lim.page_size = PAGE;
	lim.vram_size = VRAM_SIZE;
	lim.max_immutable = sizeof(rt_imm);
	lim.max_mutable = sizeof(rt_mut);
	lim.max_vram_run = 3 * PAGE;
	res = parse(&b, &lim);
	ok &= check_rt(res, &b);
	free(res);
	buf_free(&b);
	return ok;
}

static bool test_sizes(void)
{
	struct gpup_writer w;
	struct gpup_stream_hdr h;
	struct gpup_rec_hdr rh;
	struct gpup_end end;
	const u32 run_bytes = 3 * PAGE;
	u64 page, left = NPAGES;
	bool ok = true;
	u32 n;

	ok &= EXPECT(gpup_vfio_vram_runs_size(16, PAGE, run_bytes) ==
		     6 * 32 + 16 * PAGE);
	ok &= EXPECT(gpup_vfio_vram_runs_size(15, PAGE, run_bytes) ==
		     5 * 32 + 15 * PAGE);
	ok &= EXPECT(gpup_vfio_vram_runs_size(3, PAGE, 100) == 3 * 32 + 3 * PAGE);
	ok &= EXPECT(gpup_vfio_vram_runs_size(0, PAGE, run_bytes) == 0);
	ok &= EXPECT(gpup_vfio_vram_runs_size(5, 0, run_bytes) == 0);
	ok &= EXPECT(gpup_vfio_stream_full_size(1, VRAM_SIZE, 0, run_bytes, 1) == 0);

	/* Account a whole stream in the writer as the save side would. */
	gpup_vfio_writer_init(&w);
	gpup_vfio_stream_hdr_build(&h, 1, 2, PAGE, VRAM_SIZE);
	ok &= EXPECT_ERR(gpup_vfio_writer_hdr(&w, &h), 0);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_IMMUTABLE, 0,
					    100, 0), 0);
	for (page = 0; left; page += n, left -= n) {
		n = left < 3 ? left : 3;
		ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_VRAM, 0,
						    16 + n * PAGE, 0), 0);
	}
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_MUTABLE, 0,
					    200, 0), 0);
	ok &= EXPECT_ERR(gpup_vfio_end_build(&w, &rh, &end), 0);
	ok &= EXPECT(w.stream_bytes ==
		     gpup_vfio_stream_full_size(100, VRAM_SIZE, PAGE, run_bytes,
						200));
	ok &= EXPECT(GPUP_END_REC_SIZE == 40);
	return ok;
}

static bool test_truncation(void)
{
	struct raw r;
	struct res *res;
	bool ok = true;
	size_t t;

	build_small(&r);
	for (t = 0; t < r.b.len && ok; t++) {
		res = parse_ex(r.b.p, t, &def_lim, 0, NULL);
		ok &= EXPECT_ERR(res->err, 0);
		ok &= EXPECT_ERR(res->fin, -ENODATA);
		ok &= EXPECT(!res->bad);
		if (!ok)
			diag("truncated at %zu of %zu", t, r.b.len);
		free(res);
	}
	ok &= EXPECT_VALID(&r.b);
	buf_free(&r.b);
	return ok;
}

static bool test_bit_flips(void)
{
	struct raw r;
	struct res *res;
	bool ok = true;
	size_t bit;

	build_small(&r);
	for (bit = 0; bit < r.b.len * 8 && ok; bit++) {
		r.b.p[bit / 8] ^= 1 << (bit % 8);
		res = parse(&r.b, &def_lim);
		ok &= EXPECT(res->err || res->fin);
		ok &= EXPECT(!res->bad);
		if (!ok)
			diag("flip of bit %zu accepted", bit);
		free(res);
		r.b.p[bit / 8] ^= 1 << (bit % 8);
	}
	ok &= EXPECT_VALID(&r.b);
	buf_free(&r.b);
	return ok;
}

/* A valid stream after the header @h. */
static void build_after_hdr(struct raw *r, const struct gpup_stream_hdr *h)
{
	raw_init(r);
	raw_hdr(r, h);
	raw_blob(r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_vram(r, 1, 2);
	raw_blob(r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(r);
}

static bool test_hdr_magic(void)
{
	struct gpup_stream_hdr h;
	struct raw r;
	bool ok;

	hdr_make(&h, PAGE, VRAM_SIZE);
	h.magic = cpu_to_le32(0x50555048);
	hdr_fix_crc(&h);
	build_after_hdr(&r, &h);
	ok = EXPECT_REFUSED(&r.b, -EPROTO);
	/* Caught as soon as the four magic bytes are in. */
	r.b.len = 4;
	ok &= EXPECT_REFUSED(&r.b, -EPROTO);
	buf_free(&r.b);
	return ok;
}

static bool test_hdr_major(void)
{
	struct gpup_stream_hdr h;
	struct raw r;
	bool ok;

	hdr_make(&h, PAGE, VRAM_SIZE);
	h.major = cpu_to_le16(2);
	hdr_fix_crc(&h);
	build_after_hdr(&r, &h);
	ok = EXPECT_REFUSED(&r.b, -EPROTONOSUPPORT);
	/* A newer major may have another header: decided after 6 bytes. */
	r.b.len = 6;
	ok &= EXPECT_REFUSED(&r.b, -EPROTONOSUPPORT);
	h.major = cpu_to_le16(0);
	hdr_fix_crc(&h);
	buf_free(&r.b);
	build_after_hdr(&r, &h);
	ok &= EXPECT_REFUSED(&r.b, -EPROTONOSUPPORT);
	buf_free(&r.b);
	return ok;
}

static bool test_hdr_minor(void)
{
	/* A later minor; minor 0, before the ZERO record, loads as it did. */
	static const u16 minors[] = { 5, 0 };
	struct gpup_stream_hdr h;
	struct raw r;
	struct res *res;
	unsigned int i;
	bool ok = true;

	for (i = 0; i < ARRAY_SIZE(minors); i++) {
		hdr_make(&h, PAGE, VRAM_SIZE);
		h.minor = cpu_to_le16(minors[i]);
		hdr_fix_crc(&h);
		build_after_hdr(&r, &h);
		res = parse(&r.b, &def_lim);
		ok &= EXPECT_ERR(res->err, 0);
		ok &= EXPECT_ERR(res->fin, 0);
		ok &= EXPECT(res->hdr.major == 1 &&
			     res->hdr.minor == minors[i]);
		free(res);
		buf_free(&r.b);
	}
	return ok;
}

static bool test_hdr_crc(void)
{
	struct gpup_stream_hdr h;
	struct raw r;
	bool ok;

	hdr_make(&h, PAGE, VRAM_SIZE);
	h.hdr_crc ^= cpu_to_le32(0x100);
	build_after_hdr(&r, &h);
	ok = EXPECT_REFUSED(&r.b, -EBADMSG);
	buf_free(&r.b);
	/* A field changed after the CRC was computed. */
	hdr_make(&h, PAGE, VRAM_SIZE);
	h.profile_id = cpu_to_le32(8);
	build_after_hdr(&r, &h);
	ok &= EXPECT_REFUSED(&r.b, -EBADMSG);
	buf_free(&r.b);
	return ok;
}

static bool test_hdr_fields(void)
{
	struct gpup_stream_hdr h;
	struct raw r;
	bool ok = true;
	int i;

	for (i = 0; i < 4; i++) {
		hdr_make(&h, PAGE, VRAM_SIZE);
		if (i == 0)
			h.hdr_len = cpu_to_le32(64);
		else if (i == 1)
			h.flags = cpu_to_le32(1);
		else if (i == 2)
			h.reserved = cpu_to_le32(0x80000000);
		else
			h.reserved2 = cpu_to_le32(2);
		hdr_fix_crc(&h);
		build_after_hdr(&r, &h);
		ok &= EXPECT_REFUSED(&r.b, -EPROTO);
		buf_free(&r.b);
	}
	return ok;
}

static bool test_hdr_page_size(void)
{
	static const u32 bad[] = { 0, 2048, 4097, 12288, 4 << 20, 0x80000000 };
	struct gpup_stream_hdr h;
	struct raw r;
	bool ok = true;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		hdr_make(&h, bad[i], VRAM_SIZE);
		build_after_hdr(&r, &h);
		ok &= EXPECT_REFUSED(&r.b, -EPROTO);
		buf_free(&r.b);
	}
	/* vram_size not a multiple of page_size */
	hdr_make(&h, PAGE, VRAM_SIZE + 512);
	build_after_hdr(&r, &h);
	ok &= EXPECT_REFUSED(&r.b, -EPROTO);
	buf_free(&r.b);
	/* The largest page size is fine. */
	hdr_make(&h, 2 << 20, 4 << 20);
	raw_init(&r);
	raw_hdr(&r, &h);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 1);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 1);
	raw_end(&r);
	ok &= EXPECT_VALID(&r.b);
	buf_free(&r.b);
	return ok;
}

static bool test_limits_mismatch(void)
{
	struct gpup_stream_limits lim = def_lim;
	struct raw r;
	bool ok = true;

	build_small(&r);
	lim.page_size = 2 * PAGE;
	ok &= expect_refused(&r.b, &lim, -EINVAL, __LINE__);
	lim.page_size = PAGE;
	lim.vram_size = VRAM_SIZE * 2;
	ok &= expect_refused(&r.b, &lim, -EINVAL, __LINE__);
	lim.vram_size = VRAM_SIZE;
	ok &= expect_valid(&r.b, &lim, __LINE__);
	buf_free(&r.b);
	return ok;
}

static bool test_rec_hcrc(void)
{
	struct raw r;
	bool ok;

	build_small(&r);
	/* The len field of the IMMUTABLE header, its hcrc left as is. */
	r.b.p[48 + 4] ^= 0x01;
	ok = EXPECT_REFUSED(&r.b, -EBADMSG);
	buf_free(&r.b);
	return ok;
}

static bool test_payload_crc(void)
{
	struct raw r;
	struct res *res;
	bool ok = true;

	build_small(&r);
	r.b.p[48 + 16 + 99] ^= 0x80;	/* last IMMUTABLE byte */
	res = parse_ex(r.b.p, r.b.len, &def_lim, 10, NULL);
	ok &= EXPECT_ERR(res->err, -EBADMSG);
	ok &= EXPECT(!res->ev[GPUP_EV_RECORD_END]);
	ok &= EXPECT(res->pos < 48 + 16 + 100);
	free(res);
	buf_free(&r.b);
	return ok;
}

/*
 * The ZERO record (minor 1): a run of pages that hold zeros, in 16 bytes,
 * wherever a VRAM record may be, over pages a VRAM record sent before or
 * sends after; every malformed one refused.
 */
static bool test_zero_record(void)
{
	static const size_t chunks[] = { 0, 1, 5 };
	struct gpup_writer w;
	struct gpup_stream_hdr h;
	struct gpup_rec_hdr rh;
	struct gpup_vram_run run;
	struct res *res;
	struct raw r, x;
	unsigned int i;
	bool ok = true;
	static u8 want[NPAGES * PAGE];

	build_zero_runs(&r);
	/* All zeros but page 5, sent after the zero run. */
	memset(want, 0, sizeof(want));
	pattern(want + 5 * PAGE, PAGE, 5 + 1000);
	for (i = 0; i < ARRAY_SIZE(chunks); i++) {
		res = parse_ex(r.b.p, r.b.len, &def_lim, chunks[i], NULL);
		ok &= EXPECT_ERR(res->err, 0);
		ok &= EXPECT_ERR(res->fin, 0);
		ok &= EXPECT(!res->bad);
		ok &= EXPECT(res->zero_records == 2);
		ok &= EXPECT(res->ev[GPUP_EV_VRAM_RUN] == 4);
		ok &= EXPECT(!memcmp(res->vram, want, sizeof(want)));
		free(res);
	}

	/* The writer builds what the raw encoder does. */
	gpup_vfio_writer_init(&w);
	gpup_vfio_stream_hdr_build(&h, 0x10de0001, 7, PAGE, VRAM_SIZE);
	ok &= EXPECT_ERR(gpup_vfio_writer_hdr(&w, &h), 0);
	ok &= EXPECT_ERR(gpup_vfio_zero_rec_build(&w, &rh, &run, 3, 2), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_IMMUTABLE, 0,
						 0, gpup_vfio_crc32c(NULL, 0)), 0);
	ok &= EXPECT_ERR(gpup_vfio_zero_rec_build(&w, &rh, &run, 3, 0), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_ZERO, 0, 17,
						 0), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_zero_rec_build(&w, &rh, &run, 3, 2), 0);
	raw_init(&x);
	raw_zero(&x, 3, 2);
	ok &= EXPECT(x.b.len == sizeof(rh) + sizeof(run) &&
		     !memcmp(x.b.p, &rh, sizeof(rh)) &&
		     !memcmp(x.b.p + sizeof(rh), &run, sizeof(run)));
	ok &= EXPECT(w.stream_bytes == 48 + 16 + 32);
	buf_free(&x.b);

	/* A flipped bit of its run: refused, whichever field it is in. */
	for (i = 0; i < GPUP_VRAM_RUN_SIZE * 8; i += 3) {
		raw_init(&x);
		buf_put(&x.b, r.b.p, r.b.len);
		/* The first ZERO record's run: after IMMUTABLE and VRAM. */
		x.b.p[48 + 116 + 16 + 16 + 4 * PAGE + 16 + i / 8] ^= 1 << (i % 8);
		res = parse(&x.b, &def_lim);
		ok &= EXPECT(res->err == -EBADMSG || res->err == -EPROTO);
		ok &= EXPECT(!res->zero_records);
		free(res);
		buf_free(&x.b);
	}
	buf_free(&r.b);

	/* Malformed or out of place. */
	raw_init(&r);
	raw_std_hdr(&r);
	raw_zero(&r, 0, 1);
	res = parse(&r.b, &def_lim);
	ok &= EXPECT_ERR(res->err, -EPROTO);
	free(res);
	buf_free(&r.b);
	{
		static const struct {
			u64 first;
			u32 npages, reserved, len;
			long err;
		} bad[] = {
			{ 0, 0, 0, 16, -EPROTO },		/* no page */
			{ NPAGES, 1, 0, 16, -EPROTO },		/* past VRAM */
			{ 1, NPAGES, 0, 16, -EPROTO },		/* past VRAM */
			{ 1ULL << 40, 1, 0, 16, -EPROTO },
			{ 0, 1, 1, 16, -EPROTO },		/* reserved */
			{ 0, 1, 0, 17, -EMSGSIZE },
			{ 0, 1, 0, 15, -EMSGSIZE },
		};

		for (i = 0; i < ARRAY_SIZE(bad); i++) {
			raw_init(&r);
			raw_std_hdr(&r);
			raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
			raw_zero_ex(&r, bad[i].first, bad[i].npages,
				    bad[i].reserved, bad[i].len);
			raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
			raw_end(&r);
			ok &= EXPECT_REFUSED(&r.b, bad[i].err);
			buf_free(&r.b);
		}
	}
	/* After MUTABLE. */
	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_zero(&r, 0, 1);
	raw_end(&r);
	ok &= EXPECT_REFUSED(&r.b, -EPROTO);
	buf_free(&r.b);
	return ok;
}

/*
 * Parse @b in @chunk-byte pieces, deferring the CRC of every VRAM record
 * and checking it at its RECORD_END, as the bulk restore does.  Returns
 * the parser's error, else -EILSEQ for the first page CRC that does not
 * match (the reader's own -EBADMSG), else 0; *@nrec counts the records
 * checked.
 */
static long parse_deferred(const struct buf *b, size_t chunk,
			   unsigned int *nrec)
{
	struct gpup_parser p;
	struct gpup_event ev;
	size_t off = 0, n;
	u32 state = 0, want = 0, left;
	long r;

	*nrec = 0;
	gpup_vfio_parser_init(&p, &def_lim);
	for (;;) {
		n = b->len - off < chunk ? b->len - off : chunk;
		/* Deferred pages go in as NULL: the reader has them. */
		left = gpup_vfio_parser_defer_left(&p);
		if (left && n > left)
			n = left;
		r = gpup_vfio_parser_feed(&p, left ? NULL : b->p + off, n, &ev);
		if (r < 0)
			return r;
		if (left) {
			if (ev.kind != GPUP_EV_DATA || ev.data)
				return -ENOTTY;
			ev.data = b->p + off;
		}
		off += r;
		if (ev.kind == GPUP_EV_VRAM_RUN && ev.type == GPUP_REC_VRAM) {
			if (gpup_vfio_parser_defer_crc(&p))
				return -ENOTTY;
			state = ev.crc_state;
			want = ev.crc;
		} else if (ev.kind != GPUP_EV_NONE &&
			   gpup_vfio_parser_defer_crc(&p) != -EINVAL) {
			return -ENOTTY;
		}
		if (ev.kind == GPUP_EV_DATA && ev.type == GPUP_REC_VRAM)
			state = gpup_vfio_crc(state, ev.data, ev.data_len);
		if (ev.kind == GPUP_EV_RECORD_END && ev.type == GPUP_REC_VRAM) {
			if (gpup_vfio_crc_final(state) != want)
				return -EILSEQ;
			(*nrec)++;
		}
		if (ev.kind == GPUP_EV_END)
			return gpup_vfio_parser_finish(&p);
		if (!r && ev.kind == GPUP_EV_NONE)
			return -ENODATA;
	}
}

/*
 * A reader that checks VRAM pages itself: the parser lets a flipped page
 * byte through, the reader's check refuses it, and a good stream passes.
 */
static bool test_defer_crc(void)
{
	static const size_t chunks[] = { 1, 7, 4096, 1 << 20 };
	/* The second run's first_page, and a byte of its pages. */
	size_t run_byte = 48 + 116 + 16 + 16 + 8192 + 16;
	size_t page_byte = run_byte + 16 + 5000;
	struct gpup_parser p;
	struct gpup_event ev;
	unsigned int i, nrec;
	struct buf b;
	bool ok;

	ok = build_rt(&b);
	for (i = 0; i < ARRAY_SIZE(chunks); i++) {
		ok &= EXPECT_ERR(parse_deferred(&b, chunks[i], &nrec), 0);
		ok &= EXPECT(nrec == ARRAY_SIZE(rt_runs));
		b.p[page_byte] ^= 0x10;
		ok &= EXPECT_ERR(parse_deferred(&b, chunks[i], &nrec), -EILSEQ);
		ok &= EXPECT(nrec == 1);
		b.p[page_byte] ^= 0x10;
		/* first_page 9 -> 8: still in range, caught by the CRC. */
		b.p[run_byte] ^= 0x01;
		ok &= EXPECT_ERR(parse_deferred(&b, chunks[i], &nrec), -EILSEQ);
		b.p[run_byte] ^= 0x01;
	}
	/* The parser alone refuses the flipped page byte. */
	b.p[page_byte] ^= 0x10;
	ok &= EXPECT_REFUSED(&b, -EBADMSG);
	b.p[page_byte] ^= 0x10;
	/* Not at the first page byte of a VRAM record: refused. */
	gpup_vfio_parser_init(&p, &def_lim);
	ok &= EXPECT_ERR(gpup_vfio_parser_defer_crc(&p), -EINVAL);
	/* NULL stands for deferred pages only, and breaks nothing. */
	ok &= EXPECT_ERR(gpup_vfio_parser_feed(&p, NULL, 1, &ev), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_parser_feed(&p, b.p, b.len, &ev),
			 GPUP_STREAM_HDR_SIZE);
	buf_free(&b);
	return ok;
}

static bool test_rec_flags(void)
{
	struct raw r;
	bool ok;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0x0002, 100);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(&r);
	ok = EXPECT_REFUSED(&r.b, -EPROTO);
	buf_free(&r.b);
	return ok;
}

/* Streams of records of the given types, each with a small payload. */
static void build_types(struct raw *r, const u16 *types, unsigned int n)
{
	unsigned int i;

	raw_init(r);
	raw_std_hdr(r);
	for (i = 0; i < n; i++) {
		if (types[i] == GPUP_REC_VRAM)
			raw_vram(r, i, 1);
		else if (types[i] == GPUP_REC_END)
			raw_end(r);
		else
			raw_blob(r, types[i], 0, 10 + i);
	}
}

static bool refused_types(const u16 *types, unsigned int n, long want,
			  int line)
{
	struct raw r;
	bool ok;

	build_types(&r, types, n);
	ok = expect_refused(&r.b, &def_lim, want, line);
	buf_free(&r.b);
	return ok;
}

#define I	GPUP_REC_IMMUTABLE
#define V	GPUP_REC_VRAM
#define M	GPUP_REC_MUTABLE
#define E	GPUP_REC_END
#define REFUSED_TYPES(want, ...) ({					\
	static const u16 t_[] = { __VA_ARGS__ };			\
	refused_types(t_, ARRAY_SIZE(t_), want, __LINE__);		\
})

static bool test_missing_immutable(void)
{
	bool ok = true;

	ok &= REFUSED_TYPES(-EPROTO, V, M, E);
	ok &= REFUSED_TYPES(-EPROTO, E);
	return ok;
}

static bool test_duplicate_immutable(void)
{
	return REFUSED_TYPES(-EPROTO, I, V, I, M, E);
}

static bool test_mutable_before_immutable(void)
{
	return REFUSED_TYPES(-EPROTO, M, I, V, E);
}

static bool test_vram_after_mutable(void)
{
	return REFUSED_TYPES(-EPROTO, I, V, M, V, E);
}

static bool test_missing_mutable(void)
{
	bool ok = true;

	ok &= REFUSED_TYPES(-EPROTO, I, V, E);
	/* ... and a stream that just stops after the last VRAM record */
	ok &= REFUSED_TYPES(-ENODATA, I, V);
	return ok;
}

static bool test_duplicate_end(void)
{
	bool ok = true;

	ok &= REFUSED_TYPES(-EPROTO, I, V, M, E, E);
	ok &= REFUSED_TYPES(-EPROTO, I, V, M, M, E);
	return ok;
}

static bool test_valid_orders(void)
{
	struct raw r;
	static const u16 t1[] = { I, M, E };
	static const u16 t2[] = { I, V, V, V, V, M, E };
	bool ok = true;

	build_types(&r, t1, 3);
	ok &= EXPECT_VALID(&r.b);
	buf_free(&r.b);
	build_types(&r, t2, 7);
	ok &= EXPECT_VALID(&r.b);
	buf_free(&r.b);
	return ok;
}

static bool test_unknown_mandatory(void)
{
	bool ok = true;

	ok &= REFUSED_TYPES(-EPROTO, I, 6, M, E);
	ok &= REFUSED_TYPES(-EPROTO, 0, I, M, E);
	ok &= REFUSED_TYPES(-EPROTO, I, M, 0xffff, E);
	return ok;
}

static bool test_unknown_optional(void)
{
	struct raw r;
	struct res *res;
	bool ok = true;
	unsigned int i;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, OPT_TYPE, GPUP_REC_F_OPTIONAL, 30);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_blob(&r, 0, GPUP_REC_F_OPTIONAL, 0);
	raw_vram(&r, 2, 1);
	raw_blob(&r, 0xffff, GPUP_REC_F_OPTIONAL, 256);
	raw_vram(&r, 4, 1);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_blob(&r, 6, GPUP_REC_F_OPTIONAL, 1);
	raw_end(&r);
	for (i = 0; i < 3; i++) {
		res = parse_ex(r.b.p, r.b.len, &def_lim, i * 7, NULL);
		ok &= EXPECT_ERR(res->err, 0);
		ok &= EXPECT_ERR(res->fin, 0);
		ok &= EXPECT(!res->bad);
		ok &= EXPECT(res->opt_records == 4);
		ok &= EXPECT(res->ev[GPUP_EV_RECORD] == 8);
		ok &= EXPECT(res->ev[GPUP_EV_RECORD_END] == 8);
		/* IMMUTABLE, MUTABLE and the two VRAM pages only */
		ok &= EXPECT(i || res->ev[GPUP_EV_DATA] == 4);
		free(res);
	}
	buf_free(&r.b);
	return ok;
}

static bool test_known_with_optional_flag(void)
{
	struct raw r;
	struct res *res;
	bool ok = true;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, GPUP_REC_F_OPTIONAL, 100);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(&r);
	res = parse(&r.b, &def_lim);
	ok &= EXPECT_ERR(res->fin, 0);
	ok &= EXPECT(res->imm_len == 100 && res->ev[GPUP_EV_DATA] == 2);
	free(res);
	buf_free(&r.b);

	/* An optional duplicate IMMUTABLE is still a duplicate. */
	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_blob(&r, GPUP_REC_IMMUTABLE, GPUP_REC_F_OPTIONAL, 100);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(&r);
	ok &= EXPECT_REFUSED(&r.b, -EPROTO);
	buf_free(&r.b);

	/*
	 * END is the stream's seal: its header is exactly what the writer
	 * builds, flags 0 (stream_fuzz found an END flagged optional
	 * accepted).
	 */
	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(&r);
	raw_flag_end(&r);
	ok &= EXPECT_REFUSED(&r.b, -EPROTO);
	buf_free(&r.b);
	return ok;
}

/*
 * A record too long for @lim must fail when its header completes: no
 * RECORD or DATA for it, and not one payload byte consumed.
 */
static bool too_long(const struct raw *r, size_t rec_at,
		     const struct gpup_stream_limits *lim, int line)
{
	struct res *res;
	bool ok = true;
	size_t chunk;

	for (chunk = 0; chunk <= 16; chunk += 16) {
		res = parse_ex(r->b.p, r->b.len, lim, chunk, NULL);
		ok &= expect_err(res->err, -EMSGSIZE, line);
		ok &= expect(res->pos == rec_at + GPUP_REC_HDR_SIZE,
			     "stop right after the record header", line);
		ok &= expect(!res->in_rec, "no RECORD event for it", line);
		free(res);
	}
	return ok;
}

static bool test_emsgsize_immutable(void)
{
	struct gpup_stream_limits lim = def_lim;
	struct raw r;
	bool ok;

	build_small(&r);
	lim.max_immutable = 99;
	ok = too_long(&r, 48, &lim, __LINE__);
	buf_free(&r.b);
	return ok;
}

static bool test_emsgsize_mutable(void)
{
	struct gpup_stream_limits lim = def_lim;
	struct raw r;
	size_t at;
	bool ok;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_vram(&r, 0, 1);
	at = r.b.len;
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(&r);
	lim.max_mutable = 199;
	ok = too_long(&r, at, &lim, __LINE__);
	lim.max_mutable = 0;
	ok &= too_long(&r, at, &lim, __LINE__);
	buf_free(&r.b);
	return ok;
}

static bool test_emsgsize_vram(void)
{
	struct gpup_stream_limits lim = def_lim;
	struct raw r;
	size_t at;
	bool ok;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_vram(&r, 0, 1);
	at = r.b.len;
	raw_vram(&r, 4, 3);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(&r);
	lim.max_vram_run = 3 * PAGE - 1;
	ok = too_long(&r, at, &lim, __LINE__);
	lim.max_vram_run = 3 * PAGE;
	ok &= expect_valid(&r.b, &lim, __LINE__);
	buf_free(&r.b);
	return ok;
}

static bool test_emsgsize_optional(void)
{
	struct gpup_stream_limits lim = def_lim;
	struct raw r;
	bool ok;

	build_small(&r);
	lim.max_optional = 7;
	ok = too_long(&r, 48 + 16 + 100, &lim, __LINE__);
	buf_free(&r.b);
	return ok;
}

static bool test_emsgsize_end(void)
{
	struct raw r;
	size_t at;
	u8 pl[25] = { 0 };
	bool ok;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	at = r.b.len;
	raw_rec(&r, GPUP_REC_END, 0, pl, sizeof(pl));
	ok = too_long(&r, at, &def_lim, __LINE__);
	buf_free(&r.b);
	return ok;
}

static bool vram_refused(u64 first, u32 npages, u32 reserved, u32 data_pages,
			 long want, int line)
{
	struct raw r;
	bool ok;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_vram_ex(&r, first, npages, reserved, data_pages);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	raw_end(&r);
	ok = expect_refused(&r.b, &def_lim, want, line);
	buf_free(&r.b);
	return ok;
}

static bool test_vram_run_range(void)
{
	bool ok = true;

	ok &= vram_refused(NPAGES - 1, 2, 0, 2, -EPROTO, __LINE__);
	ok &= vram_refused(NPAGES, 1, 0, 1, -EPROTO, __LINE__);
	ok &= vram_refused(1ULL << 40, 1, 0, 1, -EPROTO, __LINE__);
	ok &= vram_refused(0, 0, 0, 1, -EPROTO, __LINE__);
	ok &= vram_refused(0, 2, 0, 1, -EPROTO, __LINE__);
	ok &= vram_refused(0, 1, 0, 2, -EPROTO, __LINE__);
	ok &= vram_refused(0, 1, 1, 1, -EPROTO, __LINE__);
	ok &= vram_refused(0, 0, 0, 0, -EPROTO, __LINE__);
	/* The last page is in range. */
	ok &= vram_refused(NPAGES - 1, 1, 0, 1, 0, __LINE__);
	return ok;
}

static bool test_vram_run_overflow(void)
{
	bool ok = true;

	/* first_page + npages wraps to a small number */
	ok &= vram_refused(~0ULL, 2, 0, 2, -EPROTO, __LINE__);
	ok &= vram_refused(~0ULL - 1, 3, 0, 3, -EPROTO, __LINE__);
	ok &= vram_refused(1ULL << 63, 1, 0, 1, -EPROTO, __LINE__);
	return ok;
}

static bool test_vram_len(void)
{
	struct raw r;
	u8 pl[16 + 100] = { 0 };
	bool ok = true;
	unsigned int i;
	static const u32 lens[] = { 0, 8, 16, 16 + 100 };

	for (i = 0; i < 4; i++) {
		raw_init(&r);
		raw_std_hdr(&r);
		raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
		raw_rec(&r, GPUP_REC_VRAM, 0, pl, lens[i]);
		raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
		raw_end(&r);
		ok &= EXPECT_REFUSED(&r.b, -EPROTO);
		buf_free(&r.b);
	}
	return ok;
}

static bool test_trailing_byte(void)
{
	struct gpup_parser p;
	struct gpup_event ev;
	struct raw r;
	struct res *res;
	bool ok = true;

	build_small(&r);
	res = parse_ex(r.b.p, r.b.len, &def_lim, 0, &p);
	ok &= EXPECT_ERR(res->fin, 0);
	free(res);
	ok &= EXPECT_ERR(gpup_vfio_parser_feed(&p, "", 1, &ev), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_parser_finish(&p), -EPROTO);

	buf_put(&r.b, "\0", 1);
	ok &= EXPECT_REFUSED(&r.b, -EPROTO);
	buf_free(&r.b);
	return ok;
}

static bool test_sticky(void)
{
	struct gpup_parser p;
	struct gpup_event ev;
	struct raw r, good;
	struct res *res;
	bool ok = true;
	int i;

	build_small(&r);
	build_small(&good);
	r.b.p[48 + 16 + 5] ^= 1;	/* IMMUTABLE payload */
	res = parse_ex(r.b.p, r.b.len, &def_lim, 0, &p);
	ok &= EXPECT_ERR(res->err, -EBADMSG);
	free(res);
	for (i = 0; i < 3; i++) {
		ok &= EXPECT_ERR(gpup_vfio_parser_feed(&p, good.b.p, good.b.len, &ev),
				 -EBADMSG);
		ok &= EXPECT(ev.kind == GPUP_EV_NONE);
		ok &= EXPECT_ERR(gpup_vfio_parser_feed(&p, NULL, 0, &ev), -EBADMSG);
		ok &= EXPECT_ERR(gpup_vfio_parser_finish(&p), -EBADMSG);
	}
	/* A fresh parser takes the good stream. */
	ok &= EXPECT_VALID(&good.b);
	buf_free(&r.b);
	buf_free(&good.b);
	return ok;
}

static void build_end(struct raw *r, int what)
{
	raw_init(r);
	raw_std_hdr(r);
	raw_blob(r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_blob(r, OPT_TYPE, GPUP_REC_F_OPTIONAL, 3);
	raw_vram(r, 0, 1);
	raw_blob(r, GPUP_REC_MUTABLE, 0, 200);
	switch (what) {
	case 0:
		raw_end_vals(r, r->nrec, r->b.len,
			     gpup_vfio_crc_final(r->chain) ^ 1, 0);
		break;
	case 1:
		raw_end_vals(r, r->nrec - 1, r->b.len,
			     gpup_vfio_crc_final(r->chain), 0);
		break;
	case 2:
		raw_end_vals(r, r->nrec, r->b.len + 16,
			     gpup_vfio_crc_final(r->chain), 0);
		break;
	case 3:
		raw_end_vals(r, r->nrec, r->b.len,
			     gpup_vfio_crc_final(r->chain), 1);
		break;
	default:
		raw_end(r);
		break;
	}
}

static bool test_end_mismatch(void)
{
	static const long want[] = { -EBADMSG, -EPROTO, -EPROTO, -EPROTO, 0 };
	struct raw r;
	bool ok = true;
	int i;

	for (i = 0; i < 5; i++) {
		build_end(&r, i);
		ok &= EXPECT_REFUSED(&r.b, want[i]);
		buf_free(&r.b);
	}
	/* A chain over the same headers in another order does not match. */
	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, GPUP_REC_IMMUTABLE, 0, 100);
	raw_vram(&r, 0, 1);
	raw_vram(&r, 1, 1);
	raw_blob(&r, GPUP_REC_MUTABLE, 0, 200);
	{
		u8 tmp[16 + 16 + PAGE];
		size_t a = 48 + 116, len = sizeof(tmp);
		struct raw r2;

		/* Swap the two VRAM records, keep the original END. */
		memcpy(tmp, r.b.p + a, len);
		memmove(r.b.p + a, r.b.p + a + len, len);
		memcpy(r.b.p + a + len, tmp, len);
		raw_init(&r2);
		raw_end_vals(&r2, r.nrec, r.b.len, gpup_vfio_crc_final(r.chain), 0);
		buf_put(&r.b, r2.b.p, r2.b.len);
		buf_free(&r2.b);
	}
	ok &= EXPECT_REFUSED(&r.b, -EBADMSG);
	buf_free(&r.b);
	return ok;
}

static bool test_finish_early(void)
{
	struct gpup_parser p;
	bool ok = true;

	gpup_vfio_parser_init(&p, &def_lim);
	ok &= EXPECT_ERR(gpup_vfio_parser_finish(&p), -ENODATA);
	return ok;
}

static bool test_empty_payloads(void)
{
	struct gpup_parser p;
	struct gpup_event ev;
	struct raw r;
	struct res *res;
	size_t at;
	long n;
	bool ok = true;

	raw_init(&r);
	raw_std_hdr(&r);
	raw_rec(&r, GPUP_REC_IMMUTABLE, 0, NULL, 0);
	raw_rec(&r, GPUP_REC_MUTABLE, 0, NULL, 0);
	raw_end(&r);
	res = parse_ex(r.b.p, r.b.len, &def_lim, 0, NULL);
	ok &= EXPECT_ERR(res->fin, 0);
	ok &= EXPECT(!res->bad && res->ev[GPUP_EV_RECORD_END] == 2);
	ok &= EXPECT(res->imm_len == 0 && res->mut_len == 0);
	free(res);

	/* RECORD, then RECORD_END from a feed of 0 bytes. */
	gpup_vfio_parser_init(&p, &def_lim);
	at = 0;
	n = gpup_vfio_parser_feed(&p, r.b.p, 48, &ev);
	ok &= EXPECT(n == 48 && ev.kind == GPUP_EV_HEADER);
	at += n;
	n = gpup_vfio_parser_feed(&p, r.b.p + at, r.b.len - at, &ev);
	ok &= EXPECT(n == 16 && ev.kind == GPUP_EV_RECORD && ev.len == 0 &&
		     ev.type == GPUP_REC_IMMUTABLE);
	at += n;
	n = gpup_vfio_parser_feed(&p, r.b.p + at, 0, &ev);
	ok &= EXPECT(n == 0 && ev.kind == GPUP_EV_RECORD_END &&
		     ev.type == GPUP_REC_IMMUTABLE);
	n = gpup_vfio_parser_feed(&p, r.b.p + at, 0, &ev);
	ok &= EXPECT(n == 0 && ev.kind == GPUP_EV_NONE);
	/* A pending RECORD_END takes at most 15 bytes of the next header. */
	n = gpup_vfio_parser_feed(&p, r.b.p + at, r.b.len - at, &ev);
	ok &= EXPECT(n == 16 && ev.kind == GPUP_EV_RECORD);
	at += n;
	n = gpup_vfio_parser_feed(&p, r.b.p + at, r.b.len - at, &ev);
	ok &= EXPECT(n == 15 && ev.kind == GPUP_EV_RECORD_END &&
		     ev.type == GPUP_REC_MUTABLE);
	at += n;
	n = gpup_vfio_parser_feed(&p, r.b.p + at, r.b.len - at, &ev);
	ok &= EXPECT(n == 1 && ev.kind == GPUP_EV_NONE);
	at += n;
	n = gpup_vfio_parser_feed(&p, r.b.p + at, r.b.len - at, &ev);
	ok &= EXPECT(n == 24 && ev.kind == GPUP_EV_END && ev.nrecords == 2 &&
		     ev.stream_bytes == 48 + 32);
	at += n;
	ok &= EXPECT(at == r.b.len);
	ok &= EXPECT_ERR(gpup_vfio_parser_finish(&p), 0);
	buf_free(&r.b);
	return ok;
}

static bool test_writer_order(void)
{
	struct gpup_writer w;
	struct gpup_stream_hdr h;
	struct gpup_rec_hdr rh;
	struct gpup_end end;
	bool ok = true;

	gpup_vfio_writer_init(&w);
	gpup_vfio_stream_hdr_build(&h, 1, 2, PAGE, VRAM_SIZE);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_IMMUTABLE, 0,
					    1, 0), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_end_build(&w, &rh, &end), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_writer_hdr(&w, &h), 0);
	ok &= EXPECT_ERR(gpup_vfio_writer_hdr(&w, &h), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_VRAM, 0,
					    16 + PAGE, 0), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_MUTABLE, 0,
					    1, 0), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, 9, 0, 1, 0), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, 9, GPUP_REC_F_OPTIONAL,
					    1, 0), 0);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_IMMUTABLE, 2,
					    1, 0), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_IMMUTABLE, 0,
					    1, 0), 0);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_IMMUTABLE, 0,
					    1, 0), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_VRAM, 0,
					    16 + PAGE + 1, 0), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_VRAM, 0,
					    16, 0), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_END, 0,
					    24, 0), -EINVAL);
	ok &= EXPECT_ERR(gpup_vfio_end_build(&w, &rh, &end), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_MUTABLE, 0,
					    1, 0), 0);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, GPUP_REC_VRAM, 0,
					    16 + PAGE, 0), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_end_build(&w, &rh, &end), 0);
	ok &= EXPECT_ERR(gpup_vfio_end_build(&w, &rh, &end), -EPROTO);
	ok &= EXPECT_ERR(gpup_vfio_rec_hdr_build(&w, &rh, 9, GPUP_REC_F_OPTIONAL,
					    1, 0), -EPROTO);
	ok &= EXPECT(w.nrecords == 3);
	ok &= EXPECT(w.stream_bytes == 48 + 17 * 3 + 40);

	gpup_vfio_writer_init(&w);
	gpup_vfio_stream_hdr_build(&h, 1, 2, 3000, VRAM_SIZE);
	ok &= EXPECT_ERR(gpup_vfio_writer_hdr(&w, &h), -EINVAL);
	return ok;
}

static const struct {
	const char *name;
	bool (*fn)(void);
} tests[] = {
	{ "crc32c check value and chunked crc", test_crc },
	{ "wire layout", test_wire_layout },
	{ "writer output equals raw encoding", test_writer_matches_raw },
	{ "round trip, one buffer", test_rt_one_buffer },
	{ "round trip, 1 byte at a time", test_rt_bytewise },
	{ "round trip, chunk sizes 1..64", test_rt_chunks },
	{ "round trip, limits equal to the sizes", test_limits_exact },
	{ "size helpers match the writer", test_sizes },
	{ "every truncation gives -ENODATA", test_truncation },
	{ "every single bit flip is refused", test_bit_flips },
	{ "wrong magic gives -EPROTO", test_hdr_magic },
	{ "major 2 gives -EPROTONOSUPPORT", test_hdr_major },
	{ "minors 5 and 0 are accepted", test_hdr_minor },
	{ "stream header crc gives -EBADMSG", test_hdr_crc },
	{ "hdr_len, flags, reserved give -EPROTO", test_hdr_fields },
	{ "bad page_size or vram_size give -EPROTO", test_hdr_page_size },
	{ "page_size or vram_size not as limits give -EINVAL",
	  test_limits_mismatch },
	{ "record header crc gives -EBADMSG", test_rec_hcrc },
	{ "payload crc gives -EBADMSG, no RECORD_END", test_payload_crc },
	{ "VRAM page crc deferred to the reader", test_defer_crc },
	{ "ZERO record: zeros in 16 bytes, malformed ones refused",
	  test_zero_record },
	{ "reserved record flag gives -EPROTO", test_rec_flags },
	{ "missing IMMUTABLE gives -EPROTO", test_missing_immutable },
	{ "duplicate IMMUTABLE gives -EPROTO", test_duplicate_immutable },
	{ "MUTABLE before IMMUTABLE gives -EPROTO",
	  test_mutable_before_immutable },
	{ "VRAM after MUTABLE gives -EPROTO", test_vram_after_mutable },
	{ "missing MUTABLE gives -EPROTO", test_missing_mutable },
	{ "duplicate END or MUTABLE gives -EPROTO", test_duplicate_end },
	{ "valid record orders", test_valid_orders },
	{ "unknown mandatory type gives -EPROTO", test_unknown_mandatory },
	{ "unknown optional records are skipped", test_unknown_optional },
	{ "known type with the optional flag is not skipped; END refuses it",
	  test_known_with_optional_flag },
	{ "IMMUTABLE past max_immutable gives -EMSGSIZE first",
	  test_emsgsize_immutable },
	{ "MUTABLE past max_mutable gives -EMSGSIZE first",
	  test_emsgsize_mutable },
	{ "VRAM past max_vram_run gives -EMSGSIZE first", test_emsgsize_vram },
	{ "optional past max_optional gives -EMSGSIZE first",
	  test_emsgsize_optional },
	{ "END len 25 gives -EMSGSIZE first", test_emsgsize_end },
	{ "VRAM run out of range gives -EPROTO", test_vram_run_range },
	{ "VRAM run first_page + npages overflow gives -EPROTO",
	  test_vram_run_overflow },
	{ "VRAM len not run header + pages gives -EPROTO", test_vram_len },
	{ "byte after END gives -EPROTO", test_trailing_byte },
	{ "errors are sticky", test_sticky },
	{ "END chain, nrecords, stream_bytes, reserved mismatch",
	  test_end_mismatch },
	{ "finish before any byte gives -ENODATA", test_finish_early },
	{ "empty payloads and the pending RECORD_END", test_empty_payloads },
	{ "writer order and argument checks", test_writer_order },
};

/* ------------------------------------------------------------------ */
/* Seed corpus for stream_fuzz: one control byte, chunk sizes, stream. */

static int write_seed(const char *dir, int n, const u8 *prefix, size_t plen,
		      const struct buf *b)
{
	char path[4096];
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "%s/seed-%02d", dir, n);
	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return 1;
	}
	if (fwrite(prefix, 1, plen, f) != plen ||
	    fwrite(b->p, 1, b->len, f) != b->len)
		ret = 1;
	if (fclose(f))
		ret = 1;
	return ret;
}

static int write_corpus(const char *dir)
{
	/*
	 * Control byte (see stream_fuzz.c): bits 0-2 = chunk sizes - 1,
	 * bit 3 = zero feeds, bit 5 = fix CRCs, bit 6 = fix END too,
	 * bit 7 = the chunked pass defers VRAM page CRCs.
	 */
	static const u8 p_defer[] = { 0x81, 7, 200 };
	static const u8 p_all[] = { 0x00, 0 };
	static const u8 p_one[] = { 0x00, 1 };
	static const u8 p_mix[] = { 0x0a, 7, 16, 100 };
	static const u8 p_odd[] = { 0x03, 48, 15, 1, 255 };
	static const u8 p_fix[] = { 0x60, 0 };
	static const u8 p_fix_mix[] = { 0x61, 3, 200 };
	static const u16 t_min[] = { I, M, E };
	struct gpup_stream_hdr h;
	struct raw r;
	struct buf b;
	int n = 0, ret = 0;

	mkdir(dir, 0755);
	build_small(&r);
	ret |= write_seed(dir, n++, p_all, sizeof(p_all), &r.b);
	ret |= write_seed(dir, n++, p_one, sizeof(p_one), &r.b);
	ret |= write_seed(dir, n++, p_mix, sizeof(p_mix), &r.b);
	ret |= write_seed(dir, n++, p_fix, sizeof(p_fix), &r.b);
	r.b.len -= 10;
	ret |= write_seed(dir, n++, p_odd, sizeof(p_odd), &r.b);
	buf_free(&r.b);

	/* What stream_fuzz once found accepted: END flagged optional. */
	build_small(&r);
	raw_flag_end(&r);
	ret |= write_seed(dir, n++, p_fix, sizeof(p_fix), &r.b);
	buf_free(&r.b);

	build_types(&r, t_min, 3);
	ret |= write_seed(dir, n++, p_all, sizeof(p_all), &r.b);
	ret |= write_seed(dir, n++, p_mix, sizeof(p_mix), &r.b);
	buf_free(&r.b);

	raw_init(&r);
	raw_std_hdr(&r);
	raw_blob(&r, OPT_TYPE, GPUP_REC_F_OPTIONAL, 5);
	raw_rec(&r, GPUP_REC_IMMUTABLE, 0, NULL, 0);
	raw_vram(&r, 15, 1);
	raw_rec(&r, 0x100, GPUP_REC_F_OPTIONAL, NULL, 0);
	raw_rec(&r, GPUP_REC_MUTABLE, 0, NULL, 0);
	raw_end(&r);
	ret |= write_seed(dir, n++, p_odd, sizeof(p_odd), &r.b);
	ret |= write_seed(dir, n++, p_fix_mix, sizeof(p_fix_mix), &r.b);
	buf_free(&r.b);

	/* Zero runs between VRAM records, over their pages. */
	build_zero_runs(&r);
	ret |= write_seed(dir, n++, p_mix, sizeof(p_mix), &r.b);
	ret |= write_seed(dir, n++, p_defer, sizeof(p_defer), &r.b);
	buf_free(&r.b);

	/* The round trip stream, VRAM page CRCs deferred: good, then bad. */
	build_rt(&b);
	ret |= write_seed(dir, n++, p_defer, sizeof(p_defer), &b);
	b.p[b.len / 2] ^= 0x10;
	ret |= write_seed(dir, n++, p_defer, sizeof(p_defer), &b);
	buf_free(&b);

	hdr_make(&h, PAGE, VRAM_SIZE);
	h.minor = cpu_to_le16(5);
	hdr_fix_crc(&h);
	build_after_hdr(&r, &h);
	ret |= write_seed(dir, n++, p_mix, sizeof(p_mix), &r.b);
	buf_free(&r.b);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned int i, n = ARRAY_SIZE(tests);
	unsigned int failed = 0;

	if (argc == 3 && !strcmp(argv[1], "--corpus"))
		return write_corpus(argv[2]);
	if (argc != 1) {
		fprintf(stderr, "usage: %s [--corpus DIR]\n", argv[0]);
		return 2;
	}

	printf("TAP version 13\n1..%u\n", n);
	for (i = 0; i < n; i++) {
		cur_failed = 0;
		if (!tests[i].fn() || cur_failed) {
			printf("not ok %u - %s\n", i + 1, tests[i].name);
			failed++;
		} else {
			printf("ok %u - %s\n", i + 1, tests[i].name);
		}
		fflush(stdout);
	}
	printf("# %u passed, %u failed\n", n - failed, failed);
	return failed ? 1 : 0;
}
