#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Last test of the debug lane: unload our modules so that everything they
# still hold is freed, then wait out kmemleak's minimum object age (a
# fixed 5 s in mm/kmemleak.c: younger objects are never reported), so that
# the runner's scan right after this test sees what the last tests leaked.
# Fails if the modules will not unload.
set -u
D=/sys/bus/pci/devices
echo "TAP version 13"
echo "1..1"
for pf in $D/*; do
	[ "$(cat "$pf/driver_override" 2>/dev/null)" = gpup_sim ] || continue
	echo 0 > "$pf/sriov_numvfs" 2>/dev/null
	[ -e "$pf/driver" ] && echo "${pf##*/}" > "$pf/driver/unbind"
done
if ! rmmod gpup_sim 2>/dev/null && grep -q '^gpup_sim ' /proc/modules; then
	echo "not ok 1 unload gpup_sim"; exit 1
fi
if ! rmmod gpup_vfio_pci 2>/dev/null && grep -q '^gpup_vfio_pci ' /proc/modules; then
	echo "not ok 1 unload gpup_vfio_pci"; exit 1
fi
if ! rmmod gpup_core 2>/dev/null && grep -q '^gpup_core ' /proc/modules; then
	echo "not ok 1 unload gpup_core"; exit 1
fi
if [ ! -e /sys/kernel/debug/kmemleak ]; then
	echo "ok 1 modules unloaded # SKIP no kmemleak"; exit 0
fi
sleep 6
echo "ok 1 modules unloaded, kmemleak may scan"
