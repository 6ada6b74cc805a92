# SPDX-License-Identifier: GPL-2.0
#
# Sourced by the guest's shell tests: the emulated igb PF and driver
# binding by driver_override.
#
#   bind DEV DRIVER     bind DEV to DRIVER; true if DRIVER has it then
#   find_pf             print the igb PF's address (8086:10c9), or nothing
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
