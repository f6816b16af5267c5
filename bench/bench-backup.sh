#!/usr/bin/env bash
# bench/bench-backup.sh: `mailkeep backup run` beside restic and borg on the
# same generated store: a first backup, an unchanged re-run, and a re-run
# after a day of mail (1% new messages, 10% flag changes); wall time, peak
# RSS and repository size.
#
#   bench/bench-backup.sh [--mailboxes N] [--first-runs N] [--runs N]
#                         [--tools "mailkeep restic borg"] [--results FILE]
#                         [--also FILE] [--clean] [DATA_DIR]
#
# DATA_DIR (default ./bench-data/backup) receives the generated store
# (made once, reused), the repositories and the raw results (--results,
# default DATA_DIR/results: "tool scenario run seconds max_rss_kib
# repo_bytes cpu_seconds").  --also FILE adds the tools of an earlier
# results file to the table (for example restic and borg measured once,
# beside a new mailkeep build).
# The markdown fragment for docs/benchmarks.md goes to stdout, progress to
# stderr.  --mailboxes (default 1000, about 100k messages) sizes the store;
# --first-runs (default 3) first backups each into a new repository,
# --runs (default 3) unchanged re-runs and churn rounds.
#
# Settings, chosen to be comparable: encryption on everywhere (mailkeep's
# key file, restic's password, borg repokey-blake2); zstd level 3
# (mailkeep's default, restic --compression auto, borg --compression
# zstd,3).  The store is read with a warm page cache.
#
# Environment: MAILKEEP (default build-bench/mailkeep of this repository).
# Needs: python3, restic, borgbackup, /usr/bin/time (package time).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAILBOXES=1000
FIRST_RUNS=3
RUNS=3
TOOLS="mailkeep restic borg"
CLEAN=0
DATA=./bench-data/backup
RESULTS=
ALSO=

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--mailboxes) MAILBOXES=$2; shift ;;
	--first-runs) FIRST_RUNS=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--tools) TOOLS=$2; shift ;;
	--results) RESULTS=$2; shift ;;
	--also) ALSO=$2; shift ;;
	--clean) CLEAN=1 ;;
	-h|--help) usage ;;
	-*) echo "bench-backup: unknown option $1" >&2; usage ;;
	*) DATA=$1 ;;
	esac
	shift
done

log() { printf 'bench-backup: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

MAILKEEP=${MAILKEEP:-$REPO/build-bench/mailkeep}
[ -x "$MAILKEEP" ] || die "no $MAILKEEP: build it (see bench/README.md)"
for t in python3 restic borg /usr/bin/time; do
	command -v "$t" >/dev/null || die "$t is needed"
done

mkdir -p "$DATA"
DATA=$(realpath "$DATA")
STORE=$DATA/store
POOL=$DATA/pool
WORK=$DATA/work
RESULTS=${RESULTS:-$DATA/results}
GEN=$REPO/bench/gen-corpus.py
HELPER=$REPO/bench/bench_backup.py

# The store: gen-corpus with few attachments (1%), so that a 100k-message
# store stays near 2 GB; the pool: other messages to deliver during churn.
if [ ! -f "$DATA/store.json" ]; then
	log "generating the store ($MAILBOXES mailboxes)"
	rm -rf "$STORE"
	python3 "$GEN" --out "$STORE" --mailboxes "$MAILBOXES" \
	    --messages-per-mailbox 100 --attachment-share 0.01 --json \
	    >"$DATA/store.json.tmp"
	mv "$DATA/store.json.tmp" "$DATA/store.json"
fi
if [ ! -f "$DATA/pool.json" ]; then
	log "generating the delivery pool"
	rm -rf "$POOL"
	python3 "$GEN" --out "$POOL" --seed 7 \
	    --mailboxes $((MAILBOXES * (RUNS + 1) / 80 + 1)) \
	    --messages-per-mailbox 100 --attachment-share 0.01 --json \
	    >"$DATA/pool.json.tmp"
	mv "$DATA/pool.json.tmp" "$DATA/pool.json"
fi

# The working copy, hard-linked so churn never touches the store.
rm -rf "$WORK"
mkdir -p "$WORK"
cp -al "$STORE" "$WORK/store"
W=$WORK/store
: >"$RESULTS"

export RESTIC_PASSWORD=bench-backup-password
export BORG_PASSPHRASE=bench-backup-password
export BORG_BASE_DIR=$WORK/borg-base
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no

repo_path() {
	case $1 in
	mailkeep) echo "$WORK/mk-state/repository" ;;
	restic) echo "$WORK/restic-repo" ;;
	borg) echo "$WORK/borg-repo" ;;
	esac
}

init() {
	case $1 in
	mailkeep)
		rm -rf "$WORK/mk-state"
		"$MAILKEEP" --store "$W" --state "$WORK/mk-state" repo init \
		    >/dev/null ;;
	restic)
		rm -rf "$WORK/restic-repo" "$WORK/restic-cache"
		restic init --repo "$WORK/restic-repo" >/dev/null ;;
	borg)
		rm -rf "$WORK/borg-repo" "$BORG_BASE_DIR"
		borg init -e repokey-blake2 "$WORK/borg-repo" ;;
	esac
}

# The command that backs up the working store, as the fragment shows it.
backup_cmd() {
	case $1 in
	mailkeep) echo "$MAILKEEP --store $W --state $WORK/mk-state --json backup run" ;;
	restic) echo "restic --repo $WORK/restic-repo --cache-dir $WORK/restic-cache backup --compression auto --quiet $W" ;;
	borg) echo "borg create --compression zstd,3 $WORK/borg-repo::{now:%Y-%m-%dT%H:%M:%S.%f} $W" ;;
	esac
}

# Run one backup under /usr/bin/time; append a result line.
measure() {
	local tool=$1 scen=$2 run=$3 out=$WORK/time.out
	# shellcheck disable=SC2046
	/usr/bin/time -f '%e %M %U %S' -o "$out" $(backup_cmd "$tool") \
	    >"$WORK/$tool.log" 2>&1 ||
	    die "$tool failed ($scen $run): $(tail -3 "$WORK/$tool.log")"
	read -r sec rss usr sys <"$out"
	cpu=$(python3 -c "print(round($usr + $sys, 2))")
	bytes=$(du -sb "$(repo_path "$tool")" | cut -f1)
	echo "$tool $scen $run $sec $rss $bytes $cpu" >>"$RESULTS"
	log "$tool $scen $run: ${sec}s (cpu ${cpu}s), ${rss} KiB, repository $bytes bytes"
}

log "warming the page cache"
find "$W" -type f -print0 | xargs -0 cat >/dev/null

for tool in $TOOLS; do
	for run in $(seq 1 "$FIRST_RUNS"); do
		init "$tool"
		measure "$tool" first "$run"
	done
	for run in $(seq 1 "$RUNS"); do
		measure "$tool" unchanged "$run"
	done
done
for run in $(seq 1 "$RUNS"); do
	python3 "$HELPER" churn "$W" "$POOL" "$run"
	for tool in $TOOLS; do
		measure "$tool" churn "$run"
	done
done

msgs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["messages"], d["bytes"])' "$DATA/store.json")
cat <<EOF
Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg).
Store: \`bench/gen-corpus.py --mailboxes $MAILBOXES --messages-per-mailbox 100 --attachment-share 0.01\`
(${msgs% *} messages, ${msgs#* } bytes), warm page cache, $(nproc) cores.
Versions: mailkeep $(git -C "$REPO" describe --always --dirty), $(restic version | cut -d' ' -f1-2), $(borg --version).

Commands (each first backup into a new repository):

    $(backup_cmd mailkeep | sed "s|$DATA|DATA|g")
    $(backup_cmd restic | sed "s|$DATA|DATA|g")
    $(backup_cmd borg | sed "s|$DATA|DATA|g")

EOF
python3 "$HELPER" summary ${ALSO:+"$ALSO"} "$RESULTS"

if [ "$CLEAN" = 1 ]; then
	rm -rf "$DATA"
else
	rm -rf "$WORK/store"
fi
