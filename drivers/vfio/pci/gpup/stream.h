/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup migration stream v1: wire format, incremental parser and writer.
 *
 * The same code builds into gpup_vfio_pci.ko and into the userspace unit
 * tests, fuzzer and gpup-stream-dump (see selftests/gpup/unit/).  It takes
 * no locks and allocates nothing; one struct gpup_parser or gpup_writer per
 * stream, serialised by its user.
 *
 * Layout, every field little endian, every CRC a CRC32C (Castagnoli) stored
 * as gpup_vfio_crc32c() computes it, that is ~crc32c(~0, data, len):
 *
 *  ======================= ================================================
 *  struct gpup_stream_hdr  48 bytes, once, first
 *  IMMUTABLE record        exactly one, the first record
 *  VRAM and ZERO records   any number, any page order, repeats allowed
 *  MUTABLE record          exactly one, after the VRAM records
 *  END record              last; no byte may follow it
 *  ======================= ================================================
 *
 * A record is a struct gpup_rec_hdr (16 bytes) followed by @len payload
 * bytes.  A VRAM payload is a struct gpup_vram_run followed by
 * npages * page_size bytes of page contents; the run header is covered by
 * the payload CRC.  A ZERO payload (minor 1 on) is a struct gpup_vram_run
 * alone: its pages hold zeros, as a VRAM record of zero pages would say
 * in fewer bytes.  An END payload is a struct gpup_end.  A record of an
 * unknown type with %GPUP_REC_F_OPTIONAL set may appear anywhere between
 * the stream header and END; readers check and skip it.
 *
 * The parser reports, through gpup_vfio_parser_feed(): HEADER; for each record
 * RECORD, for VRAM and ZERO a VRAM_RUN (for ZERO once its CRC was
 * checked), for VRAM DATA chunks (none for a skipped record),
 * RECORD_END; finally END.  DATA chunks follow the caller's buffers, not
 * page boundaries, and a payload is known good only at its RECORD_END: a
 * reader must not commit an IMMUTABLE or MUTABLE payload before it, and
 * VRAM it wrote from a record that then fails holds garbage.  A reader
 * that keeps a VRAM record's pages may check their CRC itself, later and
 * elsewhere (gpup_vfio_parser_defer_crc()); the stream is then known good
 * only once it did.
 *
 * Writing: gpup_vfio_writer_init(), gpup_vfio_stream_hdr_build() + gpup_vfio_writer_hdr(),
 * then per record the payload CRC (gpup_vfio_crc() in pieces or gpup_vfio_crc32c())
 * and gpup_vfio_rec_hdr_build(), finally gpup_vfio_end_build().  The structs are
 * packed; they may sit at any alignment and are emitted as they are.
 *
 * Errors of gpup_vfio_parser_feed() and gpup_vfio_parser_finish():
 *
 *  ================ =======================================================
 *  -EPROTO          bad structure: bad magic or hdr_len, a reserved field or
 *                   flag not zero, END with any flag (even
 *                   %GPUP_REC_F_OPTIONAL), bad page_size or vram_size, an
 *                   unknown type without %GPUP_REC_F_OPTIONAL, a missing,
 *                   duplicate or out-of-order record, a bad VRAM run
 *                   (npages 0, pages out of range, npages not matching len),
 *                   a ZERO record where a VRAM record could not be,
 *                   END nrecords or stream_bytes not matching, any byte
 *                   after END
 *  -EBADMSG         a CRC mismatch: stream header, record header (hcrc),
 *                   payload (crc) or the END chain
 *  -EPROTONOSUPPORT stream major version is not 1 (any minor is accepted);
 *                   the one errno of incompatibility across the project
 *  -EMSGSIZE        a record longer than the limits allow (IMMUTABLE past
 *                   max_immutable, MUTABLE past max_mutable, VRAM pages past
 *                   max_vram_run, an optional record past max_optional, END
 *                   len not 24, ZERO len not 16); reported when the record header completes,
 *                   before any of its payload is consumed
 *  -ENODATA         gpup_vfio_parser_finish() before the END record was verified
 *  -EINVAL          page_size or vram_size of the stream differ from the
 *                   non-zero struct gpup_stream_limits values
 *  ================ =======================================================
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_STREAM_H
#define GPUP_STREAM_H

#ifdef __KERNEL__
#include <linux/build_bug.h>
#include <linux/compiler_attributes.h>
#include <linux/types.h>
#else
#include <gpup/stream_user.h>	/* tools/include: userspace builds */
#endif

/* "GPUP" in the first four bytes of the stream. */
#define GPUP_STREAM_MAGIC	0x50555047
#define GPUP_STREAM_MAJOR	1
/* Minor 1 added the ZERO record. */
#define GPUP_STREAM_MINOR	1

#define GPUP_STREAM_HDR_SIZE	48
#define GPUP_REC_HDR_SIZE	16
#define GPUP_VRAM_RUN_SIZE	16
#define GPUP_END_SIZE		24
/* Bytes of each record header that the END chain covers: all but hcrc. */
#define GPUP_REC_CHAIN_LEN	12
/* Bytes of the END record, header included. */
#define GPUP_END_REC_SIZE	(GPUP_REC_HDR_SIZE + GPUP_END_SIZE)

#define GPUP_PAGE_SIZE_MIN	4096
#define GPUP_PAGE_SIZE_MAX	(2 * 1024 * 1024)

/* Record types (struct gpup_rec_hdr.type). */
#define GPUP_REC_IMMUTABLE	1
#define GPUP_REC_VRAM		2
#define GPUP_REC_MUTABLE	3
#define GPUP_REC_END		4
#define GPUP_REC_ZERO		5

/* Record flags (struct gpup_rec_hdr.flags); other bits are reserved. */
#define GPUP_REC_F_OPTIONAL	0x0001

/**
 * struct gpup_stream_hdr - stream header, the first 48 bytes of a stream
 * @magic: %GPUP_STREAM_MAGIC
 * @major: %GPUP_STREAM_MAJOR; a reader rejects any other major
 * @minor: %GPUP_STREAM_MINOR when written; a reader accepts any minor
 * @hdr_len: %GPUP_STREAM_HDR_SIZE, the only value major 1 allows
 * @flags: reserved, 0
 * @provider_id: opaque id of the provider that wrote the stream
 * @profile_id: VF profile id
 * @page_size: VRAM page size, a power of two from %GPUP_PAGE_SIZE_MIN to
 *	%GPUP_PAGE_SIZE_MAX
 * @reserved: 0
 * @vram_size: bytes of VF VRAM, a multiple of @page_size
 * @reserved2: 0
 * @hdr_crc: CRC32C of the 44 bytes before it
 */
struct gpup_stream_hdr {
	__le32 magic;
	__le16 major;
	__le16 minor;
	__le32 hdr_len;
	__le32 flags;
	__le32 provider_id;
	__le32 profile_id;
	__le32 page_size;
	__le32 reserved;
	__le64 vram_size;
	__le32 reserved2;
	__le32 hdr_crc;
} __packed;

/**
 * struct gpup_rec_hdr - record header, 16 bytes before each payload
 * @type: GPUP_REC_*
 * @flags: GPUP_REC_F_* bits; reserved bits 0
 * @len: payload bytes that follow this header
 * @crc: CRC32C of the @len payload bytes
 * @hcrc: CRC32C of the 12 bytes before it
 */
struct gpup_rec_hdr {
	__le16 type;
	__le16 flags;
	__le32 len;
	__le32 crc;
	__le32 hcrc;
} __packed;

/**
 * struct gpup_vram_run - start of a VRAM payload
 * @first_page: first VRAM page of the run
 * @npages: pages in the run, at least 1; their contents follow, in order
 * @reserved: 0
 *
 * first_page + npages <= vram_size / page_size, and the record's len is
 * exactly %GPUP_VRAM_RUN_SIZE + npages * page_size.
 */
struct gpup_vram_run {
	__le64 first_page;
	__le32 npages;
	__le32 reserved;
} __packed;

/**
 * struct gpup_end - payload of the END record
 * @nrecords: number of records before END, optional ones included
 * @reserved: 0
 * @stream_bytes: bytes before the END record header, stream header included
 * @chain: CRC32C over the concatenated first 12 bytes (type, flags, len,
 *	crc; %GPUP_REC_CHAIN_LEN) of the record headers of all records before
 *	END, in stream order
 * @reserved2: 0
 *
 * @chain leaves hcrc out on purpose: a block followed by its own CRC32C
 * leaves the CRC register in a fixed state whatever the block held, so a
 * CRC over whole 16-byte headers would depend on the record count only.
 */
struct gpup_end {
	__le32 nrecords;
	__le32 reserved;
	__le64 stream_bytes;
	__le32 chain;
	__le32 reserved2;
} __packed;

static_assert(sizeof(struct gpup_stream_hdr) == GPUP_STREAM_HDR_SIZE, "gpup_stream_hdr size");
static_assert(sizeof(struct gpup_rec_hdr) == GPUP_REC_HDR_SIZE, "gpup_rec_hdr size");
static_assert(sizeof(struct gpup_vram_run) == GPUP_VRAM_RUN_SIZE, "gpup_vram_run size");
static_assert(sizeof(struct gpup_end) == GPUP_END_SIZE, "gpup_end size");

/**
 * struct gpup_stream_limits - what a reader accepts
 * @page_size: required stream page_size, or 0 to take the stream's
 * @vram_size: required stream vram_size, or 0 to take the stream's
 * @max_immutable: largest IMMUTABLE payload in bytes
 * @max_mutable: largest MUTABLE payload in bytes
 * @max_vram_run: largest npages * page_size of one VRAM record
 * @max_optional: largest payload of a skipped optional record
 */
struct gpup_stream_limits {
	u32 page_size;
	u64 vram_size;
	u32 max_immutable;
	u32 max_mutable;
	u32 max_vram_run;
	u32 max_optional;
};

/**
 * struct gpup_stream_info - decoded stream header, in CPU byte order
 * @major: stream major version
 * @minor: stream minor version
 * @provider_id: provider id from the header
 * @profile_id: VF profile id from the header
 * @page_size: VRAM page size
 * @vram_size: VRAM bytes
 */
struct gpup_stream_info {
	u16 major;
	u16 minor;
	u32 provider_id;
	u32 profile_id;
	u32 page_size;
	u64 vram_size;
};

/**
 * enum gpup_event_kind - what one gpup_vfio_parser_feed() call reports
 * @GPUP_EV_NONE: nothing to act on: the bytes went into the parser's own
 *	buffer or were the skipped payload of an optional record
 * @GPUP_EV_HEADER: the stream header was verified; see &gpup_event.hdr
 * @GPUP_EV_RECORD: a record header was verified and its length checked
 *	against the limits: &gpup_event.type, .flags, .len, .crc.  Not
 *	reported for END.  An unknown optional record is reported too; its
 *	payload is then skipped (no DATA) and RECORD_END follows.
 * @GPUP_EV_VRAM_RUN: the run header of a VRAM or ZERO record was
 *	checked: &gpup_event.first_page and .npages; for ZERO, whose whole
 *	payload it is, the CRC too, and RECORD_END follows
 * @GPUP_EV_DATA: a chunk of payload, pointing into the caller's buffer:
 *	&gpup_event.data, .data_len, .offset and, for VRAM, .vram_offset.
 *	The payload CRC is only known good at RECORD_END.
 * @GPUP_EV_RECORD_END: the payload is complete and its CRC verified
 * @GPUP_EV_END: the END record was verified; the stream is complete
 */
enum gpup_event_kind {
	GPUP_EV_NONE,
	GPUP_EV_HEADER,
	GPUP_EV_RECORD,
	GPUP_EV_VRAM_RUN,
	GPUP_EV_DATA,
	GPUP_EV_RECORD_END,
	GPUP_EV_END,
};

/**
 * struct gpup_event - one event of gpup_vfio_parser_feed()
 * @kind: the event; fields not named for it are 0
 * @type: record type (RECORD, VRAM_RUN, DATA, RECORD_END)
 * @flags: record flags (same events)
 * @len: record payload length (same events)
 * @crc: stored payload CRC (same events)
 * @crc_state: VRAM_RUN: the CRC state (gpup_vfio_crc()) of the payload up
 *	to its pages, for gpup_vfio_parser_defer_crc()
 * @data: DATA: first payload byte of the chunk, inside the fed buffer;
 *	NULL where the caller fed NULL (gpup_vfio_parser_defer_left())
 * @data_len: DATA: bytes at @data
 * @offset: DATA: offset of @data within the record payload; VRAM page
 *	bytes start at offset %GPUP_VRAM_RUN_SIZE
 * @first_page: VRAM_RUN and VRAM DATA: first page of the run
 * @npages: VRAM_RUN and VRAM DATA: pages in the run
 * @vram_offset: VRAM DATA: byte offset in VRAM where @data belongs
 * @hdr: HEADER: the decoded stream header
 * @nrecords: END: records before END
 * @stream_bytes: END: bytes before the END record
 */
struct gpup_event {
	enum gpup_event_kind kind;
	u16 type;
	u16 flags;
	u32 len;
	u32 crc;
	u32 crc_state;
	const void *data;
	u32 data_len;
	u32 offset;
	u64 first_page;
	u32 npages;
	u64 vram_offset;
	struct gpup_stream_info hdr;
	u32 nrecords;
	u64 stream_bytes;
};

/**
 * struct gpup_parser - state of one incremental stream reader
 * @lim: the limits given to gpup_vfio_parser_init()
 * @info: the stream header, once %GPUP_EV_HEADER was reported
 * @pos: stream bytes consumed so far
 * @total_pages: vram_size / page_size of the stream
 * @end_at: stream offset of the END record header
 * @first_page: first page of the current VRAM run
 * @npages: pages of the current VRAM run
 * @rec_len: payload length of the current record
 * @rec_off: payload bytes of the current record consumed
 * @rec_crc: stored payload CRC of the current record
 * @crc: running CRC32C state of the current payload
 * @chain: running CRC32C state of the END chain
 * @nrecords: record headers seen before END
 * @err: the sticky error, or 0
 * @rec_type: type of the current record
 * @rec_flags: flags of the current record
 * @state: what the next bytes are (private enum)
 * @phase: which known records were seen (private enum)
 * @fill: bytes in @u
 * @pending: a RECORD_END is owed for the current record
 * @defer: the caller checks the current VRAM record's CRC
 * @u: buffer for the fixed-size parts; @u.raw aliases the others
 * @u.raw: the bytes
 * @u.hdr: as the stream header
 * @u.rec: as a record header
 * @u.run: as a VRAM run header
 * @u.end: as an END payload
 *
 * Opaque to users except @pos and @info.  Set up by gpup_vfio_parser_init().
 */
struct gpup_parser {
	struct gpup_stream_limits lim;
	struct gpup_stream_info info;
	u64 pos;
	u64 total_pages;
	u64 end_at;
	u64 first_page;
	u32 npages;
	u32 rec_len;
	u32 rec_off;
	u32 rec_crc;
	u32 crc;
	u32 chain;
	u32 nrecords;
	int err;
	u16 rec_type;
	u16 rec_flags;
	u8 state;
	u8 phase;
	u8 fill;
	bool pending;
	bool defer;
	union {
		u8 raw[GPUP_STREAM_HDR_SIZE];
		struct gpup_stream_hdr hdr;
		struct gpup_rec_hdr rec;
		struct gpup_vram_run run;
		struct gpup_end end;
	} u;
};

/**
 * struct gpup_writer - bookkeeping of one stream being written
 * @stream_bytes: bytes accounted so far, stream header included
 * @chain: running CRC32C state of the END chain
 * @nrecords: record headers built, END excluded
 * @page_size: page size from the stream header
 * @phase: which records were built (private enum)
 *
 * The writer does not hold the stream: the caller emits the structs each
 * builder fills in, in the order they were built, each followed by its
 * payload.
 */
struct gpup_writer {
	u64 stream_bytes;
	u32 chain;
	u32 nrecords;
	u32 page_size;
	u8 phase;
};

/* The initial state of a CRC computed with gpup_vfio_crc(). */
#define GPUP_CRC_INIT		0xffffffffU

u32 gpup_vfio_crc(u32 crc_state, const void *buf, size_t len);
u32 gpup_vfio_crc_final(u32 crc_state);
u32 gpup_vfio_crc32c(const void *buf, size_t len);

void gpup_vfio_parser_init(struct gpup_parser *p,
			   const struct gpup_stream_limits *lim);
long gpup_vfio_parser_feed(struct gpup_parser *p, const void *buf, size_t len,
			   struct gpup_event *ev);
int gpup_vfio_parser_finish(const struct gpup_parser *p);
int gpup_vfio_parser_defer_crc(struct gpup_parser *p);
u32 gpup_vfio_parser_defer_left(const struct gpup_parser *p);

void gpup_vfio_writer_init(struct gpup_writer *w);
void gpup_vfio_stream_hdr_build(struct gpup_stream_hdr *h, u32 provider_id,
				u32 profile_id, u32 page_size, u64 vram_size);
int gpup_vfio_writer_hdr(struct gpup_writer *w, const struct gpup_stream_hdr *h);
int gpup_vfio_rec_hdr_build(struct gpup_writer *w, struct gpup_rec_hdr *rh,
			    u16 type, u16 flags, u32 len, u32 payload_crc);
int gpup_vfio_zero_rec_build(struct gpup_writer *w, struct gpup_rec_hdr *rh,
			     struct gpup_vram_run *run, u64 first_page,
			     u32 npages);
void gpup_vfio_vram_run_build(struct gpup_vram_run *r, u64 first_page,
			      u32 npages);
int gpup_vfio_end_build(struct gpup_writer *w, struct gpup_rec_hdr *rh,
			struct gpup_end *end);

u64 gpup_vfio_vram_rec_size(u32 npages, u32 page_size);
u64 gpup_vfio_vram_runs_size(u64 npages, u32 page_size, u32 run_bytes);
u64 gpup_vfio_stream_full_size(u64 immutable_len, u64 vram_size, u32 page_size,
			       u32 run_bytes, u64 mutable_len);
const char *gpup_vfio_rec_type_name(u16 type);

#endif /* GPUP_STREAM_H */
