#!/usr/bin/env bash
# bench/bench-daemon.sh: benchmarks of mailkeepd, the live usage daemon
# (docs/benchmarks.md, section "Daemon"):
#
#   1. delivery latency: a message written into tmp/ and renamed into new/,
#      then GET /v1/mailboxes/ADDRESS on the status socket until the count
#      changes (and the same for expunges), beside the poll round trip;
#      plus a burst of 10,000 deliveries and expunges (events/s, CPU);
#   2. RSS (VmRSS, RssAnon, VmHWM) and inotify watches after ready;
#   3. time from start to /v1/status "ready": true, with a fresh state
#      directory (cold catalog) and on restart (warm catalog);
#   4. requests per second for /v1/status, /v1/mailboxes/ADDRESS and
#      /metrics on the UNIX socket (Python clients) and /metrics on the
#      TCP listener (Python clients and wrk), 1 and 10 clients;
#   and instruction counts (callgrind) and a heap snapshot (massif).
#
#   bench/bench-daemon.sh [--build] [--clean] [--data DIR] [ARGS...]
#
# --build    configure and build build-bd (Release, what is measured) and
#            build-bd-prof (RelWithDebInfo, for valgrind) first
# --clean    delete the stores and state directories at the end (the
#            results in DIR/results stay)
# --data DIR stores, daemon state and results (default ./bench-data/daemon)
# ARGS       passed to `bench_daemon.py run`, e.g. --phases startup,rps
#            --runs 3 --latency-n 100 --no-fsync, or --phases startup
#            --stores s1k,s10k for the memory per mailbox alone; see
#            `python3 bench/bench_daemon.py run --help`
#
# Stores (made once, reused; empty files whose Dovecot names carry ,S= and
# ,W=, INBOX and 5 folders per mailbox): s1k 1,000 x 100 messages,
# s10k 10,000 x 100, d1k 1,000 x 1,000: about 2.2 million inodes.  The
# s10k daemon holds about 130,000 inotify watches
# (fs.inotify.max_user_watches must allow them, for this user, beside
# whatever else runs).
#
# The markdown tables go to stdout and DIR/results/daemon.md, the raw
# figures to DIR/results/daemon.json, progress to stderr.
#
# Needs: python3 (3.9+), valgrind (callgrind, massif, vgdb), wrk; Debian:
#   apt-get install python3 valgrind wrk

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=./bench-data/daemon
BUILD=0
CLEAN=0
ARGS=()

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=1 ;;
	--clean) CLEAN=1 ;;
	--data) DATA=$2; shift ;;
	-h|--help)
		sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
		exit 0 ;;
	*) ARGS+=("$1") ;;
	esac
	shift
done

log() { printf 'bench-daemon: %s\n' "$*" >&2; }

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
	log "missing: ${missing[*]}; install with: apt-get install ${missing[*]}"
	exit 1
fi

if [ $BUILD = 1 ]; then
	cmake -S "$REPO" -B "$REPO/build-bd" -DCMAKE_BUILD_TYPE=Release >&2
	cmake --build "$REPO/build-bd" -j2 --target mailkeepd >&2
	cmake -S "$REPO" -B "$REPO/build-bd-prof" \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
	cmake --build "$REPO/build-bd-prof" -j2 --target mailkeepd >&2
fi
if [ ! -x "$REPO/build-bd/mailkeepd" ]; then
	log "build-bd/mailkeepd not found: run with --build, or
  cmake -S . -B build-bd -DCMAKE_BUILD_TYPE=Release && cmake --build build-bd -j2"
	exit 1
fi

mkdir -p "$DATA"
free_inodes=$(df -Pi "$DATA" | awk 'NR == 2 { print $4 }')
if [ ! -e "$DATA/s10k.json" ] && [ "$free_inodes" -lt 3000000 ]; then
	log "only $free_inodes free inodes on the file system of $DATA; the stores need about 2.2 million"
	exit 1
fi

rc=0
python3 "$REPO/bench/bench_daemon.py" run --data "$DATA" "${ARGS[@]}" || rc=$?

if [ $CLEAN = 1 ]; then
	log "deleting the stores and state in $DATA"
	rm -rf "${DATA:?}"/s1k "${DATA:?}"/s10k "${DATA:?}"/d1k "${DATA:?}"/*.partial \
	    "${DATA:?}"/state "${DATA:?}"/*.json
fi
exit $rc
