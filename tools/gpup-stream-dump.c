// SPDX-License-Identifier: GPL-2.0
/*
 * gpup-stream-dump - decode a gpup migration stream
 *
 *   gpup-stream-dump [FILE]        FILE absent or "-": standard input
 *
 * Prints the stream header, a line per record (offset, type, flags, len,
 * payload CRC and whether it matched, the pages of a VRAM run) and the END
 * record.  Exit status: 0 for a complete valid stream; 1 for a bad or
 * short one, after a line naming the errno (see drivers/vfio/pci/gpup/
 * stream.h); 2 if the input cannot be read.
 *
 * Built by selftests/gpup/unit/Makefile with the kernel's stream.c.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <stdio.h>
#include <string.h>

#include "stream.h"

struct dump {
	struct gpup_event rec;	/* RECORD / VRAM_RUN of the open record */
	bool in_rec;
	u64 rec_at;		/* offset of its header */
	unsigned int nrec;
};

static const char *err_name(long err)
{
	switch (err) {
	case -EPROTO:
		return "EPROTO";
	case -EBADMSG:
		return "EBADMSG";
	case -EPROTONOSUPPORT:
		return "EPROTONOSUPPORT";
	case -EMSGSIZE:
		return "EMSGSIZE";
	case -ENODATA:
		return "ENODATA";
	case -EINVAL:
		return "EINVAL";
	default:
		return "EUNKNOWN";
	}
}

static void print_rec(const struct dump *d, const char *status)
{
	const struct gpup_event *ev = &d->rec;

	printf("@%llu record %u: %s (type %u) flags 0x%04x len %u crc 0x%08x %s",
	       d->rec_at, d->nrec, gpup_vfio_rec_type_name(ev->type), ev->type,
	       ev->flags, ev->len, ev->crc, status);
	if ((ev->type == GPUP_REC_VRAM || ev->type == GPUP_REC_ZERO) &&
	    ev->npages)
		printf(" first_page %llu npages %u", ev->first_page,
		       ev->npages);
	else if (ev->type > GPUP_REC_ZERO || !ev->type)
		printf(" (skipped)");
	printf("\n");
}

static void on_event(struct dump *d, const struct gpup_event *ev, u64 pos)
{
	const struct gpup_stream_info *h = &ev->hdr;

	switch (ev->kind) {
	case GPUP_EV_HEADER:
		printf("header: GPUP v%u.%u provider 0x%08x profile 0x%08x",
		       h->major, h->minor, h->provider_id, h->profile_id);
		printf(" page_size %u vram_size %llu (%llu pages)\n",
		       h->page_size, h->vram_size,
		       h->vram_size / h->page_size);
		break;
	case GPUP_EV_RECORD:
		d->rec = *ev;
		d->in_rec = true;
		d->rec_at = pos - GPUP_REC_HDR_SIZE;
		break;
	case GPUP_EV_VRAM_RUN:
		d->rec = *ev;
		break;
	case GPUP_EV_RECORD_END:
		print_rec(d, "ok");
		d->in_rec = false;
		d->nrec++;
		break;
	case GPUP_EV_END:
		printf("@%llu END: nrecords %u stream_bytes %llu chain ok\n",
		       ev->stream_bytes, ev->nrecords, ev->stream_bytes);
		break;
	default:
		break;
	}
}

int main(int argc, char **argv)
{
	static const struct gpup_stream_limits lim = {
		.max_immutable = U32_MAX,
		.max_mutable = U32_MAX,
		.max_vram_run = U32_MAX,
		.max_optional = U32_MAX,
	};
	static u8 buf[1 << 16];
	const char *name = "-";
	struct gpup_parser p;
	struct gpup_event ev;
	struct dump d = { 0 };
	FILE *f = stdin;
	size_t n, off;
	long r = 0;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-' && argv[1][1])) {
		fprintf(stderr, "usage: gpup-stream-dump [FILE]\n");
		return 2;
	}
	if (argc == 2 && strcmp(argv[1], "-")) {
		name = argv[1];
		f = fopen(name, "rb");
		if (!f) {
			perror(name);
			return 2;
		}
	}

	gpup_vfio_parser_init(&p, &lim);
	while (r >= 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
		for (off = 0; off < n; off += r) {
			r = gpup_vfio_parser_feed(&p, buf + off, n - off, &ev);
			if (r < 0)
				break;
			on_event(&d, &ev, p.pos);
		}
	}
	if (ferror(f)) {
		perror(name);
		return 2;
	}
	if (f != stdin)
		fclose(f);
	if (r >= 0) {
		r = gpup_vfio_parser_feed(&p, NULL, 0, &ev);
		if (r >= 0)
			on_event(&d, &ev, p.pos);
		r = gpup_vfio_parser_finish(&p);
	}
	if (r) {
		if (d.in_rec)
			print_rec(&d, r == -EBADMSG ? "BAD" :
				  r == -ENODATA ? "truncated" : "error");
		printf("bad stream near offset %llu: %s (%s)\n", p.pos,
		       err_name(r), strerror((int)-r));
		return 1;
	}
	printf("ok: %llu bytes, %u records\n", p.pos, d.nrec);
	return 0;
}
