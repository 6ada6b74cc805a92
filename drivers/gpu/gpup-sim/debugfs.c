// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_sim debugfs: /sys/kernel/debug/gpup_sim/<VF>/
 *
 *   profile   r: key=value lines; w: a profile id (resets the VF)
 *   digest    r: SHA-256 of all VF state, VRAM included
 *   steps     r: steps since the last reset
 *   run       w: N, run N steps now (EBUSY while paused)
 *   dirty     r: dirty pages (not cleared by reading)
 *   free_run  rw: 0/1, steps run on a timer
 *   free_run_ms rw: the timer's period, 1 to 1000 ms (default 20; two
 *             steps each): a slower VF, as a test of several VFs
 *             migrating at once on one slow host wants
 *   ticks     r: timer runs while free_run was on (stepping or paused)
 *   paused    r: 0/1
 *   pause     w: 0/1, pause or resume (test hook, as set_pause_state)
 *   track     w: 1 starts, 0 stops dirty tracking (test hook)
 *   seed      rw: seed of the initial state (gpup_sim_vf_seed() of the
 *             module's seed and the VF index); writing resets the VF
 *   fault     rw: "<op> <errno>" fails the next call of op once;
 *             "save_immutable oversize", "save_mutable oversize": the
 *             next fill call reports a page more than it was given;
 *             "restore_mutable skip": the next restore leaves engine 0's
 *             first context register as it was
 *   reset     w: 1, reset the VF as reset_vf does
 *   migrating r: 0/1, between prepare_live_migration and its end
 *   tracking  r: nested dirty tracking starts in force
 *   violations r: op calls that broke a precondition of the contract
 *   dma_window rw: "IOVA PAGES": the fence and ring pages the engines
 *             write, mapped in the VF's IOMMU domain now; "0 0" clears
 *   dma_writes r: DMA writes done
 *   dma_faults r: DMA writes not done for want of a mapping
 *   dma_logged r: pages in the DMA log
 *   fault     also "dma_log drop" (the log misses the next ring page
 *             write) and "dma_log stop" (the log silently stops);
 *             "vram_xfer <errno>": the next transfer vram_xfer accepts
 *             completes (through done()) with that errno
 *   xfer_stats r: vram_xfer counters, "name value" lines: submitted,
 *             async (completed through done()), errors, in_flight,
 *             max_in_flight, segments (of the submitted transfers),
 *             max_segments (of one), overlaps (see xfer_lifo), zeroed
 *             (pages vram_zero was asked to clear); w: 0
 *             clears them but in_flight
 *   xfer_delay rw: microseconds (0 to 1000000) a transfer takes at
 *             least from its acceptance: a copy engine's latency, paid
 *             once by transfers in flight together; tests use it to
 *             find transfers in flight
 *   vram_delay rw: microseconds (0 to 1000000) each vram_read and
 *             vram_write call takes longer: the same latency for the
 *             CPU path
 *   xfer_sync rw: 1: vram_xfer copies at once and returns 0 (its
 *             synchronous branch); an armed vram_xfer fault is returned
 *   xfer_hold rw: 1: the engine takes no transfer until the VF's reset
 *             (reset_prepare, reset_vf), which completes them with
 *             -EIO; 2: not even then (a hung engine a reset does not
 *             reach), until 0 is written or the PF goes
 *   xfer_lifo rw: 1: the worker completes the newest transfer first
 *             (once the oldest is due), and a restore over a page a restore in
 *             flight writes is accepted, counted in xfer_stats
 *             "overlaps", so that an ordering error shows in the digest
 *   vram_backed r: VRAM pages backed (written since the last reset);
 *             the others read as zeros
 *   flr, event, pf_event: see events.c
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <crypto/sha2.h>
#include <linux/debugfs.h>
#include <linux/kernel.h>
#include <linux/time64.h>
#include <linux/seq_file.h>
#include <linux/uaccess.h>

#include "gpup_sim.h"

static struct dentry *gpup_sim_debugfs_root;

static int gpup_sim_profile_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	mutex_lock(&vf->lock);
	seq_printf(s, "profile_id=%u\nengines=%u\nfw_version=0x%08x\n",
		   vf->profile.id, vf->profile.engines,
		   vf->profile.fw_version);
	seq_printf(s, "drv_version=0x%08x\ndevice_id=0x%04x\n",
		   vf->profile.drv_version, vf->profile.device_id);
	seq_printf(s, "vram_size=%llu\npage_size=%u\nformat=1.1\n",
		   vf->vram_size, GPUP_SIM_PAGE_SIZE);
	mutex_unlock(&vf->lock);
	return 0;
}

static int gpup_sim_digest_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;
	u8 d[SHA256_DIGEST_SIZE];
	int ret;

	mutex_lock(&vf->lock);
	ret = gpup_sim_digest_locked(vf, d);
	mutex_unlock(&vf->lock);
	if (!ret)
		seq_printf(s, "%*phN\n", (int)sizeof(d), d);
	return ret;
}

static int gpup_sim_fault_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	mutex_lock(&vf->lock);
	if (!vf->fault_op[0])
		seq_puts(s, "none\n");
	else if (vf->fault_kind == GPUP_SIM_FAULT_OVERSIZE)
		seq_printf(s, "%s oversize\n", vf->fault_op);
	else if (vf->fault_kind == GPUP_SIM_FAULT_SKIP)
		seq_printf(s, "%s skip\n", vf->fault_op);
	else if (vf->fault_kind == GPUP_SIM_FAULT_DMA_DROP)
		seq_printf(s, "%s drop\n", vf->fault_op);
	else if (vf->fault_kind == GPUP_SIM_FAULT_DMA_STOP)
		seq_printf(s, "%s stop\n", vf->fault_op);
	else
		seq_printf(s, "%s %d\n", vf->fault_op, vf->fault_err);
	mutex_unlock(&vf->lock);
	return 0;
}

static int gpup_sim_u64_show(struct seq_file *s, u64 v)
{
	seq_printf(s, "%llu\n", v);
	return 0;
}

/* The show of a number of VF @vf read under its lock: @expr. */
#define GPUP_SIM_LOCKED_SHOW(name, expr)				\
static int gpup_sim_##name##_show(struct seq_file *s, void *unused)	\
{									\
	struct gpup_sim_vf *vf = s->private;				\
	u64 v;								\
									\
	mutex_lock(&vf->lock);						\
	v = (expr);							\
	mutex_unlock(&vf->lock);					\
	return gpup_sim_u64_show(s, v);					\
}

GPUP_SIM_LOCKED_SHOW(steps, vf->sched.steps)

GPUP_SIM_LOCKED_SHOW(dirty, bitmap_weight(vf->dirty,
					  vf->vram_size / GPUP_SIM_PAGE_SIZE))

static int gpup_sim_free_run_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	return gpup_sim_u64_show(s, READ_ONCE(vf->free_run));
}

GPUP_SIM_LOCKED_SHOW(ticks, vf->ticks)

static int gpup_sim_paused_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	return gpup_sim_u64_show(s, READ_ONCE(vf->paused));
}

static int gpup_sim_seed_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	return gpup_sim_u64_show(s, READ_ONCE(vf->seed));
}

static int gpup_sim_migrating_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	return gpup_sim_u64_show(s, READ_ONCE(vf->migrating));
}

static int gpup_sim_tracking_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	return gpup_sim_u64_show(s, READ_ONCE(vf->track_refs));
}

GPUP_SIM_LOCKED_SHOW(violations, vf->violations)

static int gpup_sim_dma_window_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	mutex_lock(&vf->lock);
	seq_printf(s, "0x%llx %u\n", vf->dma_iova, vf->dma_npages);
	mutex_unlock(&vf->lock);
	return 0;
}

GPUP_SIM_LOCKED_SHOW(dma_writes, vf->dma_writes)

GPUP_SIM_LOCKED_SHOW(dma_faults, vf->dma_faults)

GPUP_SIM_LOCKED_SHOW(dma_logged, gpup_sim_dma_logged_count_locked(vf))

static int gpup_sim_xfer_stats_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	mutex_lock(&vf->lock);
	seq_printf(s, "submitted %llu\nasync %llu\nerrors %llu\nin_flight %u\nmax_in_flight %u\nsegments %llu\nmax_segments %u\noverlaps %llu\nzeroed %llu\n",
		   vf->xfer_submitted, vf->xfer_async, vf->xfer_errors,
		   vf->xfer_inflight, vf->xfer_max_inflight,
		   vf->xfer_segments, vf->xfer_max_segments,
		   vf->xfer_overlaps, vf->zeroed_pages);
	mutex_unlock(&vf->lock);
	return 0;
}

GPUP_SIM_LOCKED_SHOW(xfer_lifo, vf->xfer_lifo)

GPUP_SIM_LOCKED_SHOW(xfer_sync, vf->xfer_sync)

GPUP_SIM_LOCKED_SHOW(xfer_hold, vf->xfer_hold)

GPUP_SIM_LOCKED_SHOW(free_run_ms, vf->free_run_ms)
GPUP_SIM_LOCKED_SHOW(xfer_delay, vf->xfer_delay_us)
GPUP_SIM_LOCKED_SHOW(vram_delay, vf->vram_delay_us)
GPUP_SIM_LOCKED_SHOW(vram_backed, vf->vram_backed)

/* "<op> <errno>", "<op> oversize", "<op> skip", "dma_log drop|stop" */
static int gpup_sim_parse_fault(const char *buf, char *op,
				enum gpup_sim_fault_kind *kind, int *err)
{
	char how[16];

	if (sscanf(buf, "%31s %15s", op, how) != 2)
		return -EINVAL;
	*err = 0;
	if (!strcmp(how, "oversize")) {
		if (strcmp(op, "save_immutable") && strcmp(op, "save_mutable"))
			return -EINVAL;
		*kind = GPUP_SIM_FAULT_OVERSIZE;
		return 0;
	}
	if (!strcmp(how, "skip")) {
		if (strcmp(op, "restore_mutable"))
			return -EINVAL;
		*kind = GPUP_SIM_FAULT_SKIP;
		return 0;
	}
	if (!strcmp(op, "dma_log") && !strcmp(how, "drop")) {
		*kind = GPUP_SIM_FAULT_DMA_DROP;
		return 0;
	}
	if (!strcmp(op, "dma_log") && !strcmp(how, "stop")) {
		*kind = GPUP_SIM_FAULT_DMA_STOP;
		return 0;
	}
	*kind = GPUP_SIM_FAULT_ERRNO;
	if (kstrtoint(how, 0, err) || *err >= 0 || *err < -MAX_ERRNO)
		return -EINVAL;
	return 0;
}

/* Read a short user string into @buf, NUL terminated, newline dropped. */
static int gpup_sim_get_arg(const char __user *ubuf, size_t len, char *buf,
			    size_t size)
{
	if (len >= size)
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	strim(buf);
	return 0;
}

static ssize_t gpup_sim_write(struct file *file, const char __user *ubuf,
			      size_t len, loff_t *ppos)
{
	struct seq_file *s = file->private_data;
	struct gpup_sim_vf *vf = s->private;
	const char *name = file->f_path.dentry->d_name.name;
	const struct gpup_sim_profile *prof;
	enum gpup_sim_fault_kind kind = GPUP_SIM_FAULT_ERRNO;
	char buf[64], op[32];
	unsigned long long v, iova;
	unsigned int npages;
	int ret, err;

	ret = gpup_sim_get_arg(ubuf, len, buf, sizeof(buf));
	if (ret)
		return ret;
	if (!strcmp(name, "fault")) {
		ret = gpup_sim_parse_fault(buf, op, &kind, &err);
		if (ret)
			return ret;
	} else if (!strcmp(name, "dma_window")) {
		if (sscanf(buf, "%lli %u", &iova, &npages) != 2)
			return -EINVAL;
	} else {
		ret = kstrtoull(buf, 0, &v);
		if (ret)
			return ret;
	}

	/* The reset hook, as reset_vf: accepted transfers complete first. */
	if (!strcmp(name, "reset"))
		gpup_sim_xfer_flush(vf, false);
	mutex_lock(&vf->lock);
	if (!strcmp(name, "dma_window")) {
		ret = gpup_sim_dma_set_window(vf, iova, npages);
	} else if (!strcmp(name, "run")) {
		ret = gpup_sim_run_locked(vf, v);
	} else if (!strcmp(name, "free_run")) {
		vf->free_run = !!v;
		if (vf->free_run)
			schedule_delayed_work(&vf->work, 0);
	} else if (!strcmp(name, "pause")) {
		ret = gpup_sim_set_pause_locked(vf, !!v);
	} else if (!strcmp(name, "track")) {
		ret = gpup_sim_track_locked(vf, !!v);
	} else if (!strcmp(name, "fault")) {
		strscpy(vf->fault_op, op, sizeof(vf->fault_op));
		vf->fault_kind = kind;
		vf->fault_err = err;
	} else if (!strcmp(name, "xfer_stats")) {
		if (v) {
			ret = -EINVAL;
		} else {
			vf->xfer_submitted = 0;
			vf->xfer_async = 0;
			vf->xfer_errors = 0;
			vf->xfer_max_inflight = vf->xfer_inflight;
			vf->xfer_segments = 0;
			vf->xfer_max_segments = 0;
			vf->xfer_overlaps = 0;
			vf->zeroed_pages = 0;
		}
	} else if (!strcmp(name, "xfer_lifo")) {
		vf->xfer_lifo = !!v;
	} else if (!strcmp(name, "xfer_sync")) {
		vf->xfer_sync = !!v;
	} else if (!strcmp(name, "xfer_hold")) {
		if (v > 2)
			ret = -EINVAL;
		else
			vf->xfer_hold = v;
		/* Let go: the engine takes what it held. */
		if (!v)
			gpup_sim_xfer_kick(vf);
	} else if (!strcmp(name, "free_run_ms")) {
		if (!v || v > MSEC_PER_SEC)
			ret = -EINVAL;
		else
			WRITE_ONCE(vf->free_run_ms, v);
	} else if (!strcmp(name, "xfer_delay")) {
		if (v > USEC_PER_SEC)
			ret = -EINVAL;
		else
			vf->xfer_delay_us = v;
	} else if (!strcmp(name, "vram_delay")) {
		if (v > USEC_PER_SEC)
			ret = -EINVAL;
		else
			vf->vram_delay_us = v;
	} else if (!strcmp(name, "reset")) {
		if (gpup_sim_fault_locked(vf, "reset_vf", GPUP_SIM_FAULT_ERRNO,
					  &err))
			ret = err;
		else
			gpup_sim_reset_locked(vf);
	} else if (vf->migrating) {
		/* profile and seed reset the VF: not mid-migration */
		ret = -EBUSY;
	} else if (!strcmp(name, "seed")) {
		vf->seed = v;
		gpup_sim_reset_locked(vf);
	} else if (!strcmp(name, "profile")) {
		prof = gpup_sim_find_profile(v);
		if (prof) {
			vf->profile = *prof;
			gpup_sim_reset_locked(vf);
		} else {
			ret = -EINVAL;
		}
	} else {
		ret = -EINVAL;
	}
	mutex_unlock(&vf->lock);
	return ret ? ret : len;
}

static int gpup_sim_none_show(struct seq_file *s, void *unused)
{
	return 0;
}

#define GPUP_SIM_FILE(_name)						\
static int gpup_sim_##_name##_open(struct inode *inode, struct file *file) \
{									\
	return single_open(file, gpup_sim_##_name##_show, inode->i_private); \
}									\
static const struct file_operations gpup_sim_##_name##_fops = {	\
	.owner = THIS_MODULE,						\
	.open = gpup_sim_##_name##_open,				\
	.read = seq_read,						\
	.write = gpup_sim_write,					\
	.llseek = seq_lseek,						\
	.release = single_release,					\
}

GPUP_SIM_FILE(profile);
GPUP_SIM_FILE(digest);
GPUP_SIM_FILE(steps);
GPUP_SIM_FILE(dirty);
GPUP_SIM_FILE(free_run);
GPUP_SIM_FILE(free_run_ms);
GPUP_SIM_FILE(ticks);
GPUP_SIM_FILE(paused);
GPUP_SIM_FILE(seed);
GPUP_SIM_FILE(fault);
GPUP_SIM_FILE(migrating);
GPUP_SIM_FILE(tracking);
GPUP_SIM_FILE(violations);
GPUP_SIM_FILE(dma_window);
GPUP_SIM_FILE(dma_writes);
GPUP_SIM_FILE(dma_faults);
GPUP_SIM_FILE(dma_logged);
GPUP_SIM_FILE(xfer_stats);
GPUP_SIM_FILE(xfer_delay);
GPUP_SIM_FILE(vram_delay);
GPUP_SIM_FILE(vram_backed);
GPUP_SIM_FILE(xfer_lifo);
GPUP_SIM_FILE(xfer_hold);
GPUP_SIM_FILE(xfer_sync);
GPUP_SIM_FILE(none);

/**
 * gpup_sim_debugfs_vf() - create a VF's debugfs directory
 * @vf: the VF
 * @name: the VF's PCI name
 */
void gpup_sim_debugfs_vf(struct gpup_sim_vf *vf, const char *name)
{
	struct dentry *d;

	if (vf->dir)
		return;
	d = debugfs_create_dir(name, gpup_sim_debugfs_root);
	vf->dir = d;
	debugfs_create_file("profile", 0644, d, vf, &gpup_sim_profile_fops);
	debugfs_create_file("digest", 0444, d, vf, &gpup_sim_digest_fops);
	debugfs_create_file("steps", 0444, d, vf, &gpup_sim_steps_fops);
	debugfs_create_file("run", 0200, d, vf, &gpup_sim_none_fops);
	debugfs_create_file("dirty", 0444, d, vf, &gpup_sim_dirty_fops);
	debugfs_create_file("free_run", 0644, d, vf, &gpup_sim_free_run_fops);
	debugfs_create_file("free_run_ms", 0644, d, vf,
			    &gpup_sim_free_run_ms_fops);
	debugfs_create_file("ticks", 0444, d, vf, &gpup_sim_ticks_fops);
	debugfs_create_file("paused", 0444, d, vf, &gpup_sim_paused_fops);
	debugfs_create_file("pause", 0200, d, vf, &gpup_sim_none_fops);
	debugfs_create_file("track", 0200, d, vf, &gpup_sim_none_fops);
	debugfs_create_file("seed", 0644, d, vf, &gpup_sim_seed_fops);
	debugfs_create_file("fault", 0644, d, vf, &gpup_sim_fault_fops);
	debugfs_create_file("reset", 0200, d, vf, &gpup_sim_none_fops);
	debugfs_create_file("migrating", 0444, d, vf, &gpup_sim_migrating_fops);
	debugfs_create_file("tracking", 0444, d, vf, &gpup_sim_tracking_fops);
	debugfs_create_file("violations", 0444, d, vf,
			    &gpup_sim_violations_fops);
	debugfs_create_file("dma_window", 0644, d, vf,
			    &gpup_sim_dma_window_fops);
	debugfs_create_file("dma_writes", 0444, d, vf,
			    &gpup_sim_dma_writes_fops);
	debugfs_create_file("dma_faults", 0444, d, vf,
			    &gpup_sim_dma_faults_fops);
	debugfs_create_file("dma_logged", 0444, d, vf,
			    &gpup_sim_dma_logged_fops);
	gpup_sim_events_debugfs(vf, d);
	debugfs_create_file("xfer_stats", 0644, d, vf,
			    &gpup_sim_xfer_stats_fops);
	debugfs_create_file("xfer_delay", 0644, d, vf,
			    &gpup_sim_xfer_delay_fops);
	debugfs_create_file("vram_delay", 0644, d, vf,
			    &gpup_sim_vram_delay_fops);
	debugfs_create_file("xfer_lifo", 0644, d, vf,
			    &gpup_sim_xfer_lifo_fops);
	debugfs_create_file("xfer_hold", 0644, d, vf,
			    &gpup_sim_xfer_hold_fops);
	debugfs_create_file("xfer_sync", 0644, d, vf,
			    &gpup_sim_xfer_sync_fops);
	debugfs_create_file("vram_backed", 0444, d, vf,
			    &gpup_sim_vram_backed_fops);
}

/** gpup_sim_debugfs_init() - create the debugfs root */
void gpup_sim_debugfs_init(void)
{
	gpup_sim_debugfs_root = debugfs_create_dir("gpup_sim", NULL);
}

/** gpup_sim_debugfs_exit() - remove the debugfs root */
void gpup_sim_debugfs_exit(void)
{
	debugfs_remove_recursive(gpup_sim_debugfs_root);
}
