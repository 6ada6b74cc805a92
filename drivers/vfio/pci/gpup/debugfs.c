// SPDX-License-Identifier: GPL-2.0
/*
 * debugfs of gpup_vfio_pci: /sys/kernel/debug/gpup_vfio_pci/<VF>/
 *
 *   status  r: migration state, flags, geometry, counters
 *   passes  r: the VRAM passes of the last save stream (the last
 *           GPUP_PASS_LOG), one line each: bytes sent, pages dirty at its
 *           end, reads, the reads read() waited for and how long, the
 *           reads' latency (sum, max) and the pass's time, in µs
 *
 * and, for VFs bound while the module parameter test_hooks is set (the
 * selftests set it; a user's modprobe has none of this):
 *
 *   hold    test hook: a read() takes the device's state mutex and keeps
 *           it until "0" is written here (or the reader gets a signal),
 *           as any thread that holds it for long would (an arc calling a
 *           slow provider, a status read); "held" says when it has it
 *   held    r: 1 while a read() of "hold" keeps the state mutex
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/debugfs.h>
#include <linux/pci.h>
#include <linux/seq_file.h>
#include <linux/slab.h>

#include "gpup_vfio.h"
#include "migrate.h"

static struct dentry *gpup_vfio_debugfs_root;

static const char *const gpup_vfio_state_names[] = {
	[VFIO_DEVICE_STATE_ERROR] = "ERROR",
	[VFIO_DEVICE_STATE_STOP] = "STOP",
	[VFIO_DEVICE_STATE_RUNNING] = "RUNNING",
	[VFIO_DEVICE_STATE_STOP_COPY] = "STOP_COPY",
	[VFIO_DEVICE_STATE_RESUMING] = "RESUMING",
	[VFIO_DEVICE_STATE_RUNNING_P2P] = "RUNNING_P2P",
	[VFIO_DEVICE_STATE_PRE_COPY] = "PRE_COPY",
	[VFIO_DEVICE_STATE_PRE_COPY_P2P] = "PRE_COPY_P2P",
};

/**
 * gpup_vfio_state_name() - name of a VFIO migration state
 * @state: the state
 *
 * Return: the uAPI name without its prefix, or "?" for an unknown value.
 */
const char *gpup_vfio_state_name(enum vfio_device_mig_state state)
{
	if (state >= ARRAY_SIZE(gpup_vfio_state_names) ||
	    !gpup_vfio_state_names[state])
		return "?";
	return gpup_vfio_state_names[state];
}

static int gpup_vfio_status_show(struct seq_file *s, void *unused)
{
	struct gpup_vfio_dev *gdev = s->private;

	mutex_lock(&gdev->state_mutex);
	seq_printf(s, "state: %s\n", gpup_vfio_state_name(gdev->mig_state));
	mutex_lock(&gdev->op_lock);
	seq_printf(s, "open: %d\nprovider: %d\ncaps_ok: %d\n", gdev->opened,
		   !!gdev->prov, gdev->caps_ok);
	seq_printf(s, "prepared: %d\ntracking: %d\npaused: %d\n",
		   gdev->prepared, gdev->tracking, gdev->paused);
	seq_printf(s, "dma_logging: %d\ndma_log_running: %d\n",
		   !!gdev->core.vdev.log_ops, gdev->log_running);
	mutex_unlock(&gdev->op_lock);
	seq_printf(s, "profile: %u\nvram_size: %llu\npage_size: %u\n",
		   gdev->caps.profile_id, gdev->caps.vram_size,
		   gdev->caps.page_size);
	seq_printf(s, "bytes_saved: %lld\nbytes_restored: %lld\n",
		   atomic64_read(&gdev->stats.bytes_saved),
		   atomic64_read(&gdev->stats.bytes_restored));
	seq_printf(s, "migrations_out: %lld\nmigrations_in: %lld\n",
		   atomic64_read(&gdev->stats.migrations_out),
		   atomic64_read(&gdev->stats.migrations_in));
	seq_printf(s, "pre_copy_entries: %lld\nstop_copy_entries: %lld\n",
		   atomic64_read(&gdev->stats.pre_copy_entries),
		   atomic64_read(&gdev->stats.stop_copy_entries));
	seq_printf(s, "resets: %lld\nlast_error: %d\n",
		   atomic64_read(&gdev->stats.resets),
		   atomic_read(&gdev->stats.last_error));
	gpup_vfio_state_mutex_unlock(gdev);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(gpup_vfio_status);

static int gpup_vfio_passes_show(struct seq_file *s, void *unused)
{
	struct gpup_vfio_dev *gdev = s->private;
	struct gpup_vfio_pass *p, *log;
	unsigned int n, i;

	log = kmalloc_array(GPUP_PASS_LOG, sizeof(*log), GFP_KERNEL);
	if (!log)
		return -ENOMEM;
	spin_lock(&gdev->pass_lock);
	n = gdev->npasses;
	memcpy(log, gdev->passes, sizeof(gdev->passes));
	spin_unlock(&gdev->pass_lock);
	seq_puts(s, "pass bytes dirty_left reads stalls stall_us read_us read_max_us us stop_copy\n");
	for (i = n > GPUP_PASS_LOG ? n - GPUP_PASS_LOG : 0; i < n; i++) {
		p = &log[i % GPUP_PASS_LOG];
		seq_printf(s, "%u %llu %llu %u %u %llu %llu %llu %llu %d\n", i,
			   p->bytes, p->dirty_left, p->reads, p->stalls,
			   p->stall_us, p->read_us, p->read_max_us, p->us,
			   p->stop_copy);
	}
	kfree(log);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(gpup_vfio_passes);

static ssize_t gpup_vfio_hold_read(struct file *file, char __user *buf,
				   size_t len, loff_t *pos)
{
	struct gpup_vfio_dev *gdev = file->private_data;
	int ret;

	if (mutex_lock_interruptible(&gdev->state_mutex))
		return -EINTR;
	WRITE_ONCE(gdev->hold_release, false);
	WRITE_ONCE(gdev->held, true);
	ret = wait_event_interruptible(gdev->hold_wq,
				       READ_ONCE(gdev->hold_release));
	WRITE_ONCE(gdev->held, false);
	gpup_vfio_state_mutex_unlock(gdev);
	return ret;
}

static ssize_t gpup_vfio_hold_write(struct file *file, const char __user *buf,
				    size_t len, loff_t *pos)
{
	struct gpup_vfio_dev *gdev = file->private_data;

	WRITE_ONCE(gdev->hold_release, true);
	wake_up(&gdev->hold_wq);
	return len;
}

static const struct file_operations gpup_vfio_hold_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = gpup_vfio_hold_read,
	.write = gpup_vfio_hold_write,
};

/**
 * gpup_vfio_debugfs_init() - create the VF's debugfs directory
 * @gdev: the VF
 */
void gpup_vfio_debugfs_init(struct gpup_vfio_dev *gdev)
{
	if (!gdev->migratable || !gpup_vfio_debugfs_root)
		return;
	gdev->debugfs = debugfs_create_dir(pci_name(gdev->core.pdev),
					   gpup_vfio_debugfs_root);
	debugfs_create_file("status", 0444, gdev->debugfs, gdev,
			    &gpup_vfio_status_fops);
	debugfs_create_file("passes", 0444, gdev->debugfs, gdev,
			    &gpup_vfio_passes_fops);
	if (!READ_ONCE(gpup_vfio_test_hooks))
		return;
	debugfs_create_file("hold", 0600, gdev->debugfs, gdev,
			    &gpup_vfio_hold_fops);
	debugfs_create_bool("held", 0444, gdev->debugfs, &gdev->held);
}

/**
 * gpup_vfio_debugfs_exit() - remove the VF's debugfs directory
 * @gdev: the VF
 */
void gpup_vfio_debugfs_exit(struct gpup_vfio_dev *gdev)
{
	debugfs_remove_recursive(gdev->debugfs);
	gdev->debugfs = NULL;
}

/** gpup_vfio_debugfs_module_init() - create the driver's debugfs root */
void gpup_vfio_debugfs_module_init(void)
{
	gpup_vfio_debugfs_root = debugfs_create_dir(KBUILD_MODNAME, NULL);
}

/** gpup_vfio_debugfs_module_exit() - remove the driver's debugfs root */
void gpup_vfio_debugfs_module_exit(void)
{
	debugfs_remove_recursive(gpup_vfio_debugfs_root);
}
