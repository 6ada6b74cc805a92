/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What a saved stream's VRAM and ZERO records cover: for the tests that
 * build with the driver's stream codec (stream.h before or after this).
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_SELFTEST_WALK_H
#define GPUP_SELFTEST_WALK_H

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "gpup_mig.h"
#include "stream.h"

/**
 * struct gpup_vram_walk - what a stream's VRAM and ZERO records cover
 * @zero_pages: pages in ZERO records
 * @vram_pages: pages in VRAM records
 * @vram_zero_recs: VRAM records whose pages hold zeros only
 * @vram_zero_pages: pages of VRAM records that hold zeros only
 */
struct gpup_vram_walk {
	u64 zero_pages;
	u64 vram_pages;
	int vram_zero_recs;
	u64 vram_zero_pages;
};

static inline bool gpup_zero_page(const u8 *p, u32 ps)
{
	u32 i;

	for (i = 0; i < ps && !p[i]; i++)
		;
	return i == ps;
}

/**
 * gpup_walk_vram() - count the VRAM and ZERO records of a stream
 * @s: the stream, from its header to its END record
 * @ps: the VF's page size
 * @w: filled in
 *
 * Return: 0, or -EPROTO when the records do not end where @s does.
 */
static inline int gpup_walk_vram(const struct gpup_buf *s, u32 ps,
				 struct gpup_vram_walk *w)
{
	const struct gpup_rec_hdr *rh;
	const struct gpup_vram_run *run;
	size_t off = GPUP_STREAM_HDR_SIZE, len, i;
	const u8 *p;
	u64 n, zeros;

	memset(w, 0, sizeof(*w));
	while (off + GPUP_REC_HDR_SIZE <= s->len) {
		rh = (const void *)(s->data + off);
		run = (const void *)(rh + 1);
		n = le32_to_cpu(run->npages);
		if (le16_to_cpu(rh->type) == GPUP_REC_ZERO) {
			w->zero_pages += n;
		} else if (le16_to_cpu(rh->type) == GPUP_REC_VRAM) {
			w->vram_pages += n;
			p = (const u8 *)(run + 1);
			len = n * ps;
			zeros = 0;
			for (i = 0; i < len; i += ps)
				zeros += gpup_zero_page(p + i, ps);
			w->vram_zero_pages += zeros;
			if (zeros == n)
				w->vram_zero_recs++;
		}
		off += GPUP_REC_HDR_SIZE + le32_to_cpu(rh->len);
	}
	return off == s->len ? 0 : -EPROTO;
}

#endif /* GPUP_SELFTEST_WALK_H */
