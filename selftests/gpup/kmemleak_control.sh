#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Debug lane control: kmemleak, scanned as the runner scans it after every
# test, does report a real leak.  The kernel's own sample kmemleak-test.ko
# leaks on purpose when loaded and unloaded.  This test then clears what it
# caused (the reports and the module's log lines) so that its own
# "kernel log clean" check judges nothing but the rest.  A leak of the
# sample's that kmemleak reports only later (seen once: a percpu object
# in a later scan of the runner's) is the sample's too: the runner drops
# the reports of the modprobe whose pid this test leaves in
# /run/gpup/kmemleak-ignore.  Without the sample module or kmemleak it
# fails: a lane that cannot see a leak would prove nothing.
set -u
KML=/sys/kernel/debug/kmemleak
echo "TAP version 13"
echo "1..1"
fail() { echo "not ok 1 a deliberate leak is reported: $*"; exit 1; }
[ -w $KML ] || fail "no kmemleak"
modprobe kmemleak-test &
pid=$!
wait $pid || fail "cannot load kmemleak-test"
echo "$pid" >> /run/gpup/kmemleak-ignore
rmmod kmemleak_test || fail "cannot unload kmemleak-test"
# kmemleak reports no object younger than 5 s (fixed in mm/kmemleak.c).
sleep 6
echo scan > $KML
echo scan > $KML
n=$(grep -c '^unreferenced object' $KML)
echo clear > $KML
dmesg -c > /dev/null
[ "$n" -gt 0 ] || fail "kmemleak found nothing"
echo "ok 1 a deliberate leak is reported ($n objects)"
