#!/usr/bin/env bash
# bench/bench-s3.sh: backup and restore throughput of mailkeep into a Ceph
# RADOS Gateway (S3) beside a local repository, and beside restic with its
# S3 backend against the same gateway (and restic into a local directory).
#
#   bench/bench-s3.sh [--runs N] [--mailboxes N] [--max-bytes SIZE]
#                     [--bandwidth SIZE] [DATA_DIR]
#
# A single-node Ceph cluster is started with scripts/ceph-rgw.sh in
# DATA_DIR/ceph (127.0.0.1 only) and stopped at the end.  A store from
# bench/gen-corpus.py (default 40 mailboxes, at most 150M of mail) is
# backed up N times (default 3), each time into a new empty repository,
# and the last backup is restored N times (every mailbox, into an empty
# directory).  With --bandwidth, one more mailkeep backup into the
# gateway runs with [repository] bandwidth_limit = SIZE, and the rate it
# reached (bytes stored over wall time) is printed beside the limit.  The
# medians, and the ratios to mailkeep into a local
# directory, go to stdout as a markdown fragment for docs/benchmarks.md;
# progress to stderr.
#
# Environment: MAILKEEP (default build-bench/mailkeep of this repository,
# built Release when missing).  Needs: root, python3, restic, GNU time,
# ceph-mon, ceph-osd, radosgw, ceph-common.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
MAILBOXES=40
MAX_BYTES=150M
BANDWIDTH=
DATA=./bench-data/s3

while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift ;;
	--mailboxes) MAILBOXES=$2; shift ;;
	--max-bytes) MAX_BYTES=$2; shift ;;
	--bandwidth) BANDWIDTH=$2; shift ;;
	-*) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
	*) DATA=$1 ;;
	esac
	shift
done

log() { echo "bench-s3: $*" >&2; }

MAILKEEP=${MAILKEEP:-$REPO/build-bench/mailkeep}
if [ ! -x "$MAILKEEP" ]; then
	log "building $MAILKEEP (Release)"
	cmake -S "$REPO" -B "$REPO/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$REPO/build-bench" -j"$(nproc)" >/dev/null
fi

mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
CEPH=$DATA/ceph
rm -rf "$DATA/store" "$DATA/work" "$CEPH"
mkdir -p "$DATA/work" "$CEPH"
trap 'bash "$REPO/scripts/ceph-rgw.sh" stop "$CEPH" || true' EXIT

log "generating the store"
python3 "$REPO/bench/gen-corpus.py" --out "$DATA/store" --mailboxes "$MAILBOXES" \
    --seed 5 --max-bytes "$MAX_BYTES" >&2
STORE_BYTES=$(du -sb "$DATA/store" | cut -f1)
MESSAGES=$(find "$DATA/store" -path '*/cur/*' -o -path '*/new/*' -type f | wc -l)

log "starting Ceph"
CEPH_STORE_BYTES=$((6 << 30)) bash "$REPO/scripts/ceph-rgw.sh" start "$CEPH" >&2
# shellcheck disable=SC1091
. "$CEPH/s3.env"
CREDS=$DATA/work/creds
(umask 077 && printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$CREDS")

# seconds of one command (wall clock), from GNU time
seconds() {
	local t=$DATA/work/time.$$
	/usr/bin/time -f %e -o "$t" "$@" >/dev/null 2>"$DATA/work/last.err" || {
		cat "$DATA/work/last.err" >&2
		return 1
	}
	cat "$t"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

mk_conf() { # mk_conf NAME LOCATION
	local d=$DATA/work/$1
	mkdir -p "$d"
	cat >"$d/mk.conf" <<EOF
[store]
root = $DATA/store
[general]
state_dir = $d/state
[repository]
location = $2
credentials_file = $CREDS
EOF
	echo "$d/mk.conf"
}

mk_restore_all() { # mk_restore_all CONF DIR
	local conf=$1 to=$2 line
	mkdir -p "$to"
	"$MAILKEEP" -c "$conf" --json snapshots | python3 -c '
import json, sys
last = {}
for s in json.load(sys.stdin)["snapshots"]:
    last[s["mailbox"]] = max(last.get(s["mailbox"], 0), s["id"])
for m, i in sorted(last.items()):
    print(m, i)' | while read -r line; do
		set -- $line
		"$MAILKEEP" -c "$conf" restore "$1" --snapshot "$2" --to "$to/$1" >/dev/null
	done
}
export -f mk_restore_all
export MAILKEEP

declare -A BACKUP RESTORE
for tool in mailkeep-local mailkeep-s3 restic-local restic-s3; do
	b=() r=()
	for i in $(seq 1 "$RUNS"); do
		case $tool in
		mailkeep-local)
			conf=$(mk_conf "ml$i" "$DATA/work/ml$i/repository")
			"$MAILKEEP" -c "$conf" repo init >/dev/null 2>&1
			b+=("$(seconds "$MAILKEEP" -c "$conf" backup run)")
			;;
		mailkeep-s3)
			conf=$(mk_conf "ms$i" "s3:$S3_ENDPOINT/$S3_BUCKET/mk$i")
			"$MAILKEEP" -c "$conf" repo init >/dev/null 2>&1
			b+=("$(seconds "$MAILKEEP" -c "$conf" backup run)")
			;;
		restic-local)
			export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$DATA/work/rl$i
			restic init >/dev/null
			b+=("$(seconds restic backup -q "$DATA/store")")
			;;
		restic-s3)
			export RESTIC_PASSWORD=bench AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY \
			    AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
			    RESTIC_REPOSITORY=s3:$S3_ENDPOINT/$S3_BUCKET/restic$i
			restic init >/dev/null
			b+=("$(seconds restic backup -q "$DATA/store")")
			;;
		esac
		log "$tool backup $i: ${b[-1]} s"
	done
	for i in $(seq 1 "$RUNS"); do
		to=$DATA/work/restore-$tool-$i
		rm -rf "$to"
		case $tool in
		mailkeep-*) r+=("$(seconds bash -c 'mk_restore_all "$0" "$1"' "$conf" "$to")") ;;
		restic-*) r+=("$(seconds restic restore latest -q --target "$to")") ;;
		esac
		log "$tool restore $i: ${r[-1]} s"
		rm -rf "$to"
	done
	BACKUP[$tool]=$(printf '%s\n' "${b[@]}" | median)
	RESTORE[$tool]=$(printf '%s\n' "${r[@]}" | median)
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY RESTIC_REPOSITORY
done

mib=$(awk -v b="$STORE_BYTES" 'BEGIN {printf "%.1f", b / 1048576}')
echo "Store: bench/gen-corpus.py --mailboxes $MAILBOXES --seed 5 --max-bytes $MAX_BYTES"
echo "($MESSAGES messages, $mib MiB); $RUNS runs each, medians; each backup into a new"
echo "empty repository (a first, full run); restore of every mailbox's last"
echo "snapshot (mailkeep) or of the whole snapshot (restic) into an empty directory."
echo
echo "| tool | repository | backup s | backup MiB/s | restore s | restore MiB/s | backup vs mailkeep local | restore vs mailkeep local |"
echo "|---|---|---|---|---|---|---|---|"
for tool in mailkeep-local mailkeep-s3 restic-local restic-s3; do
	awk -v t="$tool" -v b="${BACKUP[$tool]}" -v r="${RESTORE[$tool]}" \
	    -v bl="${BACKUP[mailkeep-local]}" -v rl="${RESTORE[mailkeep-local]}" \
	    -v m="$mib" 'BEGIN {
		split(t, p, "-");
		printf "| %s | %s | %.2f | %.1f | %.2f | %.1f | %.2f | %.2f |\n",
		    p[1], p[2] == "s3" ? "Ceph RGW (S3)" : "local directory",
		    b, m / b, r, m / r, b / bl, r / rl }'
done

if [ -n "$BANDWIDTH" ]; then
	conf=$(mk_conf bw "s3:$S3_ENDPOINT/$S3_BUCKET/bw")
	echo "bandwidth_limit = $BANDWIDTH" >>"$conf"
	"$MAILKEEP" -c "$conf" repo init >/dev/null 2>&1
	/usr/bin/time -f %e -o "$DATA/work/bw.time" \
	    "$MAILKEEP" -c "$conf" --json backup run >"$DATA/work/bw.json"
	python3 - "$DATA/work/bw.json" "$(cat "$DATA/work/bw.time")" "$BANDWIDTH" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
stored = sum(m["stored_bytes"] for m in doc["mailboxes"])
secs = float(sys.argv[2])
print()
print(f"With bandwidth_limit = {sys.argv[3]}: {stored / 1048576:.1f} MiB stored "
      f"in {secs:.2f} s, {stored / 1048576 / secs:.2f} MiB/s.")
PY
fi
