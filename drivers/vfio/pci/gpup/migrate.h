/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gpup_vfio_pci: the state machine's side (migrate.c), for the PCI and
 * VFIO glue (main.c) and debugfs.  The data_fds do not include this: an
 * arc calls the files (file.h), never the other way round.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#ifndef GPUP_VFIO_MIGRATE_H
#define GPUP_VFIO_MIGRATE_H

#include "gpup_vfio.h"

/* migrate.c */
extern const struct vfio_migration_ops gpup_vfio_mig_ops;
void gpup_vfio_mig_init(struct gpup_vfio_dev *gdev);
void gpup_vfio_mig_open(struct gpup_vfio_dev *gdev);
void gpup_vfio_mig_close(struct gpup_vfio_dev *gdev);
void gpup_vfio_reset_prepare(struct pci_dev *pdev);
void gpup_vfio_reset_done(struct pci_dev *pdev);
int gpup_vfio_reset_result(struct gpup_vfio_dev *gdev, unsigned long seq);
unsigned long gpup_vfio_reset_seq(struct gpup_vfio_dev *gdev);
void gpup_vfio_state_mutex_unlock(struct gpup_vfio_dev *gdev);

#endif /* GPUP_VFIO_MIGRATE_H */
