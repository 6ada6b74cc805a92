#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs in the test guest: loads the modules, gives gpup_sim the igb PF,
# binds two VFs to gpup_vfio_pci and runs migrate.py (demo, tests or
# bench) in a chroot of the host's root, where the host's QEMU lives, or
# of GPUP_QEMU_ROOT (the sid chroot under it, for the newest-kernel lane).
#
#   qemu_e2e.sh demo|tests|bench
#   qemu_e2e.sh serve|two-hosts|demo-two-hosts|bench-two-hosts
#
# The last four run on one of two hosts (scripts/guest-run --net): serve
# on host B, the others on host A, which drives both.  There each host's
# gpup_sim gets a seed of its own (guest_pci.sh load_sim), and three VFs.
set -eu
mode=$1
here=$(cd "$(dirname "$0")" && pwd)
D=/sys/bus/pci/devices
AGENT_PORT=7000

. "$here/guest_pci.sh"
nvfs=2
[ -n "$(cmdline_arg gpup.ip)" ] && nvfs=3
peer=$(cmdline_arg gpup.peer)
case $mode in
serve|two-hosts|demo-two-hosts|bench-two-hosts)
	[ -n "$peer" ] || { echo "qemu_e2e: $mode needs guest-run --net"; exit 2; } ;;
esac
modprobe -a vfio_iommu_type1 gpup_vfio_pci
load_sim
pf=$(find_pf)
[ -n "$pf" ] || { echo "qemu_e2e: no igb PF"; exit 1; }
bind "$pf" gpup_sim
echo 0 > "$D/$pf/sriov_numvfs"
echo $nvfs > "$D/$pf/sriov_numvfs"
vfs=
i=0
while [ $i -lt $nvfs ]; do
	vf=$(basename "$(readlink "$D/$pf/virtfn$i")")
	bind "$vf" gpup_vfio_pci
	vfs="$vfs $vf"
	i=$((i + 1))
done

# The host's root, read-only, with this guest's devices and a scratch dir.
H=${GPUP_QEMU_ROOT:-/host}
mounted() { grep -q " $1 " /proc/mounts; }
mounted $H/dev || mount -o rbind /dev $H/dev
mounted $H/sys || mount -o rbind /sys $H/sys
mounted $H/proc || mount -t proc proc $H/proc
mounted $H/tmp || mount -t tmpfs tmpfs $H/tmp
mounted $H/run || mount -t tmpfs tmpfs $H/run
cp "$here/migrate.py" $H/tmp/migrate.py
# The tests' own tools (stream_compat), for migrate.py in the chroot.
mkdir -p $H/tmp/tests
mounted $H/tmp/tests || mount --bind "$here" $H/tmp/tests

case $mode in
serve) set -- "$AGENT_PORT" ;;
two-hosts|demo-two-hosts|bench-two-hosts) set -- "$peer:$AGENT_PORT" $vfs ;;
*) set -- $vfs ;;
esac
set +e
chroot $H /usr/bin/env PYTHONDONTWRITEBYTECODE=1 GPUP_WORK=/tmp/gpup-qemu \
	/usr/bin/python3 /tmp/migrate.py "$mode" "$@"
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
