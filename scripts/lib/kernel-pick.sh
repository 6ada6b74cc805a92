# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# The one rule that picks a Debian kernel release, sourced by scripts/deps
# (the 6.12 release the build uses and the guest boots) and by
# scripts/sid-chroot (sid's newest kernel).
#
#   kernel_pick RELEASE_ERE [installed]
#
# A release R (such as 6.12.118+deb12-amd64) is complete when
# linux-headers-R and an image of R, linux-image-R (signed) or
# linux-image-R-unsigned, are each installed or have a candidate in apt.
# Both images install /boot/vmlinuz-R.  The newest complete release is
# picked: an installed one is reused until a newer complete one appears,
# and headers without an image of their release are never picked.  Of the
# two images, one already installed is kept; otherwise the signed one is
# preferred, the unsigned one taken when Debian has not published the
# signed one yet.  With "installed", only installed packages count (what
# the Makefile and the guest runner use, without asking apt).
#
# Prints "R IMAGE_PACKAGE TODO" on stdout, TODO being the packages still
# to install, comma-separated, or "-".  When nothing fits it prints on
# stderr which packages are missing, and returns 1.
#
# The package tools are $KP_APT_CACHE and $KP_DPKG_QUERY (default
# apt-cache and dpkg-query), so that sid-chroot can run them in its
# chroot and the unit test (selftests/gpup/unit/deps_test.sh) can answer
# for them.

kp_installed() {	# names of installed packages matching the globs
	# dpkg-query fails when a glob matches nothing: not an error here.
	{ ${KP_DPKG_QUERY:-dpkg-query} -W -f='${Status}\t${Package}\n' "$@" \
		2>/dev/null || true; } |
		awk -F '\t' '$1 == "install ok installed" { print $2 }'
}

kernel_pick() {
	local re=$1 mode=${2:-} inst rels r names=() avail=
	inst=$(kp_installed 'linux-headers-*' 'linux-image-*')
	# The releases of the headers that are installed or known to apt.
	rels=$({
		echo "$inst"
		[ "$mode" = installed ] ||
			${KP_APT_CACHE:-apt-cache} pkgnames linux-headers- 2>/dev/null ||
			true
	} | sed -En "s/^linux-headers-($re)\$/\\1/p" | sort -Vru)
	if [ -z "$rels" ] && [ "$mode" = installed ]; then
		echo "no linux-headers-* of a release matching '$re' is installed" \
		     "(make deps installs one)" >&2
		return 1
	elif [ -z "$rels" ]; then
		echo "no linux-headers-* package of a release matching '$re' in apt" \
		     "(apt-get update, or check /etc/apt/sources.list.d)" >&2
		return 1
	fi
	if [ "$mode" != installed ]; then
		for r in $rels; do
			names+=("linux-headers-$r" "linux-image-$r" "linux-image-$r-unsigned")
		done
		# Packages with a candidate (any version) in apt's lists.
		avail=$(${KP_APT_CACHE:-apt-cache} policy "${names[@]}" 2>/dev/null |
			awk '/^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
			     /^  Candidate:/ && $2 != "(none)" { print p }')
	fi
	local h s u img todo first=
	kp_has() { grep -qxF "$1" <<<"$inst" || grep -qxF "$1" <<<"$avail"; }
	for r in $rels; do
		h=linux-headers-$r s=linux-image-$r u=linux-image-$r-unsigned
		[ -n "$first" ] || first=$r
		kp_has "$h" || continue
		if grep -qxF "$s" <<<"$inst"; then img=$s
		elif grep -qxF "$u" <<<"$inst"; then img=$u
		elif kp_has "$s"; then img=$s
		elif kp_has "$u"; then img=$u
		else continue
		fi
		todo=
		grep -qxF "$h" <<<"$inst" || todo=$h
		grep -qxF "$img" <<<"$inst" || todo=${todo:+$todo,}$img
		echo "$r $img ${todo:--}"
		return 0
	done
	r=$first
	h=linux-headers-$r s=linux-image-$r u=linux-image-$r-unsigned
	local miss=
	kp_has "$h" || miss=$h
	kp_has "$s" || kp_has "$u" || miss="${miss:+$miss and }$s or $u"
	echo "no kernel release matching '$re' has both headers and an image" \
	     "${mode:+installed }${mode:-in apt}; the newest, $r, lacks $miss" >&2
	return 1
}
