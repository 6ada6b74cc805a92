// SPDX-License-Identifier: GPL-2.0
/*
 * The VFIO migration v2 state machine of gpup_vfio_pci, mapped onto the
 * GPU-P provider ops, and the device's reset, open and close.  See
 * Documentation/driver.rst for the arc table and the reset rules.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#include <linux/file.h>
#include <linux/pci.h>
#include <linux/vfio.h>

#include "file.h"
#include "migrate.h"
#include "trace.h"

/*
 * An event from the provider, under its clients_lock (interrupts off).
 * A failure is in force at once: the FAILED bit makes every later
 * provider call fail, so the arc or read() running fails at its next
 * call, and poll() reports EPOLLERR as soon as it is woken.  The device
 * state does not change: vfio.h allows no asynchronous transition, so
 * the user's next arc fails instead (gpup_vfio_event_err_locked()).  The
 * work only logs the failure, and checks new caps.
 */
static void gpup_vfio_notify(struct gpup_provider_client *client,
			     enum gpup_vf_event event)
{
	struct gpup_vfio_dev *gdev = container_of(client, struct gpup_vfio_dev,
						  client);

	switch (event) {
	case GPUP_VF_EVENT_DIRTY:
		wake_up_interruptible_poll(&gdev->waitq, EPOLLIN | EPOLLRDNORM);
		return;
	case GPUP_VF_EVENT_RESET:
		set_bit(GPUP_VFIO_EV_RESET_SEEN, &gdev->events);
		set_bit(GPUP_VFIO_EV_FAILED, &gdev->events);
		break;
	case GPUP_VF_EVENT_ERROR:
		set_bit(GPUP_VFIO_EV_ERROR_SEEN, &gdev->events);
		set_bit(GPUP_VFIO_EV_FAILED, &gdev->events);
		break;
	case GPUP_VF_EVENT_CAPS_CHANGED:
		set_bit(GPUP_VFIO_EV_CAPS, &gdev->events);
		break;
	default:
		return;
	}
	wake_up_interruptible_all(&gdev->waitq);
	schedule_work(&gdev->event_work);
}

/* The attached provider's caps for the VF now; caller holds op_lock. */
static int gpup_vfio_query_caps_locked(struct gpup_vfio_dev *gdev,
				       struct gpup_migration_caps *caps)
{
	int ret;

	lockdep_assert_held(&gdev->op_lock);
	if (!gdev->prov)
		return -ENODEV;
	ret = gpup_provider_enter(gdev->prov);
	if (ret)
		return ret;
	ret = GPUP_OPS(gdev)->query_caps(GPUP_PF(gdev), gdev->vf_id, caps);
	/* Logging needs the cap and the ops (all three, or none). */
	if (!GPUP_OPS(gdev)->dma_log_start)
		caps->flags &= ~GPUP_CAP_DMA_LOGGING;
	gpup_provider_exit(gdev->prov);
	trace_gpup_vfio_op(gdev->vf_id, "query_caps", 0, ret);
	return ret;
}

/*
 * Make @prov (referenced by gpup_provider_get(), may be NULL) the
 * device's provider, checking its caps against those the driver bound
 * with: a provider re-registered with another VRAM size, profile or page
 * size would produce, or accept, a stream the device's migration flags
 * and bounds were not made for.  Caller holds op_lock, no provider yet.
 */
static void gpup_vfio_attach_locked(struct gpup_vfio_dev *gdev,
				    struct gpup_provider *prov)
{
	struct pci_dev *pdev = gdev->core.pdev;
	struct gpup_migration_caps caps = { };
	int ret;

	lockdep_assert_held(&gdev->op_lock);
	gdev->prov = prov;
	gdev->caps_ok = false;
	gdev->log_ok = false;
	if (!prov)
		return;
	gdev->client.vf = gdev->vf_id;
	gdev->client.notify = gpup_vfio_notify;
	gpup_provider_attach(prov, &gdev->client);
	ret = gpup_vfio_query_caps_locked(gdev, &caps);
	if (!ret && gpup_vfio_caps_match(&caps, &gdev->caps)) {
		gdev->caps_ok = true;
		gdev->log_ok = caps.flags & GPUP_CAP_DMA_LOGGING;
		return;
	}
	if (ret)
		pci_warn(pdev, "gpup: provider caps query failed (%d): migration refused\n",
			 ret);
	else
		pci_warn(pdev, "gpup: provider caps changed since the driver bound (profile %u -> %u, VRAM %llu -> %llu bytes, page %u -> %u): migration refused until the VF is bound again\n",
			 gdev->caps.profile_id, caps.profile_id,
			 gdev->caps.vram_size, caps.vram_size,
			 gdev->caps.page_size, caps.page_size);
}

/* Drop the device's provider; the caller puts the returned reference. */
static struct gpup_provider *gpup_vfio_detach_locked(struct gpup_vfio_dev *gdev)
{
	struct gpup_provider *prov = gdev->prov;

	lockdep_assert_held(&gdev->op_lock);
	if (prov)
		gpup_provider_detach(prov, &gdev->client);
	gdev->prov = NULL;
	gdev->caps_ok = false;
	gdev->log_ok = false;
	return prov;
}

/*
 * The provider announced new caps (re-provisioning): ask them again.
 * Returns true if they are no longer those the driver bound with; the
 * size queries and every arc then fail with -ESTALE.  Caps that match
 * again (the VF provisioned back) lift that.
 */
static bool gpup_vfio_recheck_caps_locked(struct gpup_vfio_dev *gdev)
{
	struct gpup_migration_caps caps = { };
	bool was_ok = gdev->caps_ok;
	int ret;

	ret = gpup_vfio_query_caps_locked(gdev, &caps);
	gdev->caps_ok = !ret && gpup_vfio_caps_match(&caps, &gdev->caps);
	gdev->log_ok = gdev->caps_ok && (caps.flags & GPUP_CAP_DMA_LOGGING);
	if (was_ok && !gdev->caps_ok)
		pci_warn(gdev->core.pdev, "gpup: VF re-provisioned (%d: profile %u -> %u, VRAM %llu -> %llu bytes): migration refused\n",
			 ret, gdev->caps.profile_id, caps.profile_id,
			 gdev->caps.vram_size, caps.vram_size);
	else if (!was_ok && gdev->caps_ok)
		pci_info(gdev->core.pdev, "gpup: VF provisioned back as bound: migration allowed again\n");
	return !gdev->caps_ok;
}

/* Forget the provider's events: a reset, open or close starts afresh. */
static void gpup_vfio_clear_events_locked(struct gpup_vfio_dev *gdev)
{
	lockdep_assert_held(&gdev->op_lock);
	clear_bit(GPUP_VFIO_EV_FAILED, &gdev->events);
	clear_bit(GPUP_VFIO_EV_RESET_SEEN, &gdev->events);
	clear_bit(GPUP_VFIO_EV_ERROR_SEEN, &gdev->events);
	gdev->fail_logged = false;
}

static int gpup_vfio_pause_locked(struct gpup_vfio_dev *gdev, bool pause)
{
	int ret;

	ret = gpup_vfio_op_enter(gdev, GPUP_GEN_ANY);
	if (ret)
		return ret;
	ret = GPUP_OPS(gdev)->set_pause_state(GPUP_PF(gdev), gdev->vf_id,
					      pause);
	trace_gpup_vfio_op(gdev->vf_id, "set_pause_state", pause, ret);
	if (!ret)
		gdev->paused = pause;
	gpup_vfio_op_exit(gdev);
	return ret;
}

/*
 * Disable the migration files: they never call the provider again, and
 * no transfer of theirs runs once this returns (the VF may run, end its
 * migration or be reset next), unless one did not complete within
 * xfer_timeout_ms: then -ETIMEDOUT, and the files are dropped all the
 * same (a hung transfer keeps its file's memory).
 */
static int gpup_vfio_disable_files_locked(struct gpup_vfio_dev *gdev)
{
	struct gpup_save_file *saving = gdev->saving;
	struct gpup_resume_file *resuming = gdev->resuming;
	int ret = 0;

	lockdep_assert_held(&gdev->state_mutex);
	mutex_lock(&gdev->op_lock);
	gdev->gen++;
	mutex_unlock(&gdev->op_lock);

	gdev->saving = NULL;
	gdev->resuming = NULL;
	if (saving) {
		ret = gpup_vfio_save_drain(saving);
		fput(gpup_vfio_save_filp(saving));
	}
	if (resuming) {
		ret = gpup_vfio_resume_drain(resuming) ?: ret;
		fput(gpup_vfio_resume_filp(resuming));
	}
	if (ret)
		gdev->drain_hung = true;
	return ret;
}

/*
 * Undo what prepare and dirty tracking started; neither call can fail.
 * Without a provider (or with a reset pending, which undid them in the
 * provider already) nothing is called.
 */
static void gpup_vfio_end_migration_locked(struct gpup_vfio_dev *gdev)
{
	if (gpup_vfio_op_enter(gdev, GPUP_GEN_ANY))
		return;
	if (gdev->tracking) {
		GPUP_OPS(gdev)->stop_dirty_tracking(GPUP_PF(gdev), gdev->vf_id);
		trace_gpup_vfio_op(gdev->vf_id, "stop_dirty_tracking", 0, 0);
		gdev->tracking = false;
	}
	if (gdev->prepared) {
		GPUP_OPS(gdev)->end_live_migration(GPUP_PF(gdev), gdev->vf_id);
		trace_gpup_vfio_op(gdev->vf_id, "end_live_migration", 0, 0);
		gdev->prepared = false;
	}
	gpup_vfio_op_exit(gdev);
}

static int gpup_vfio_prepare_locked(struct gpup_vfio_dev *gdev,
				    enum gpup_mig_side side, bool track)
{
	int ret;

	ret = gpup_vfio_op_enter(gdev, GPUP_GEN_ANY);
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
	struct gpup_save_file *sf;
	int ret;

	ret = gpup_vfio_prepare_locked(gdev, GPUP_MIG_SOURCE, precopy);
	if (ret)
		return ERR_PTR(ret);
	sf = gpup_vfio_save_new(gdev, precopy);
	if (IS_ERR(sf)) {
		gpup_vfio_end_migration_locked(gdev);
		return ERR_CAST(sf);
	}
	gdev->saving = sf;
	get_file(gpup_vfio_save_filp(sf));
	return gpup_vfio_save_filp(sf);
}

static struct file *gpup_vfio_start_target_locked(struct gpup_vfio_dev *gdev)
{
	struct gpup_resume_file *rf;
	int ret;

	ret = gpup_vfio_prepare_locked(gdev, GPUP_MIG_TARGET, false);
	if (ret)
		return ERR_PTR(ret);
	rf = gpup_vfio_resume_new(gdev);
	if (IS_ERR(rf)) {
		gpup_vfio_end_migration_locked(gdev);
		return ERR_CAST(rf);
	}
	gdev->resuming = rf;
	get_file(gpup_vfio_resume_filp(rf));
	return gpup_vfio_resume_filp(rf);
}

/* End the migration; -ETIMEDOUT if a transfer of its files hung. */
static int gpup_vfio_end_locked(struct gpup_vfio_dev *gdev)
{
	int ret;

	ret = gpup_vfio_disable_files_locked(gdev);
	gpup_vfio_end_migration_locked(gdev);
	return ret;
}

/* Into ERROR: the files disabled, the migration ended, DMA logging off. */
static void gpup_vfio_to_error_locked(struct gpup_vfio_dev *gdev)
{
	gpup_vfio_end_locked(gdev);
	mutex_lock(&gdev->op_lock);
	gpup_vfio_log_stop_locked(gdev);
	mutex_unlock(&gdev->op_lock);
	gdev->mig_state = VFIO_DEVICE_STATE_ERROR;
}

/**
 * gpup_vfio_events_locked() - take note of the provider's events
 * @gdev: the VF; the caller holds state_mutex
 *
 * Checks caps the provider says changed, and logs a failure (the
 * provider reset or lost the VF) once.  Changes no state: see
 * gpup_vfio_event_err_locked() for what the events do to the next arc.
 */
static void gpup_vfio_events_locked(struct gpup_vfio_dev *gdev)
{
	lockdep_assert_held(&gdev->state_mutex);
	if (!READ_ONCE(gdev->events))
		return;
	mutex_lock(&gdev->op_lock);
	if (!gdev->opened) {
		mutex_unlock(&gdev->op_lock);
		return;
	}
	/*
	 * Caps that stopped (or started) matching change what a data_fd
	 * answers: a poll() asleep at pre-copy's temporary end wakes to
	 * EPOLLERR.  Not while a reset is under way: the provider takes
	 * no call for the VF then, and the reset's end looks again.
	 */
	if (!gdev->reset_pending &&
	    test_and_clear_bit(GPUP_VFIO_EV_CAPS, &gdev->events)) {
		bool was_ok = gdev->caps_ok;

		gpup_vfio_recheck_caps_locked(gdev);
		if (gdev->caps_ok != was_ok)
			wake_up_interruptible_all(&gdev->waitq);
	}
	if (test_bit(GPUP_VFIO_EV_FAILED, &gdev->events) &&
	    !gdev->fail_logged) {
		gdev->fail_logged = true;
		pci_warn(gdev->core.pdev, "gpup: the provider %s the VF in state %s: its data_fd fails, and the next state change ends in ERROR until reset\n",
			 test_bit(GPUP_VFIO_EV_ERROR_SEEN, &gdev->events) ?
			 "reported a failure of" : "reset",
			 gpup_vfio_state_name(gdev->mig_state));
	}
	mutex_unlock(&gdev->op_lock);
}

/*
 * The error with which the provider's events fail the next arc from the
 * current state, which then lands in ERROR (vfio.h's "any -> ERROR"):
 * -EIO once the provider reset or lost the VF, whatever the state, since
 * the state a migration was moving, or the VF the user was running, is
 * gone; -ESTALE for caps that changed while the device is not in
 * RUNNING (leaving the state needs the provider; in RUNNING,
 * gpup_vfio_check_caps() refuses the arc and the state stays).
 * 0 if the events ask for nothing.  Caller holds state_mutex.
 */
static int gpup_vfio_event_err_locked(struct gpup_vfio_dev *gdev)
{
	int ret = 0;

	lockdep_assert_held(&gdev->state_mutex);
	gpup_vfio_events_locked(gdev);
	mutex_lock(&gdev->op_lock);
	if (gdev->opened && test_bit(GPUP_VFIO_EV_FAILED, &gdev->events))
		ret = -EIO;
	else if (gdev->opened && gdev->prov && !gdev->caps_ok &&
		 gdev->mig_state != VFIO_DEVICE_STATE_RUNNING)
		ret = -ESTALE;
	mutex_unlock(&gdev->op_lock);
	return ret;
}

static void gpup_vfio_event_work(struct work_struct *work)
{
	struct gpup_vfio_dev *gdev = container_of(work, struct gpup_vfio_dev,
						  event_work);

	mutex_lock(&gdev->state_mutex);
	gpup_vfio_events_locked(gdev);
	gpup_vfio_state_mutex_unlock(gdev);
}

static int gpup_vfio_finish_target_locked(struct gpup_vfio_dev *gdev)
{
	int ret;

	ret = gpup_vfio_resume_finish(gdev->resuming);
	ret = gpup_vfio_end_locked(gdev) ?: ret;
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
		ret = gpup_vfio_save_stop_copy(gdev->saving);
	} else if ((cur == VFIO_DEVICE_STATE_PRE_COPY &&
		    new == VFIO_DEVICE_STATE_RUNNING) ||
		   (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P &&
		    new == VFIO_DEVICE_STATE_RUNNING_P2P) ||
		   (cur == VFIO_DEVICE_STATE_STOP_COPY &&
		    new == VFIO_DEVICE_STATE_STOP)) {
		ret = gpup_vfio_end_locked(gdev);
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
 * Whether a failed arc leaves the device in ERROR: only when it touched
 * the device and could not put it back.  That is a failed RESUMING ->
 * STOP, which has written VRAM (and maybe part of the mutable state) that
 * no valid state holds.  Every other arc fails before it changes the VF
 * or unwinds what it did, and the device stays in the state it was in.
 */
static bool gpup_vfio_fatal(enum vfio_device_mig_state cur)
{
	return cur == VFIO_DEVICE_STATE_RESUMING;
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

/* -ESTALE if an attached provider's caps are not those bound with. */
static int gpup_vfio_check_caps(struct gpup_vfio_dev *gdev)
{
	int ret;

	mutex_lock(&gdev->op_lock);
	ret = gdev->prov && !gdev->caps_ok ? -ESTALE : 0;
	mutex_unlock(&gdev->op_lock);
	return ret;
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
	ret = gpup_vfio_event_err_locked(gdev);
	if (gdev->mig_state == VFIO_DEVICE_STATE_ERROR) {
		/* Only a reset leaves ERROR. */
		res = ERR_PTR(-EINVAL);
		goto out;
	}
	if (new_state != gdev->mig_state && ret) {
		/*
		 * The provider lost what this arc would move: ERROR, for
		 * a request that names a valid arc (else -EINVAL, as ever).
		 */
		res = ERR_PTR(vfio_mig_get_next_state(vdev, gdev->mig_state,
						      new_state, &next) ?: ret);
		if (PTR_ERR(res) == ret)
			gpup_vfio_to_error_locked(gdev);
		goto out;
	}
	if (new_state != gdev->mig_state) {
		ret = gpup_vfio_check_caps(gdev);
		if (ret) {
			res = ERR_PTR(ret);
			goto out;
		}
	}
	gdev->drain_hung = false;
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
			/*
			 * A failed RESUMING -> STOP, an arc that an event
			 * failed, or one whose transfers hung (not a
			 * provider's own -ETIMEDOUT): the device is in
			 * ERROR.
			 */
			if (gdev->mig_state != VFIO_DEVICE_STATE_ERROR &&
			    (gpup_vfio_fatal(gdev->mig_state) ||
			     gdev->drain_hung ||
			     gpup_vfio_event_err_locked(gdev)))
				gpup_vfio_to_error_locked(gdev);
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
	/* Every state change may make a data_fd readable, or end it. */
	wake_up_interruptible_all(&gdev->waitq);
	gpup_vfio_state_mutex_unlock(gdev);
	return res;
}

static int gpup_vfio_get_device_state(struct vfio_device *vdev,
				      enum vfio_device_mig_state *state)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);

	mutex_lock(&gdev->state_mutex);
	gpup_vfio_events_locked(gdev);
	*state = gdev->mig_state;
	gpup_vfio_state_mutex_unlock(gdev);
	return 0;
}

static int gpup_vfio_get_data_size(struct vfio_device *vdev,
				   unsigned long *stop_copy_length)
{
	struct gpup_vfio_dev *gdev = gpup_vfio_from_vdev(vdev);
	u64 initial, dirty, full;
	size_t imm, mut;
	int ret;

	mutex_lock(&gdev->state_mutex);
	ret = gpup_vfio_check_caps(gdev);
	if (ret)
		goto out;
	if (gdev->saving) {
		ret = gpup_vfio_save_pending(gdev->saving, &initial, &dirty,
					     false);
		if (!ret)
			*stop_copy_length = initial + dirty;
	} else {
		ret = gpup_vfio_save_size(gdev, GPUP_GEN_ANY, &imm, &mut);
		if (!ret)
			ret = gpup_vfio_save_full_size(gdev, imm, mut, &full);
		if (!ret)
			*stop_copy_length = full;
	}
out:
	gpup_vfio_state_mutex_unlock(gdev);
	return ret;
}

const struct vfio_migration_ops gpup_vfio_mig_ops = {
	.migration_set_state = gpup_vfio_set_device_state,
	.migration_get_state = gpup_vfio_get_device_state,
	.migration_get_data_size = gpup_vfio_get_data_size,
};

/* Forget what the provider was told: a reset or close undid all of it. */
static void gpup_vfio_clear_flags_locked(struct gpup_vfio_dev *gdev)
{
	lockdep_assert_held(&gdev->op_lock);
	gdev->prepared = false;
	gdev->tracking = false;
	gdev->paused = false;
}

/*
 * reset_vf, the provider's part of every reset; caller holds op_lock.
 * After a PCI reset (@flr) the provider's reset_done comes first: it
 * waits for the PF's own handling of the FLR, which reset_vf then
 * builds on.
 */
static int gpup_vfio_reset_vf_locked(struct gpup_vfio_dev *gdev, bool flr)
{
	int ret;

	lockdep_assert_held(&gdev->op_lock);
	if (!gdev->prov)
		return -ENODEV;
	ret = gpup_provider_enter(gdev->prov);
	if (ret)
		return ret;
	if (flr && GPUP_OPS(gdev)->reset_done) {
		ret = GPUP_OPS(gdev)->reset_done(GPUP_PF(gdev), gdev->vf_id);
		trace_gpup_vfio_op(gdev->vf_id, "reset_done", 0, ret);
	}
	/*
	 * The log ends with the reset; told only now, so that no call
	 * reaches the VF between the provider's reset_prepare and
	 * reset_done, and before reset_vf drops the provider's log.
	 */
	gpup_vfio_log_drop_locked(gdev);
	if (!ret) {
		ret = GPUP_OPS(gdev)->reset_vf(GPUP_PF(gdev), gdev->vf_id);
		trace_gpup_vfio_op(gdev->vf_id, "reset_vf", 0, ret);
	}
	gpup_provider_exit(gdev->prov);
	atomic64_inc(&gdev->stats.resets);
	return ret;
}

/*
 * A provider that left (its PF driver went) is replaced by the one
 * registered now, if any, whose caps are checked again.  Returns the old
 * provider's reference, for the caller to put after op_lock.
 */
static struct gpup_provider *gpup_vfio_refresh_locked(struct gpup_vfio_dev *gdev)
{
	struct gpup_provider *old = NULL;

	lockdep_assert_held(&gdev->op_lock);
	if (gdev->prov && READ_ONCE(gdev->prov->dead))
		old = gpup_vfio_detach_locked(gdev);
	if (!gdev->prov)
		gpup_vfio_attach_locked(gdev,
					gpup_provider_get(gdev->core.pdev));
	return old;
}

/*
 * The device part of a reset, done before the ioctl (or FLR) returns and
 * whoever holds state_mutex: the files are disabled (their generation
 * moves on), the provider resets the VF to its power-on state, and no
 * provider call is allowed until the software part has run.  A provider
 * that left (its PF driver went) is looked up again, so a VF whose PF
 * driver came back recovers with one reset; its caps are checked again.
 *
 * Without a provider the function reset alone resets the device; its
 * migration arcs then fail with -ENODEV until a provider is attached.  A
 * provider's error (reset_done, reset_vf) fails the reset: the device is
 * then in ERROR, and the next reset tries again.
 */
static void gpup_vfio_reset_device(struct gpup_vfio_dev *gdev)
{
	struct gpup_provider *old = NULL;
	int ret = 0;

	mutex_lock(&gdev->op_lock);
	gdev->gen++;
	gdev->reset_seq++;
	if (!gdev->opened)
		goto out;
	gdev->reset_pending = true;
	gpup_vfio_clear_events_locked(gdev);
	old = gpup_vfio_refresh_locked(gdev);
	/*
	 * Without a provider the function reset is the whole reset: what
	 * the provider held of the VF went with it, and a provider that
	 * registers later starts the VF at power-on.
	 */
	if (gdev->prov) {
		ret = gpup_vfio_reset_vf_locked(gdev, true);
		/* Unregistered since the refresh: as if it were gone. */
		if (ret == -ENODEV && READ_ONCE(gdev->prov->dead))
			ret = 0;
		ret = gpup_vfio_op_err(ret);
	}
	/* A log of a provider that left, or that could not be entered. */
	gpup_vfio_log_stop_locked(gdev);
	if (!ret)
		gpup_vfio_clear_flags_locked(gdev);
out:
	gdev->reset_err = ret;
	mutex_unlock(&gdev->op_lock);
	gpup_provider_put(old);
	wake_up_interruptible_all(&gdev->waitq);
}

/*
 * The software part of a reset, with state_mutex: drop the files and
 * take the state the device part left, RUNNING or (if it could not reset
 * the VF) ERROR.
 */
static void gpup_vfio_reset_state_locked(struct gpup_vfio_dev *gdev)
{
	int err;

	/* reset_vf completed the transfers, or they hung: ERROR. */
	err = gpup_vfio_disable_files_locked(gdev);
	mutex_lock(&gdev->op_lock);
	if (err && !gdev->reset_err)
		gdev->reset_err = err;
	err = gdev->reset_err;
	gdev->reset_pending = false;
	mutex_unlock(&gdev->op_lock);
	gdev->mig_state = err ? VFIO_DEVICE_STATE_ERROR :
				VFIO_DEVICE_STATE_RUNNING;
	if (err)
		atomic_set(&gdev->stats.last_error, err);
	/* New caps announced while the reset kept the provider quiet. */
	if (test_bit(GPUP_VFIO_EV_CAPS, &gdev->events))
		schedule_work(&gdev->event_work);
	wake_up_interruptible_all(&gdev->waitq);
}

/**
 * gpup_vfio_state_mutex_unlock() - unlock state_mutex, running the
 *	software part of a reset that reset_done deferred to us
 * @gdev: the VF
 *
 * reset_done runs under the vfio-pci core's memory_lock and only
 * trylocks state_mutex; whoever holds state_mutex at that moment
 * finishes the reset before unlocking.  Holding reset_lock across the
 * unlock closes the window between the last check and the unlock.
 */
void gpup_vfio_state_mutex_unlock(struct gpup_vfio_dev *gdev)
{
again:
	spin_lock(&gdev->reset_lock);
	if (gdev->deferred_reset) {
		gdev->deferred_reset = false;
		spin_unlock(&gdev->reset_lock);
		gpup_vfio_reset_state_locked(gdev);
		goto again;
	}
	mutex_unlock(&gdev->state_mutex);
	spin_unlock(&gdev->reset_lock);
}

/**
 * gpup_vfio_reset_prepare() - pci_error_handlers.reset_prepare of the VF
 * @pdev: the VF, about to be reset (the same resets as reset_done)
 *
 * Lets the provider quiesce the VF before the function reset, under
 * op_lock like every provider call; reset_done follows.  A provider that
 * left is replaced first, as reset_done would, so that the provider
 * reset_done reaches is the one that prepared.  Nothing to do without a
 * provider or while the device is closed.
 */
void gpup_vfio_reset_prepare(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);
	struct gpup_vfio_dev *gdev = container_of(core, struct gpup_vfio_dev,
						  core);

	struct gpup_provider *old = NULL;

	if (!gdev->migratable)
		return;
	mutex_lock(&gdev->op_lock);
	/*
	 * Quiet until reset_done: every provider call of the data_fds, the
	 * arcs and DMA logging fails at the gate from now on (-EAGAIN), and
	 * the reset disables the files.
	 */
	if (gdev->opened) {
		gdev->reset_pending = true;
		old = gpup_vfio_refresh_locked(gdev);
	}
	/* The ops may be freed once the provider is dead: fence first. */
	if (gdev->opened && gdev->prov && !gpup_provider_enter(gdev->prov)) {
		if (GPUP_OPS(gdev)->reset_prepare) {
			GPUP_OPS(gdev)->reset_prepare(GPUP_PF(gdev),
						      gdev->vf_id);
			trace_gpup_vfio_op(gdev->vf_id, "reset_prepare", 0, 0);
		}
		gpup_provider_exit(gdev->prov);
	}
	mutex_unlock(&gdev->op_lock);
	gpup_provider_put(old);
}

/**
 * gpup_vfio_reset_done() - pci_error_handlers.reset_done of the VF
 * @pdev: the VF after a function reset (FLR, VFIO_DEVICE_RESET, a hot
 *	reset, the reset vfio-pci core does at open)
 *
 * The device part is done here, at once: when VFIO_DEVICE_RESET returns
 * the VF is unpaused and at its power-on state, even if another thread
 * holds state_mutex.  Only the software part (files, state) may wait for
 * that thread, as in mlx5 and xe.
 */
void gpup_vfio_reset_done(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);
	struct gpup_vfio_dev *gdev = container_of(core, struct gpup_vfio_dev,
						  core);

	if (!gdev->migratable)
		return;
	gpup_vfio_reset_device(gdev);
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
 * gpup_vfio_reset_seq() - the count of device resets so far
 * @gdev: the VF
 *
 * Return: a value for gpup_vfio_reset_result().
 */
unsigned long gpup_vfio_reset_seq(struct gpup_vfio_dev *gdev)
{
	unsigned long seq;

	mutex_lock(&gdev->op_lock);
	seq = gdev->reset_seq;
	mutex_unlock(&gdev->op_lock);
	return seq;
}

/**
 * gpup_vfio_reset_result() - how the reset after @seq ended
 * @gdev: the VF
 * @seq: gpup_vfio_reset_seq() before the reset
 *
 * Return: 0 if the reset brought the device to RUNNING (or reset_done
 * did not run), else the error that put it in ERROR.
 */
int gpup_vfio_reset_result(struct gpup_vfio_dev *gdev, unsigned long seq)
{
	int ret;

	mutex_lock(&gdev->op_lock);
	ret = gdev->reset_seq != seq ? gdev->reset_err : 0;
	mutex_unlock(&gdev->op_lock);
	return ret;
}

/**
 * gpup_vfio_mig_init() - set up migration state at device init
 * @gdev: the VF
 */
void gpup_vfio_mig_init(struct gpup_vfio_dev *gdev)
{
	mutex_init(&gdev->state_mutex);
	mutex_init(&gdev->op_lock);
	spin_lock_init(&gdev->reset_lock);
	spin_lock_init(&gdev->pass_lock);
	init_waitqueue_head(&gdev->waitq);
	init_waitqueue_head(&gdev->hold_wq);
	xa_init(&gdev->log_parts);
	INIT_WORK(&gdev->event_work, gpup_vfio_event_work);
	gdev->mig_state = VFIO_DEVICE_STATE_RUNNING;
}

/**
 * gpup_vfio_mig_open() - the device is being opened
 * @gdev: the VF
 *
 * Attaches the provider (it may have been re-registered since probe; its
 * caps are checked again) and starts in RUNNING.  Called before vfio-pci
 * core enables the device, so the function reset it does then resets the
 * VF in the provider too.
 */
void gpup_vfio_mig_open(struct gpup_vfio_dev *gdev)
{
	struct gpup_provider *prov = gpup_provider_get(gdev->core.pdev);

	mutex_lock(&gdev->state_mutex);
	mutex_lock(&gdev->op_lock);
	gdev->gen++;
	gpup_vfio_clear_events_locked(gdev);
	clear_bit(GPUP_VFIO_EV_CAPS, &gdev->events);
	gpup_vfio_attach_locked(gdev, prov);
	gpup_vfio_clear_flags_locked(gdev);
	gdev->reset_pending = false;
	gdev->opened = true;
	mutex_unlock(&gdev->op_lock);
	gdev->mig_state = VFIO_DEVICE_STATE_RUNNING;
	gpup_vfio_state_mutex_unlock(gdev);
}

/**
 * gpup_vfio_mig_close() - the device is being closed
 * @gdev: the VF
 *
 * Disables the migration files and scrubs the VF: reset_vf brings it to
 * its power-on state, unpaused, not migrating, untracked, whatever the
 * last user left it in (a completed or aborted migration, a process
 * killed in STOP_COPY), so that nothing of one tenant reaches the next.
 * The FLR that vfio-pci core does on close never reaches reset_done, so
 * this is where it happens.  Then the provider is dropped.
 */
void gpup_vfio_mig_close(struct gpup_vfio_dev *gdev)
{
	struct gpup_provider *prov;
	int ret;

	mutex_lock(&gdev->state_mutex);
	/*
	 * The files call the provider no more (their generation moves on);
	 * reset_vf, which completes every transfer the provider accepted,
	 * comes before the drain, so that a copy engine stuck until a reset
	 * does not hold up the close.  An engine stuck beyond it is waited
	 * for xfer_timeout_ms, and its file's buffers left allocated.
	 */
	mutex_lock(&gdev->op_lock);
	gdev->gen++;
	gpup_vfio_log_stop_locked(gdev);
	ret = gdev->prov ? gpup_vfio_reset_vf_locked(gdev, false) : 0;
	if (ret && ret != -ENODEV)
		pci_warn(gdev->core.pdev, "gpup: VF not scrubbed on close: %d\n",
			 ret);
	mutex_unlock(&gdev->op_lock);
	gpup_vfio_disable_files_locked(gdev);
	mutex_lock(&gdev->op_lock);
	gpup_vfio_clear_flags_locked(gdev);
	prov = gpup_vfio_detach_locked(gdev);
	gpup_vfio_clear_events_locked(gdev);
	clear_bit(GPUP_VFIO_EV_CAPS, &gdev->events);
	gdev->opened = false;
	gdev->reset_pending = false;
	mutex_unlock(&gdev->op_lock);
	gdev->mig_state = VFIO_DEVICE_STATE_RUNNING;
	wake_up_interruptible_all(&gdev->waitq);
	gpup_vfio_state_mutex_unlock(gdev);
	/* Detached: no event queues the work again. */
	cancel_work_sync(&gdev->event_work);
	gpup_provider_put(prov);
}
