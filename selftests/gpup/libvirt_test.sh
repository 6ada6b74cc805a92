#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs in the test guest: libvirt (the host's, run from a writable overlay
# of its root) with a domain that owns a gpup VF as a managed hostdev.
# libvirt picks gpup_vfio_pci for it by itself, from modules.alias; virsh
# save and virsh restore keep the VF's state; virsh destroy leaves the VF
# scrubbed.  TAP output.
#
# Where the VF offers device DMA logging (a kernel with
# CONFIG_IOMMUFD_DRIVER: the debug lane's) the hostdev is libvirt's own,
# and QEMU runs with its defaults.  Without it (every Debian kernel), QEMU
# needs enable-migration=on and x-no-mmap=on for the VF: given through
# <qemu:override> as Documentation/qemu.rst says.  virsh save migrates a
# paused VM to a file, for which QEMU also needs avail-switchover-bandwidth
# (qemu.rst), in either case: given with -global through
# <qemu:commandline>.
#
#   libvirt_test.sh [MODULE_DIR]     (default: the initramfs's modules)
#
# GPUP_ROOT names the root to run libvirt from (default /host; the sid
# lane gives its chroot).
set -u
kver=$(uname -r)
mods=${1:-/lib/modules/$kver/extra}
here=$(cd "$(dirname "$0")" && pwd)
D=/sys/bus/pci/devices
SIM=/sys/kernel/debug/gpup_sim
echo "TAP version 13"
. "$here/guest_root.sh"

modprobe -a vfio_iommu_type1 vfio-pci gpup_vfio_pci gpup_sim
. "$here/guest_pci.sh"
pf=$(find_pf)
bind "$pf" gpup_sim
echo 0 > "$D/$pf/sriov_numvfs"
echo 1 > "$D/$pf/sriov_numvfs"
vf=$(basename "$(readlink "$D/$pf/virtfn0")")
poweron=$(cat $SIM/$vf/digest)
# Whether the VF offers DMA logging, from the driver's debugfs: bound for
# that, then left unbound again, for libvirt to bind.
bind "$vf" gpup_vfio_pci
logging=$(sed -n 's/^dma_logging: //p' \
	/sys/kernel/debug/gpup_vfio_pci/$vf/status 2>/dev/null)
echo "$vf" > "$D/$vf/driver/unbind"
echo > "$D/$vf/driver_override"
if [ "$logging" = 1 ]; then
	echo "# device DMA logging: QEMU's defaults, no <qemu:override>"
	override=
else
	echo "# no device DMA logging on this kernel: <qemu:override> of qemu.rst"
	override="  <qemu:override>
    <qemu:device alias='ua-gpu0'>
      <qemu:frontend>
        <qemu:property name='enable-migration' type='string' value='on'/>
        <qemu:property name='x-no-mmap' type='bool' value='true'/>
      </qemu:frontend>
    </qemu:device>
  </qemu:override>"
fi

root_up || { echo "not ok 1 a writable root"; echo "1..1"; exit 1; }
# The modules as installed: in updates/, with depmod, so that modules.alias
# names gpup_vfio_pci for the VF's ID.  make check runs that depmod on
# the build machine over the same tree (./depmod-KVER: seconds there,
# minutes under TCG); without it, here.
mkdir -p $R/lib/modules/$kver/updates
cp "$mods"/gpup_vfio_pci.ko "$mods"/gpup_sim.ko $R/lib/modules/$kver/updates/
if [ -f "$here/depmod-$kver/modules.dep" ]; then
	cp "$here/depmod-$kver"/modules.* $R/lib/modules/$kver/
	depmod="true"
else
	depmod="chroot $R depmod $kver"
fi
check "modules.alias names gpup_vfio_pci for the VF" sh -c "
	$depmod &&
	grep -q 'vfio_pci:v00008086d000010CA.* gpup_vfio_pci' \
		$R/lib/modules/$kver/modules.alias &&
	grep -q '^updates/gpup_vfio_pci.ko:' $R/lib/modules/$kver/modules.dep"

# libvirtd as root, QEMU as root, no cgroups, namespaces or security
# driver: a bare test guest has none of them.
cat >> $R/etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "file"
EOF
mkdir -p $R/var/log/libvirt/qemu $R/var/lib/libvirt/qemu/save
check "virtlogd and libvirtd start" sh -c "
	chroot $R virtlogd -d && chroot $R libvirtd -d &&
	for i in \$(seq 100); do
		chroot $R virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
		sleep 0.2
	done; exit 1"
virsh() { in_root virsh -c qemu:///system "$@"; }

bus=$(echo "$vf" | cut -d: -f2)
slot=$(echo "$vf" | cut -d: -f3 | cut -d. -f1)
fn=$(echo "$vf" | cut -d. -f2)
cat > $R/tmp/gpup.xml <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>gpup</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x$bus' slot='0x$slot' function='0x$fn'/>
      </source>
      <alias name='ua-gpu0'/>
    </hostdev>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-global'/>
    <qemu:arg value='migration.avail-switchover-bandwidth=1073741824'/>
  </qemu:commandline>
$override
</domain>
EOF
check "virsh define and start a domain with the VF" sh -c "
	chroot $R virsh -c qemu:///system define /tmp/gpup.xml &&
	chroot $R virsh -c qemu:///system start gpup"
check "libvirt bound the VF to gpup_vfio_pci by itself" sh -c "
	[ \"\$(basename \"\$(readlink $D/$vf/driver)\")\" = gpup_vfio_pci ]"
steps_advance() {
	s0=$(cat $SIM/$vf/steps)
	for i in $(seq 300); do
		[ "$(cat $SIM/$vf/steps)" -gt "$s0" ] && return 0
		sleep 0.1
	done
	return 1
}
echo 1 > $SIM/$vf/free_run
check "the domain's VF runs" steps_advance

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
check "the restored VF runs" steps_advance
echo 0 > $SIM/$vf/free_run
check "virsh destroy" virsh destroy gpup
check "the VF is scrubbed: power-on state" sh -c "
	[ \"\$(cat $SIM/$vf/digest)\" = '$poweron' ] &&
	[ \"\$(cat $SIM/$vf/steps)\" = 0 ]"
virsh undefine gpup >/dev/null 2>&1
echo 0 > $SIM/$vf/free_run 2>/dev/null
for p in libvirtd virtlogd; do
	pid=$(cat $R/run/$p.pid 2>/dev/null) || continue
	kill "$pid"
	while kill -0 "$pid" 2>/dev/null; do :; done
done
echo 0 > "$D/$pf/sriov_numvfs" 2>/dev/null
root_down
tap_end
