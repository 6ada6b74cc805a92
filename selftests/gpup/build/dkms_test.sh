#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs in the test guest: the Debian package of the DKMS sources, installed
# as a user would, on a writable overlay of the host's root (read-only over
# 9p).  dpkg -i builds the three modules for the booted kernel; modprobe loads
# them from updates/dkms by name, with their dependencies; a migration test
# passes on them; dpkg -r removes the modules.  Then make install and make
# uninstall in the project's tree, built for this kernel (`make`, by the
# lane, on the host; at its own path in the overlay, copied there from
# /host if the overlay's own /tmp hides it), as a user without DKMS
# installs.  TAP output.
#
#   dkms_test.sh DEB TREE
set -u
deb=$1
tree=$2
here=$(cd "$(dirname "$0")" && pwd)
kver=$(uname -r)
echo "TAP version 13"
. "$here/guest_root.sh"
root_up || { echo "not ok 1 a writable root"; echo "1..1"; exit 1; }
cp "$deb" $R/tmp/
# The DKMS modules' srcversion, and whether the loaded one is it.
dkms_loaded() {
	[ "$(cat /sys/module/gpup_vfio_pci/srcversion 2>/dev/null)" = \
	  "$(in_root modinfo -F srcversion gpup_vfio_pci)" ] &&
	in_root modinfo -n gpup_vfio_pci | grep -q "$1"
}
drop_ours() {	# unload whatever copy of our modules is loaded
	rmmod gpup_sim 2>/dev/null
	rmmod gpup_vfio_pci 2>/dev/null
	rmmod gpup_core 2>/dev/null
	! grep -q '^gpup_' /proc/modules
}

# The modules the earlier tests loaded came from the initramfs: not these.
check "our initramfs modules unload" drop_ours

check "dpkg -i builds the modules for $kver" \
	in_root dpkg -i /tmp/$(basename "$deb")
dkms_dir=$R/lib/modules/$kver/updates/dkms
check "the three modules in /lib/modules/$kver/updates/dkms" \
	sh -c "ls $dkms_dir/gpup_core.ko* $dkms_dir/gpup_vfio_pci.ko* $dkms_dir/gpup_sim.ko*"
modinfo_ok() {
	in_root modinfo -F version gpup_vfio_pci |
		grep -qx "$(cat $R/usr/src/gpup-vfio-*/VERSION)" &&
	in_root modinfo -F description gpup_sim | grep -q . &&
	in_root modinfo -F parm gpup_sim | grep -q '^vram_mb:' &&
	in_root modinfo -F alias gpup_vfio_pci |
		grep -q '^vfio_pci:v00008086d000010CA' &&
	grep -q 'vfio_pci:v00008086d000010CA.* gpup_vfio_pci' \
		$R/lib/modules/$kver/modules.alias
}
check "modinfo: version, description, parameters, vfio_pci alias" modinfo_ok
# modprobe by name, from <path part>: the provider pulls in gpup_core and
# nothing of VFIO (what modprobe would load for it, whatever an earlier
# test left loaded); the variant driver comes with its own modprobe.
loads() {	# loads <path part>
	in_root modprobe gpup_sim &&
	grep -q '^gpup_core ' /proc/modules &&
	grep -q '^gpup_sim ' /proc/modules &&
	! grep -q '^gpup_vfio_pci ' /proc/modules &&
	in_root modprobe --show-depends gpup_sim | grep -q gpup_core &&
	! in_root modprobe --show-depends gpup_sim | grep -q vfio &&
	in_root modprobe gpup_vfio_pci &&
	grep -q '^gpup_vfio_pci ' /proc/modules &&
	dkms_loaded "$1"
}
check "modprobe: gpup_sim loads gpup_core alone, gpup_vfio_pci then, from updates/dkms" loads /updates/dkms/
# The test's own modprobe finds them loaded: it runs on these.
migrates() {
	dkms_loaded "$1" &&
	"$here/migration_test" -r mig.roundtrip_precopy_running &&
	dkms_loaded "$1"
}
check "a migration on the DKMS modules" migrates /updates/dkms/
removed() {
	ls $dkms_dir/gpup_vfio_pci.ko* >/dev/null &&
	in_root dpkg -r gpup-vfio-dkms &&
	! ls $dkms_dir/gpup_vfio_pci.ko* 2>/dev/null &&
	! in_root dkms status gpup-vfio | grep -q .
}
check "dpkg -r removes them" removed
gone() {
	rmmod gpup_sim && rmmod gpup_vfio_pci && rmmod gpup_core &&
	! in_root modprobe gpup_sim
}
check "and modprobe finds them no more" gone

# make install, as a user without DKMS would after make.  The tree at its
# own path, so that kbuild finds its objects up to date (a copy elsewhere
# records other command lines and rebuilds them): a tree under /tmp is
# hidden by the overlay's own /tmp, and is copied there.
if [ ! -f $R$tree/Makefile ]; then
	mkdir -p $R$tree
	for e in "/host$tree"/* "/host$tree"/.[!.]*; do
		case ${e##*/} in
		build|.git|'*'|'.[!.]*') ;;
		*) cp -a "$e" $R$tree/ ;;
		esac
	done
fi
check "make install into updates/ with depmod" \
	in_root make -C "$tree" install
check "modprobe: gpup_sim loads gpup_core alone, gpup_vfio_pci then, from updates/" loads /updates/drivers/
uninstalled() {
	rmmod gpup_sim && rmmod gpup_vfio_pci && rmmod gpup_core &&
	in_root make -C "$tree" uninstall &&
	! in_root modprobe gpup_sim
}
check "make uninstall removes them" uninstalled

root_down
tap_end
