# SPDX-License-Identifier: GPL-2.0
#
# Sourced by libvirt_test.sh and libvirt_two_hosts.sh, after guest_root.sh
# and guest_pci.sh: libvirt (the host's, from a writable overlay of its
# root) in the test guest, with gpup_sim's VFs for its domains.
#
#   lv_vf NVFS          gpup_sim on the igb PF with NVFS VFs; sets pf, vf
#                       (the first VF), poweron (its digest), logging and
#                       override; leaves the VF unbound, for libvirt
#   lv_modules MODS     the modules as installed, in updates/ with depmod
#                       (check line)
#   lv_daemons [tcp]    virtlogd and libvirtd (check line); tcp: libvirtd
#                       also listens on TCP, without authentication (a
#                       private link between two test guests only), with
#                       a host UUID made from the guest's address
#   lv_xml FILE         the domain "gpup" owning $vf as a managed hostdev
#   lv_steps_advance    true when the VF's step counter moves in time
#   lv_down             stop the daemons, disable the VFs, the root down
#
# Where the VF offers device DMA logging (a kernel with
# CONFIG_IOMMUFD_DRIVER: the debug lane's) the hostdev is libvirt's own,
# and QEMU runs with its defaults.  Without it (every Debian kernel), QEMU
# needs enable-migration=on and x-no-mmap=on for the VF: given through
# <qemu:override> as Documentation/qemu.rst says.  A paused VM migrated to
# a file (virsh save) also needs avail-switchover-bandwidth (qemu.rst), in
# either case: given with -global through <qemu:commandline>.

kver=$(uname -r)
D=/sys/bus/pci/devices
SIM=/sys/kernel/debug/gpup_sim

lv_vf() {
	modprobe -a vfio_iommu_type1 vfio-pci gpup_vfio_pci gpup_sim
	pf=$(find_pf)
	bind "$pf" gpup_sim
	echo 0 > "$D/$pf/sriov_numvfs"
	echo "$1" > "$D/$pf/sriov_numvfs"
	vf=$(basename "$(readlink "$D/$pf/virtfn0")")
	poweron=$(cat $SIM/$vf/digest)
	# Whether the VF offers DMA logging, from the driver's debugfs:
	# bound for that, then left unbound again, for libvirt to bind.
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
}

# The modules as installed: in updates/, with depmod, so that modules.alias
# names gpup_vfio_pci for the VF's ID.  make check runs that depmod on
# the build machine over the same tree (./depmod-KVER: seconds there,
# minutes under TCG); without it, here.
lv_modules() {
	local depmod
	mkdir -p $R/lib/modules/$kver/updates
	cp "$1"/gpup_core.ko "$1"/gpup_vfio_pci.ko "$1"/gpup_sim.ko \
	   $R/lib/modules/$kver/updates/
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
}

# libvirtd as root, QEMU as root, no cgroups, namespaces or security
# driver: a bare test guest has none of them.
lv_daemons() {
	local listen=
	cat >> $R/etc/libvirt/qemu.conf <<'EOC'
user = "root"
group = "root"
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "file"
EOC
	if [ "${1:-}" = tcp ]; then
		cat >> $R/etc/libvirt/libvirtd.conf <<EOC
listen_tls = 0
listen_tcp = 1
listen_addr = "0.0.0.0"
auth_tcp = "none"
host_uuid = "6770b0e1-0000-4000-8000-$(printf '%012x' "${me##*.}")"
EOC
		listen=--listen
	fi
	mkdir -p $R/var/log/libvirt/qemu $R/var/lib/libvirt/qemu/save
	check "virtlogd and libvirtd start" sh -c "
		chroot $R virtlogd -d && chroot $R libvirtd -d $listen &&
		for i in \$(seq 100); do
			chroot $R virsh -c qemu:///system version >/dev/null 2>&1 &&
				exit 0
			sleep 0.2
		done; exit 1"
}

lv_xml() {
	local bus slot fn
	bus=$(echo "$vf" | cut -d: -f2)
	slot=$(echo "$vf" | cut -d: -f3 | cut -d. -f1)
	fn=$(echo "$vf" | cut -d. -f2)
	cat > "$1" <<EOX
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
EOX
}

lv_steps_advance() {
	local s0 i
	s0=$(cat $SIM/$vf/steps)
	for i in $(seq 300); do
		[ "$(cat $SIM/$vf/steps)" -gt "$s0" ] && return 0
		sleep 0.1
	done
	return 1
}

lv_down() {
	local p pid
	echo 0 > $SIM/$vf/free_run 2>/dev/null
	for p in libvirtd virtlogd; do
		pid=$(cat $R/run/$p.pid 2>/dev/null) || continue
		kill "$pid"
		while kill -0 "$pid" 2>/dev/null; do :; done
	done
	echo 0 > "$D/$pf/sriov_numvfs" 2>/dev/null
	root_down
}
