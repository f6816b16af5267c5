#!/usr/bin/env bash
# bench/bench-dict.sh: what the zstd dictionaries gain.  The same generated
# store is backed up into new repositories with `[backup] dictionary =
# auto` and `= off`, alternating, in one run of the script: first-backup
# wall and CPU time (the auto runs include sampling the store and training
# the dictionaries), repository size, the stored bytes of header blobs and
# of whole bodies, and the time to restore the first mailboxes of the store
# from each repository (decompression with and without dictionaries).
#
#   bench/bench-dict.sh [--mailboxes N] [--runs N] [--restores N] [DATA_DIR]
#
# DATA_DIR (default ./bench-data/dict) receives the store (made once,
# reused), the repositories and the raw results (DATA_DIR/results: "mode
# run backup_s backup_cpu_s repo_bytes header_raw header_stored body_raw
# body_stored restore_s restore_cpu_s").  The markdown table goes to
# stdout.  --mailboxes (default 200, about 20k messages), --runs (default
# 3) first backups per mode, --restores (default 20) mailboxes restored.
# Encryption on, zstd level 3 (the defaults).
#
# Environment: MAILKEEP (default build-bench/mailkeep of this repository).
# Needs: python3, sqlite3, /usr/bin/time.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAILBOXES=200
RUNS=3
RESTORES=20
DATA=./bench-data/dict

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--mailboxes) MAILBOXES=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--restores) RESTORES=$2; shift ;;
	-h|--help) usage ;;
	-*) echo "bench-dict: unknown option $1" >&2; usage ;;
	*) DATA=$1 ;;
	esac
	shift
done

MAILKEEP=${MAILKEEP:-$REPO/build-bench/mailkeep}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
STORE=$DATA/store
RESULTS=$DATA/results

if [ ! -d "$STORE" ]; then
	echo "bench-dict: generating the store" >&2
	python3 "$REPO/bench/gen-corpus.py" --out "$STORE" \
	    --mailboxes "$MAILBOXES" --messages-per-mailbox 100 \
	    --attachment-share 0.01 --seed 1 >&2
fi
# The first --restores mailboxes, as addresses.
mapfile -t ADDRESSES < <(cd "$STORE" && find . -mindepth 3 -maxdepth 3 \
    -name Maildir -type d | sort | head -n "$RESTORES" |
    awk -F/ '{ print $3 "@" $2 }')

: >"$RESULTS"
for run in $(seq 1 "$RUNS"); do
	for mode in auto off; do
		state=$DATA/$mode-$run
		rm -rf "$state" "$DATA/out"
		mkdir -p "$state" "$DATA/out"
		conf=$state/mailkeep.conf
		printf '[store]\nroot = %s\n[general]\nstate_dir = %s\n[backup]\ndictionary = %s\n' \
		    "$STORE" "$state" "$mode" >"$conf"
		"$MAILKEEP" -c "$conf" repo init >/dev/null 2>&1
		echo "bench-dict: $mode, run $run: backup" >&2
		/usr/bin/time -f '%e %U %S' -o "$state/time.backup" \
		    "$MAILKEEP" -c "$conf" backup run --offline >/dev/null
		bytes=$(du -sb "$state/repository" | cut -f1)
		# Stored and raw bytes of header blobs (type 1) and whole
		# bodies (type 2).
		blobs=$(sqlite3 -separator ' ' "$state/catalog.db" \
		    "SELECT (SELECT ifnull(sum(raw_length),0) FROM blob WHERE type = 1),
			    (SELECT ifnull(sum(length),0) FROM blob WHERE type = 1),
			    (SELECT ifnull(sum(raw_length),0) FROM blob WHERE type = 2),
			    (SELECT ifnull(sum(length),0) FROM blob WHERE type = 2)")
		echo "bench-dict: $mode, run $run: restore" >&2
		/usr/bin/time -f '%e %U %S' -o "$state/time.restore" \
		    bash -c 'mk=$1; conf=$2; out=$3; shift 3
			for a in "$@"; do
				"$mk" -c "$conf" restore "$a" \
				    --to "$out/$a" --offline >/dev/null ||
				    exit 1
			done' _ "$MAILKEEP" "$conf" "$DATA/out" "${ADDRESSES[@]}"
		read -r bw bu bs <"$state/time.backup"
		read -r rw ru rs <"$state/time.restore"
		echo "$mode $run $bw $(echo "$bu + $bs" | bc) $bytes $blobs" \
		    "$rw $(echo "$ru + $rs" | bc)" >>"$RESULTS"
		rm -rf "$DATA/out"
	done
done

python3 - "$RESULTS" <<'EOF'
import statistics
import sys

rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[2:]])
med = {m: [statistics.median(r[i] for r in v) for i in range(len(v[0]))]
       for m, v in rows.items()}
a, o = med["auto"], med["off"]
n = len(rows["auto"])


def mib(x):
    return f"{x / 2**20:.1f} MiB"


print(f"| (median of {n} runs each) | dictionary = auto | dictionary = off | auto / off |")
print("|---|---|---|---|")
print(f"| first backup, wall time | {a[0]:.1f} s | {o[0]:.1f} s | {a[0] / o[0]:.2f} |")
print(f"| first backup, CPU (user + sys) | {a[1]:.1f} s | {o[1]:.1f} s | {a[1] / o[1]:.2f} |")
print(f"| repository size | {mib(a[2])} | {mib(o[2])} | {a[2] / o[2]:.3f} |")
print(f"| header blobs stored (raw {mib(a[3])}) | {mib(a[4])} | {mib(o[4])} | {a[4] / o[4]:.3f} |")
print(f"| whole bodies stored (raw {mib(a[5])}) | {mib(a[6])} | {mib(o[6])} | {a[6] / o[6]:.3f} |")
print(f"| restore of the first mailboxes, wall time | {a[7]:.2f} s | {o[7]:.2f} s | {a[7] / o[7]:.2f} |")
print(f"| restore, CPU (user + sys) | {a[8]:.2f} s | {o[8]:.2f} s | {a[8] / o[8]:.2f} |")
EOF
