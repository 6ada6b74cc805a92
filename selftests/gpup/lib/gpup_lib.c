// SPDX-License-Identifier: GPL-2.0
/*
 * gpup selftest library.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

#include "gpup_lib.h"

#define PCI_DEVS "/sys/bus/pci/devices"

int gpup_write_file(const char *path, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	ssize_t n;
	int fd, len;

	va_start(ap, fmt);
	len = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	n = write(fd, buf, len);
	if (n < 0)
		n = -errno;
	close(fd);
	return n < 0 ? n : 0;
}

int gpup_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n = 0, got;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	/* Files such as tracefs's trace give a page per read(). */
	while ((size_t)n < len - 1) {
		got = read(fd, buf + n, len - 1 - n);
		if (got <= 0) {
			if (got < 0)
				n = -errno;
			break;
		}
		n += got;
	}
	close(fd);
	if (n < 0)
		return n;
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	return n;
}

long gpup_read_long(const char *path)
{
	char buf[64];
	int ret;

	ret = gpup_read_file(path, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	return strtol(buf, NULL, 0);
}

int gpup_run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	ret = system(cmd);
	if (ret == -1)
		return -errno;
	return WIFEXITED(ret) ? WEXITSTATUS(ret) : -EINTR;
}

int gpup_find_pf(char *bdf)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int ret = -ENODEV;

	d = opendir(PCI_DEVS);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), PCI_DEVS "/%s/vendor", de->d_name);
		if (gpup_read_long(path) != GPUP_PF_VENDOR)
			continue;
		snprintf(path, sizeof(path), PCI_DEVS "/%s/device", de->d_name);
		if (gpup_read_long(path) != GPUP_PF_DEVICE)
			continue;
		snprintf(bdf, GPUP_BDF_LEN, "%.15s", de->d_name);
		ret = 0;
		break;
	}
	closedir(d);
	return ret;
}

int gpup_driver_of(const char *bdf, char *drv, size_t len)
{
	char path[PATH_MAX], link[PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), PCI_DEVS "/%s/driver", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0) {
		drv[0] = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	link[n] = 0;
	base = strrchr(link, '/');
	snprintf(drv, len, "%s", base ? base + 1 : link);
	return 0;
}

int gpup_unbind(const char *bdf)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), PCI_DEVS "/%s/driver/unbind", bdf);
	if (access(path, F_OK))
		return 0;
	return gpup_write_file(path, "%s", bdf);
}

int gpup_bind_override(const char *bdf, const char *drv)
{
	char path[PATH_MAX], cur[64];
	int ret;

	ret = gpup_driver_of(bdf, cur, sizeof(cur));
	if (ret)
		return ret;
	if (!strcmp(cur, drv))
		return 0;
	ret = gpup_unbind(bdf);
	if (ret)
		return ret;
	snprintf(path, sizeof(path), PCI_DEVS "/%s/driver_override", bdf);
	ret = gpup_write_file(path, "%s", drv);
	if (ret)
		return ret;
	ret = gpup_write_file("/sys/bus/pci/drivers_probe", "%s", bdf);
	if (ret)
		return ret;
	ret = gpup_driver_of(bdf, cur, sizeof(cur));
	if (ret)
		return ret;
	return strcmp(cur, drv) ? -ENODEV : 0;
}

int gpup_set_numvfs(const char *pf, int n)
{
	char path[PATH_MAX];
	long cur;
	int ret;

	snprintf(path, sizeof(path), PCI_DEVS "/%s/sriov_numvfs", pf);
	cur = gpup_read_long(path);
	if (cur < 0)
		return cur;
	if (cur == n)
		return 0;
	if (cur && n) {
		ret = gpup_write_file(path, "0");
		if (ret)
			return ret;
	}
	return gpup_write_file(path, "%d", n);
}

int gpup_vf_bdf(const char *pf, int idx, char *bdf)
{
	char path[PATH_MAX], link[PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), PCI_DEVS "/%s/virtfn%d", pf, idx);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	link[n] = 0;
	base = strrchr(link, '/');
	snprintf(bdf, GPUP_BDF_LEN, "%.15s", base ? base + 1 : link);
	return 0;
}

int gpup_iommu_group(const char *bdf)
{
	char path[PATH_MAX], link[PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), PCI_DEVS "/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	link[n] = 0;
	base = strrchr(link, '/');
	return atoi(base ? base + 1 : link);
}

int gpup_setup_pf_vram(char *pf, int nvfs, int vram_mb)
{
	char params[32];
	long cur;
	int ret;

	if (gpup_run("modprobe -a vfio_iommu_type1 gpup_vfio_pci gpup_sim"))
		return -ENOENT;
	ret = gpup_find_pf(pf);
	if (ret)
		return ret;
	ret = gpup_bind_override(pf, "gpup_sim");
	if (ret)
		return ret;
	/* A clean slate: VFs left by an earlier test go first. */
	ret = gpup_set_numvfs(pf, 0);
	if (ret)
		return ret;
	cur = gpup_read_long("/sys/module/gpup_sim/parameters/vram_mb");
	if (cur != vram_mb) {
		snprintf(params, sizeof(params), "vram_mb=%d", vram_mb);
		ret = gpup_reload_sim(pf, params);
		if (ret)
			return ret;
	}
	return gpup_set_numvfs(pf, nvfs);
}

int gpup_setup_pf(char *pf, int nvfs)
{
	return gpup_setup_pf_vram(pf, nvfs, GPUP_SIM_VRAM_MB);
}

int gpup_reload_sim(const char *pf, const char *params)
{
	int ret;

	ret = gpup_set_numvfs(pf, 0);
	if (ret)
		return ret;
	ret = gpup_unbind(pf);
	if (ret)
		return ret;
	if (gpup_run("rmmod gpup_sim"))
		return -EBUSY;
	if (gpup_run("modprobe gpup_sim %s", params))
		return -ENOENT;
	return gpup_bind_override(pf, "gpup_sim");
}

int gpup_setup_vf(char *pf, int nvfs, int idx, char *vf)
{
	int ret;

	ret = gpup_setup_pf(pf, nvfs);
	if (ret)
		return ret;
	ret = gpup_vf_bdf(pf, idx, vf);
	if (ret)
		return ret;
	return gpup_bind_override(vf, "gpup_vfio_pci");
}

enum gpup_vfio_iface gpup_vfio_iface(void)
{
	const char *e = getenv("GPUP_VFIO_IFACE");

	return e && !strcmp(e, "cdev") ? GPUP_VFIO_CDEV : GPUP_VFIO_GROUP;
}

const char *gpup_vfio_iface_name(enum gpup_vfio_iface iface)
{
	return iface == GPUP_VFIO_CDEV ? "cdev+iommufd" : "group+type1";
}

static int gpup_vfio_open_group(const char *bdf, struct gpup_vfio *v)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[64];
	int group;

	group = gpup_iommu_group(bdf);
	if (group < 0)
		return group;
	v->container = open("/dev/vfio/vfio", O_RDWR);
	if (v->container < 0)
		return -errno;
	if (ioctl(v->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return -EPROTO;
	snprintf(path, sizeof(path), "/dev/vfio/%d", group);
	v->group = open(path, O_RDWR);
	if (v->group < 0)
		return -errno;
	if (ioctl(v->group, VFIO_GROUP_GET_STATUS, &status))
		return -errno;
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		return -EBUSY;
	if (ioctl(v->group, VFIO_GROUP_SET_CONTAINER, &v->container))
		return -errno;
	if (ioctl(v->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return -errno;
	v->device = ioctl(v->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (v->device < 0)
		return -errno;
	return 0;
}

/* The device's cdev name, vfioN, from /sys/bus/pci/devices/BDF/vfio-dev/. */
static int gpup_vfio_cdev_name(const char *bdf, char *name, size_t len)
{
	char path[128];
	struct dirent *de;
	DIR *d;
	int ret = -ENODEV;

	snprintf(path, sizeof(path), PCI_DEVS "/%s/vfio-dev", bdf);
	d = opendir(path);
	if (!d)
		return -ENODEV;
	while ((de = readdir(d))) {
		if (!strncmp(de->d_name, "vfio", 4)) {
			snprintf(name, len, "%s", de->d_name);
			ret = 0;
			break;
		}
	}
	closedir(d);
	return ret;
}

static int gpup_vfio_open_cdev(const char *bdf, struct gpup_vfio *v)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach),
	};
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	char name[NAME_MAX + 1], path[300];
	int ret;

	ret = gpup_vfio_cdev_name(bdf, name, sizeof(name));
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "/dev/vfio/devices/%s", name);
	v->device = open(path, O_RDWR);
	if (v->device < 0)
		return -errno;
	v->iommufd = open("/dev/iommu", O_RDWR);
	if (v->iommufd < 0)
		return -errno;
	bind.iommufd = v->iommufd;
	if (ioctl(v->device, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return -errno;
	if (ioctl(v->iommufd, IOMMU_IOAS_ALLOC, &alloc))
		return -errno;
	v->ioas_id = alloc.out_ioas_id;
	attach.pt_id = v->ioas_id;
	if (ioctl(v->device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		return -errno;
	return 0;
}

void gpup_vfio_init(struct gpup_vfio *v)
{
	v->iface = gpup_vfio_iface();
	v->container = -1;
	v->group = -1;
	v->iommufd = -1;
	v->ioas_id = 0;
	v->device = -1;
}

int gpup_vfio_open(const char *bdf, struct gpup_vfio *v)
{
	int ret;

	gpup_vfio_init(v);
	if (v->iface == GPUP_VFIO_CDEV)
		ret = gpup_vfio_open_cdev(bdf, v);
	else
		ret = gpup_vfio_open_group(bdf, v);
	if (ret)
		gpup_vfio_close(v);
	return ret;
}

void gpup_vfio_close(struct gpup_vfio *v)
{
	/* The device first: it holds the group or the iommufd binding. */
	if (v->device >= 0)
		close(v->device);
	if (v->group >= 0)
		close(v->group);
	if (v->container >= 0)
		close(v->container);
	if (v->iommufd >= 0)
		close(v->iommufd);
	v->container = -1;
	v->group = -1;
	v->iommufd = -1;
	v->device = -1;
}

int gpup_vfio_map(struct gpup_vfio *v, void *vaddr, u64 iova, u64 size)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (unsigned long)vaddr,
		.iova = iova,
		.size = size,
	};
	struct iommu_ioas_map amap = {
		.size = sizeof(amap),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = v->ioas_id,
		.user_va = (unsigned long)vaddr,
		.length = size,
		.iova = iova,
	};

	if (v->iface == GPUP_VFIO_CDEV)
		return ioctl(v->iommufd, IOMMU_IOAS_MAP, &amap) ? -errno : 0;
	return ioctl(v->container, VFIO_IOMMU_MAP_DMA, &map) ? -errno : 0;
}

int gpup_vfio_unmap(struct gpup_vfio *v, u64 iova, u64 size)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.iova = iova,
		.size = size,
	};
	struct iommu_ioas_unmap aunmap = {
		.size = sizeof(aunmap),
		.ioas_id = v->ioas_id,
		.iova = iova,
		.length = size,
	};

	if (v->iface == GPUP_VFIO_CDEV)
		return ioctl(v->iommufd, IOMMU_IOAS_UNMAP, &aunmap) ? -errno : 0;
	return ioctl(v->container, VFIO_IOMMU_UNMAP_DMA, &unmap) ? -errno : 0;
}

double gpup_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
