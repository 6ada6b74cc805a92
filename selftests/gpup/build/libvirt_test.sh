#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs in the test guest: libvirt (the host's, run from a writable overlay
# of its root) with a domain that owns a gpup VF as a managed hostdev.
# libvirt picks gpup_vfio_pci for it by itself, from modules.alias; virsh
# save and virsh restore keep the VF's state; virsh destroy leaves the VF
# scrubbed.  TAP output.
#
# Modes (QEMU's defaults, or <qemu:override>): libvirt_lib.sh.
#
#   libvirt_test.sh [MODULE_DIR]     (default: the initramfs's modules)
#
# GPUP_ROOT names the root to run libvirt from (default /host; the sid
# lane gives its chroot).
set -u
mods=${1:-/lib/modules/$(uname -r)/extra}
here=$(cd "$(dirname "$0")" && pwd)
echo "TAP version 13"
. "$here/guest_root.sh"
. "$here/guest_pci.sh"
. "$here/libvirt_lib.sh"

lv_vf 1
root_up || { echo "not ok 1 a writable root"; echo "1..1"; exit 1; }
lv_modules "$mods"
lv_daemons
virsh() { in_root virsh -c qemu:///system "$@"; }
lv_xml $R/tmp/gpup.xml
check "virsh define and start a domain with the VF" sh -c "
	chroot $R virsh -c qemu:///system define /tmp/gpup.xml &&
	chroot $R virsh -c qemu:///system start gpup"
check "libvirt bound the VF to gpup_vfio_pci by itself" sh -c "
	[ \"\$(basename \"\$(readlink $D/$vf/driver)\")\" = gpup_vfio_pci ]"
echo 1 > $SIM/$vf/free_run
check "the domain's VF runs" lv_steps_advance

# Paused, the VF stands still: its state is what virsh save must keep.
check "virsh suspend" virsh suspend gpup
saved=$(cat $SIM/$vf/digest)
# From here the sim's timer stays off, so that the digests below can only
# change through the driver: a restore, or the scrub of a close.
echo 0 > $SIM/$vf/free_run
check "virsh save" virsh save gpup /tmp/gpup.save
check "virsh save left the VF scrubbed: power-on state" sh -c "
	[ \"\$(cat $SIM/$vf/digest)\" = '$poweron' ]"
# QEMU leaves RESUMING, and so has the driver apply the stream, when the
# restored VM starts (an incoming VM that stays paused keeps its devices
# in RESUMING): compare after resume.
check "virsh restore --paused" virsh restore /tmp/gpup.save --paused
check "virsh resume: the VF as it was saved" sh -c "
	chroot $R virsh -c qemu:///system resume gpup &&
	[ \"\$(cat $SIM/$vf/digest)\" = '$saved' ]"
echo 1 > $SIM/$vf/free_run
check "the restored VF runs" lv_steps_advance
echo 0 > $SIM/$vf/free_run
check "virsh destroy" virsh destroy gpup
check "the VF is scrubbed: power-on state" sh -c "
	[ \"\$(cat $SIM/$vf/digest)\" = '$poweron' ] &&
	[ \"\$(cat $SIM/$vf/steps)\" = 0 ]"
virsh undefine gpup >/dev/null 2>&1
lv_down
tap_end
