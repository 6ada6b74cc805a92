/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup selftest library: sysfs plumbing for the simulated GPU PF and its
 * VFs, and opening a VFIO device through the type1 group/container
 * interface or the device cdev bound to iommufd.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_LIB_H
#define GPUP_LIB_H

#include <stdbool.h>
#include <stddef.h>

#include <linux/types.h>

/* Kernel type names, as the kernel style the tests follow uses them. */
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;

#define GPUP_BDF_LEN	16
#define GPUP_PF_VENDOR	0x8086
#define GPUP_PF_DEVICE	0x10c9	/* QEMU igb, the PF gpup_sim drives */

int gpup_write_file(const char *path, const char *fmt, ...);
int gpup_read_file(const char *path, char *buf, size_t len);
long gpup_read_long(const char *path);
int gpup_run(const char *fmt, ...);

int gpup_find_pf(char *bdf);
int gpup_driver_of(const char *bdf, char *drv, size_t len);
int gpup_unbind(const char *bdf);
int gpup_bind_override(const char *bdf, const char *drv);
int gpup_set_numvfs(const char *pf, int n);
/* CLOCK_MONOTONIC in seconds. */
double gpup_now(void);
int gpup_vf_bdf(const char *pf, int idx, char *bdf);
int gpup_iommu_group(const char *bdf);

#define GPUP_SIM_VRAM_MB	16	/* gpup_sim's default */

/* A module parameter's sysfs file. */
#define GPUP_VFIO_PARAM(name)	"/sys/module/gpup_vfio_pci/parameters/" name
#define GPUP_SIM_PARAM(name)	"/sys/module/gpup_sim/parameters/" name

/*
 * Loads the modules, binds gpup_sim to the PF (reloading it if its VRAM
 * size differs from @vram_mb) and enables @nvfs fresh VFs.
 */
int gpup_setup_pf_vram(char *pf, int nvfs, int vram_mb);
/* The same with the default VRAM size. */
int gpup_setup_pf(char *pf, int nvfs);
/* Reloads gpup_sim with module @params and binds it to @pf again. */
int gpup_reload_sim(const char *pf, const char *params);
/* As above, and binds VF @idx to gpup_vfio_pci. */
int gpup_setup_vf(char *pf, int nvfs, int idx, char *vf);

/* How gpup_vfio_open() reaches the device. */
enum gpup_vfio_iface {
	GPUP_VFIO_GROUP,	/* type1: /dev/vfio/vfio + /dev/vfio/<group> */
	GPUP_VFIO_CDEV,		/* /dev/vfio/devices/vfioN bound to /dev/iommu */
};

/**
 * struct gpup_vfio - an opened VFIO device
 * @iface: the interface it was opened through
 * @container: /dev/vfio/vfio (group interface), else -1
 * @group: /dev/vfio/<group> (group interface), else -1
 * @iommufd: /dev/iommu (cdev interface), else -1
 * @ioas_id: the IOAS the device is attached to (cdev interface)
 * @device: the device fd
 */
struct gpup_vfio {
	enum gpup_vfio_iface iface;
	int container;
	int group;
	int iommufd;
	u32 ioas_id;
	int device;
};

/*
 * The interface tests use: GPUP_VFIO_IFACE=cdev in the environment selects
 * the cdev + iommufd path (the kernel must have VFIO_DEVICE_CDEV; there is
 * no fallback, so a test run for cdev really ran on it), anything else or
 * nothing the group/container path, which every kernel we target has.
 */
enum gpup_vfio_iface gpup_vfio_iface(void);
const char *gpup_vfio_iface_name(enum gpup_vfio_iface iface);

/* A closed gpup_vfio: gpup_vfio_close() on it does nothing. */
void gpup_vfio_init(struct gpup_vfio *v);
int gpup_vfio_open(const char *bdf, struct gpup_vfio *v);
void gpup_vfio_close(struct gpup_vfio *v);
/* Map @size bytes at @vaddr for the device's DMA at @iova (read+write). */
int gpup_vfio_map(struct gpup_vfio *v, void *vaddr, u64 iova, u64 size);
int gpup_vfio_unmap(struct gpup_vfio *v, u64 iova, u64 size);

#endif /* GPUP_LIB_H */
