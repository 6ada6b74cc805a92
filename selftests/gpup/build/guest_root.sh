# SPDX-License-Identifier: GPL-2.0
#
# Sourced by the guest's shell tests: TAP lines, and a writable root for
# them, the host's root (read-only over 9p at /host) under a tmpfs overlay,
# with /dev, /proc, /sys, /tmp and /run, as a Debian system expects them.
#
#   check NAME CMD...; root_up; in_root CMD...; root_down; tap_end

n=0
failed=0

ok() {	# ok <0|1> <name>
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n $2"
	else
		echo "not ok $n $2"
		failed=$((failed + 1))
	fi
}

check() {	# check <name> <command...>: ok if the command succeeds
	name=$1
	shift
	t0=$(date +%s)
	"$@" >/tmp/check-step.log 2>&1 </dev/null
	rc=$?
	ok $rc "$name"
	[ $rc = 0 ] || sed 's/^/# /' /tmp/check-step.log | tail -n 30
	echo "# $(($(date +%s) - t0)) s"
	return $rc
}

tap_end() {
	echo "1..$n"
	[ $failed = 0 ]
}

O=/tmp/ovl
R=$O/root
# The read-only root to lay the overlay on: the host's, or (the sid lane)
# its chroot under it.
GPUP_ROOT=${GPUP_ROOT:-/host}

root_up() {
	modprobe overlay
	mkdir -p $O
	mount -t tmpfs tmpfs $O || return
	mkdir -p $O/upper $O/work $R
	mount -t overlay overlay \
		-o lowerdir=$GPUP_ROOT,upperdir=$O/upper,workdir=$O/work $R ||
		return
	[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
	mount -o rbind /dev $R/dev
	mount -t proc proc $R/proc
	mount -t sysfs sysfs $R/sys
	mount -t debugfs debugfs $R/sys/kernel/debug
	mount -t tmpfs tmpfs $R/tmp
	mount -t tmpfs tmpfs $R/run
}

in_root() {
	chroot $R /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C DEBIAN_FRONTEND=noninteractive "$@"
}

root_down() {
	umount $R/run $R/tmp $R/sys/kernel/debug $R/sys $R/proc
	# A lazy unmount detaches the rbind's submounts too (busybox has
	# no umount -R).
	umount -l $R/dev
	umount $R || umount -l $R
	umount $O || umount -l $O
}
