# SPDX-License-Identifier: GPL-2.0
#
# Sourced by the guest's shell tests: the emulated igb PF and driver
# binding by driver_override.
#
#   bind DEV DRIVER     bind DEV to DRIVER; true if DRIVER has it then
#   find_pf             print the igb PF's address (8086:10c9), or nothing
#   cmdline_arg NAME    print the value of NAME= on the kernel command line
#                       (gpup.ip, gpup.peer: guest-run --net), or nothing
#   load_sim            modprobe gpup_sim with this host's seed: 1, or on
#                       one of two hosts (guest-run --net, gpup.ip= on the
#                       kernel command line) 0xa000 + the address's last
#                       byte, so that no two hosts' VFs share a seed;
#                       reloads it if an earlier test loaded another seed;
#                       GPUP_SIM_PARAMS (k=v,k=v) adds parameters, as
#                       the debug pair's vram_mb=16384,working_set_mb=16
D=/sys/bus/pci/devices

bind() {
	if [ -e "$D/$1/driver" ]; then
		echo "$1" > "$D/$1/driver/unbind"
	fi
	echo "$2" > "$D/$1/driver_override"
	echo "$1" > /sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "$D/$1/driver")")" = "$2" ]
}

find_pf() {
	for d in "$D"/*; do
		if [ "$(cat "$d/vendor")" = 0x8086 ] &&
		   [ "$(cat "$d/device")" = 0x10c9 ]; then
			basename "$d"
			return
		fi
	done
}

cmdline_arg() {
	local w
	for w in $(cat /proc/cmdline); do
		case $w in "$1"=*) echo "${w#"$1"=}"; return ;; esac
	done
}

load_sim() {
	local ip seed=1 kv
	ip=$(cmdline_arg gpup.ip)
	[ -n "$ip" ] && seed=$((0xa000 + ${ip##*.}))
	# shellcheck disable=SC2046 # GPUP_SIM_PARAMS: words k=v, by commas
	set -- seed=$seed $(echo "${GPUP_SIM_PARAMS:-}" | tr , ' ')
	for kv in "$@"; do
		if [ "$(cat "/sys/module/gpup_sim/parameters/${kv%%=*}" 2>/dev/null)" != "${kv#*=}" ]; then
			rmmod gpup_sim 2>/dev/null || true
			modprobe gpup_sim "$@"
			return
		fi
	done
}
