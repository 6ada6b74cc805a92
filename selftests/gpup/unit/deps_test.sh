#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The rule that picks the Debian 6.12 kernel release (scripts/deps,
# scripts/lib/kernel-pick.sh), against apt-cache and dpkg-query answers
# made here: stand-ins first on PATH that answer from two lists of this
# test's, what apt has (a candidate) and what dpkg has installed.  Asks
# `scripts/deps --plan` (the pick from apt) and `scripts/deps --kver` (the
# installed release the Makefile and guest-run use); nothing is installed.
# TAP on stdout.
set -uo pipefail

top=$(cd "$(dirname "$0")/../../.." && pwd)
deps=${DEPS:-$top/scripts/deps}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"

# apt-cache pkgnames PREFIX | [-t SUITE] policy NAME...: from avail (a
# candidate) and installed (dpkg's status, which apt-cache also reads).
cat >"$tmp/bin/apt-cache" <<'EOF'
#!/usr/bin/env bash
d=$FAKE_APT
[ "$1" = -t ] && shift 2
case $1 in
pkgnames)
	cat "$d/avail" "$d/installed" | grep -F -- "$2" | grep "^$2" | sort -u ;;
policy)
	shift
	for p; do
		grep -qxF "$p" "$d/avail" "$d/installed" || continue
		i='(none)' c='(none)'
		grep -qxF "$p" "$d/installed" && i=1.0 c=1.0
		grep -qxF "$p" "$d/avail" && c=1.0
		printf '%s:\n  Installed: %s\n  Candidate: %s\n  Version table:\n' \
			"$p" "$i" "$c"
	done ;;
*) echo "fake apt-cache: $*" >&2; exit 100 ;;
esac
EOF
# dpkg-query -W -f=FORMAT GLOB...: the installed packages that match.
cat >"$tmp/bin/dpkg-query" <<'EOF'
#!/usr/bin/env bash
shift 2
n=0
while read -r p; do
	for g; do
		# shellcheck disable=SC2053
		[[ $p == $g ]] || continue
		printf 'install ok installed\t%s\n' "$p"; n=$((n + 1)); break
	done
done <"$FAKE_APT/installed"
[ $n -gt 0 ]
EOF
chmod +x "$tmp/bin/apt-cache" "$tmp/bin/dpkg-query"

n=0 failed=0
# case_ NAME MODE EXPECTED: MODE plan|kver, or fail|kverfail for an error
# of the same; the lists come from the variables AVAIL and INST (package
# names).  For an error, EXPECTED is text its message must contain.
case_() {
	local name=$1 mode=$2 want=$3 got rc
	n=$((n + 1))
	mkdir -p "$tmp/c$n"
	printf '%s\n' $AVAIL >"$tmp/c$n/avail"
	printf '%s\n' $INST >"$tmp/c$n/installed"
	case $mode in
	plan|fail) got=$(FAKE_APT=$tmp/c$n PATH=$tmp/bin:$PATH "$deps" --plan 2>&1) ;;
	kver*) got=$(FAKE_APT=$tmp/c$n PATH=$tmp/bin:$PATH "$deps" --kver 2>&1) ;;
	esac
	rc=$?
	got=$(echo $got)
	if { [[ $mode == *fail ]] && [ $rc != 0 ] && [[ $got == *"$want"* ]]; } ||
	   { [[ $mode != *fail ]] && [ $rc = 0 ] && [ "$got" = "$want" ]; }; then
		echo "ok $n - $name"
	else
		echo "not ok $n - $name"
		echo "#   want ($mode): $want"
		echo "#   got (exit $rc): $got"
		failed=$((failed + 1))
	fi
}

h=linux-headers-6.12 i=linux-image-6.12
echo "TAP version 13"
echo "1..10"

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64-dbg $h.117+deb12-amd64
       $i.117+deb12-amd64 $i.117+deb12-amd64-unsigned" INST=
case_ "the newest headers have no image: the newest complete release" plan \
	"KVER=6.12.117+deb12-amd64 IMAGE=$i.117+deb12-amd64 INSTALL=$h.117+deb12-amd64 $i.117+deb12-amd64"

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64-unsigned $h.117+deb12-amd64
       $i.117+deb12-amd64" INST=
case_ "only -unsigned exists: it is taken" plan \
	"KVER=6.12.118+deb12-amd64 IMAGE=$i.118+deb12-amd64-unsigned INSTALL=$h.118+deb12-amd64 $i.118+deb12-amd64-unsigned"

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64 $i.118+deb12-amd64-unsigned" INST=
case_ "signed and unsigned both exist: the signed one" plan \
	"KVER=6.12.118+deb12-amd64 IMAGE=$i.118+deb12-amd64 INSTALL=$h.118+deb12-amd64 $i.118+deb12-amd64"

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64-unsigned"
INST="$h.117+deb12-amd64 $i.117+deb12-amd64"
case_ "an older release installed, a newer complete one appears: the newer" plan \
	"KVER=6.12.118+deb12-amd64 IMAGE=$i.118+deb12-amd64-unsigned INSTALL=$h.118+deb12-amd64 $i.118+deb12-amd64-unsigned"

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64-dbg"
INST="$h.117+deb12-amd64 $i.117+deb12-amd64"
case_ "an older release installed, the newer one incomplete: the installed one, nothing to install" plan \
	"KVER=6.12.117+deb12-amd64 IMAGE=$i.117+deb12-amd64 INSTALL="

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64"
INST="$h.118+deb12-amd64 $i.118+deb12-amd64-unsigned"
case_ "the unsigned image installed, the signed one published later: kept" plan \
	"KVER=6.12.118+deb12-amd64 IMAGE=$i.118+deb12-amd64-unsigned INSTALL="

AVAIL="$h.119+deb12-cloud-amd64 $i.119+deb12-cloud-amd64 $h.119+deb12-rt-amd64
       $i.119+deb12-rt-amd64 $h.118+deb12-amd64 $i.118+deb12-amd64" INST=
case_ "cloud and rt flavours are not the release" plan \
	"KVER=6.12.118+deb12-amd64 IMAGE=$i.118+deb12-amd64 INSTALL=$h.118+deb12-amd64 $i.118+deb12-amd64"

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64-dbg $h.117+deb12-amd64" INST=
case_ "nothing fits: the error names the missing images" fail \
	"the newest, 6.12.118+deb12-amd64, lacks $i.118+deb12-amd64 or $i.118+deb12-amd64-unsigned"

AVAIL= INST="$h.118+deb12-amd64 $h.117+deb12-amd64 $i.117+deb12-amd64-unsigned"
case_ "--kver: installed headers without their image are never chosen" kver \
	"6.12.117+deb12-amd64"

AVAIL="$h.118+deb12-amd64 $i.118+deb12-amd64" INST="$h.118+deb12-amd64"
case_ "--kver: no installed release with its image is an error" kverfail \
	"the newest, 6.12.118+deb12-amd64, lacks $i.118+deb12-amd64 or $i.118+deb12-amd64-unsigned"

echo "# $((n - failed)) passed, $failed failed"
[ $failed = 0 ]
