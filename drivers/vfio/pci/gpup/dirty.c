// SPDX-License-Identifier: GPL-2.0
/*
 * Device DMA logging of gpup_vfio_pci: the vfio log_ops
 * (VFIO_DEVICE_FEATURE_DMA_LOGGING_START/STOP/REPORT) over the provider's
 * dma_log_* ops, so that QEMU learns which pages of guest RAM the VF's
 * engines wrote and migrates a VM with its defaults.
 *
 * vfio core checks the range count (-E2BIG above a page of ranges), the
 * ranges' alignment to the page size and that they do not overlap; this
 * file checks the page size, allows one START until STOP (-EBUSY), merges
 * ranges when the provider tracks fewer, reports by setting bits only
 * (iova_bitmap_set()), and after a provider error treats the log as lost
 * until the next START.  REPORT needs the core's iova_bitmap, which exists
 * only with CONFIG_IOMMUFD_DRIVER: without it the driver offers no
 * log_ops and says so once.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/bitmap.h>
#include <linux/interval_tree.h>
#include <linux/iova_bitmap.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/vfio.h>
#include <linux/xarray.h>

#include <gpup_compat.h>

#include "gpup_vfio.h"
#include "trace.h"

#if IS_ENABLED(CONFIG_IOMMUFD_DRIVER)
/* iova_bitmap_set() lives in the IOMMUFD namespace. */
MODULE_IMPORT_NS(GPUP_NS(IOMMUFD));
#endif

/* Pages one dma_log_read covers: a 4 KiB bitmap. */
#define GPUP_LOG_CHUNK_PAGES	(SZ_4K * BITS_PER_BYTE)
/* Parts of a log page a REPORT covering it in part keeps apart. */
#define GPUP_LOG_PARTS		16
/* Log pages with parts kept, at most: a bound on the memory they use. */
#define GPUP_LOG_PARTS_MAX	4096

static int gpup_vfio_log_start_locked(struct gpup_vfio_dev *gdev,
				      struct rb_root_cached *ranges,
				      u32 nnodes, u64 *page_size)
{
	struct interval_tree_node *node;
	struct gpup_dma_range *r;
	unsigned int i;
	u64 ps;
	int ret;

	r = kcalloc(nnodes, sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	for (;;) {
		i = 0;
		for (node = interval_tree_iter_first(ranges, 0, ULONG_MAX);
		     node && i < nnodes;
		     node = interval_tree_iter_next(node, 0, ULONG_MAX)) {
			r[i].iova = node->start;
			r[i].length = node->last - node->start + 1;
			i++;
		}
		ps = *page_size;
		ret = GPUP_OPS(gdev)->dma_log_start(GPUP_PF(gdev), gdev->vf_id,
						    r, i, &ps);
		trace_gpup_vfio_op(gdev->vf_id, "dma_log_start", i, ret);
		/* Fewer, larger ranges for a provider that tracks fewer. */
		if (ret != -E2BIG || i == 1)
			break;
		nnodes = i / 2;
		vfio_combine_iova_ranges(ranges, i, nnodes);
	}
	kfree(r);
	if (ret)
		return ret;
	if (!is_power_of_2(ps) || ps < *page_size) {
		GPUP_OPS(gdev)->dma_log_stop(GPUP_PF(gdev), gdev->vf_id);
		return -EIO;
	}
	gdev->log_running = true;
	gdev->log_lost = false;
	gdev->log_page_size = ps;
	gdev->log_gen++;
	*page_size = ps;
	return 0;
}

static int gpup_vfio_log_start(struct vfio_device *vdev,
			       struct rb_root_cached *ranges, u32 nnodes,
			       u64 *page_size)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	int ret;

	if (*page_size < SZ_4K || !is_power_of_2(*page_size))
		return -EINVAL;
	ret = gpup_vfio_op_enter(gdev, GPUP_GEN_ANY);
	if (ret)
		return ret;
	if (!gdev->log_ok)
		ret = -EOPNOTSUPP;
	else if (gdev->log_running)
		ret = -EBUSY;
	else
		ret = gpup_vfio_log_start_locked(gdev, ranges, nnodes,
						 page_size);
	gpup_vfio_op_exit(gdev);
	return ret;
}

/* The driver's side of a log that ends. */
static void gpup_vfio_log_forget_locked(struct gpup_vfio_dev *gdev)
{
	gdev->log_running = false;
	gdev->log_lost = false;
	xa_destroy(&gdev->log_parts);
	gdev->log_nparts = 0;
}

/**
 * gpup_vfio_log_drop_locked() - stop DMA logging, inside the fence
 * @gdev: the VF; the caller holds op_lock and has entered the provider
 *
 * For the reset path, which tells the provider between its own calls.
 */
void gpup_vfio_log_drop_locked(struct gpup_vfio_dev *gdev)
{
	lockdep_assert_held(&gdev->op_lock);
	if (!gdev->log_running)
		return;
	/* The provider that started the log; it has the op. */
	if (GPUP_OPS(gdev)->dma_log_stop) {
		GPUP_OPS(gdev)->dma_log_stop(GPUP_PF(gdev), gdev->vf_id);
		trace_gpup_vfio_op(gdev->vf_id, "dma_log_stop", 0, 0);
	}
	gpup_vfio_log_forget_locked(gdev);
}

/**
 * gpup_vfio_log_stop_locked() - stop DMA logging, if it runs
 * @gdev: the VF; the caller holds op_lock
 *
 * The provider is called only if it is still there; the log is gone
 * either way.  Used by log_stop and by reset, close and ERROR.
 */
void gpup_vfio_log_stop_locked(struct gpup_vfio_dev *gdev)
{
	lockdep_assert_held(&gdev->op_lock);
	if (!gdev->log_running)
		return;
	if (gdev->prov && !gpup_provider_enter(gdev->prov)) {
		gpup_vfio_log_drop_locked(gdev);
		gpup_provider_exit(gdev->prov);
	} else {
		gpup_vfio_log_forget_locked(gdev);
	}
}

static int gpup_vfio_log_stop(struct vfio_device *vdev)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);

	mutex_lock(&gdev->op_lock);
	gpup_vfio_log_stop_locked(gdev);
	mutex_unlock(&gdev->op_lock);
	return 0;
}

/* Enter a read of the log the REPORT began on (@gen); see log_read. */
static int gpup_vfio_log_enter(struct gpup_vfio_dev *gdev, u64 gen)
{
	int ret;

	ret = gpup_vfio_op_enter(gdev, GPUP_GEN_ANY);
	if (ret)
		return ret;
	if (!gdev->log_running || gdev->log_gen != gen)
		ret = -EINVAL;
	else if (gdev->log_lost)
		ret = -EIO;
	if (ret)
		gpup_vfio_op_exit(gdev);
	return ret;
}

/* The provider's read of @n log pages from @first; an error loses the log. */
static long gpup_vfio_log_read_locked(struct gpup_vfio_dev *gdev, u64 first,
				      u64 n, unsigned long *map, bool clear)
{
	long ret;

	bitmap_zero(map, n);
	ret = GPUP_OPS(gdev)->dma_log_read(GPUP_PF(gdev), gdev->vf_id, first,
					   n * gdev->log_page_size, map,
					   clear);
	trace_gpup_vfio_op(gdev->vf_id, "dma_log_read", clear, ret);
	if (ret > (long)n)
		ret = -EIO;
	/* The uAPI: after an error, the log is corrupted. */
	if (ret < 0)
		gdev->log_lost = true;
	return ret;
}

/*
 * Read and clear the log pages [@first, @first + @n) (byte addresses,
 * multiples of the log page size), which a REPORT covers wholly, into
 * @map.  A page with parts left over from a REPORT that covered it in
 * part is reported whole, and its parts are dropped.  @gen is the log
 * the REPORT began on: a STOP and a START since fail it with -EINVAL,
 * so that no bit is read at a page size the REPORT does not use.
 * Returns 0 or -errno.
 */
static long gpup_vfio_log_read(struct gpup_vfio_dev *gdev, u64 gen,
			       u64 first, u64 n, unsigned long *map)
{
	unsigned long idx, base;
	void *entry;
	long ret;

	ret = gpup_vfio_log_enter(gdev, gen);
	if (ret)
		return ret;
	ret = gpup_vfio_log_read_locked(gdev, first, n, map, true);
	if (ret >= 0 && gdev->log_nparts) {
		base = div64_u64(first, gdev->log_page_size);
		xa_for_each_range(&gdev->log_parts, idx, entry, base,
				  base + n - 1) {
			__set_bit(idx - base, map);
			xa_erase(&gdev->log_parts, idx);
			gdev->log_nparts--;
		}
	}
	gpup_vfio_op_exit(gdev);
	return ret < 0 ? ret : 0;
}

/* Parts of a log page at @page: in [@iova, @end) (@whole: wholly). */
static unsigned long gpup_vfio_log_parts(u64 page, u64 sub, u64 iova,
					 u64 end, bool whole)
{
	unsigned long mask = 0;
	unsigned int j;
	u64 a, b;

	for (j = 0; j < GPUP_LOG_PARTS; j++) {
		a = page + j * sub;
		b = a + sub;
		if (whole ? a >= iova && b <= end : b > iova && a < end)
			mask |= BIT(j);
	}
	return mask;
}

/*
 * The log page at @page, which a REPORT of [@iova, @end) covers in part.
 * The provider's bit is read and cleared, and what of the page the
 * REPORT does not cover is kept, as parts (a sixteenth of the page
 * each), for the REPORT that covers it: a page is never reported in
 * part and then forgotten, nor kept dirty for good.  Without room for
 * the parts (%GPUP_LOG_PARTS_MAX pages have some) the bit is read and
 * kept.  *@report gets the parts to report.  Returns 0 or -errno.
 */
static long gpup_vfio_log_read_part(struct gpup_vfio_dev *gdev, u64 gen,
				    u64 page, u64 iova, u64 end,
				    unsigned long *report)
{
	unsigned long idx, old = 0, parts, map[1];
	u64 ps, sub;
	bool clear;
	void *entry;
	long ret;

	ret = gpup_vfio_log_enter(gdev, gen);
	if (ret)
		return ret;
	ps = gdev->log_page_size;
	sub = ps / GPUP_LOG_PARTS;
	idx = div64_u64(page, ps);
	entry = xa_load(&gdev->log_parts, idx);
	if (entry)
		old = xa_to_value(entry);
	/* A new entry is reserved first: a cleared bit is never dropped. */
	clear = entry || (gdev->log_nparts < GPUP_LOG_PARTS_MAX &&
			  !xa_reserve(&gdev->log_parts, idx, GFP_KERNEL));
	ret = gpup_vfio_log_read_locked(gdev, page, 1, map, clear);
	if (ret < 0) {
		if (clear && !entry)
			xa_release(&gdev->log_parts, idx);
		goto out;
	}
	parts = old | (test_bit(0, map) ? GENMASK(GPUP_LOG_PARTS - 1, 0) : 0);
	*report = parts & gpup_vfio_log_parts(page, sub, iova, end, false);
	if (!clear)
		goto out;
	parts &= ~gpup_vfio_log_parts(page, sub, iova, end, true);
	if (parts) {
		WARN_ON_ONCE(xa_is_err(xa_store(&gdev->log_parts, idx,
						xa_mk_value(parts),
						GFP_KERNEL)));
		if (!entry)
			gdev->log_nparts++;
	} else if (entry) {
		xa_erase(&gdev->log_parts, idx);
		gdev->log_nparts--;
	} else {
		xa_release(&gdev->log_parts, idx);
	}
	ret = 0;
out:
	gpup_vfio_op_exit(gdev);
	return ret < 0 ? ret : 0;
}

/*
 * REPORT, for the range vfio core's iova_bitmap has mapped: the log is
 * read in chunks under op_lock, and the bits are set with no lock held,
 * since iova_bitmap_set() may pin the next pages of the user's bitmap
 * (mmap_lock; a fault there may need the device's memory_lock, which
 * the reset path holds while it takes op_lock).  The page size and the
 * log are those at the REPORT's start, for its whole run.
 */
static int gpup_vfio_log_read_and_clear(struct vfio_device *vdev,
					unsigned long iova,
					unsigned long length,
					struct iova_bitmap *dirty)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	u64 ps, gen, sub, stop, end = (u64)iova + length, pos, n, a, b;
	unsigned long *map, i, parts;
	long ret = 0;

	mutex_lock(&gdev->op_lock);
	ps = gdev->log_page_size;
	gen = gdev->log_gen;
	if (!gdev->log_running)
		ret = -EINVAL;
	mutex_unlock(&gdev->op_lock);
	if (ret)
		return ret;
	map = bitmap_zalloc(GPUP_LOG_CHUNK_PAGES, GFP_KERNEL);
	if (!map)
		return -ENOMEM;
	sub = ps / GPUP_LOG_PARTS;
	pos = round_down(iova, ps);
	stop = round_up(end, ps);
	while (pos < stop) {
		if (pos < iova || pos + ps > end) {
			/* A log page the report covers in part. */
			ret = gpup_vfio_log_read_part(gdev, gen, pos, iova, end,
						      &parts);
			if (ret)
				break;
			for_each_set_bit(i, &parts, GPUP_LOG_PARTS) {
				a = max(pos + i * sub, (u64)iova);
				b = min(pos + (i + 1) * sub, end);
				iova_bitmap_set(dirty, a, b - a);
			}
			pos += ps;
			continue;
		}
		n = min_t(u64, (end - pos) / ps, GPUP_LOG_CHUNK_PAGES);
		ret = gpup_vfio_log_read(gdev, gen, pos, n, map);
		if (ret)
			break;
		for_each_set_bit(i, map, n)
			iova_bitmap_set(dirty, pos + i * ps, ps);
		pos += n * ps;
	}
	bitmap_free(map);
	return ret;
}

static const struct vfio_log_ops gpup_vfio_log_ops = {
	.log_start = gpup_vfio_log_start,
	.log_stop = gpup_vfio_log_stop,
	.log_read_and_clear = gpup_vfio_log_read_and_clear,
};

/**
 * gpup_vfio_log_init() - offer device DMA logging where it can work
 * @gdev: the VF, migratable, with @gdev->caps read
 * @ops: the provider's ops at probe
 *
 * Offers the log_ops when the kernel has the core's iova_bitmap
 * (CONFIG_IOMMUFD_DRIVER) and the provider logs the VF's DMA
 * (%GPUP_CAP_DMA_LOGGING and its dma_log_* ops); else says once why not,
 * and what QEMU then needs.
 */
void gpup_vfio_log_init(struct gpup_vfio_dev *gdev,
			const struct gpup_migration_ops *ops)
{
	struct pci_dev *pdev = gdev->core.pdev;

	if (!(gdev->caps.flags & GPUP_CAP_DMA_LOGGING) ||
	    !ops->dma_log_start) {
		if (gdev->caps.flags & GPUP_CAP_DMA_LOGGING)
			pci_warn(pdev, "gpup: the provider claims DMA logging for this VF without the dma_log_* ops\n");
		pci_info(pdev, "gpup: no device DMA logging: the provider does not log this VF's DMA; QEMU needs enable-migration=on\n");
		return;
	}
	if (!IS_ENABLED(CONFIG_IOMMUFD_DRIVER)) {
		pci_info(pdev, "gpup: no device DMA logging: kernel without CONFIG_IOMMUFD_DRIVER; QEMU needs enable-migration=on\n");
		return;
	}
	gdev->core.vdev.log_ops = &gpup_vfio_log_ops;
}
