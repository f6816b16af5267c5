#!/usr/bin/env bash
# bench/bench-restore.sh: `mailkeep restore` beside `restic restore` and
# `borg extract` of the same data, backed up in the same run, timed with
# hyperfine (medians).
#
#   bench/bench-restore.sh [--phases "one big"] [--runs N] [--mailboxes N]
#                          [--attachment-share F] [--big-bytes SIZE]
#                          [--tools "restic borg"] [DATA_DIR]
#
# one: a store of --mailboxes mailboxes (default 1000, about 100 messages
#      each, as bench-backup.sh makes it; --attachment-share, default
#      0.01, of them with a large attachment) backed up by each tool;
#      then finding one message (mailkeep ls --search, restic find, borg
#      list with a pattern) and restoring it into an empty directory
#      (mailkeep restore --message, restic restore --include, borg
#      extract of its file).
# big: one mailbox of about --big-bytes (default 1G) of mail, backed up
#      by each tool, restored whole into an empty directory.
# --tools: the peers beside mailkeep (default both).
#
# DATA_DIR (default ./bench-data/restore) holds the stores (made once,
# reused), the repositories and the restored trees; put it on a tmpfs to
# time the tools rather than this machine's disk.  Encryption on for
# all (mailkeep's key file, restic's password, borg repokey-blake2), zstd
# level 3 (restic --compression auto, borg --compression zstd,3).
# mailkeep makes every restored file durable before it is visible
# (syncfs per batch, then rename); restic and borg do not sync.  A
# markdown fragment for docs/benchmarks.md goes to stdout, progress to
# stderr, hyperfine's JSON to DATA_DIR/*.json.
#
# Environment: MAILKEEP (default build-bench/mailkeep of this repository).
# Needs: python3, restic, borgbackup, hyperfine.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PHASES="one big"
RUNS=5
MAILBOXES=1000
ATTACH=0.01
BIG_BYTES=1G
TOOLS="restic borg"
DATA=./bench-data/restore

while [ $# -gt 0 ]; do
	case $1 in
	--phases) PHASES=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--mailboxes) MAILBOXES=$2; shift ;;
	--attachment-share) ATTACH=$2; shift ;;
	--tools) TOOLS=$2; shift ;;
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
for t in python3 hyperfine $TOOLS; do
	command -v "$t" >/dev/null || die "$t is needed"
done
has() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }
mkdir -p "$DATA"
DATA=$(realpath "$DATA")
GEN=$REPO/bench/gen-corpus.py
export RESTIC_PASSWORD=bench-restore-password
export BORG_PASSPHRASE=bench-restore-password BORG_BASE_DIR=$DATA/borg-base

# Back up store $1 with each tool into $DATA/$2-*, once.
backup_all() {
	local store=$1 name=$2 state=$DATA/$2-mk repo=$DATA/$2-restic
	local borg=$DATA/$2-borg
	if [ ! -f "$state/.done" ]; then
		rm -rf "$state"
		log "$name: mailkeep backup"
		"$MAILKEEP" --store "$store" --state "$state" repo init >/dev/null
		"$MAILKEEP" --store "$store" --state "$state" backup run >/dev/null
		touch "$state/.done"
	fi
	if has restic && [ ! -f "$repo/.done" ]; then
		rm -rf "$repo"
		log "$name: restic backup"
		restic init --repo "$repo" >/dev/null
		restic --repo "$repo" --cache-dir "$DATA/restic-cache" backup \
		    --compression auto --quiet "$store"
		touch "$repo/.done"
	fi
	# borg keeps paths without the leading slash, in the archive "a"
	if has borg && [ ! -f "$borg.done" ]; then
		rm -rf "$borg"
		log "$name: borg backup"
		borg init -e repokey-blake2 "$borg"
		borg create --compression zstd,3 "$borg::a" "$store"
		touch "$borg.done"
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
versions="mailkeep $(git -C "$REPO" describe --always --dirty)"
has restic && versions+=", $(restic version | cut -d' ' -f1-2)"
has borg && versions+=", $(borg --version)"
echo "Versions: $versions."
echo

for phase in $PHASES; do
	case $phase in
	one)
		store=$DATA/store-$MAILBOXES
		if [ ! -f "$DATA/store-$MAILBOXES.json" ]; then
			log "generating $store"
			rm -rf "$store"
			python3 "$GEN" --out "$store" --mailboxes "$MAILBOXES" \
			    --messages-per-mailbox 100 --attachment-share "$ATTACH" \
			    --json >"$store.json.tmp"
			mv "$store.json.tmp" "$store.json"
		fi
		backup_all "$store" one
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
		find_cmds=("$MK ls $mailbox --snapshot $snap --search message-id:$msgid")
		one_cmds=("$MK restore $mailbox --snapshot $snap --message $base --to $t")
		labels_find=("mailkeep ls --search")
		labels_one=("mailkeep restore --message")
		if has restic; then
			find_cmds+=("$RS find --json $base*")
			one_cmds+=("$RS restore latest --target $t --include $file")
			labels_find+=("restic find")
			labels_one+=("restic restore --include")
		fi
		if has borg; then
			find_cmds+=("borg list --short $DATA/one-borg::a re:/$base")
			one_cmds+=("cd $t && borg extract $DATA/one-borg::a ${file#/}")
			labels_find+=("borg list re:BASE")
			labels_one+=("borg extract FILE")
		fi
		hyperfine --warmup 1 --runs "$RUNS" --export-json "$DATA/one-find.json" \
		    "${find_cmds[@]}" >&2
		hyperfine --warmup 1 --runs "$RUNS" --export-json "$DATA/one-restore.json" \
		    --prepare "rm -rf $t; mkdir $t" "${one_cmds[@]}" >&2
		cat <<EOF
**Finding and restoring one message** out of a repository of $total
messages (\`bench/gen-corpus.py --mailboxes $MAILBOXES
--messages-per-mailbox 100 --attachment-share $ATTACH\`, one backup by
each tool):

    mailkeep ls MAILBOX --snapshot ID --search message-id:MSGID
    rm -rf T; mkdir T; mailkeep restore MAILBOX --snapshot ID --message BASE --to T
EOF
		has restic && cat <<EOF
    restic find --json BASE*
    rm -rf T; mkdir T; restic restore latest --target T --include FILE
EOF
		has borg && cat <<EOF
    borg list --short REPO::a re:/BASE
    rm -rf T; mkdir T; cd T && borg extract REPO::a FILE
EOF
		echo
		header
		rows "$DATA/one-find.json" "${labels_find[@]}"
		rows "$DATA/one-restore.json" "${labels_one[@]}"
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
		backup_all "$store" big
		mdir=$(find "$store" -mindepth 3 -maxdepth 3 -name Maildir | sed -n 1p)
		user=${mdir%/Maildir}
		mailbox=${user##*/}@$(basename "$(dirname "$user")")
		snap=$(snapshot_of "$DATA/big-mk" "$mailbox" "$store")
		read -r msgs bytes < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["messages"], d["bytes"])' "$store.json")
		t=$DATA/big-target
		log "big: restoring $mailbox ($msgs messages, $bytes bytes)"
		big_cmds=("$MAILKEEP --store $store --state $DATA/big-mk restore $mailbox --snapshot $snap --to $t")
		labels_big=("mailkeep restore")
		if has restic; then
			big_cmds+=("restic --repo $DATA/big-restic --cache-dir $DATA/restic-cache restore latest --target $t")
			labels_big+=("restic restore")
		fi
		if has borg; then
			big_cmds+=("cd $t && borg extract $DATA/big-borg::a")
			labels_big+=("borg extract")
		fi
		hyperfine --runs "$RUNS" --export-json "$DATA/big-restore.json" \
		    --prepare "rm -rf $t; mkdir $t" "${big_cmds[@]}" >&2
		cat <<EOF
**Restoring a whole mailbox** of $msgs messages, $bytes bytes
(\`bench/gen-corpus.py --mailboxes 1 --messages-per-mailbox 120000
--attachment-share 0.04 --max-bytes $BIG_BYTES\`) into an empty directory:

    rm -rf T; mkdir T; mailkeep restore MAILBOX --snapshot ID --to T
EOF
		has restic && echo "    rm -rf T; mkdir T; restic restore latest --target T"
		has borg && echo "    rm -rf T; mkdir T; cd T && borg extract REPO::a"
		echo
		header
		rows "$DATA/big-restore.json" "${labels_big[@]}"
		echo
		;;
	*) die "unknown phase $phase" ;;
	esac
done
