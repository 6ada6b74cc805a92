#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Debug lane: the debug facilities the lane relies on are live in the
# guest kernel, and still so after the suite (lockdep switches itself off
# after its first report, or when it cannot work; a lane that ran without
# it would prove nothing).
set -u
n=0 bad=0
check() {	# check DESCRIPTION COMMAND...
	desc=$1; shift
	n=$((n + 1))
	if "$@" >/dev/null 2>&1; then
		echo "ok $n $desc"
	else
		echo "not ok $n $desc"; bad=1
	fi
}
echo "TAP version 13"
echo "1..6"
check "KASAN is built in" grep -q ' __asan_load8$' /proc/kallsyms
check "lockdep is on (debug_locks: 1)" \
	grep -Eq '^ *debug_locks: +1$' /proc/lockdep_stats
check "kmemleak is on" test -w /sys/kernel/debug/kmemleak
check "UBSAN is built in" grep -q ' __ubsan_handle_out_of_bounds$' /proc/kallsyms
check "failslab is there" test -d /sys/kernel/debug/failslab
check "vfio cdev and iommufd are there" test -c /dev/iommu
exit $bad
