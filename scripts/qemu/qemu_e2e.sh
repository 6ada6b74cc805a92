#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs in the test guest: loads the modules, gives gpup_sim the igb PF,
# binds two VFs to gpup_vfio_pci and runs migrate.py (demo, tests or
# bench) in a chroot of the host's root, where the host's QEMU lives, or
# of GPUP_QEMU_ROOT (the sid chroot under it, for the newest-kernel lane).
#
#   qemu_e2e.sh demo|tests|bench
set -eu
mode=$1
here=$(cd "$(dirname "$0")" && pwd)
D=/sys/bus/pci/devices

modprobe -a vfio_iommu_type1 gpup_vfio_pci gpup_sim

. "$here/guest_pci.sh"
pf=$(find_pf)
[ -n "$pf" ] || { echo "qemu_e2e: no igb PF"; exit 1; }
bind "$pf" gpup_sim
echo 0 > "$D/$pf/sriov_numvfs"
echo 2 > "$D/$pf/sriov_numvfs"
a=$(basename "$(readlink "$D/$pf/virtfn0")")
b=$(basename "$(readlink "$D/$pf/virtfn1")")
bind "$a" gpup_vfio_pci
bind "$b" gpup_vfio_pci

# The host's root, read-only, with this guest's devices and a scratch dir.
H=${GPUP_QEMU_ROOT:-/host}
mounted() { grep -q " $1 " /proc/mounts; }
mounted $H/dev || mount -o rbind /dev $H/dev
mounted $H/sys || mount -o rbind /sys $H/sys
mounted $H/proc || mount -t proc proc $H/proc
mounted $H/tmp || mount -t tmpfs tmpfs $H/tmp
mounted $H/run || mount -t tmpfs tmpfs $H/run
cp "$here/migrate.py" $H/tmp/migrate.py

set +e
chroot $H /usr/bin/env PYTHONDONTWRITEBYTECODE=1 GPUP_WORK=/tmp/gpup-qemu \
	/usr/bin/python3 /tmp/migrate.py "$mode" "$a" "$b"
rc=$?
# The nested QEMUs' own logs, when something failed; on success the
# verdict line of migrate.py stays the last line (make demo checks it).
if [ $rc != 0 ]; then
	for f in $H/tmp/gpup-qemu/*.log; do
		[ -s "$f" ] && { echo "# --- $(basename "$f")"; sed 's/^/# /' "$f"; }
	done
fi
echo 0 > "$D/$pf/sriov_numvfs" 2>/dev/null
exit $rc
