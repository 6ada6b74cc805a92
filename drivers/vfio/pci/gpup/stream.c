// SPDX-License-Identifier: GPL-2.0
/*
 * gpup migration stream v1 codec: an incremental push parser and the
 * writer helpers.  The format and the errors are described in stream.h.
 *
 * Pure code: no locks, no allocation, no sleeping, so that the very same
 * file runs in the kernel and in the userspace tests and fuzzer.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifdef __KERNEL__
#include <linux/crc32c.h>
#include <linux/errno.h>
#include <linux/limits.h>
#include <linux/math64.h>
#include <linux/minmax.h>
#include <linux/stddef.h>
#include <linux/string.h>
#include <asm/byteorder.h>
#else
#include <gpup/stream_user.h>	/* tools/include: userspace builds */
#endif

#include "stream.h"

/* What the next stream bytes are (gpup_parser.state). */
enum gpup_parse_state {
	GPUP_S_HDR,	/* stream header, into u */
	GPUP_S_REC,	/* a record header, into u */
	GPUP_S_RUN,	/* the run header of a VRAM payload, into u */
	GPUP_S_DATA,	/* payload, passed through or skipped */
	GPUP_S_END,	/* the END payload, into u */
	GPUP_S_DONE,	/* nothing: END was verified */
};

/* Which known records came so far (gpup_parser.phase, gpup_writer.phase). */
enum gpup_phase {
	GPUP_PH_HDR,	/* writer only: stream header not accounted yet */
	GPUP_PH_START,	/* no known record yet: IMMUTABLE is next */
	GPUP_PH_IMM,	/* IMMUTABLE seen: VRAM or MUTABLE */
	GPUP_PH_MUT,	/* MUTABLE seen: END */
	GPUP_PH_DONE,	/* END */
};

/**
 * gpup_vfio_crc() - continue a CRC32C over more bytes
 * @crc_state: %GPUP_CRC_INIT to start, or what the last call returned
 * @buf: the bytes
 * @len: how many
 *
 * A payload CRC may be computed in chunks:
 * gpup_vfio_crc_final(gpup_vfio_crc(gpup_vfio_crc(GPUP_CRC_INIT, a, n), b, m)) equals
 * gpup_vfio_crc32c() of a and b concatenated.
 *
 * Return: the new CRC state (not the CRC value; see gpup_vfio_crc_final()).
 */
u32 gpup_vfio_crc(u32 crc_state, const void *buf, size_t len)
{
	const u8 *p = buf;

	while (len) {
		unsigned int n = min_t(size_t, len, 1U << 30);

		crc_state = crc32c(crc_state, p, n);
		p += n;
		len -= n;
	}
	return crc_state;
}

/**
 * gpup_vfio_crc_final() - the CRC32C value of a CRC state
 * @crc_state: state from gpup_vfio_crc()
 *
 * Return: the value to store in or compare with a stream CRC field.
 */
u32 gpup_vfio_crc_final(u32 crc_state)
{
	return ~crc_state;
}

/**
 * gpup_vfio_crc32c() - CRC32C of a buffer, as the stream stores it
 * @buf: the bytes
 * @len: how many
 *
 * The standard CRC32C (iSCSI, Castagnoli): ~crc32c(~0, @buf, @len) with
 * the kernel's crc32c().  "123456789" gives 0xe3069283.
 *
 * Return: the CRC value.
 */
u32 gpup_vfio_crc32c(const void *buf, size_t len)
{
	return gpup_vfio_crc_final(gpup_vfio_crc(GPUP_CRC_INIT, buf, len));
}

static bool gpup_page_size_ok(u32 page_size)
{
	return page_size >= GPUP_PAGE_SIZE_MIN &&
	       page_size <= GPUP_PAGE_SIZE_MAX &&
	       !(page_size & (page_size - 1));
}

static bool gpup_rec_known(u16 type)
{
	return type == GPUP_REC_IMMUTABLE || type == GPUP_REC_VRAM ||
	       type == GPUP_REC_MUTABLE;
}

/**
 * gpup_vfio_parser_init() - start reading a stream
 * @p: the parser
 * @lim: what the stream may hold; copied
 */
void gpup_vfio_parser_init(struct gpup_parser *p,
			   const struct gpup_stream_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->lim = *lim;
	p->state = GPUP_S_HDR;
	p->phase = GPUP_PH_START;
	p->chain = GPUP_CRC_INIT;
}

static long gpup_fail(struct gpup_parser *p, int err)
{
	p->err = err;
	return err;
}

/* Move up to @need - fill bytes into the parser's buffer. */
static size_t gpup_take(struct gpup_parser *p, const u8 *in, size_t len,
			size_t need)
{
	size_t n = min_t(size_t, len, need - p->fill);

	if (n)
		memcpy(p->u.raw + p->fill, in, n);
	p->fill += n;
	p->pos += n;
	return n;
}

/* Fill in the current record's fields of an event. */
static void gpup_ev_rec(const struct gpup_parser *p, struct gpup_event *ev,
			enum gpup_event_kind kind)
{
	ev->kind = kind;
	ev->type = p->rec_type;
	ev->flags = p->rec_flags;
	ev->len = p->rec_len;
	ev->crc = p->rec_crc;
	ev->first_page = p->first_page;
	ev->npages = p->npages;
}

/*
 * Check the stream header as far as its bytes are in, always in the same
 * order, so that the error does not depend on how the stream was split:
 * magic, major and hdr_len as soon as they are complete (each ends where
 * the next field starts), then everything else.
 */
static int gpup_check_hdr(struct gpup_parser *p)
{
	const struct gpup_stream_hdr *h = &p->u.hdr;
	const struct gpup_stream_limits *lim = &p->lim;
	struct gpup_stream_info *info = &p->info;

	if (p->fill >= offsetof(struct gpup_stream_hdr, major) &&
	    le32_to_cpu(h->magic) != GPUP_STREAM_MAGIC)
		return -EPROTO;
	if (p->fill >= offsetof(struct gpup_stream_hdr, minor) &&
	    le16_to_cpu(h->major) != GPUP_STREAM_MAJOR)
		return -EPROTONOSUPPORT;
	if (p->fill >= offsetof(struct gpup_stream_hdr, flags) &&
	    le32_to_cpu(h->hdr_len) != GPUP_STREAM_HDR_SIZE)
		return -EPROTO;
	if (p->fill < GPUP_STREAM_HDR_SIZE)
		return 0;

	if (gpup_vfio_crc32c(h, offsetof(struct gpup_stream_hdr, hdr_crc)) !=
	    le32_to_cpu(h->hdr_crc))
		return -EBADMSG;
	if (le32_to_cpu(h->flags) || le32_to_cpu(h->reserved) ||
	    le32_to_cpu(h->reserved2))
		return -EPROTO;

	info->major = le16_to_cpu(h->major);
	info->minor = le16_to_cpu(h->minor);
	info->provider_id = le32_to_cpu(h->provider_id);
	info->profile_id = le32_to_cpu(h->profile_id);
	info->page_size = le32_to_cpu(h->page_size);
	info->vram_size = le64_to_cpu(h->vram_size);

	if (!gpup_page_size_ok(info->page_size) ||
	    (info->vram_size & (info->page_size - 1)))
		return -EPROTO;
	if ((lim->page_size && lim->page_size != info->page_size) ||
	    (lim->vram_size && lim->vram_size != info->vram_size))
		return -EINVAL;
	p->total_pages = div_u64(info->vram_size, info->page_size);
	return 0;
}

static long gpup_feed_hdr(struct gpup_parser *p, const u8 *in, size_t len,
			  struct gpup_event *ev)
{
	size_t n = gpup_take(p, in, len, GPUP_STREAM_HDR_SIZE);
	int ret;

	ret = gpup_check_hdr(p);
	if (ret)
		return gpup_fail(p, ret);
	if (p->fill == GPUP_STREAM_HDR_SIZE) {
		ev->kind = GPUP_EV_HEADER;
		ev->hdr = p->info;
		p->state = GPUP_S_REC;
		p->fill = 0;
	}
	return n;
}

/* Check a complete record header against the order rules and limits. */
static int gpup_check_rec(struct gpup_parser *p, u16 type, u16 flags,
			  u32 len)
{
	const struct gpup_stream_limits *lim = &p->lim;
	const struct gpup_rec_hdr *rh = &p->u.rec;
	u32 run;

	if (gpup_vfio_crc32c(rh, offsetof(struct gpup_rec_hdr, hcrc)) !=
	    le32_to_cpu(rh->hcrc))
		return -EBADMSG;
	if (flags & ~GPUP_REC_F_OPTIONAL)
		return -EPROTO;

	switch (type) {
	case GPUP_REC_IMMUTABLE:
		if (p->phase != GPUP_PH_START)
			return -EPROTO;
		return len > lim->max_immutable ? -EMSGSIZE : 0;
	case GPUP_REC_VRAM:
		if (p->phase != GPUP_PH_IMM || len < GPUP_VRAM_RUN_SIZE)
			return -EPROTO;
		run = len - GPUP_VRAM_RUN_SIZE;
		if (run > lim->max_vram_run)
			return -EMSGSIZE;
		if (!run || (run & (p->info.page_size - 1)))
			return -EPROTO;
		return 0;
	case GPUP_REC_ZERO:
		if (p->phase != GPUP_PH_IMM)
			return -EPROTO;
		return len != GPUP_VRAM_RUN_SIZE ? -EMSGSIZE : 0;
	case GPUP_REC_MUTABLE:
		if (p->phase != GPUP_PH_IMM)
			return -EPROTO;
		return len > lim->max_mutable ? -EMSGSIZE : 0;
	case GPUP_REC_END:
		/* The seal is exactly what the writer builds: flags 0. */
		if (p->phase != GPUP_PH_MUT || flags)
			return -EPROTO;
		return len != GPUP_END_SIZE ? -EMSGSIZE : 0;
	default:
		if (!(flags & GPUP_REC_F_OPTIONAL))
			return -EPROTO;
		return len > lim->max_optional ? -EMSGSIZE : 0;
	}
}

static long gpup_feed_rec(struct gpup_parser *p, const u8 *in, size_t len,
			  struct gpup_event *ev)
{
	size_t n = gpup_take(p, in, len, GPUP_REC_HDR_SIZE);
	const struct gpup_rec_hdr *rh = &p->u.rec;
	u16 type, flags;
	u32 rlen;
	int ret;

	if (p->fill < GPUP_REC_HDR_SIZE)
		return n;
	p->fill = 0;
	type = le16_to_cpu(rh->type);
	flags = le16_to_cpu(rh->flags);
	rlen = le32_to_cpu(rh->len);
	ret = gpup_check_rec(p, type, flags, rlen);
	if (ret)
		return gpup_fail(p, ret);

	p->rec_type = type;
	p->rec_flags = flags;
	p->rec_len = rlen;
	p->rec_crc = le32_to_cpu(rh->crc);
	p->rec_off = 0;
	p->crc = GPUP_CRC_INIT;
	p->defer = false;
	p->first_page = 0;
	p->npages = 0;

	if (type == GPUP_REC_END) {
		p->end_at = p->pos - GPUP_REC_HDR_SIZE;
		p->state = GPUP_S_END;
		return n;
	}

	if (p->nrecords == U32_MAX)
		return gpup_fail(p, -EPROTO);
	p->nrecords++;
	p->chain = gpup_vfio_crc(p->chain, rh, GPUP_REC_CHAIN_LEN);
	if (type == GPUP_REC_IMMUTABLE)
		p->phase = GPUP_PH_IMM;
	else if (type == GPUP_REC_MUTABLE)
		p->phase = GPUP_PH_MUT;

	gpup_ev_rec(p, ev, GPUP_EV_RECORD);
	if (type == GPUP_REC_VRAM || type == GPUP_REC_ZERO) {
		p->state = GPUP_S_RUN;
	} else if (rlen) {
		p->state = GPUP_S_DATA;
	} else {
		/* An empty payload: check its CRC, RECORD_END comes next. */
		if (gpup_vfio_crc_final(p->crc) != p->rec_crc)
			return gpup_fail(p, -EBADMSG);
		p->pending = true;
	}
	return n;
}

static long gpup_feed_run(struct gpup_parser *p, const u8 *in, size_t len,
			  struct gpup_event *ev)
{
	size_t n = gpup_take(p, in, len, GPUP_VRAM_RUN_SIZE);
	const struct gpup_vram_run *run = &p->u.run;
	bool zero = p->rec_type == GPUP_REC_ZERO;
	u64 first;
	u32 npages;

	if (p->fill < GPUP_VRAM_RUN_SIZE)
		return n;
	p->fill = 0;
	p->crc = gpup_vfio_crc(p->crc, run, GPUP_VRAM_RUN_SIZE);
	p->rec_off = GPUP_VRAM_RUN_SIZE;

	first = le64_to_cpu(run->first_page);
	npages = le32_to_cpu(run->npages);
	if (le32_to_cpu(run->reserved) || !npages ||
	    (!zero && (u64)npages * p->info.page_size !=
	     p->rec_len - GPUP_VRAM_RUN_SIZE) ||
	    first > p->total_pages || npages > p->total_pages - first)
		return gpup_fail(p, -EPROTO);

	p->first_page = first;
	p->npages = npages;
	if (zero) {
		/* The run header is all of a ZERO payload. */
		if (gpup_vfio_crc_final(p->crc) != p->rec_crc)
			return gpup_fail(p, -EBADMSG);
		gpup_ev_rec(p, ev, GPUP_EV_VRAM_RUN);
		p->state = GPUP_S_REC;
		p->pending = true;
		return n;
	}
	gpup_ev_rec(p, ev, GPUP_EV_VRAM_RUN);
	ev->crc_state = p->crc;
	/* The checks above leave at least one page to come. */
	p->state = GPUP_S_DATA;
	return n;
}

static long gpup_feed_data(struct gpup_parser *p, const u8 *in, size_t len,
			   struct gpup_event *ev)
{
	u32 n = min_t(size_t, len, p->rec_len - p->rec_off);

	if (!p->defer) {
		p->crc = gpup_vfio_crc(p->crc, in, n);
		if (p->rec_off + n == p->rec_len &&
		    gpup_vfio_crc_final(p->crc) != p->rec_crc)
			return gpup_fail(p, -EBADMSG);
	}

	if (gpup_rec_known(p->rec_type)) {
		gpup_ev_rec(p, ev, GPUP_EV_DATA);
		ev->data = in;
		ev->data_len = n;
		ev->offset = p->rec_off;
		if (p->rec_type == GPUP_REC_VRAM)
			ev->vram_offset = p->first_page * p->info.page_size +
					  (p->rec_off - GPUP_VRAM_RUN_SIZE);
	}
	p->rec_off += n;
	p->pos += n;
	if (p->rec_off == p->rec_len) {
		p->state = GPUP_S_REC;
		p->pending = true;
	}
	return n;
}

static long gpup_feed_end(struct gpup_parser *p, const u8 *in, size_t len,
			  struct gpup_event *ev)
{
	size_t n = gpup_take(p, in, len, GPUP_END_SIZE);
	const struct gpup_end *end = &p->u.end;

	if (p->fill < GPUP_END_SIZE)
		return n;
	if (gpup_vfio_crc32c(end, GPUP_END_SIZE) != p->rec_crc)
		return gpup_fail(p, -EBADMSG);
	if (le32_to_cpu(end->reserved) || le32_to_cpu(end->reserved2) ||
	    le32_to_cpu(end->nrecords) != p->nrecords ||
	    le64_to_cpu(end->stream_bytes) != p->end_at)
		return gpup_fail(p, -EPROTO);
	if (le32_to_cpu(end->chain) != gpup_vfio_crc_final(p->chain))
		return gpup_fail(p, -EBADMSG);

	p->state = GPUP_S_DONE;
	p->phase = GPUP_PH_DONE;
	ev->kind = GPUP_EV_END;
	ev->nrecords = p->nrecords;
	ev->stream_bytes = p->end_at;
	return n;
}

/**
 * gpup_vfio_parser_feed() - feed stream bytes to the parser
 * @p: the parser
 * @buf: the next bytes of the stream
 * @len: how many; may be 0
 * @ev: the event of this call, cleared first
 *
 * Consumes a prefix of @buf and reports at most one event; the caller acts
 * on @ev, then feeds the rest of @buf, until it is all consumed.  A DATA
 * event points into @buf (no copy) and ends where the consumed bytes end.
 * @buf may be NULL for the page bytes of a VRAM record whose CRC the
 * caller checks (gpup_vfio_parser_defer_left()); else NULL with @len not
 * 0 is -EINVAL, and the parser stays as it was.
 * When a payload's last byte was consumed, its RECORD_END comes with the
 * next call (which also takes up to 15 bytes of the next record header); a
 * call with @len 0 delivers such a pending event and consumes nothing.
 *
 * After an error the parser is dead: every further call returns the same
 * error.  Which error means what is listed in stream.h.
 *
 * Return: bytes consumed, at least 1 if @len is not 0, or a negative errno.
 */
long gpup_vfio_parser_feed(struct gpup_parser *p, const void *buf, size_t len,
			   struct gpup_event *ev)
{
	const u8 *in = buf;

	memset(ev, 0, sizeof(*ev));
	if (p->err)
		return p->err;
	/* NULL stands only for a deferred record's pages, in place. */
	if (!buf && len > gpup_vfio_parser_defer_left(p))
		return -EINVAL;
	if (p->pending) {
		/* Now in GPUP_S_REC with an empty buffer: no event can follow. */
		p->pending = false;
		gpup_ev_rec(p, ev, GPUP_EV_RECORD_END);
		return gpup_take(p, in, len, GPUP_REC_HDR_SIZE - 1);
	}
	if (!len)
		return 0;

	switch (p->state) {
	case GPUP_S_HDR:
		return gpup_feed_hdr(p, in, len, ev);
	case GPUP_S_REC:
		return gpup_feed_rec(p, in, len, ev);
	case GPUP_S_RUN:
		return gpup_feed_run(p, in, len, ev);
	case GPUP_S_DATA:
		return gpup_feed_data(p, in, len, ev);
	case GPUP_S_END:
		return gpup_feed_end(p, in, len, ev);
	default:
		/* Not a byte may follow END. */
		return gpup_fail(p, -EPROTO);
	}
}

/**
 * gpup_vfio_parser_finish() - check that the stream is complete
 * @p: the parser
 *
 * Return: 0 if the END record was verified, the sticky error if feeding
 * failed, else -ENODATA (the stream stopped short).
 */
int gpup_vfio_parser_finish(const struct gpup_parser *p)
{
	if (p->err)
		return p->err;
	return p->state == GPUP_S_DONE ? 0 : -ENODATA;
}

/**
 * gpup_vfio_parser_defer_crc() - leave a VRAM record's CRC to the caller
 * @p: the parser, whose last event was %GPUP_EV_VRAM_RUN
 *
 * The parser does not checksum the pages of the current record: the
 * caller keeps them and checks, before it trusts the stream, that
 * gpup_vfio_crc_final(gpup_vfio_crc(crc_state, pages, npages * page_size))
 * equals the event's crc, with the VRAM_RUN event's crc_state; a mismatch
 * is the stream's -EBADMSG.  It may do so on another CPU while the parser
 * goes on.  Every other check of the record stays the parser's.
 *
 * Return: 0, or -EINVAL (the parser is not at the first page byte of a
 * VRAM record).
 */
int gpup_vfio_parser_defer_crc(struct gpup_parser *p)
{
	if (p->err || p->state != GPUP_S_DATA ||
	    p->rec_type != GPUP_REC_VRAM || p->rec_off != GPUP_VRAM_RUN_SIZE)
		return -EINVAL;
	p->defer = true;
	return 0;
}

/**
 * gpup_vfio_parser_defer_left() - page bytes of a deferred record to come
 * @p: the parser
 *
 * While the CRC of the current VRAM record is the caller's
 * (gpup_vfio_parser_defer_crc()), the parser does not read its page
 * bytes: the caller may put them in place itself and feed the parser
 * NULL for up to this many bytes; the DATA event then has data NULL.
 *
 * Return: the record's page bytes not consumed yet, or 0 (no deferred
 * record's pages come next).
 */
u32 gpup_vfio_parser_defer_left(const struct gpup_parser *p)
{
	if (p->err || !p->defer || p->state != GPUP_S_DATA)
		return 0;
	return p->rec_len - p->rec_off;
}

/**
 * gpup_vfio_writer_init() - start writing a stream
 * @w: the writer
 *
 * Next: gpup_vfio_stream_hdr_build() and gpup_vfio_writer_hdr().
 */
void gpup_vfio_writer_init(struct gpup_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->chain = GPUP_CRC_INIT;
	w->phase = GPUP_PH_HDR;
}

/**
 * gpup_vfio_stream_hdr_build() - fill in a stream header
 * @h: the header to fill in, CRC included
 * @provider_id: provider id to record
 * @profile_id: VF profile id to record
 * @page_size: VRAM page size
 * @vram_size: VRAM bytes, a multiple of @page_size
 */
void gpup_vfio_stream_hdr_build(struct gpup_stream_hdr *h, u32 provider_id,
				u32 profile_id, u32 page_size, u64 vram_size)
{
	u32 crc;

	memset(h, 0, sizeof(*h));
	h->magic = cpu_to_le32(GPUP_STREAM_MAGIC);
	h->major = cpu_to_le16(GPUP_STREAM_MAJOR);
	h->minor = cpu_to_le16(GPUP_STREAM_MINOR);
	h->hdr_len = cpu_to_le32(GPUP_STREAM_HDR_SIZE);
	h->provider_id = cpu_to_le32(provider_id);
	h->profile_id = cpu_to_le32(profile_id);
	h->page_size = cpu_to_le32(page_size);
	h->vram_size = cpu_to_le64(vram_size);
	crc = gpup_vfio_crc32c(h, offsetof(struct gpup_stream_hdr, hdr_crc));
	h->hdr_crc = cpu_to_le32(crc);
}

/**
 * gpup_vfio_writer_hdr() - account the stream header in the writer
 * @w: the writer, fresh from gpup_vfio_writer_init()
 * @h: the header from gpup_vfio_stream_hdr_build()
 *
 * Return: 0; -EPROTO if the header was accounted before; -EINVAL if its
 * page_size or vram_size is not valid.
 */
int gpup_vfio_writer_hdr(struct gpup_writer *w, const struct gpup_stream_hdr *h)
{
	u32 page_size = le32_to_cpu(h->page_size);

	if (w->phase != GPUP_PH_HDR)
		return -EPROTO;
	if (!gpup_page_size_ok(page_size) ||
	    (le64_to_cpu(h->vram_size) & (page_size - 1)))
		return -EINVAL;
	w->page_size = page_size;
	w->stream_bytes = GPUP_STREAM_HDR_SIZE;
	w->phase = GPUP_PH_START;
	return 0;
}

static void gpup_rec_hdr_fill(struct gpup_rec_hdr *rh, u16 type, u16 flags,
			      u32 len, u32 payload_crc)
{
	u32 crc;

	rh->type = cpu_to_le16(type);
	rh->flags = cpu_to_le16(flags);
	rh->len = cpu_to_le32(len);
	rh->crc = cpu_to_le32(payload_crc);
	crc = gpup_vfio_crc32c(rh, offsetof(struct gpup_rec_hdr, hcrc));
	rh->hcrc = cpu_to_le32(crc);
}

/**
 * gpup_vfio_rec_hdr_build() - fill in a record header and account the record
 * @w: the writer
 * @rh: the header to fill in
 * @type: GPUP_REC_IMMUTABLE, _VRAM, _ZERO, _MUTABLE, or an unknown type with
 *	%GPUP_REC_F_OPTIONAL in @flags; END is built by gpup_vfio_end_build()
 * @flags: GPUP_REC_F_* bits
 * @len: payload bytes that will follow the header; for VRAM
 *	gpup_vfio_vram_rec_size() less %GPUP_REC_HDR_SIZE
 * @payload_crc: gpup_vfio_crc32c() of the whole payload (for VRAM the struct
 *	gpup_vram_run included)
 *
 * The caller emits @rh, then the @len payload bytes, before anything it
 * builds next.  Adds the header to the END chain and 16 + @len to
 * @w->stream_bytes.  The writer enforces the record order a reader does;
 * on error @rh and @w are left as they were.
 *
 * Return: 0; -EPROTO if a record of @type may not come now; -EINVAL for
 * reserved @flags, an unknown mandatory or END @type, a VRAM @len that
 * is not a whole number (at least one) of pages plus the run header, or
 * a ZERO @len other than the run header's.
 */
int gpup_vfio_rec_hdr_build(struct gpup_writer *w, struct gpup_rec_hdr *rh,
			    u16 type, u16 flags, u32 len, u32 payload_crc)
{
	u8 next = w->phase;

	if (flags & ~GPUP_REC_F_OPTIONAL)
		return -EINVAL;
	switch (type) {
	case GPUP_REC_IMMUTABLE:
		if (w->phase != GPUP_PH_START)
			return -EPROTO;
		next = GPUP_PH_IMM;
		break;
	case GPUP_REC_VRAM:
		if (w->phase != GPUP_PH_IMM)
			return -EPROTO;
		if (len <= GPUP_VRAM_RUN_SIZE ||
		    ((len - GPUP_VRAM_RUN_SIZE) & (w->page_size - 1)))
			return -EINVAL;
		break;
	case GPUP_REC_ZERO:
		if (w->phase != GPUP_PH_IMM)
			return -EPROTO;
		if (len != GPUP_VRAM_RUN_SIZE)
			return -EINVAL;
		break;
	case GPUP_REC_MUTABLE:
		if (w->phase != GPUP_PH_IMM)
			return -EPROTO;
		next = GPUP_PH_MUT;
		break;
	case GPUP_REC_END:
		return -EINVAL;
	default:
		if (!(flags & GPUP_REC_F_OPTIONAL))
			return -EINVAL;
		if (w->phase == GPUP_PH_HDR || w->phase == GPUP_PH_DONE)
			return -EPROTO;
		break;
	}

	gpup_rec_hdr_fill(rh, type, flags, len, payload_crc);
	w->chain = gpup_vfio_crc(w->chain, rh, GPUP_REC_CHAIN_LEN);
	w->nrecords++;
	w->stream_bytes += GPUP_REC_HDR_SIZE + (u64)len;
	w->phase = next;
	return 0;
}

/**
 * gpup_vfio_zero_rec_build() - fill in a ZERO record and account it
 * @w: the writer, between IMMUTABLE and MUTABLE
 * @rh: the record header to fill in
 * @run: its payload to fill in
 * @first_page: first VRAM page of the run
 * @npages: pages that hold zeros, at least 1
 *
 * The caller emits @rh then @run.  As gpup_vfio_rec_hdr_build() otherwise.
 *
 * Return: 0; -EPROTO if a ZERO record may not come now; -EINVAL if
 * @npages is 0.
 */
int gpup_vfio_zero_rec_build(struct gpup_writer *w, struct gpup_rec_hdr *rh,
			     struct gpup_vram_run *run, u64 first_page,
			     u32 npages)
{
	if (!npages)
		return -EINVAL;
	gpup_vfio_vram_run_build(run, first_page, npages);
	return gpup_vfio_rec_hdr_build(w, rh, GPUP_REC_ZERO, 0,
				       GPUP_VRAM_RUN_SIZE,
				       gpup_vfio_crc32c(run, GPUP_VRAM_RUN_SIZE));
}

/**
 * gpup_vfio_vram_run_build() - fill in the run header of a VRAM payload
 * @r: the run header
 * @first_page: first VRAM page of the run
 * @npages: pages that follow, at least 1
 */
void gpup_vfio_vram_run_build(struct gpup_vram_run *r, u64 first_page, u32 npages)
{
	memset(r, 0, sizeof(*r));
	r->first_page = cpu_to_le64(first_page);
	r->npages = cpu_to_le32(npages);
}

/**
 * gpup_vfio_end_build() - fill in the END record, the last of the stream
 * @w: the writer, after the MUTABLE record
 * @rh: the END record header to fill in
 * @end: the END payload to fill in
 *
 * The caller emits @rh then @end, and nothing after them.
 *
 * Return: 0, or -EPROTO (and nothing filled in) before MUTABLE or after END.
 */
int gpup_vfio_end_build(struct gpup_writer *w, struct gpup_rec_hdr *rh,
			struct gpup_end *end)
{
	if (w->phase != GPUP_PH_MUT)
		return -EPROTO;
	memset(end, 0, sizeof(*end));
	end->nrecords = cpu_to_le32(w->nrecords);
	end->stream_bytes = cpu_to_le64(w->stream_bytes);
	end->chain = cpu_to_le32(gpup_vfio_crc_final(w->chain));
	gpup_rec_hdr_fill(rh, GPUP_REC_END, 0, GPUP_END_SIZE,
			  gpup_vfio_crc32c(end, GPUP_END_SIZE));
	w->stream_bytes += GPUP_END_REC_SIZE;
	w->phase = GPUP_PH_DONE;
	return 0;
}

/**
 * gpup_vfio_vram_rec_size() - bytes of one VRAM record
 * @npages: pages in the run
 * @page_size: VRAM page size
 *
 * Return: record header + run header + @npages pages.
 */
u64 gpup_vfio_vram_rec_size(u32 npages, u32 page_size)
{
	return GPUP_REC_HDR_SIZE + GPUP_VRAM_RUN_SIZE + (u64)npages * page_size;
}

/**
 * gpup_vfio_vram_runs_size() - bytes of the VRAM records carrying some pages
 * @npages: pages to send
 * @page_size: VRAM page size
 * @run_bytes: most page bytes the writer puts in one record; rounded down
 *	to whole pages, at least one
 *
 * Exact when the pages are contiguous and each record but the last holds
 * @run_bytes of pages; scattered pages need more records, each adding
 * %GPUP_REC_HDR_SIZE + %GPUP_VRAM_RUN_SIZE bytes.
 *
 * Return: the bytes, or 0 if @page_size is 0.
 */
u64 gpup_vfio_vram_runs_size(u64 npages, u32 page_size, u32 run_bytes)
{
	u32 per_run;
	u64 nruns;

	if (!page_size)
		return 0;
	per_run = max_t(u32, run_bytes / page_size, 1);
	nruns = div_u64(npages, per_run);
	if (nruns * per_run != npages)
		nruns++;
	return nruns * (GPUP_REC_HDR_SIZE + GPUP_VRAM_RUN_SIZE) +
	       npages * page_size;
}

/**
 * gpup_vfio_stream_full_size() - bytes of a whole stream sending all of VRAM once
 * @immutable_len: IMMUTABLE payload bytes
 * @vram_size: VRAM bytes, a multiple of @page_size
 * @page_size: VRAM page size
 * @run_bytes: most page bytes per VRAM record, as for gpup_vfio_vram_runs_size()
 * @mutable_len: MUTABLE payload bytes
 *
 * Return: stream header + IMMUTABLE + VRAM records + MUTABLE + END, or 0
 * if @page_size is 0.
 */
u64 gpup_vfio_stream_full_size(u64 immutable_len, u64 vram_size, u32 page_size,
			       u32 run_bytes, u64 mutable_len)
{
	if (!page_size)
		return 0;
	return GPUP_STREAM_HDR_SIZE + GPUP_REC_HDR_SIZE + immutable_len +
	       gpup_vfio_vram_runs_size(div_u64(vram_size, page_size), page_size,
					run_bytes) +
	       GPUP_REC_HDR_SIZE + mutable_len + GPUP_END_REC_SIZE;
}

/**
 * gpup_vfio_rec_type_name() - name of a record type, for logs
 * @type: GPUP_REC_*
 *
 * Return: "IMMUTABLE", "VRAM", "MUTABLE", "END", "ZERO" or "UNKNOWN".
 */
const char *gpup_vfio_rec_type_name(u16 type)
{
	switch (type) {
	case GPUP_REC_IMMUTABLE:
		return "IMMUTABLE";
	case GPUP_REC_VRAM:
		return "VRAM";
	case GPUP_REC_MUTABLE:
		return "MUTABLE";
	case GPUP_REC_END:
		return "END";
	case GPUP_REC_ZERO:
		return "ZERO";
	default:
		return "UNKNOWN";
	}
}
