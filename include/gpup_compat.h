/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_compat.h - what differs between the kernels gpup-vfio builds for,
 * from 6.12 LTS to the newest Debian kernel, each in one place.
 *
 * Every version check of the project is here; the code uses the names
 * below and is otherwise written for the newest kernel's API.
 *
 *  ======  =============================================================
 *  kernel  change
 *  ======  =============================================================
 *  6.13    symbol namespaces are string literals: GPUP_NS(name) gives
 *          EXPORT_SYMBOL_NS_GPL() and MODULE_IMPORT_NS() what they take
 *  6.15    del_timer() became timer_delete(), EXTRA_CFLAGS is ignored:
 *          the project uses no timer_list (delayed work only) and sets
 *          its flags with subdir-ccflags-y and CFLAGS_<obj>: nothing here
 *  6.16    from_timer() became timer_container_of(), hrtimer_init()
 *          went (by 7.2): not used
 *  6.17    vfio_device_ops.match_token_uuid: vfio_pci_core_match()
 *          calls it unconditionally, GPUP_VFIO_MATCH_TOKEN_UUID sets it
 *  6.19    GET_REGION_INFO goes through vfio_device_ops
 *          .get_region_info_caps: GPUP_VFIO_GET_REGION_INFO_CAPS
 *  7.1     VFIO_MIG_GET_PRECOPY_INFO v2: the core checks the ioctl
 *          (vfio_check_precopy_ioctl()), and .flags is an output once
 *          userspace opts in: gpup_check_precopy_ioctl()
 *  7.2     vfio_pci_core_setup_barmap() and vfio_pci_core_set_params()
 *          are gone: not used.  The incremental SHA-256 library calls
 *          take a struct sha256_ctx by then: gpup_sim uses only the
 *          one-shot sha256(), the same call on every kernel
 *  ======  =============================================================
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_COMPAT_H
#define GPUP_COMPAT_H

#include <linux/module.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/vfio.h>

/*
 * True when building for kernel @maj.@min or later: each change below
 * came with a mainline release, so the checks compare major.minor.
 */
#define GPUP_KERNEL_SINCE(maj, min) \
	(KERNEL_VERSION(maj, min, 0) <= \
	 KERNEL_VERSION(LINUX_VERSION_MAJOR, LINUX_VERSION_PATCHLEVEL, 0))

/* 6.13: namespaces are strings. */
#if GPUP_KERNEL_SINCE(6, 13)
#define GPUP_NS(ns)	#ns
#else
#define GPUP_NS(ns)	ns
#endif

/* 6.17: vfio_device_ops.match_token_uuid (an initializer, or nothing). */
#if GPUP_KERNEL_SINCE(6, 17)
#define GPUP_VFIO_MATCH_TOKEN_UUID \
	.match_token_uuid = vfio_pci_core_match_token_uuid,
#else
#define GPUP_VFIO_MATCH_TOKEN_UUID
#endif

/* 6.19: vfio_device_ops.get_region_info_caps. */
#if GPUP_KERNEL_SINCE(6, 19)
#define GPUP_VFIO_GET_REGION_INFO_CAPS \
	.get_region_info_caps = vfio_pci_ioctl_get_region_info,
#else
#define GPUP_VFIO_GET_REGION_INFO_CAPS
#endif

/*
 * 7.1: VFIO_MIG_GET_PRECOPY_INFO v2.  The core checks the ioctl's input
 * and, once userspace opted in (VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2,
 * gpup_precopy_info_v2()), zeroes .flags, an output field then
 * (VFIO_PRECOPY_INFO_REINIT).  Before, the same checks are ours and
 * .flags is reserved, copied back as given.
 */
#if GPUP_KERNEL_SINCE(7, 1)
#define gpup_check_precopy_ioctl(vdev, cmd, arg, info) \
	vfio_check_precopy_ioctl(vdev, cmd, arg, info)
#define gpup_precopy_info_v2(vdev) ((vdev)->precopy_info_v2)
#else
/* The flag's value, for code that never sets it before 7.1. */
#ifndef VFIO_PRECOPY_INFO_REINIT
#define VFIO_PRECOPY_INFO_REINIT BIT(0)
#endif

static inline bool gpup_precopy_info_v2(struct vfio_device *vdev)
{
	return false;
}

static inline int gpup_check_precopy_ioctl(struct vfio_device *vdev,
					   unsigned int cmd,
					   unsigned long arg,
					   struct vfio_precopy_info *info)
{
	unsigned long minsz = offsetofend(struct vfio_precopy_info,
					  dirty_bytes);

	if (cmd != VFIO_MIG_GET_PRECOPY_INFO)
		return -ENOTTY;
	if (copy_from_user(info, (void __user *)arg, minsz))
		return -EFAULT;
	if (info->argsz < minsz)
		return -EINVAL;
	return 0;
}
#endif

#endif /* GPUP_COMPAT_H */
