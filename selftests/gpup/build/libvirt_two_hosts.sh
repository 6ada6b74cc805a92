#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# libvirt across two hosts (scripts/two-hosts): libvirtd on both guests,
# listening on the private link.  Host B sets up and then serves host A's
# calls on its VF (migrate.py serve) until A is done; host A drives: a
# domain owning its VF as a managed hostdev, `virsh migrate --live` to
# host B and back.  At each switchover the destination's VF equals the
# source's, the source's VF is left scrubbed, and libvirt bound the
# destination's VF to gpup_vfio_pci by itself.  TAP output (on host A;
# host B prints its own few lines).
#
# The VF's engine does not step on its own during a migration (free_run
# off): the state at the switchover is then the state before it, which
# the source's close scrubs away once libvirt ends the source QEMU.
# Modes (QEMU's defaults, or <qemu:override>): libvirt_lib.sh; without
# device DMA logging the downtime limit is raised first, with virsh
# migrate-setmaxdowntime, as for plain QEMU (qemu.rst).
#
#   libvirt_two_hosts.sh a|b [MODULE_DIR]
set -u
role=$1
mods=${2:-/lib/modules/$(uname -r)/extra}
here=$(cd "$(dirname "$0")" && pwd)
PORT=7001
echo "TAP version 13"
. "$here/guest_root.sh"
. "$here/guest_pci.sh"
. "$here/libvirt_lib.sh"
me=$(cmdline_arg gpup.ip)
peer=$(cmdline_arg gpup.peer)
[ -n "$peer" ] || { echo "not ok 1 two hosts (guest-run --net)"; echo "1..1"; exit 1; }

# libvirt refuses a migration to what looks like the same host: each
# guest gets a host name and (lv_daemons) a host UUID of its own.
hostname "gpup-host-${me##*.}"
load_sim
lv_vf 1
root_up || { echo "not ok 1 a writable root"; echo "1..1"; exit 1; }
lv_modules "$mods"
lv_daemons tcp
cp "$here/migrate.py" $R/tmp/migrate.py
py() { in_root env PYTHONDONTWRITEBYTECODE=1 GPUP_WORK=/tmp/gpup-qemu \
	python3 /tmp/migrate.py "$@"; }

if [ "$role" = b ]; then
	echo 0 > $SIM/$vf/free_run
	check "serve host A until it is done" py serve $PORT
	lv_down
	tap_end
	exit
fi

rcall() { py call "$peer:$PORT" "$@"; }
here_v() { in_root virsh -c "qemu+tcp://$me/system" "$@"; }
there_v() { in_root virsh -c "qemu+tcp://$peer/system" "$@"; }
drv() { basename "$(readlink "$D/$1/driver" 2>/dev/null)"; }

# Host B serves once its libvirtd is up.
bpoweron=$(rcall sim_read "$vf" digest)
check "host B's libvirt is up and its VF there" [ -n "$bpoweron" ]
echo "# host A $me VF $vf power-on $poweron; host B $peer power-on $bpoweron"
check "the two hosts' VFs start in different states" sh -c "
	[ -n '$bpoweron' ] && [ '$bpoweron' != '$poweron' ]"
lv_xml $R/tmp/gpup.xml
check "virsh define and start a domain with the VF on host A" sh -c "
	chroot $R virsh -c qemu:///system define /tmp/gpup.xml &&
	chroot $R virsh -c qemu:///system start gpup"
check "libvirt on host A bound the VF to gpup_vfio_pci" \
	[ "$(drv "$vf")" = gpup_vfio_pci ]
echo 1 > $SIM/$vf/free_run
check "the domain's VF runs" lv_steps_advance
echo 0 > $SIM/$vf/free_run
saved=$(cat $SIM/$vf/digest)

# migrate FROM_VIRSH TO_ADDR: live, the definition moving with the domain.
migrate() {
	if [ -n "$override" ]; then
		"$1" migrate-setmaxdowntime gpup 3000 || return
	fi
	"$1" migrate --live --persistent --undefinesource --verbose gpup \
		"qemu+tcp://$2/system" --migrateuri "tcp://$2"
}
t0=$(date +%s)
check "virsh migrate --live to host B" migrate here_v "$peer"
echo "# A->B: $(($(date +%s) - t0)) s"
check "the domain runs on host B" \
	[ "$(there_v domstate gpup 2>/dev/null | head -n 1)" = running ]
check "libvirt on host B bound its VF to gpup_vfio_pci" sh -c "
	chroot $R env PYTHONDONTWRITEBYTECODE=1 python3 /tmp/migrate.py \
		call $peer:$PORT run readlink /sys/bus/pci/devices/$vf/driver |
		grep -q '/gpup_vfio_pci\$'"
check "host B's VF equals host A's at the switchover" \
	[ "$(rcall sim_read "$vf" digest)" = "$saved" ]
check "host A's VF is left scrubbed: power-on state" \
	[ "$(cat $SIM/$vf/digest)" = "$poweron" ]
rcall sim_write "$vf" free_run 1 >/dev/null
check "host B's VF runs" rcall steps_advance "$vf"
rcall sim_write "$vf" free_run 0 >/dev/null
saved=$(rcall sim_read "$vf" digest)

t0=$(date +%s)
check "virsh migrate --live back to host A" migrate there_v "$me"
echo "# B->A: $(($(date +%s) - t0)) s"
check "the domain runs on host A" \
	[ "$(here_v domstate gpup 2>/dev/null | head -n 1)" = running ]
check "host A's VF equals host B's at the switchover" \
	[ "$(cat $SIM/$vf/digest)" = "$saved" ]
check "host B's VF is left scrubbed: power-on state" \
	[ "$(rcall sim_read "$vf" digest)" = "$bpoweron" ]
check "virsh destroy" here_v destroy gpup
check "host A's VF is scrubbed: power-on state" \
	[ "$(cat $SIM/$vf/digest)" = "$poweron" ]
here_v undefine gpup >/dev/null 2>&1
rcall shutdown >/dev/null
lv_down
tap_end
