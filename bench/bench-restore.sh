#!/usr/bin/env bash
# bench/bench-restore.sh: `mailkeep restore` beside `restic restore` of the
# same data, backed up in the same run, timed with hyperfine (medians).
#
#   bench/bench-restore.sh [--phases "one big"] [--runs N]
#                          [--mailboxes N] [--big-bytes SIZE] [DATA_DIR]
#
# one: a store of --mailboxes mailboxes (default 1000, about 100 messages
#      each, as bench-backup.sh makes it) backed up by both tools; then
#      finding one message (mailkeep ls --search, restic find) and
#      restoring it into an empty directory (mailkeep restore --message,
#      restic restore --include of its file).
# big: one mailbox of about --big-bytes (default 1G) of mail, backed up
#      by both tools, restored whole into an empty directory.
#
# DATA_DIR (default ./bench-data/restore) holds the stores (made once,
# reused), the repositories and the restored trees; put it on a tmpfs to
# time the tools rather than this machine's disk.  Encryption on for
# both (mailkeep's key file, restic's password), zstd level 3 (restic
# --compression auto).  mailkeep makes every restored file durable
# before it is visible (syncfs per batch, then rename); restic does not
# sync.  A markdown fragment for docs/benchmarks.md goes to stdout,
# progress to stderr, hyperfine's JSON to DATA_DIR/*.json.
#
# Environment: MAILKEEP (default build-bench/mailkeep of this repository).
# Needs: python3, restic, hyperfine.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PHASES="one big"
RUNS=5
MAILBOXES=1000
BIG_BYTES=1G
DATA=./bench-data/restore

while [ $# -gt 0 ]; do
	case $1 in
	--phases) PHASES=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--mailboxes) MAILBOXES=$2; shift ;;
	--big-bytes) BIG_BYTES=$2; shift ;;
	-*) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
	*) DATA=$1 ;;
	esac
	shift
done

log() { printf 'bench-restore: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

MAILKEEP=${MAILKEEP:-$REPO/build-bench/mailkeep}
[ -x "$MAILKEEP" ] || die "no $MAILKEEP: build it (see bench/README.md)"
for t in python3 restic hyperfine; do
	command -v "$t" >/dev/null || die "$t is needed"
done
mkdir -p "$DATA"
DATA=$(realpath "$DATA")
GEN=$REPO/bench/gen-corpus.py
export RESTIC_PASSWORD=bench-restore-password

# Back up store $1 with both tools into $DATA/$2-*, once.
backup_both() {
	local store=$1 name=$2 state=$DATA/$2-mk repo=$DATA/$2-restic
	if [ ! -f "$state/.done" ]; then
		rm -rf "$state"
		log "$name: mailkeep backup"
		"$MAILKEEP" --store "$store" --state "$state" repo init >/dev/null
		"$MAILKEEP" --store "$store" --state "$state" backup run >/dev/null
		touch "$state/.done"
	fi
	if [ ! -f "$repo/.done" ]; then
		rm -rf "$repo"
		log "$name: restic backup"
		restic init --repo "$repo" >/dev/null
		restic --repo "$repo" --cache-dir "$DATA/restic-cache" backup \
		    --compression auto --quiet "$store"
		touch "$repo/.done"
	fi
}

# The newest snapshot id of mailbox $2 in state $1.
snapshot_of() {
	"$MAILKEEP" --store "$3" --state "$1" --json snapshots "$2" |
	    python3 -c 'import json,sys; print(max(s["id"] for s in json.load(sys.stdin)["snapshots"]))'
}

# Median and mean of each command of hyperfine JSON $1, as table rows
# "| label | median | min to max | ratio to the first |".
rows() {
	python3 - "$@" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
labels = sys.argv[2:]
base = res[0]["median"]
for r, label in zip(res, labels):
    print(f"| {label} | {r['median']:.3f} s | {r['min']:.3f} s to {r['max']:.3f} s "
          f"| {len(r['times'])} | {r['median'] / base:.2f}x |")
EOF
}

header() {
	echo "| command | median | min to max | runs | vs mailkeep |"
	echo "|---|---:|---:|---:|---:|"
}

echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores."
echo "Versions: mailkeep $(git -C "$REPO" describe --always --dirty), $(restic version | cut -d' ' -f1-2)."
echo

for phase in $PHASES; do
	case $phase in
	one)
		store=$DATA/store-$MAILBOXES
		if [ ! -f "$DATA/store-$MAILBOXES.json" ]; then
			log "generating $store"
			rm -rf "$store"
			python3 "$GEN" --out "$store" --mailboxes "$MAILBOXES" \
			    --messages-per-mailbox 100 --attachment-share 0.01 \
			    --json >"$store.json.tmp"
			mv "$store.json.tmp" "$store.json"
		fi
		backup_both "$store" one
		# The message: the first file of cur/ of the first mailbox.
		mdir=$(find "$store" -mindepth 3 -maxdepth 3 -name Maildir | sort | sed -n 1p)
		user=${mdir%/Maildir}
		mailbox=${user##*/}@$(basename "$(dirname "$user")")
		file=$(find "$mdir/cur" -type f | sort | sed -n 1p)
		base=$(basename "$file")
		base=${base%%[:,]*}
		msgid=$(sed -n 's/^Message-I[Dd]: *<\{0,1\}\([^>]*\)>\{0,1\}.*/\1/p' "$file" | sed -n 1p)
		snap=$(snapshot_of "$DATA/one-mk" "$mailbox" "$store")
		total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$store.json")
		t=$DATA/one-target
		MK="$MAILKEEP --store $store --state $DATA/one-mk"
		RS="restic --repo $DATA/one-restic --cache-dir $DATA/restic-cache"
		log "one: finding and restoring $mailbox $base ($total messages in the repository)"
		hyperfine --warmup 1 --runs "$RUNS" -N --export-json "$DATA/one-find.json" \
		    "$MK ls $mailbox --snapshot $snap --search message-id:$msgid" \
		    "$RS find --json $base*" >&2
		hyperfine --warmup 1 --runs "$RUNS" --export-json "$DATA/one-restore.json" \
		    --prepare "rm -rf $t" \
		    "$MK restore $mailbox --snapshot $snap --message $base --to $t" \
		    "$RS restore latest --target $t --include $file" >&2
		cat <<EOF
**Finding and restoring one message** out of a repository of $total
messages (\`bench/gen-corpus.py --mailboxes $MAILBOXES
--messages-per-mailbox 100 --attachment-share 0.01\`, one backup by
each tool):

    mailkeep ls MAILBOX --snapshot ID --search message-id:MSGID
    restic find --json BASE*
    rm -rf T; mailkeep restore MAILBOX --snapshot ID --message BASE --to T
    rm -rf T; restic restore latest --target T --include FILE

EOF
		header
		rows "$DATA/one-find.json" "mailkeep ls --search" "restic find"
		rows "$DATA/one-restore.json" "mailkeep restore --message" \
		    "restic restore --include"
		echo
		;;
	big)
		store=$DATA/store-big
		if [ ! -f "$store.json" ]; then
			log "generating $store"
			rm -rf "$store"
			python3 "$GEN" --out "$store" --mailboxes 1 \
			    --messages-per-mailbox 120000 --attachment-share 0.04 \
			    --max-bytes "$BIG_BYTES" --json >"$store.json.tmp"
			mv "$store.json.tmp" "$store.json"
		fi
		backup_both "$store" big
		mdir=$(find "$store" -mindepth 3 -maxdepth 3 -name Maildir | sed -n 1p)
		user=${mdir%/Maildir}
		mailbox=${user##*/}@$(basename "$(dirname "$user")")
		snap=$(snapshot_of "$DATA/big-mk" "$mailbox" "$store")
		read -r msgs bytes < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["messages"], d["bytes"])' "$store.json")
		t=$DATA/big-target
		log "big: restoring $mailbox ($msgs messages, $bytes bytes)"
		hyperfine --runs "$RUNS" --export-json "$DATA/big-restore.json" \
		    --prepare "rm -rf $t" \
		    "$MAILKEEP --store $store --state $DATA/big-mk restore $mailbox --snapshot $snap --to $t" \
		    "restic --repo $DATA/big-restic --cache-dir $DATA/restic-cache restore latest --target $t" >&2
		cat <<EOF
**Restoring a whole mailbox** of $msgs messages, $bytes bytes
(\`bench/gen-corpus.py --mailboxes 1 --messages-per-mailbox 120000
--attachment-share 0.04 --max-bytes $BIG_BYTES\`) into an empty directory:

    rm -rf T; mailkeep restore MAILBOX --snapshot ID --to T
    rm -rf T; restic restore latest --target T

EOF
		header
		rows "$DATA/big-restore.json" "mailkeep restore" "restic restore"
		echo
		;;
	*) die "unknown phase $phase" ;;
	esac
done
