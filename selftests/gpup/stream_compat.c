// SPDX-License-Identifier: GPL-2.0
/*
 * The stream format's compatibility rules across two hosts
 * (scripts/qemu/migrate.py two-hosts).  On host A, `save` takes a real
 * stream from a VF and writes it out as the variants below, re-assembled
 * with the driver's own stream codec; on host B, `load` feeds one of them
 * to a VF in RESUMING and checks what it got.
 *
 *   stream_compat save VF DIR
 *	VF RUNNING (COMPAT_STEPS steps after the open's reset, so that the
 *	stream holds VRAM records besides ZERO ones: pages never written
 *	go out as ZERO records only) -> STOP_COPY -> STOP -> RUNNING;
 *	fails unless the stream's VRAM records hold at least as many
 *	pages as the VF wrote (vram_backed); writes DIR/digest (the VF's
 *	at the save) and DIR/<variant>.gpup for every variant:
 *	  current      the stream as the driver wrote it
 *	  newer-minor  minor version + 1 (a newer writer of major 1)
 *	  optional     two records of a type no reader knows, with
 *	               GPUP_REC_F_OPTIONAL, one after IMMUTABLE and one
 *	               before MUTABLE
 *	  major-2      a future major version: refused
 *   stream_compat load VF FILE DIGEST|-ERRNO
 *	RESUMING, write FILE, RESUMING -> RUNNING: expects the VF to hold
 *	DIGEST after it, or the load to fail with errno ERRNO; either way the
 *	VF is then reset and must be RUNNING.
 *
 * Output: "# " lines of what happened; exit status 0 when the expectation
 * held, 1 when it did not, 2 for a usage or setup error.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/gpup_lib.h"
#include "lib/gpup_mig.h"
#include "lib/gpup_walk.h"
#include "stream.h"

#define OPT_TYPE	0x7e01	/* unknown to every reader */
#define OPT_LEN		4000

static int write_out(const char *dir, const char *name, const u8 *p,
		     size_t len)
{
	char path[512];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	ok = fwrite(p, 1, len, f) == len;
	if (fclose(f) || !ok)
		return -EIO;
	printf("# wrote %s, %zu bytes\n", path, len);
	return 0;
}

static void hdr_set_version(u8 *p, u16 major, u16 minor)
{
	struct gpup_stream_hdr *h = (void *)p;

	h->major = cpu_to_le16(major);
	h->minor = cpu_to_le16(minor);
	h->hdr_crc = cpu_to_le32(gpup_vfio_crc32c(h, offsetof(struct gpup_stream_hdr,
							      hdr_crc)));
}

static int append(struct gpup_buf *b, const void *p, size_t len)
{
	return gpup_buf_append(b, p, len) ? -ENOMEM : 0;
}

/* One optional record of an unknown type, accounted in @w. */
static int add_optional(struct gpup_writer *w, struct gpup_buf *out, u8 fill)
{
	struct gpup_rec_hdr rh;
	u8 payload[OPT_LEN];
	int ret;

	memset(payload, fill, sizeof(payload));
	ret = gpup_vfio_rec_hdr_build(w, &rh, OPT_TYPE, GPUP_REC_F_OPTIONAL,
				      sizeof(payload),
				 gpup_vfio_crc32c(payload, sizeof(payload)));
	if (ret)
		return ret;
	ret = append(out, &rh, sizeof(rh));
	return ret ? ret : append(out, payload, sizeof(payload));
}

/*
 * @in with the optional records added: its records rebuilt one by one
 * with the writer (same types, flags, lengths and payload CRCs), so the
 * END record's count, byte total and chain cover the new ones.
 */
static int with_optional(const struct gpup_buf *in, struct gpup_buf *out)
{
	size_t off = GPUP_STREAM_HDR_SIZE;
	const struct gpup_rec_hdr *rh;
	struct gpup_rec_hdr nrh, erh;
	struct gpup_writer w;
	struct gpup_end end;
	u16 type;
	u32 len;
	int ret;

	gpup_vfio_writer_init(&w);
	ret = gpup_vfio_writer_hdr(&w, (const void *)in->data);
	if (ret)
		return ret;
	ret = append(out, in->data, GPUP_STREAM_HDR_SIZE);
	while (!ret && off + GPUP_REC_HDR_SIZE <= in->len) {
		rh = (const void *)(in->data + off);
		type = le16_to_cpu(rh->type);
		len = le32_to_cpu(rh->len);
		if (type == GPUP_REC_END)
			break;
		if (off + GPUP_REC_HDR_SIZE + len > in->len)
			return -EPROTO;
		if (type == GPUP_REC_MUTABLE) {
			ret = add_optional(&w, out, 0xb7);
			if (ret)
				return ret;
		}
		ret = gpup_vfio_rec_hdr_build(&w, &nrh, type, le16_to_cpu(rh->flags),
					      len, le32_to_cpu(rh->crc));
		if (!ret)
			ret = append(out, &nrh, sizeof(nrh));
		if (!ret)
			ret = append(out, rh + 1, len);
		if (!ret && type == GPUP_REC_IMMUTABLE)
			ret = add_optional(&w, out, 0x5a);
		off += GPUP_REC_HDR_SIZE + len;
	}
	if (ret)
		return ret;
	ret = gpup_vfio_end_build(&w, &erh, &end);
	if (!ret)
		ret = append(out, &erh, sizeof(erh));
	return ret ? ret : append(out, &end, sizeof(end));
}

/* Steps the VF runs before the save: 2000 page writes, about 6 MiB. */
#define COMPAT_STEPS	500

/*
 * The stream must carry VRAM pages, not ZERO records only: at least one
 * VRAM record page per page the VF has written since the open's reset
 * (gpup_sim's vram_backed).
 */
static int carries_written(const char *vf, const struct gpup_buf *s)
{
	struct gpup_vram_walk w;
	long written;
	int ret;

	written = gpup_sim_read_long(vf, "vram_backed");
	if (written < 0)
		return written;
	ret = gpup_walk_vram(s, 4096, &w);
	if (ret)
		return ret;
	printf("# %ld pages written, %llu in VRAM records, %llu in ZERO records\n",
	       written, (unsigned long long)w.vram_pages,
	       (unsigned long long)w.zero_pages);
	return written > 0 && w.vram_pages >= (u64)written ? 0 : -ENODATA;
}

static int save_variants(const char *vf, const char *dir)
{
	char digest[GPUP_DIGEST_LEN];
	struct gpup_buf s = { 0 }, o = { 0 };
	struct gpup_vfio v;
	int ret;

	gpup_vfio_init(&v);
	ret = gpup_vfio_open(vf, &v);
	if (!ret)
		ret = gpup_sim_run(vf, COMPAT_STEPS);
	if (ret)
		goto out;
	ret = gpup_save_stop_copy(v.device, &s);
	if (!ret)
		ret = gpup_sim_digest(vf, digest);
	if (!ret)
		ret = gpup_mig_set(v.device, VFIO_DEVICE_STATE_RUNNING, NULL);
	if (ret)
		goto out;
	printf("# %s saved: %zu bytes, digest %s\n", vf, s.len, digest);
	ret = carries_written(vf, &s);
	if (ret)
		goto out;
	ret = write_out(dir, "digest", (const u8 *)digest, strlen(digest));
	if (!ret)
		ret = write_out(dir, "current.gpup", s.data, s.len);
	if (ret)
		goto out;
	ret = with_optional(&s, &o);
	if (!ret)
		ret = write_out(dir, "optional.gpup", o.data, o.len);
	if (ret)
		goto out;
	hdr_set_version(s.data, GPUP_STREAM_MAJOR, GPUP_STREAM_MINOR + 1);
	ret = write_out(dir, "newer-minor.gpup", s.data, s.len);
	if (ret)
		goto out;
	hdr_set_version(s.data, GPUP_STREAM_MAJOR + 1, 0);
	ret = write_out(dir, "major-2.gpup", s.data, s.len);
out:
	if (ret)
		printf("# save: %s\n", strerror(-ret));
	gpup_buf_free(&o);
	gpup_buf_free(&s);
	gpup_vfio_close(&v);
	return ret ? 1 : 0;
}

static int read_all(const char *path, struct gpup_buf *b)
{
	u8 chunk[65536];
	size_t n;
	FILE *f;
	int ret = 0;

	f = fopen(path, "r");
	if (!f)
		return -errno;
	while (!ret && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		ret = append(b, chunk, n);
	fclose(f);
	return ret;
}

static int load_one(const char *vf, const char *file, const char *want)
{
	char before[GPUP_DIGEST_LEN], after[GPUP_DIGEST_LEN];
	struct gpup_buf s = { 0 };
	struct gpup_vfio v;
	int ret, err, state = -1, good;

	gpup_vfio_init(&v);
	ret = read_all(file, &s);
	if (!ret)
		ret = gpup_vfio_open(vf, &v);
	if (!ret)
		ret = gpup_sim_digest(vf, before);
	if (ret) {
		printf("# load setup: %s\n", strerror(-ret));
		gpup_buf_free(&s);
		gpup_vfio_close(&v);
		return 2;
	}
	err = gpup_load(v.device, &s);
	gpup_sim_digest(vf, after);
	printf("# %s: load of %s (%zu bytes): %s; digest before %s, after %s\n",
	       vf, file, s.len, err ? strerror(-err) : "ok", before, after);
	if (want[0] == '-')
		good = err == -atoi(want + 1);
	else
		good = !err && !strcmp(after, want);
	/* Whatever happened, a reset brings the VF back to RUNNING. */
	if (gpup_device_reset(v.device) || gpup_mig_get(v.device, &state) ||
	    state != VFIO_DEVICE_STATE_RUNNING) {
		printf("# reset after the load: state %d\n", state);
		good = 0;
	}
	gpup_buf_free(&s);
	gpup_vfio_close(&v);
	return good ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "save"))
		return save_variants(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "load"))
		return load_one(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: stream_compat save VF DIR\n"
			"       stream_compat load VF FILE DIGEST|-ERRNO\n");
	return 2;
}
