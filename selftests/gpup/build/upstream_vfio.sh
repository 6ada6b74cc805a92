#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs in the test guest: upstream's VFIO selftests (built by
# scripts/vfio-selftests) against a VF bound to gpup_vfio_pci, as an
# outside check.  TAP: the harness's own lines, rewritten where a case
# cannot say anything about gpup_vfio_pci, each such one a SKIP with its
# reason (Documentation/testing.rst lists them):
#
# - variants of the iommufd IOMMU modes, where the kernel has no
#   /dev/iommu (every Debian kernel): excluded with -V;
# - tests whose IOMMU mode is compiled in as iommufd (no variants), on
#   such a kernel: not run;
# - a case that fails on gpup_vfio_pci and fails the same on a VF of the
#   same PF bound to plain vfio-pci (the control): the kernel's behaviour,
#   not the driver's.  A case that passes on vfio-pci and fails on
#   gpup_vfio_pci stays a failure.
#
# vfio_pci_sriov_uapi_test insists on vfio-pci: it runs on the PF bound
# to vfio-pci (enable_sriov=1), as the control it is, and is named so.
# GPUP_SRIOV_CONTROL=0 (the debug and sid lanes) reports it as a SKIP:
# it runs nothing of ours, and there it locked up the guest (testing.rst).
#
#   upstream_vfio.sh DIR
set -u
dir=$1
D=/sys/bus/pci/devices
failed=0

modprobe -a vfio_iommu_type1 vfio-pci gpup_vfio_pci gpup_sim
. "$(dirname "$0")/guest_pci.sh"
pf=$(find_pf)
[ -n "$pf" ] || { echo "not ok 1 no igb PF"; exit 1; }
bind "$pf" gpup_sim || exit 1
echo 0 > "$D/$pf/sriov_numvfs"
echo 2 > "$D/$pf/sriov_numvfs"
vf=$(basename "$(readlink "$D/$pf/virtfn0")")
control=$(basename "$(readlink "$D/$pf/virtfn1")")
bind "$vf" gpup_vfio_pci || exit 1
bind "$control" vfio-pci || exit 1
# A few 2 MiB pages for the hugetlb variants, and one 1 GiB page while
# the guest's memory still has a free aligned GiB (given back at the end).
echo 8 > /proc/sys/vm/nr_hugepages 2>/dev/null
gig=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
[ -e $gig ] && echo 1 > $gig 2>/dev/null
echo "# 1 GiB huge pages: $(cat $gig 2>/dev/null || echo none)"
iommufd=0
[ -e /dev/iommu ] && iommufd=1

variants() {	# variants TEST BDF: the variant names of TEST
	# -l: "FIXTURE VARIANT TEST", then one more VARIANT per line.
	"$dir/$1" -l "$2" 2>&1 | awk '$1 !~ /^(#|-)/ {
		for (i = 1; i <= NF; i++)
			if ($i ~ /^(vfio_type1|iommufd)/) print $i }' | sort -u
}

run() {	# run TEST BDF [NAME]
	t=$1 bdf=$2 name=${3:-$1} ex=
	v=$(variants "$t" "$bdf")
	echo "# $name on $bdf ($(basename "$(readlink "$D/$bdf/driver")"))"
	if [ -z "$v" ] && [ $iommufd = 0 ]; then
		echo "ok - $name # SKIP its IOMMU mode is iommufd (compiled in), no /dev/iommu in this kernel"
		return
	fi
	if [ $iommufd = 0 ]; then
		ex=$(echo "$v" | grep '^iommufd' | sed 's/^/-V /')
		[ -n "$ex" ] && echo "# excluded, no /dev/iommu in this kernel:" \
			$(echo "$v" | grep '^iommufd' | tr '\n' ' ')
	fi
	# shellcheck disable=SC2086
	"$dir/$t" $ex "$bdf" >/tmp/upstream.out 2>&1
	rc=$?
	echo "# $name: exit $rc"
	# KSFT_SKIP before the harness ran: upstream's reason, its last line.
	if [ $rc = 4 ] && ! grep -q '^1\.\.' /tmp/upstream.out; then
		echo "ok - $name # SKIP $(tail -n 1 /tmp/upstream.out)"
		return
	fi
	drv=$(basename "$(readlink "$D/$bdf/driver")")
	while IFS= read -r line; do
		case $line in
		"not ok "*)
			c=$(echo "$line" | awk '{ print $4 }')
			if [ "$drv" = vfio-pci ]; then
				# This run is the control itself.
				echo "$line # SKIP fails on vfio-pci itself, the control (the kernel's behaviour)" |
					sed 's/^not ok/ok/'
			elif ! "$dir/$t" -r "$c" "$control" >/dev/null 2>&1; then
				echo "$line # SKIP fails on plain vfio-pci too (the kernel's behaviour)" |
					sed 's/^not ok/ok/'
			else
				echo "$line"
				failed=$((failed + 1))
			fi ;;
		*) echo "$line" ;;
		esac
	done </tmp/upstream.out
}

for t in vfio_dma_mapping_test vfio_dma_mapping_mmio_test \
	 vfio_iommufd_setup_test vfio_pci_device_test \
	 vfio_pci_device_init_perf_test vfio_pci_driver_test; do
	run "$t" "$vf"
done

# The control: vfio-pci on the PF, which makes the VF it tests itself.
echo 0 > "$D/$pf/sriov_numvfs"
echo 1 > /sys/module/vfio_pci/parameters/enable_sriov 2>/dev/null
if [ "${GPUP_SRIOV_CONTROL:-1}" = 0 ]; then
	echo "ok - vfio_pci_sriov_uapi_test (control: vfio-pci) # SKIP runs vfio-pci alone, on the stock lane only"
elif bind "$pf" vfio-pci; then
	run vfio_pci_sriov_uapi_test "$pf" "vfio_pci_sriov_uapi_test (control: vfio-pci)"
	echo 0 > "$D/$pf/sriov_numvfs" 2>/dev/null
	bind "$pf" gpup_sim
else
	echo "not ok - vfio_pci_sriov_uapi_test (control: vfio-pci): PF not bound"
	failed=$((failed + 1))
fi
echo 0 > "$D/$pf/sriov_numvfs" 2>/dev/null
[ -e $gig ] && echo 0 > $gig
echo "# $failed cases failed"
[ $failed = 0 ]
