/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_sim internal definitions: a simulated GPU PF and its VFs.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_SIM_H
#define GPUP_SIM_H

#include <linux/gpup_migration.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#define GPUP_SIM_MAX_ENGINES	4
#define GPUP_SIM_CTX_REGS	16
#define GPUP_SIM_PAGE_SIZE	4096
/* The free-running engines' period: two steps every 20 ms. */
#define GPUP_SIM_FREE_RUN_MS	20
#define GPUP_SIM_PROVIDER_ID	0x80865349	/* Intel's vendor id, "SI" */
/* The upper half of every word the engines write into the VM's memory. */
#define GPUP_SIM_DMA_MAGIC	0x47505544	/* "GPUD" */
/* Largest DMA window: 16 MiB of fence and ring pages. */
#define GPUP_SIM_DMA_MAX_PAGES	4096
/* IOVA ranges one DMA log tracks (more: -E2BIG, the driver merges). */
#define GPUP_SIM_DMA_MAX_RANGES	8

/**
 * struct gpup_sim_profile - what never changes in a VF's life
 * @id: profile id (the GPU-P partition type)
 * @engines: engine count
 * @fw_version: firmware version
 * @drv_version: driver version
 * @device_id: device id the VF reports
 */
struct gpup_sim_profile {
	u32 id;
	u32 engines;
	u32 fw_version;
	u32 drv_version;
	u32 device_id;
};

/**
 * struct gpup_sim_engine - mutable state of one engine
 * @ctx: context registers
 * @ring_head: ring buffer head
 * @ring_tail: ring buffer tail
 * @fence_seqno: last fence emitted
 * @fence_done: last fence completed
 */
struct gpup_sim_engine {
	u32 ctx[GPUP_SIM_CTX_REGS];
	u32 ring_head;
	u32 ring_tail;
	u64 fence_seqno;
	u64 fence_done;
};

/**
 * struct gpup_sim_sched - mutable scheduler state
 * @cur_engine: engine of the last step
 * @timeslice: position in the time slice
 * @steps: steps run since the last reset
 * @rng: PRNG state the steps draw from
 */
struct gpup_sim_sched {
	u32 cur_engine;
	u32 timeslice;
	u64 steps;
	u64 rng;
};

struct gpup_sim_pf;

/**
 * enum gpup_sim_fault_kind - what an armed fault does to its op
 * @GPUP_SIM_FAULT_ERRNO: the op fails with the armed errno
 * @GPUP_SIM_FAULT_OVERSIZE: the fill call of save_immutable or
 *	save_mutable reports more bytes than the room it was given, as a
 *	broken provider might
 * @GPUP_SIM_FAULT_SKIP: restore_mutable leaves one field (engine 0's
 *	first context register) as it was, as a restore that forgets a field
 * @GPUP_SIM_FAULT_DMA_DROP: the DMA log misses the next ring page write
 * @GPUP_SIM_FAULT_DMA_STOP: the DMA log silently stops taking writes, as
 *	a device whose tracker died without telling
 */
enum gpup_sim_fault_kind {
	GPUP_SIM_FAULT_ERRNO,
	GPUP_SIM_FAULT_OVERSIZE,
	GPUP_SIM_FAULT_SKIP,
	GPUP_SIM_FAULT_DMA_DROP,
	GPUP_SIM_FAULT_DMA_STOP,
};

/**
 * struct gpup_sim_vf - one simulated VF
 * @pf: its PF
 * @idx: VF index
 * @lock: protects every field below
 * @prov: the PF's registration, for gpup_vf_notify(); NULL once the PF
 *	driver is going away (set and cleared under @lock)
 * @profile: immutable profile
 * @seed: seed of the initial state
 * @eng: engine states
 * @sched: scheduler state
 * @vram: VF-local memory, sparse: page number -> struct page, for the
 *	pages written since the last reset; the others read as zeros
 * @vram_size: bytes of VRAM
 * @vram_backed: entries in @vram
 * @ws_pages: the working set: the engine writes pages below it only
 *	(module parameter working_set_mb; all of VRAM by default)
 * @dirty: one bit per VRAM page written while tracking
 * @ndirty: bits set in @dirty, kept up to date so that the whole-VRAM
 *	count query_dirty is asked for costs O(1)
 * @track_refs: nested start_dirty_tracking calls
 * @paused: removed from scheduling: no step runs
 * @migrating: between prepare_live_migration and end_live_migration
 * @imm_ok: restore_immutable accepted data (target side)
 * @free_run: steps run from @work on their own
 * @free_run_ms: the timer's period, GPUP_SIM_FREE_RUN_MS unless a test
 *	sets another (debugfs "free_run_ms"): two steps each period
 * @ticks: runs of @work while @free_run was set, whether or not it could
 *	step (a paused VF does not): lets a test wait for the timer
 * @vfdev: the VF's PCI device, referenced once it exists: its IOMMU
 *	domain is what the engines' DMA goes through
 * @dma_iova: IOVA of the fence and ring window (mutable state: it
 *	migrates, as a GPU context's ring addresses do)
 * @dma_npages: pages in the window, 0 for none
 * @dma_page: the window's pages, each referenced by the sim, NULL where
 *	the IOVA was not mapped; NULL until looked up
 * @dma_phys: the physical address each page had when looked up
 * @dma_writes: DMA writes done
 * @dma_faults: DMA writes not done: no mapping, or another one, there
 * @log_running: DMA logging was started
 * @log_dead: the armed "dma_log stop" fault fired: writes are not logged
 * @log_err: a write could not be logged (-ENOMEM): the log is lost
 * @log_shift: log2 of the log's page size
 * @log_range: the logged IOVA ranges
 * @log_nranges: how many
 * @log: pages written while logging, by IOVA >> @log_shift
 * @fault_op: name of the op armed to fail, "" if none
 * @fault_kind: what the armed fault does
 * @fault_err: the errno it fails with (%GPUP_SIM_FAULT_ERRNO)
 * @violations: op calls that broke a precondition of the provider
 *	contract (the variant driver's bug, see gpup_sim_violated())
 * @quiesced: between reset_prepare and reset_done: no step runs
 * @failed: the "error" event failed the VF: ops fail -EIO until reset_vf
 * @quiet_calls: op calls between reset_prepare and reset_done (each a
 *	violation too)
 * @flr_prepares: reset_prepare calls
 * @flr_dones: reset_done calls that succeeded
 * @xfer_queue: vram_xfer transfers accepted and not yet started by the
 *	worker (struct gpup_sim_xfer, oldest first)
 * @xfer_delay_us: no transfer completes sooner than this after it was
 *	accepted (debugfs "xfer_delay"): a copy engine's latency, which
 *	transfers in flight pay at once; tests find transfers in flight
 * @vram_delay_us: each vram_read and vram_write call takes this much
 *	longer (debugfs "vram_delay"): the same latency for the CPU path
 * @xfer_lifo: the worker completes the newest transfer first, after its
 *	sleep (debugfs "xfer_lifo"), as a copy engine with several queues
 *	may; a restore over a page a restore in flight writes is then
 *	accepted and counted in @xfer_overlaps, not refused, so that an
 *	ordering error of the variant driver shows in the digest
 * @xfer_overlaps: restores accepted over a page one in flight writes
 * @xfer_sync: vram_xfer copies at once and returns 0 (debugfs
 *	"xfer_sync"), the op's synchronous branch; an armed fault is then
 *	returned by the call
 * @xfer_hold: the engine takes no transfer (debugfs "xfer_hold"): 1 until
 *	the VF's reset, 2 until set to 0 or the PF goes (a hung engine
 *	that a reset does not reach)
 * @xfer_submitted: vram_xfer calls accepted
 * @xfer_async: transfers completed through their done() callback
 * @xfer_errors: transfers completed with an error (an injected fault)
 * @xfer_inflight: transfers accepted and not completed
 * @xfer_max_inflight: the most @xfer_inflight has been since the
 *	counters were cleared
 * @xfer_segments: segments of the accepted transfers
 * @xfer_max_segments: the most segments of one accepted transfer
 * @zeroed_pages: pages vram_zero was asked to clear (debugfs
 *	"xfer_stats" "zeroed")
 * @xfer_work: the worker that runs @xfer_queue, on gpup_sim_xfer_wq;
 *	flushed by reset_vf, before the PF unregisters and when the VF
 *	state goes
 * @work: free-running steps
 * @dir: debugfs directory
 */
struct gpup_sim_vf {
	struct gpup_sim_pf *pf;
	unsigned int idx;
	struct mutex lock;	/* protects the fields below */
	struct gpup_provider *prov;
	struct gpup_sim_profile profile;
	u64 seed;
	struct gpup_sim_engine eng[GPUP_SIM_MAX_ENGINES];
	struct gpup_sim_sched sched;
	struct xarray vram;
	u64 vram_size;
	u64 vram_backed;
	u64 ws_pages;
	unsigned long *dirty;
	u64 ndirty;
	int track_refs;
	bool paused;
	bool migrating;
	bool imm_ok;
	bool free_run;
	unsigned int free_run_ms;
	u64 ticks;
	struct pci_dev *vfdev;
	u64 dma_iova;
	u32 dma_npages;
	struct page **dma_page;
	phys_addr_t *dma_phys;
	u64 dma_writes;
	u64 dma_faults;
	bool log_running;
	bool log_dead;
	int log_err;
	unsigned int log_shift;
	struct gpup_dma_range *log_range;
	unsigned int log_nranges;
	struct xarray log;
	char fault_op[32];
	enum gpup_sim_fault_kind fault_kind;
	int fault_err;
	u64 violations;
	bool quiesced;
	bool failed;
	u64 quiet_calls;
	u64 flr_prepares;
	u64 flr_dones;
	struct list_head xfer_queue;
	unsigned int xfer_delay_us;
	unsigned int vram_delay_us;
	bool xfer_lifo;
	bool xfer_sync;
	unsigned int xfer_hold;
	u64 xfer_overlaps;
	u64 xfer_submitted;
	u64 xfer_async;
	u64 xfer_errors;
	unsigned int xfer_inflight;
	unsigned int xfer_max_inflight;
	u64 xfer_segments;
	unsigned int xfer_max_segments;
	u64 zeroed_pages;
	struct work_struct xfer_work;
	struct delayed_work work;
	struct dentry *dir;
};

/* What DMA logging a PF offers (the dma_log parameter, at probe). */
enum gpup_sim_dma_log_variant {
	GPUP_SIM_DMA_LOG_FULL,
	GPUP_SIM_DMA_LOG_NONE,
	GPUP_SIM_DMA_LOG_CAP_ONLY,
	GPUP_SIM_DMA_LOG_OPS_ONLY,
	GPUP_SIM_DMA_LOG_NO_STOP,
};

/**
 * struct gpup_sim_pf - the simulated PF
 * @pdev: the PF
 * @dma_log: what DMA logging it offers (enum gpup_sim_dma_log_variant),
 *	the dma_log parameter when it was bound
 * @ops: the ops registered for this PF: a copy of gpup_sim_ops that
 *	lives as long as the binding (device-managed), as a PF driver that
 *	keeps its ops in per-device memory would have them
 * @prov: our provider registration
 * @vfs_rwsem: protects @vfs and @nvfs: read by op calls, written when
 *	VFs are created or destroyed
 * @nvfs: VFs with state
 * @vfs: their state
 * @dir: debugfs directory of the PF
 */
struct gpup_sim_pf {
	struct pci_dev *pdev;
	unsigned int dma_log;
	const struct gpup_migration_ops *ops;
	struct gpup_provider *prov;
	struct rw_semaphore vfs_rwsem;	/* protects vfs and nvfs */
	unsigned int nvfs;
	struct gpup_sim_vf *vfs;
	struct dentry *dir;
};

extern const struct gpup_migration_ops gpup_sim_ops;
extern unsigned int gpup_sim_vram_mb;
extern unsigned int gpup_sim_working_set_mb;
extern unsigned int gpup_sim_profile_id;
extern unsigned long gpup_sim_seed;
extern unsigned int gpup_sim_dma_log_page_kb;

const struct gpup_sim_profile *gpup_sim_find_profile(u32 id);
int gpup_sim_vf_init(struct gpup_sim_vf *vf, struct gpup_sim_pf *pf,
		     unsigned int idx);
void gpup_sim_vf_fini(struct gpup_sim_vf *vf);
void gpup_sim_reset_locked(struct gpup_sim_vf *vf);
int gpup_sim_run_locked(struct gpup_sim_vf *vf, unsigned long n);
int gpup_sim_digest_locked(struct gpup_sim_vf *vf, u8 *out);
u64 gpup_sim_vf_seed(u64 seed, unsigned int idx);
bool gpup_sim_fault_locked(struct gpup_sim_vf *vf, const char *op,
			   enum gpup_sim_fault_kind kind, int *err);
int gpup_sim_set_pause_locked(struct gpup_sim_vf *vf, bool pause);
int gpup_sim_track_locked(struct gpup_sim_vf *vf, bool start);
void gpup_sim_xfer_flush(struct gpup_sim_vf *vf, bool all);
void gpup_sim_xfer_kick(struct gpup_sim_vf *vf);
int gpup_sim_xfer_init(void);
void gpup_sim_xfer_exit(void);

/* dma.c */
void gpup_sim_dma_clear_locked(struct gpup_sim_vf *vf);
int gpup_sim_dma_set_window(struct gpup_sim_vf *vf, u64 iova, u32 npages);
void gpup_sim_dma_step_locked(struct gpup_sim_vf *vf, u64 step);
int gpup_sim_dma_log_start_locked(struct gpup_sim_vf *vf,
				  const struct gpup_dma_range *ranges,
				  unsigned int nranges, u64 *page_size);
long gpup_sim_dma_log_read_locked(struct gpup_sim_vf *vf, u64 iova,
				  u64 length, unsigned long *bitmap,
				  bool clear);
void gpup_sim_dma_log_stop_locked(struct gpup_sim_vf *vf);
unsigned long gpup_sim_dma_logged_count_locked(struct gpup_sim_vf *vf);

struct gpup_sim_vf *gpup_sim_vf_lock(struct pci_dev *pdev, unsigned int idx);
void gpup_sim_vf_unlock(struct gpup_sim_vf *vf);

/* events.c */
void gpup_sim_events_ops(struct gpup_migration_ops *ops);
void gpup_sim_events_debugfs(struct gpup_sim_vf *vf, struct dentry *d);

void gpup_sim_debugfs_vf(struct gpup_sim_vf *vf, const char *name);
void gpup_sim_debugfs_init(void);
void gpup_sim_debugfs_exit(void);

#endif /* GPUP_SIM_H */
