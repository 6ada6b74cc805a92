/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup selftest library: sysfs plumbing for the simulated GPU PF and its
 * VFs, and the VFIO type1 group/container interface.
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
int gpup_vf_bdf(const char *pf, int idx, char *bdf);
int gpup_iommu_group(const char *bdf);

#define GPUP_SIM_VRAM_MB	16	/* gpup_sim's default */

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

/**
 * struct gpup_vfio - a VFIO device opened through the type1 interface
 * @container: /dev/vfio/vfio
 * @group: /dev/vfio/<group>
 * @device: the device fd
 */
struct gpup_vfio {
	int container;
	int group;
	int device;
};

int gpup_vfio_open(const char *bdf, struct gpup_vfio *v);
void gpup_vfio_close(struct gpup_vfio *v);

#endif /* GPUP_LIB_H */
