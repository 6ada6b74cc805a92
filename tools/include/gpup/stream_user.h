/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Userspace stand-ins for the kernel facilities the stream codec
 * (drivers/vfio/pci/gpup/stream.c) uses, so that the same file builds into
 * the unit tests, the fuzzer and gpup-stream-dump.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_STREAM_USER_H
#define GPUP_STREAM_USER_H

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

/* sparse checks the kernel build; here the wire types are plain. */
typedef u16 __le16;
typedef u32 __le32;
typedef u64 __le64;

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "stream_user.h supports little-endian hosts only"
#endif

#define cpu_to_le16(x)	((__le16)(u16)(x))
#define cpu_to_le32(x)	((__le32)(u32)(x))
#define cpu_to_le64(x)	((__le64)(u64)(x))
#define le16_to_cpu(x)	((u16)(x))
#define le32_to_cpu(x)	((u32)(x))
#define le64_to_cpu(x)	((u64)(x))

#define gpup_user_attr(a)	__attribute__((a))
#define __packed		gpup_user_attr(__packed__)

#define U32_MAX			((u32)~0U)

#define min_t(type, x, y) ({ type __x = (x); type __y = (y); __x < __y ? __x : __y; })
#define max_t(type, x, y) ({ type __x = (x); type __y = (y); __x > __y ? __x : __y; })

static inline u64 div_u64(u64 dividend, u32 divisor)
{
	return dividend / divisor;
}

/*
 * crc32c() as <linux/crc32c.h> has it: the raw reflected CRC32C
 * (Castagnoli, polynomial 0x82f63b78) update of @crc over @length bytes,
 * with no inversion on the way in or out.
 */
static inline u32 crc32c(u32 crc, const void *address, unsigned int length)
{
	static u32 table[256];
	static bool ready;
	const u8 *p = address;
	unsigned int i, j;

	if (!ready) {
		for (i = 0; i < 256; i++) {
			u32 c = i;

			for (j = 0; j < 8; j++)
				c = (c >> 1) ^ (c & 1 ? 0x82f63b78U : 0);
			table[i] = c;
		}
		ready = true;
	}
	while (length--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#endif /* GPUP_STREAM_USER_H */
