#!/usr/bin/env bash
# Set up mailkeep on a fresh Debian 12 machine.
#
#   scripts/setup.sh demo   install, build, run mailkeepd on a demo store
#   scripts/setup.sh test   install, build twice (gcc -Werror; clang with
#                           address and undefined sanitizers), run every
#                           test in both, check the formatting
#
# Run as root (or through sudo): it installs Debian packages, and the
# integration tests start Dovecot and Postfix.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

packages=(
	build-essential cmake pkg-config clang clang-format
	libevent-dev libzstd-dev libsqlite3-dev libssl-dev libjansson-dev
	libsystemd-dev libcmocka-dev libcurl4-openssl-dev libxxhash-dev
	python3 openssl ca-certificates systemd iproute2 dovecot-core dovecot-imapd dovecot-lmtpd postfix rsync
	ceph-mon ceph-osd radosgw ceph-common
)

install_packages() {
	local missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		    grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "== installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() { # build DIR CC [cmake options...]
	local dir=$1 cc=$2
	shift 2
	echo "== build $dir ($cc $*)"
	CC=$cc cmake -S . -B "$dir" -DMK_WERROR=ON "$@" >/dev/null
	cmake --build "$dir" -j"$(nproc)"
}

run_tests() { # run_tests DIR
	echo "== test $1"
	(cd "$1" && ctest --output-on-failure -j2)
}

check_format() {
	echo "== clang-format"
	local files
	files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
	# shellcheck disable=SC2086
	clang-format --dry-run -Werror $files
	echo "formatting OK"
}

case "${1:-}" in
demo)
	install_packages
	build build/gcc gcc
	exec scripts/demo.sh build/gcc
	;;
test)
	install_packages
	build build/gcc gcc
	run_tests build/gcc
	build build/asan clang -DMK_SANITIZE=address,undefined
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    run_tests build/asan
	check_format
	;;
*)
	echo "usage: $0 demo|test" >&2
	exit 2
	;;
esac
