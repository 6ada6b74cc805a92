// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_sim DMA: the VF's engines write into the VM's memory, and the
 * provider logs the pages they wrote (the dma_log_* ops).
 *
 * A test, as a guest GPU driver would, tells a VF where its fence and
 * ring buffers live: an IOVA window (debugfs "dma_window"), part of the
 * VF's mutable state, so it migrates.  Every engine step then writes two
 * pages of the window through the VF's real IOMMU mapping: the fence page
 * (the window's first) and the next ring page (the others, in turn), each
 * filled with one 64-bit word, GPUP_SIM_DMA_MAGIC in its upper half and
 * the step in its lower half.
 *
 * The window's pages are looked up in the VF's IOMMU domain
 * (iommu_get_domain_for_dev() + iommu_iova_to_phys()) and the sim takes
 * its own reference on each, so that an unmap can never make it write
 * memory that was freed: before each write the IOVA is translated again,
 * and a page no longer mapped there is not written (a DMA fault,
 * counted).  A reset or close clears the window and drops the
 * references.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/highmem.h>
#include <linux/iommu.h>
#include <linux/mm.h>
#include <linux/pci.h>
#include <linux/log2.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/xarray.h>

#include "gpup_sim.h"

/* The VF's IOMMU domain, the one its VFIO user attached; or NULL. */
static struct iommu_domain *gpup_sim_vf_domain(struct gpup_sim_vf *vf)
{
	return vf->vfdev ? iommu_get_domain_for_dev(&vf->vfdev->dev) : NULL;
}

static void gpup_sim_dma_put_pages_locked(struct gpup_sim_vf *vf)
{
	u32 i;

	if (!vf->dma_page)
		return;
	for (i = 0; i < vf->dma_npages; i++)
		if (vf->dma_page[i])
			put_page(vf->dma_page[i]);
	kvfree(vf->dma_page);
	kvfree(vf->dma_phys);
	vf->dma_page = NULL;
	vf->dma_phys = NULL;
}

/**
 * gpup_sim_dma_clear_locked() - forget the VF's DMA window
 * @vf: the VF; caller holds @vf->lock
 *
 * Drops the page references; the engines write nothing any more.
 */
void gpup_sim_dma_clear_locked(struct gpup_sim_vf *vf)
{
	lockdep_assert_held(&vf->lock);
	gpup_sim_dma_put_pages_locked(vf);
	vf->dma_iova = 0;
	vf->dma_npages = 0;
}

/*
 * Look the window's pages up in the VF's IOMMU domain and take a
 * reference on each one mapped.  A reference is kept only if the IOVA
 * still translates to the same page after it was taken: the page was
 * mapped (and so pinned by its VFIO user) all along, never freed memory.
 */
static int gpup_sim_dma_resolve_locked(struct gpup_sim_vf *vf)
{
	struct iommu_domain *domain;
	struct page *page;
	phys_addr_t phys;
	u32 i;

	lockdep_assert_held(&vf->lock);
	if (vf->dma_page || !vf->dma_npages)
		return 0;
	vf->dma_page = kvcalloc(vf->dma_npages, sizeof(*vf->dma_page),
				GFP_KERNEL);
	vf->dma_phys = kvcalloc(vf->dma_npages, sizeof(*vf->dma_phys),
				GFP_KERNEL);
	if (!vf->dma_page || !vf->dma_phys) {
		gpup_sim_dma_put_pages_locked(vf);
		return -ENOMEM;
	}
	domain = gpup_sim_vf_domain(vf);
	if (!domain) {
		gpup_sim_dma_put_pages_locked(vf);
		return -ENODEV;
	}
	for (i = 0; i < vf->dma_npages; i++) {
		u64 iova = vf->dma_iova + (u64)i * PAGE_SIZE;

		phys = iommu_iova_to_phys(domain, iova);
		if (!phys || !pfn_valid(PHYS_PFN(phys)))
			continue;
		page = pfn_to_page(PHYS_PFN(phys));
		if (!folio_try_get(page_folio(page)))
			continue;
		if (iommu_iova_to_phys(domain, iova) != phys) {
			put_page(page);
			continue;
		}
		vf->dma_page[i] = page;
		vf->dma_phys[i] = phys;
	}
	return 0;
}

/**
 * gpup_sim_dma_set_window() - where the VF's fence and ring pages live
 * @vf: the VF; caller holds @vf->lock
 * @iova: IOVA of the window, page aligned
 * @npages: pages in it, at most %GPUP_SIM_DMA_MAX_PAGES; 0 clears it
 *
 * The window must be mapped in the VF's IOMMU domain now (the VFIO device
 * open, the memory mapped): every page is looked up at once.
 *
 * Return: 0; -EINVAL for a bad window; -ENODEV if the VF has no IOMMU
 * domain; -EFAULT if a page of it is not mapped; -ENOMEM.
 */
int gpup_sim_dma_set_window(struct gpup_sim_vf *vf, u64 iova, u32 npages)
{
	int ret;
	u32 i;

	lockdep_assert_held(&vf->lock);
	if (!PAGE_ALIGNED(iova) || npages > GPUP_SIM_DMA_MAX_PAGES ||
	    iova + (u64)npages * PAGE_SIZE < iova)
		return -EINVAL;
	gpup_sim_dma_clear_locked(vf);
	if (!npages)
		return 0;
	vf->dma_iova = iova;
	vf->dma_npages = npages;
	ret = gpup_sim_dma_resolve_locked(vf);
	for (i = 0; !ret && i < npages; i++)
		if (!vf->dma_page[i])
			ret = -EFAULT;
	if (ret)
		gpup_sim_dma_clear_locked(vf);
	return ret;
}

static bool gpup_sim_dma_logged(struct gpup_sim_vf *vf, u64 iova)
{
	unsigned int i;

	for (i = 0; i < vf->log_nranges; i++)
		if (iova >= vf->log_range[i].iova &&
		    iova - vf->log_range[i].iova < vf->log_range[i].length)
			return true;
	return false;
}

/* One DMA write of @val into window page @i, logged unless @drop. */
static void gpup_sim_dma_write_locked(struct gpup_sim_vf *vf,
				      struct iommu_domain *domain, u32 i,
				      u64 val, bool drop)
{
	u64 iova = vf->dma_iova + (u64)i * PAGE_SIZE;
	void *p;
	int ret;

	/* Through the IOMMU as it maps the IOVA now. */
	if (!vf->dma_page[i] ||
	    iommu_iova_to_phys(domain, iova) != vf->dma_phys[i]) {
		vf->dma_faults++;
		return;
	}
	p = kmap_local_page(vf->dma_page[i]);
	memset64(p, val, PAGE_SIZE / sizeof(u64));
	kunmap_local(p);
	vf->dma_writes++;
	if (!vf->log_running || vf->log_dead || vf->log_err || drop ||
	    !gpup_sim_dma_logged(vf, iova))
		return;
	ret = xa_err(xa_store(&vf->log, iova >> vf->log_shift,
			      xa_mk_value(1), GFP_KERNEL));
	/* A write the log could not hold: the log is lost, and says so. */
	if (ret)
		vf->log_err = ret;
}

/**
 * gpup_sim_dma_step_locked() - the DMA of one engine step
 * @vf: the VF; caller holds @vf->lock
 * @step: the step's number (the scheduler's count before it)
 *
 * Writes the fence page and the step's ring page of the window, if the
 * VF has one, and logs them while DMA logging runs.
 */
void gpup_sim_dma_step_locked(struct gpup_sim_vf *vf, u64 step)
{
	u64 val = (u64)GPUP_SIM_DMA_MAGIC << 32 | (u32)step;
	struct iommu_domain *domain;
	bool drop;
	int err;

	lockdep_assert_held(&vf->lock);
	if (!vf->dma_npages)
		return;
	/* A window that came with a restore is looked up on first use. */
	if (gpup_sim_dma_resolve_locked(vf) || !vf->dma_page) {
		vf->dma_faults++;
		return;
	}
	domain = gpup_sim_vf_domain(vf);
	if (!domain) {
		vf->dma_faults++;
		return;
	}
	if (gpup_sim_fault_locked(vf, "dma_log", GPUP_SIM_FAULT_DMA_STOP,
				  &err))
		vf->log_dead = true;
	gpup_sim_dma_write_locked(vf, domain, 0, val, false);
	if (vf->dma_npages > 1) {
		drop = gpup_sim_fault_locked(vf, "dma_log",
					     GPUP_SIM_FAULT_DMA_DROP, &err);
		gpup_sim_dma_write_locked(vf, domain,
					  1 + step % (vf->dma_npages - 1),
					  val ^ BIT_ULL(31), drop);
	}
}

/**
 * gpup_sim_dma_log_stop_locked() - stop logging, drop the log
 * @vf: the VF; caller holds @vf->lock
 */
void gpup_sim_dma_log_stop_locked(struct gpup_sim_vf *vf)
{
	lockdep_assert_held(&vf->lock);
	xa_destroy(&vf->log);
	kfree(vf->log_range);
	vf->log_range = NULL;
	vf->log_nranges = 0;
	vf->log_running = false;
	vf->log_dead = false;
	vf->log_err = 0;
}

/**
 * gpup_sim_dma_log_start_locked() - start logging the VF's DMA writes
 * @vf: the VF; caller holds @vf->lock
 * @ranges: IOVA ranges, sorted, not overlapping, aligned to *@page_size
 * @nranges: how many
 * @page_size: the granularity asked, a power of two of at least 4096;
 *	the sim logs at that size, or at the dma_log_page_kb parameter's
 *	if larger (rounded up, as a provider may do), and says which
 *
 * Return: 0, -E2BIG for more than %GPUP_SIM_DMA_MAX_RANGES ranges,
 * -ENOMEM.
 */
int gpup_sim_dma_log_start_locked(struct gpup_sim_vf *vf,
				  const struct gpup_dma_range *ranges,
				  unsigned int nranges, u64 *page_size)
{
	u64 min = (u64)READ_ONCE(gpup_sim_dma_log_page_kb) * SZ_1K;

	lockdep_assert_held(&vf->lock);
	if (nranges > GPUP_SIM_DMA_MAX_RANGES)
		return -E2BIG;
	if (min > *page_size)
		*page_size = roundup_pow_of_two(min);
	vf->log_range = kmemdup(ranges, nranges * sizeof(*ranges), GFP_KERNEL);
	if (!vf->log_range)
		return -ENOMEM;
	vf->log_nranges = nranges;
	vf->log_shift = ilog2(*page_size);
	vf->log_running = true;
	return 0;
}

/**
 * gpup_sim_dma_log_read_locked() - report (and clear) logged pages
 * @vf: the VF; caller holds @vf->lock
 * @iova: first byte, a multiple of the log's page size
 * @length: bytes, likewise
 * @bitmap: a bit per page, zeroed by the caller
 * @clear: clear what is reported
 *
 * Return: the pages reported, or the error that lost the log.
 */
long gpup_sim_dma_log_read_locked(struct gpup_sim_vf *vf, u64 iova,
				  u64 length, unsigned long *bitmap, bool clear)
{
	unsigned long first = iova >> vf->log_shift, index;
	unsigned long last = first + (length >> vf->log_shift) - 1;
	long n = 0;
	void *entry;

	lockdep_assert_held(&vf->lock);
	if (vf->log_err)
		return vf->log_err;
	if (!length)
		return 0;
	xa_for_each_range(&vf->log, index, entry, first, last) {
		__set_bit(index - first, bitmap);
		if (clear)
			xa_erase(&vf->log, index);
		n++;
	}
	return n;
}

/**
 * gpup_sim_dma_logged_count_locked() - pages in the log now
 * @vf: the VF; caller holds @vf->lock
 *
 * Return: the count (debugfs).
 */
unsigned long gpup_sim_dma_logged_count_locked(struct gpup_sim_vf *vf)
{
	unsigned long index, n = 0;
	void *entry;

	lockdep_assert_held(&vf->lock);
	xa_for_each(&vf->log, index, entry)
		n++;
	return n;
}
