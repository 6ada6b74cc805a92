// SPDX-License-Identifier: GPL-2.0
/*
 * The VFIO migration v2 state machine of gpup_vfio_pci, mapped onto the
 * GPU-P provider ops.  See Documentation/driver.rst for the arc table.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/file.h>
#include <linux/pci.h>
#include <linux/vfio.h>

#include "gpup_vfio.h"
#include "trace.h"

/**
 * gpup_vfio_op_enter() - begin a provider call for a VF
 * @gdev: the VF
 * @gen: the file generation the caller belongs to; a caller that holds
 *	@gdev->state_mutex passes @gdev->gen
 *
 * Takes @gdev->op_lock and enters the provider's fence.
 *
 * Return: 0, or -ENODEV if the device has no provider, the provider was
 * unregistered or @gen is stale (the caller's file was disabled).
 */
int gpup_vfio_op_enter(struct gpup_vfio_dev *gdev, unsigned long gen)
{
	int ret;

	mutex_lock(&gdev->op_lock);
	if (gen != gdev->gen || !gdev->prov) {
		mutex_unlock(&gdev->op_lock);
		return -ENODEV;
	}
	ret = gpup_provider_enter(gdev->prov);
	if (ret)
		mutex_unlock(&gdev->op_lock);
	return ret;
}

/**
 * gpup_vfio_op_exit() - end a provider call gpup_vfio_op_enter() began
 * @gdev: the VF
 */
void gpup_vfio_op_exit(struct gpup_vfio_dev *gdev)
{
	gpup_provider_exit(gdev->prov);
	mutex_unlock(&gdev->op_lock);
}

#define GPUP_OPS(gdev) ((gdev)->prov->ops)
#define GPUP_PF(gdev) ((gdev)->prov->pf)

static int gpup_vfio_pause_locked(struct gpup_vfio_dev *gdev, bool pause)
{
	int ret;

	ret = gpup_vfio_op_enter(gdev, gdev->gen);
	if (!ret) {
		ret = GPUP_OPS(gdev)->set_pause_state(GPUP_PF(gdev),
						      gdev->vf_id, pause);
		gpup_vfio_op_exit(gdev);
	}
	trace_gpup_vfio_op(gdev->vf_id, "set_pause_state", pause, ret);
	if (!ret)
		gdev->paused = pause;
	return ret;
}

/* Disable the migration files: they never call the provider again. */
static void gpup_vfio_disable_files_locked(struct gpup_vfio_dev *gdev)
{
	struct gpup_mig_file *saving = gdev->saving;
	struct gpup_mig_file *resuming = gdev->resuming;

	mutex_lock(&gdev->op_lock);
	gdev->gen++;
	mutex_unlock(&gdev->op_lock);

	gdev->saving = NULL;
	gdev->resuming = NULL;
	if (saving)
		fput(gpup_mig_file_filp(saving));
	if (resuming)
		fput(gpup_mig_file_filp(resuming));
}

/* Undo what prepare and dirty tracking started; neither call can fail. */
static void gpup_vfio_end_migration_locked(struct gpup_vfio_dev *gdev)
{
	if (!gdev->tracking && !gdev->prepared)
		return;
	if (!gpup_vfio_op_enter(gdev, gdev->gen)) {
		if (gdev->tracking) {
			GPUP_OPS(gdev)->stop_dirty_tracking(GPUP_PF(gdev),
							    gdev->vf_id);
			trace_gpup_vfio_op(gdev->vf_id, "stop_dirty_tracking",
					   0, 0);
		}
		if (gdev->prepared) {
			GPUP_OPS(gdev)->end_live_migration(GPUP_PF(gdev),
							   gdev->vf_id);
			trace_gpup_vfio_op(gdev->vf_id, "end_live_migration",
					   0, 0);
		}
		gpup_vfio_op_exit(gdev);
	}
	gdev->tracking = false;
	gdev->prepared = false;
}

static int gpup_vfio_prepare_locked(struct gpup_vfio_dev *gdev,
				    enum gpup_mig_side side, bool track)
{
	int ret;

	ret = gpup_vfio_op_enter(gdev, gdev->gen);
	if (ret)
		return ret;
	ret = GPUP_OPS(gdev)->prepare_live_migration(GPUP_PF(gdev),
						     gdev->vf_id, side);
	trace_gpup_vfio_op(gdev->vf_id, "prepare_live_migration", side, ret);
	if (!ret) {
		gdev->prepared = true;
		if (track) {
			ret = GPUP_OPS(gdev)->start_dirty_tracking(GPUP_PF(gdev),
								   gdev->vf_id);
			trace_gpup_vfio_op(gdev->vf_id, "start_dirty_tracking",
					   0, ret);
			gdev->tracking = !ret;
		}
	}
	gpup_vfio_op_exit(gdev);
	if (ret)
		gpup_vfio_end_migration_locked(gdev);
	return ret;
}

static struct file *gpup_vfio_start_source_locked(struct gpup_vfio_dev *gdev,
						  bool precopy)
{
	struct gpup_mig_file *mf;
	int ret;

	ret = gpup_vfio_prepare_locked(gdev, GPUP_MIG_SOURCE, precopy);
	if (ret)
		return ERR_PTR(ret);
	mf = gpup_save_file_new(gdev, precopy);
	if (IS_ERR(mf)) {
		gpup_vfio_end_migration_locked(gdev);
		return ERR_CAST(mf);
	}
	gdev->saving = mf;
	get_file(gpup_mig_file_filp(mf));
	return gpup_mig_file_filp(mf);
}

static struct file *gpup_vfio_start_target_locked(struct gpup_vfio_dev *gdev)
{
	struct gpup_mig_file *mf;
	int ret;

	ret = gpup_vfio_prepare_locked(gdev, GPUP_MIG_TARGET, false);
	if (ret)
		return ERR_PTR(ret);
	mf = gpup_resume_file_new(gdev);
	if (IS_ERR(mf)) {
		gpup_vfio_end_migration_locked(gdev);
		return ERR_CAST(mf);
	}
	gdev->resuming = mf;
	get_file(gpup_mig_file_filp(mf));
	return gpup_mig_file_filp(mf);
}

static void gpup_vfio_end_locked(struct gpup_vfio_dev *gdev)
{
	gpup_vfio_disable_files_locked(gdev);
	gpup_vfio_end_migration_locked(gdev);
}

static int gpup_vfio_finish_target_locked(struct gpup_vfio_dev *gdev)
{
	int ret;

	ret = gpup_resume_file_finish(gdev->resuming);
	gpup_vfio_end_locked(gdev);
	if (!ret)
		atomic64_inc(&gdev->stats.migrations_in);
	return ret;
}

/* One arc of the state machine; the core's table guarantees it is valid. */
static struct file *gpup_vfio_step_locked(struct gpup_vfio_dev *gdev,
					  enum vfio_device_mig_state new)
{
	enum vfio_device_mig_state cur = gdev->mig_state;
	int ret = 0;

	if ((cur == VFIO_DEVICE_STATE_RUNNING &&
	     new == VFIO_DEVICE_STATE_RUNNING_P2P) ||
	    (cur == VFIO_DEVICE_STATE_PRE_COPY &&
	     new == VFIO_DEVICE_STATE_PRE_COPY_P2P)) {
		ret = gpup_vfio_pause_locked(gdev, true);
	} else if ((cur == VFIO_DEVICE_STATE_RUNNING_P2P &&
		    new == VFIO_DEVICE_STATE_RUNNING) ||
		   (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P &&
		    new == VFIO_DEVICE_STATE_PRE_COPY)) {
		ret = gpup_vfio_pause_locked(gdev, false);
	} else if ((cur == VFIO_DEVICE_STATE_RUNNING_P2P &&
		    new == VFIO_DEVICE_STATE_STOP) ||
		   (cur == VFIO_DEVICE_STATE_STOP &&
		    new == VFIO_DEVICE_STATE_RUNNING_P2P)) {
		/* The VF is paused since RUNNING_P2P: nothing runs. */
	} else if ((cur == VFIO_DEVICE_STATE_RUNNING &&
		    new == VFIO_DEVICE_STATE_PRE_COPY) ||
		   (cur == VFIO_DEVICE_STATE_RUNNING_P2P &&
		    new == VFIO_DEVICE_STATE_PRE_COPY_P2P)) {
		return gpup_vfio_start_source_locked(gdev, true);
	} else if (cur == VFIO_DEVICE_STATE_STOP &&
		   new == VFIO_DEVICE_STATE_STOP_COPY) {
		return gpup_vfio_start_source_locked(gdev, false);
	} else if (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P &&
		   new == VFIO_DEVICE_STATE_STOP_COPY) {
		ret = gpup_save_file_stop_copy(gdev->saving);
	} else if ((cur == VFIO_DEVICE_STATE_PRE_COPY &&
		    new == VFIO_DEVICE_STATE_RUNNING) ||
		   (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P &&
		    new == VFIO_DEVICE_STATE_RUNNING_P2P) ||
		   (cur == VFIO_DEVICE_STATE_STOP_COPY &&
		    new == VFIO_DEVICE_STATE_STOP)) {
		gpup_vfio_end_locked(gdev);
	} else if (cur == VFIO_DEVICE_STATE_STOP &&
		   new == VFIO_DEVICE_STATE_RESUMING) {
		return gpup_vfio_start_target_locked(gdev);
	} else if (cur == VFIO_DEVICE_STATE_RESUMING &&
		   new == VFIO_DEVICE_STATE_STOP) {
		ret = gpup_vfio_finish_target_locked(gdev);
	} else {
		ret = -EINVAL;
	}
	return ret ? ERR_PTR(ret) : NULL;
}

/*
 * Whether a failed arc leaves the device in ERROR: when the provider is
 * gone, or when a restore failed half way.  Other failures were unwound
 * and leave the device in the state it was in.
 */
static bool gpup_vfio_fatal(enum vfio_device_mig_state cur, int err)
{
	return err == -ENODEV || cur == VFIO_DEVICE_STATE_RESUMING;
}

/* Counts the arcs that debugfs shows (tests use them to see a switchover). */
static void gpup_vfio_count_arc(struct gpup_vfio_dev *gdev,
				enum vfio_device_mig_state cur,
				enum vfio_device_mig_state next)
{
	if ((cur == VFIO_DEVICE_STATE_RUNNING &&
	     next == VFIO_DEVICE_STATE_PRE_COPY) ||
	    (cur == VFIO_DEVICE_STATE_RUNNING_P2P &&
	     next == VFIO_DEVICE_STATE_PRE_COPY_P2P))
		atomic64_inc(&gdev->stats.pre_copy_entries);
	else if (next == VFIO_DEVICE_STATE_STOP_COPY)
		atomic64_inc(&gdev->stats.stop_copy_entries);
}

static struct file *
gpup_vfio_set_device_state(struct vfio_device *vdev,
			   enum vfio_device_mig_state new_state)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	enum vfio_device_mig_state next;
	struct file *res = NULL;
	int ret;

	mutex_lock(&gdev->state_mutex);
	if (gdev->mig_state == VFIO_DEVICE_STATE_ERROR) {
		/* Only a reset leaves ERROR. */
		res = ERR_PTR(-EINVAL);
		goto out;
	}
	while (new_state != gdev->mig_state) {
		ret = vfio_mig_get_next_state(vdev, gdev->mig_state,
					      new_state, &next);
		if (ret) {
			res = ERR_PTR(ret);
			break;
		}
		res = gpup_vfio_step_locked(gdev, next);
		trace_gpup_vfio_arc(gdev->vf_id, gdev->mig_state, next,
				    PTR_ERR_OR_ZERO(res));
		if (IS_ERR(res)) {
			if (gpup_vfio_fatal(gdev->mig_state, PTR_ERR(res))) {
				gpup_vfio_end_locked(gdev);
				gdev->mig_state = VFIO_DEVICE_STATE_ERROR;
			}
			break;
		}
		gpup_vfio_count_arc(gdev, gdev->mig_state, next);
		gdev->mig_state = next;
		if (WARN_ON(res && new_state != gdev->mig_state)) {
			fput(res);
			res = ERR_PTR(-EINVAL);
			break;
		}
	}
out:
	if (IS_ERR(res))
		atomic_set(&gdev->stats.last_error, PTR_ERR(res));
	gpup_vfio_state_mutex_unlock(gdev);
	return res;
}

static int gpup_vfio_get_device_state(struct vfio_device *vdev,
				      enum vfio_device_mig_state *state)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);

	mutex_lock(&gdev->state_mutex);
	*state = gdev->mig_state;
	gpup_vfio_state_mutex_unlock(gdev);
	return 0;
}

/* Bytes of a whole STOP_COPY stream if it started now. */
static int gpup_vfio_full_size_locked(struct gpup_vfio_dev *gdev, u64 *size)
{
	size_t imm = 0, mut = 0;
	int ret;

	ret = gpup_vfio_op_enter(gdev, gdev->gen);
	if (ret)
		return ret;
	ret = GPUP_OPS(gdev)->save_immutable(GPUP_PF(gdev), gdev->vf_id,
					     NULL, &imm);
	if (!ret)
		ret = GPUP_OPS(gdev)->save_mutable(GPUP_PF(gdev), gdev->vf_id,
						   NULL, &mut);
	gpup_vfio_op_exit(gdev);
	if (ret)
		return ret;
	if (imm > gdev->caps.max_immutable_size ||
	    mut > gdev->caps.max_mutable_size)
		return -EIO;
	*size = gpup_save_full_size(gdev, imm, mut);
	return 0;
}

static int gpup_vfio_get_data_size(struct vfio_device *vdev,
				   unsigned long *stop_copy_length)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	u64 initial, dirty;
	long ret;

	mutex_lock(&gdev->state_mutex);
	if (gdev->saving) {
		ret = gpup_save_file_pending(gdev->saving, &initial, &dirty,
					     false);
		if (ret >= 0)
			*stop_copy_length = initial + dirty;
	} else {
		ret = gpup_vfio_full_size_locked(gdev, &initial);
		if (!ret)
			*stop_copy_length = initial;
	}
	gpup_vfio_state_mutex_unlock(gdev);
	return ret < 0 ? ret : 0;
}

const struct vfio_migration_ops gpup_vfio_mig_ops = {
	.migration_set_state = gpup_vfio_set_device_state,
	.migration_get_state = gpup_vfio_get_device_state,
	.migration_get_data_size = gpup_vfio_get_data_size,
};

/*
 * The reset itself, with state_mutex held: drop the files, reset the VF in
 * the provider (finding a re-registered provider if the old one left) and
 * go to RUNNING, or to ERROR if the provider cannot reset the VF.
 */
static void gpup_vfio_reset_locked(struct gpup_vfio_dev *gdev)
{
	struct pci_dev *pdev = gdev->core.pdev;
	struct gpup_provider *old = NULL;
	int ret = -ENODEV;

	gpup_vfio_disable_files_locked(gdev);
	gdev->tracking = false;
	gdev->prepared = false;
	gdev->paused = false;

	if (gdev->opened && (!gdev->prov || READ_ONCE(gdev->prov->dead))) {
		mutex_lock(&gdev->op_lock);
		old = gdev->prov;
		gdev->prov = gpup_provider_get(pdev);
		mutex_unlock(&gdev->op_lock);
		gpup_provider_put(old);
	}
	if (!gpup_vfio_op_enter(gdev, gdev->gen)) {
		ret = GPUP_OPS(gdev)->reset_vf(GPUP_PF(gdev), gdev->vf_id);
		gpup_vfio_op_exit(gdev);
	}
	trace_gpup_vfio_op(gdev->vf_id, "reset_vf", 0, ret);
	gdev->mig_state = ret ? VFIO_DEVICE_STATE_ERROR :
				VFIO_DEVICE_STATE_RUNNING;
	if (ret)
		atomic_set(&gdev->stats.last_error, ret);
}

/**
 * gpup_vfio_state_mutex_unlock() - unlock state_mutex, running a reset
 *	that reset_done deferred to us
 * @gdev: the VF
 *
 * reset_done runs under the vfio-pci core's memory_lock and only
 * trylocks state_mutex; whoever holds state_mutex at that moment carries
 * out the reset before unlocking.  Holding reset_lock across the unlock
 * closes the window between the last check and the unlock.
 */
void gpup_vfio_state_mutex_unlock(struct gpup_vfio_dev *gdev)
{
again:
	spin_lock(&gdev->reset_lock);
	if (gdev->deferred_reset) {
		gdev->deferred_reset = false;
		spin_unlock(&gdev->reset_lock);
		gpup_vfio_reset_locked(gdev);
		goto again;
	}
	mutex_unlock(&gdev->state_mutex);
	spin_unlock(&gdev->reset_lock);
}

/**
 * gpup_vfio_reset_done() - pci_error_handlers.reset_done of the VF
 * @pdev: the VF after a function reset (FLR, VFIO_DEVICE_RESET, the reset
 *	vfio-pci core does at open)
 */
void gpup_vfio_reset_done(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);
	struct gpup_vfio_dev *gdev = container_of(core, struct gpup_vfio_dev,
						  core);

	if (!gdev->migratable)
		return;
	spin_lock(&gdev->reset_lock);
	gdev->deferred_reset = true;
	if (!mutex_trylock(&gdev->state_mutex)) {
		spin_unlock(&gdev->reset_lock);
		return;
	}
	spin_unlock(&gdev->reset_lock);
	gpup_vfio_state_mutex_unlock(gdev);
}

/**
 * gpup_vfio_mig_init() - set up migration state at device init
 * @gdev: the VF, with @caps and @migratable filled in
 */
void gpup_vfio_mig_init(struct gpup_vfio_dev *gdev)
{
	mutex_init(&gdev->state_mutex);
	mutex_init(&gdev->op_lock);
	spin_lock_init(&gdev->reset_lock);
	gdev->mig_state = VFIO_DEVICE_STATE_RUNNING;
}

/**
 * gpup_vfio_mig_open() - the device is being opened
 * @gdev: the VF
 *
 * Finds the provider (it may have been re-registered since probe) and
 * starts in RUNNING.  Called before vfio-pci core enables the device, so
 * the function reset it does then resets the VF in the provider too.
 */
void gpup_vfio_mig_open(struct gpup_vfio_dev *gdev)
{
	struct gpup_provider *prov = gpup_provider_get(gdev->core.pdev);

	mutex_lock(&gdev->state_mutex);
	mutex_lock(&gdev->op_lock);
	gdev->prov = prov;
	gdev->gen++;
	mutex_unlock(&gdev->op_lock);
	gdev->opened = true;
	gdev->mig_state = VFIO_DEVICE_STATE_RUNNING;
	gdev->prepared = false;
	gdev->tracking = false;
	gdev->paused = false;
	gpup_vfio_state_mutex_unlock(gdev);
}

/**
 * gpup_vfio_mig_close() - the device is being closed
 * @gdev: the VF
 *
 * Disables the migration files, ends a migration in progress and drops
 * the provider.  The VF keeps its state (a paused VF stays paused) until
 * the next open resets it.
 */
void gpup_vfio_mig_close(struct gpup_vfio_dev *gdev)
{
	struct gpup_provider *prov;

	mutex_lock(&gdev->state_mutex);
	gpup_vfio_end_locked(gdev);
	mutex_lock(&gdev->op_lock);
	prov = gdev->prov;
	gdev->prov = NULL;
	mutex_unlock(&gdev->op_lock);
	gdev->opened = false;
	gpup_vfio_state_mutex_unlock(gdev);
	gpup_provider_put(prov);
}
