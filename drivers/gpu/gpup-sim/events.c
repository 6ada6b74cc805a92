// SPDX-License-Identifier: GPL-2.0
/*
 * gpup_sim: the function-level-reset ops and the events a PF reports to
 * the variant driver, with their test hooks in debugfs
 * (/sys/kernel/debug/gpup_sim/<VF>/):
 *
 *   flr       r: "prepare N done M quiet_calls Q": reset_prepare and
 *             reset_done calls, and op calls between the two (Q, each a
 *             violation: a VF being reset takes no call)
 *   event     w: what the PF does to the VF underneath its user, then
 *             reports with gpup_vf_notify():
 *             "reset"   the VF is reset to its power-on state (RESET)
 *             "error"   the VF fails: every op but reset_vf fails -EIO
 *                       until reset_vf (ERROR)
 *             "caps N"  the VF is re-provisioned as profile N; nothing
 *                       else changes (CAPS_CHANGED)
 *   pf_event  w: "error" or "reset": the same for every VF of the PF,
 *             reported once with gpup_pf_notify()
 *
 * A real PF sees the FLR of a VF in its own interrupt or from firmware
 * (xe's GuC); the sim keeps the order the contract promises instead:
 * reset_done only after reset_prepare, counted as a violation otherwise.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/debugfs.h>
#include <linux/pci.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "gpup_sim.h"

/*
 * reset_prepare: the VF's engines stop until reset_done, and its copy
 * engine work (vram_xfer) is finished first, as a PF fences a VF's
 * engines before its FLR.
 */
static void gpup_sim_reset_prepare(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_pf *pf = pci_get_drvdata(pdev);
	struct gpup_sim_vf *vf;

	down_read(&pf->vfs_rwsem);
	if (idx < pf->nvfs)
		gpup_sim_xfer_flush(&pf->vfs[idx], false);
	up_read(&pf->vfs_rwsem);
	vf = gpup_sim_vf_lock(pdev, idx);
	if (!vf)
		return;
	vf->quiesced = true;
	vf->flr_prepares++;
	gpup_sim_vf_unlock(vf);
}

/* reset_done: the sim's FLR handling is instant; a fault may fail it. */
static int gpup_sim_reset_done(struct pci_dev *pdev, unsigned int idx)
{
	struct gpup_sim_vf *vf = gpup_sim_vf_lock(pdev, idx);
	int err = 0;

	if (!vf)
		return -ENODEV;
	if (gpup_sim_fault_locked(vf, "reset_done", GPUP_SIM_FAULT_ERRNO,
				  &err))
		goto out;
	if (!vf->quiesced) {
		vf->violations++;
		WARN_ONCE(1, "gpup_sim: VF %u: reset_done without reset_prepare\n",
			  vf->idx);
	}
	vf->quiesced = false;
	vf->flr_dones++;
out:
	gpup_sim_vf_unlock(vf);
	return err;
}

/**
 * gpup_sim_events_ops() - add the reset hooks to a PF's ops
 * @ops: the PF's copy of gpup_sim_ops
 */
void gpup_sim_events_ops(struct gpup_migration_ops *ops)
{
	ops->reset_prepare = gpup_sim_reset_prepare;
	ops->reset_done = gpup_sim_reset_done;
}

/* Do @what to @vf; the event to report, or -errno.  Caller holds vf->lock. */
static int gpup_sim_event_locked(struct gpup_sim_vf *vf, const char *what)
{
	const struct gpup_sim_profile *prof;
	unsigned int id;

	lockdep_assert_held(&vf->lock);
	if (!strcmp(what, "reset")) {
		gpup_sim_reset_locked(vf);
		return GPUP_VF_EVENT_RESET;
	}
	if (!strcmp(what, "error")) {
		vf->failed = true;
		return GPUP_VF_EVENT_ERROR;
	}
	if (sscanf(what, "caps %u", &id) == 1) {
		prof = gpup_sim_find_profile(id);
		if (!prof)
			return -EINVAL;
		vf->profile = *prof;
		return GPUP_VF_EVENT_CAPS_CHANGED;
	}
	return -EINVAL;
}

static ssize_t gpup_sim_event_write(struct file *file, const char __user *ubuf,
				    size_t len, loff_t *ppos)
{
	struct gpup_sim_vf *vf = file->private_data;
	bool whole_pf = !strcmp(file->f_path.dentry->d_name.name, "pf_event");
	struct gpup_sim_pf *pf = vf->pf;
	unsigned int i, first, last;
	int ev = -EINVAL;
	char buf[32];

	if (!len || len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	strim(buf);
	if (whole_pf && strcmp(buf, "reset") && strcmp(buf, "error"))
		return -EINVAL;

	down_read(&pf->vfs_rwsem);
	first = whole_pf ? 0 : vf->idx;
	last = whole_pf ? pf->nvfs : vf->idx + 1;
	for (i = first; i < last && i < pf->nvfs; i++) {
		mutex_lock(&pf->vfs[i].lock);
		ev = gpup_sim_event_locked(&pf->vfs[i], buf);
		if (ev >= 0 && !whole_pf && pf->vfs[i].prov)
			gpup_vf_notify(pf->vfs[i].prov, i, ev);
		mutex_unlock(&pf->vfs[i].lock);
		if (ev < 0)
			break;
	}
	/* vf->prov is cleared, under vf->lock, before the PF unregisters. */
	if (ev >= 0 && whole_pf) {
		mutex_lock(&vf->lock);
		if (vf->prov)
			gpup_pf_notify(vf->prov, ev);
		mutex_unlock(&vf->lock);
	}
	up_read(&pf->vfs_rwsem);
	return ev < 0 ? ev : len;
}

static int gpup_sim_flr_show(struct seq_file *s, void *unused)
{
	struct gpup_sim_vf *vf = s->private;

	mutex_lock(&vf->lock);
	seq_printf(s, "prepare %llu done %llu quiet_calls %llu\n",
		   vf->flr_prepares, vf->flr_dones, vf->quiet_calls);
	mutex_unlock(&vf->lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(gpup_sim_flr);

static const struct file_operations gpup_sim_event_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = gpup_sim_event_write,
};

/**
 * gpup_sim_events_debugfs() - the VF's flr, event and pf_event files
 * @vf: the VF
 * @d: its debugfs directory
 */
void gpup_sim_events_debugfs(struct gpup_sim_vf *vf, struct dentry *d)
{
	debugfs_create_file("flr", 0444, d, vf, &gpup_sim_flr_fops);
	debugfs_create_file("event", 0200, d, vf, &gpup_sim_event_fops);
	debugfs_create_file("pf_event", 0200, d, vf, &gpup_sim_event_fops);
}
