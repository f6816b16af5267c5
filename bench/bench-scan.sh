#!/usr/bin/env bash
# bench/bench-scan.sh: time and peak memory of `mailkeep scan`, beside `du`
# and `doveadm quota recalc`, on stores of up to 10,000 mailboxes and
# 1,000,000 messages, with a warm and a cold page cache.
#
#   bench/bench-scan.sh [--clean] [--runs N] [--cold-runs N] [--no-cold]
#                       [--no-dovecot] [--no-callgrind] [--tmpfs DIR | --no-tmpfs]
#                       [DATA_DIR]
#
# DATA_DIR (default ./bench-data/scan) receives the generated stores, the
# catalogs and the raw results (DATA_DIR/results).  Stores are made once
# and reused by later runs; --clean deletes DATA_DIR at the end.  The
# markdown fragment for docs/benchmarks.md goes to stdout, progress to
# stderr.  See bench/README.md.
#
# The two 1M-message stores are also made on a tmpfs (--tmpfs DIR, default
# /dev/shm; about 2.5 GiB of RAM) for a warm figure that no page-cache
# eviction can disturb; that copy is always removed at the end.
#
# Environment: MAILKEEP (default build-bench/mailkeep of this repository).
#
# Needs: python3, hyperfine, /usr/bin/time (package time), valgrind; for the
# Dovecot comparison root and Debian's dovecot-core (2.3).  Cold-cache runs
# need root (they write /proc/sys/vm/drop_caches).
#
# Stores (message names are Dovecot's; sizes come from the names, so the
# synthetic stores use empty files; names without ,S= get real small files):
#   s1k   1,000 mailboxes x 100 messages, every name with ,S= and ,W=
#   s10k  10,000 x 100 (1M messages), every name with ,S= and ,W=
#   m10k  10,000 x 100 (1M messages), 10% legacy names without ,S=/,W=
#   d1k   1,000 x 1,000 (1M messages), every name with ,S= and ,W=
#   dc1k  like s1k, owned by the mail user and indexed by a private Dovecot
#   real  bench/gen-corpus.py --mailboxes 100 (realistic contents), ditto

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=10
COLD_RUNS=3
DO_COLD=1
DO_DOVECOT=1
DO_CALLGRIND=1
TMPFS=/dev/shm
CLEAN=0
DATA=./bench-data/scan
MIN_FREE_KIB=$((5 * 1024 * 1024))

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--clean) CLEAN=1 ;;
	--runs) RUNS=$2; shift ;;
	--cold-runs) COLD_RUNS=$2; shift ;;
	--no-cold) DO_COLD=0 ;;
	--no-dovecot) DO_DOVECOT=0 ;;
	--no-callgrind) DO_CALLGRIND=0 ;;
	--tmpfs) TMPFS=$2; shift ;;
	--no-tmpfs) TMPFS= ;;
	-h|--help) usage ;;
	-*) echo "bench-scan: unknown option $1" >&2; usage ;;
	*) DATA=$1 ;;
	esac
	shift
done

log() { printf 'bench-scan: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# A path as the fragment shows it: relative to the current directory
# when it is below it.
show() {
	local p
	p=$(realpath -m "$1")
	case $p in
	"$PWD") echo . ;;
	"$PWD"/*) echo "./${p#"$PWD"/}" ;;
	*) echo "$p" ;;
	esac
}

MK=${MAILKEEP:-$REPO/build-bench/mailkeep}
[ -x "$MK" ] || die "$MK not found; build it first:
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2"
MK_SHOW=$(show "$MK")

# --- tools -------------------------------------------------------------------
missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v hyperfine >/dev/null || missing+=(hyperfine)
[ -x /usr/bin/time ] || missing+=(time)
[ $DO_CALLGRIND = 0 ] || command -v valgrind >/dev/null || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
	die "missing: ${missing[*]}; install with: apt-get install ${missing[*]}"
fi
if [ $DO_DOVECOT = 1 ] && { [ "$(id -u)" != 0 ] || ! command -v doveadm >/dev/null; }; then
	log "no root or no doveadm: skipping the Dovecot comparison"
	DO_DOVECOT=0
fi

# --- disk space --------------------------------------------------------------
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
DATA_SHOW=$(show "$DATA")
RES=$DATA/results
exec 9>"$DATA/.lock"
flock -n 9 || die "another bench-scan.sh is using $(show "$DATA")"
mkdir -p "$RES" "$DATA/state"
free_kib=$(df -Pk "$DATA" | awk 'NR == 2 { print $4 }')
need_gen=0
for s in s1k s10k m10k d1k; do [ -e "$DATA/$s.json" ] || need_gen=1; done
if [ $need_gen = 1 ] && [ "$free_kib" -lt $MIN_FREE_KIB ]; then
	die "only $((free_kib / 1024)) MiB free on the file system of $(show "$DATA");
the stores need about 4 GiB (mostly directory blocks and inodes) and this
script wants 5 GiB free.  Free some space or pass another DATA_DIR."
fi

# --- embedded helpers (python3, standard library only) -------------------------
PY=$(cat <<'EOF'
import json, math, multiprocessing, os, random, shutil, statistics, sys

NOW = 1793491200                      # 2026-11-01T00:00:00Z, as gen-corpus.py
DAY = 86400
FOLDERS = ("", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive")
WEIGHTS = (50, 16, 1, 6, 4, 23)
HOSTS = ("imap1", "imap2", "mail-be01", "mail-be02", "dovecot3")
LEGACY_HOSTS = ("oldmail", "courier1", "mx0")
FLAGS = ("S", "S", "S", "S", "RS", "FS", "", "DS")
LINE = b"Legacy message body line for the mailkeep scan benchmark ....\n"
BODY = LINE * 128


def gen_mailbox(job):
    """One Maildir++ mailbox: INBOX and five folders with cur/ new/ tmp/,
    n messages named the way Dovecot names them; a share of legacy names
    (no ,S=/,W=) with real contents.  Sized files are empty: a scan reads
    sizes from the names."""
    out, seed, i, n_domains, per, unsized_share = job
    rng = random.Random(seed * 1000003 + i)
    root = os.path.join(out, "dom%04d.example" % (i % n_domains),
                        "user%05d" % i, "Maildir")
    os.makedirs(os.path.dirname(os.path.dirname(root)), 0o700, exist_ok=True)
    os.mkdir(os.path.dirname(root), 0o700)
    os.mkdir(root, 0o700)
    for f in FOLDERS:
        path = os.path.join(root, f)
        if f:
            os.mkdir(path, 0o700)
            os.close(os.open(os.path.join(path, "maildirfolder"),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for sub in ("cur", "new", "tmp"):
            os.mkdir(os.path.join(path, sub), 0o700)
    names, unsized, nbytes = set(), 0, 0
    for j in range(per):
        folder = rng.choices(FOLDERS, WEIGHTS)[0]
        in_new = folder == "" and rng.random() < 0.03
        t = NOW - rng.randrange(730 * DAY)
        if rng.random() < unsized_share:
            base = "%d.%d_%d.%s" % (t, rng.randrange(1000, 99999), j,
                                    rng.choice(LEGACY_HOSTS))
            size = rng.randrange(200, 4000)
            data = BODY[:size - 1] + b"\n"
            unsized += 1
        else:
            while True:
                size = max(300, int(rng.lognormvariate(math.log(6800), 0.8)))
                base = "%d.M%dP%d.%s,S=%d,W=%d" % (
                    t, rng.randrange(1000000), rng.randrange(1000, 99999),
                    rng.choice(HOSTS), size, size + size // 45)
                if base not in names:
                    break
            data = b""
        names.add(base)
        name = base if in_new else base + ":2," + rng.choice(FLAGS)
        path = os.path.join(root, folder, "new" if in_new else "cur", name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if data:
            os.write(fd, data)
        os.close(fd)
        nbytes += size
    return per, unsized, nbytes


def gen(out, mailboxes, per, unsized_share, seed=1):
    mailboxes, per, unsized_share = int(mailboxes), int(per), float(unsized_share)
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp, 0o755)
    n_domains = max(1, mailboxes // 50)
    jobs = [(tmp, seed, i, n_domains, per, unsized_share) for i in range(mailboxes)]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        done = list(pool.imap_unordered(gen_mailbox, jobs, chunksize=50))
    os.rename(tmp, out)
    print(json.dumps({"mailboxes": mailboxes, "per_mailbox": per,
                      "unsized_share": unsized_share, "seed": seed,
                      "messages": sum(d[0] for d in done),
                      "unsized": sum(d[1] for d in done),
                      "bytes": sum(d[2] for d in done)}))


def count(jsonfile):
    """Mailboxes and messages of a `mailkeep --json scan` output."""
    with open(jsonfile) as f:
        doc = json.load(f)
    print(len(doc["mailboxes"]), sum(m["messages"] for m in doc["mailboxes"]))


def serve(repo, store):
    """A private Dovecot (tests/integration/mkenv.py) over store, one user
    per mailbox; prints the config path, serves until stdin is closed."""
    sys.path.insert(0, os.path.join(repo, "tests", "integration"))
    from mkenv import Dovecot
    dc = Dovecot(quota_backend="maildir")
    try:
        with open(dc.conf) as f:
            conf = f.read()
        with open(dc.conf, "w") as f:
            f.write(conf.replace(os.path.join(dc.tmp, "vmail"), store))
        for dom in sorted(os.listdir(store)):
            for user in sorted(os.listdir(os.path.join(store, dom))):
                if os.path.isdir(os.path.join(store, dom, user, "Maildir")):
                    dc.add_user("%s@%s" % (user, dom), "bench")
        dc.start(timeout=60)
        print(dc.conf, flush=True)
        sys.stdin.read()
    finally:
        dc.stop()
        dc.cleanup()


def rss(*files):
    """Median of the `Maximum resident set size` of /usr/bin/time -v logs."""
    vals = []
    for fn in files:
        with open(fn) as f:
            for line in f:
                if "Maximum resident set size" in line:
                    vals.append(int(line.rsplit(":", 1)[1]))
    print(int(statistics.median(vals)))


def cg_total(fn):
    """Instructions (Ir) of a callgrind output file."""
    with open(fn) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                print(line.split()[1])
                return
    raise SystemExit("no summary in " + fn)


def fmt_s(x):
    return "%.3f s" % x if x < 10 else "%.1f s" % x


def report(res):
    """The markdown fragment, from the files in the results directory."""
    meta = json.load(open(os.path.join(res, "meta.json")))
    out = []
    w = out.append
    w("Measured %s with `bench/bench-scan.sh` (mailkeep %s, Release build),"
      % (meta["date"], meta["commit"]))
    w("on %s. Each figure below comes from the command shown next to it;" % meta["machine"])
    w("`$MK` is `%s`, `$DATA` is `%s`." % (meta["mk"], meta["data"]))
    w("Load average (1 min) at the start and at the end: %s and %s." % (
        meta["load_start"], meta["load_end"]))
    if meta.get("damon"):
        w("DAMON proactive reclaim was on (it pages out file pages that stay idle")
        w("for a while), so runs on disk called warm may find part of the store")
        w("evicted; the tmpfs runs cannot be.")
    w("")
    w("Stores (synthetic ones from the generator inside the script, empty files")
    w("whose Dovecot names carry `,S=` and `,W=`; legacy names without them get")
    w("real files of 200 to 4000 bytes):")
    w("")
    w("| store | mailboxes | messages | names without `,S=` | made by |")
    w("|---|---:|---:|---:|---|")
    for s in meta["stores"]:
        w("| `%s` | %s | %s | %s | %s |" % (s["name"], f"{s['mailboxes']:,}",
          f"{s['messages']:,}", f"{s['unsized']:,}", s["how"]))
    w("")
    for group in meta["groups"]:
        fn = os.path.join(res, group["file"])
        if not os.path.exists(fn):
            continue
        doc = json.load(open(fn))
        w("**%s**" % group["title"])
        w("")
        w("```")
        for r in doc["results"]:
            w(r["command"])
        w("```")
        w("")
        base = doc["results"][0]["median"]
        w("| command | median | min to max | runs | vs mailkeep | CPU user + sys (mean) |")
        w("|---|---:|---:|---:|---:|---:|")
        for r in doc["results"]:
            w("| %s | %s | %s to %s | %d | %.2f x | %s + %s |" % (
                r["command"].split()[0].replace("$MK", "mailkeep"),
                fmt_s(r["median"]), fmt_s(r["min"]), fmt_s(r["max"]),
                len(r["times"]), r["median"] / base, fmt_s(r["user"]),
                fmt_s(r["system"])))
        w("")
        if group.get("note"):
            w(group["note"])
            w("")
    if meta.get("tmpfs_note"):
        w(meta["tmpfs_note"])
        w("")
    if meta.get("cold_note"):
        w(meta["cold_note"])
        w("")
    if meta.get("first_recalc"):
        w(meta["first_recalc"].strip())
        w("")
    if meta.get("mem"):
        w("**Peak memory** (median of 3 runs each, warm cache):")
        w("")
        w("```")
        w("cd $DATA; /usr/bin/time -v $MK --store <store> --state state/<store> --json scan > /dev/null")
        w("```")
        w("")
        w("| store | mailboxes | messages | max RSS | wall time (last run) |")
        w("|---|---:|---:|---:|---:|")
        for m in meta["mem"]:
            w("| `%s` | %s | %s | %.1f MiB | %s |" % (m["store"], f"{m['mailboxes']:,}",
              f"{m['messages']:,}", m["rss_kib"] / 1024, m["wall"]))
        w("")
    if meta.get("cg"):
        w("**Instructions** (user space only, `valgrind --tool=callgrind`; the kernel's")
        w("getdents/openat work is not counted):")
        w("")
        w("```")
        w("cd $DATA; valgrind --tool=callgrind --callgrind-out-file=cg.<store> \\")
        w("    $MK --store <store> --state state/<store> --json scan > /dev/null")
        w("```")
        w("")
        w("| store | messages | instructions | per message |")
        w("|---|---:|---:|---:|")
        for c in meta["cg"]:
            w("| `%s` | %s | %s | %.0f |" % (c["store"], f"{c['messages']:,}",
              f"{c['ir']:,}", c["ir"] / c["messages"]))
        if len(meta["cg"]) >= 2:
            a, b = meta["cg"][0], meta["cg"][1]
            if b["messages"] != a["messages"] and b["mailboxes"] == a["mailboxes"]:
                w("")
                w("Marginal cost of a message with the same %s mailboxes "
                  "(`%s` minus `%s`): %.0f instructions." % (
                      f"{a['mailboxes']:,}", b["store"], a["store"],
                      (b["ir"] - a["ir"]) / (b["messages"] - a["messages"])))
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
EOF
)
py() { python3 -c "$PY" "$@"; }

LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
# the sources as they are now; the binary should have been built from them
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" --no-optional-locks status --porcelain -- lib tools include 2>/dev/null)" ]; then
	commit+=" plus uncommitted changes"
fi

# --- stores --------------------------------------------------------------------
# make_store NAME MAILBOXES PER_MAILBOX UNSIZED_SHARE
make_store() {
	local name=$1
	# a store that a Dovecot has indexed is made again, so that the first
	# doveadm run is timed on a store without Dovecot's indexes
	if [ ! -e "$DATA/$name.dovecot" ] && [ -d "$DATA/$name" ] && python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
sys.exit((d["mailboxes"], d["per_mailbox"], d["unsized_share"]) !=
         (int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))' \
	    "$DATA/$name.json" "$2" "$3" "$4" 2>/dev/null; then
		log "reusing $name"
		return
	fi
	rm -rf "${DATA:?}/$name" "$DATA/$name.partial" "$DATA/$name.json" "$DATA/$name.dovecot" \
	    "$DATA/state/$name"
	log "generating $name: $2 mailboxes x $3 messages, unsized share $4"
	local t0=$SECONDS
	py gen "$DATA/$name" "$2" "$3" "$4" >"$DATA/$name.json.tmp"
	mv "$DATA/$name.json.tmp" "$DATA/$name.json"
	log "  $name done in $((SECONDS - t0)) s: $(cat "$DATA/$name.json")"
}

make_real() {
	if [ ! -e "$DATA/real.dovecot" ] && [ -d "$DATA/real" ] && [ -e "$DATA/real.json" ]; then
		log "reusing real"
		return
	fi
	rm -rf "${DATA:?}/real" "$DATA/real.json" "$DATA/real.dovecot" "$DATA/state/real"
	log "generating real: bench/gen-corpus.py --mailboxes 100"
	python3 "$REPO/bench/gen-corpus.py" --out "$DATA/real" --mailboxes 100 \
	    --json >"$DATA/real.json.tmp"
	mv "$DATA/real.json.tmp" "$DATA/real.json"
}

make_store s1k 1000 100 0
make_store s10k 10000 100 0
make_store m10k 10000 100 0.1
make_store d1k 1000 1000 0
if [ $DO_DOVECOT = 1 ]; then
	make_store dc1k 1000 100 0
	make_real
fi

# Every scan must see every message: check the counts once per store.
declare -A MBOXES MSGS
check_store() {
	local s=$1 out
	mkdir -p "$DATA/state/$s"
	"$MK" --store "$DATA/$s" --state "$DATA/state/$s" --json scan >"$RES/scan-$s.json"
	read -r MBOXES[$s] MSGS[$s] < <(py count "$RES/scan-$s.json")
	out=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$DATA/$s.json")
	[ "${MSGS[$s]}" = "$out" ] || die "$s: mailkeep counted ${MSGS[$s]} messages, the generator wrote $out"
	log "$s: mailkeep sees ${MBOXES[$s]} mailboxes, ${MSGS[$s]} messages"
}
STORES=(s1k s10k m10k d1k)
[ $DO_DOVECOT = 1 ] && STORES+=(dc1k real)
for s in "${STORES[@]}"; do check_store "$s"; done

# --- hyperfine -------------------------------------------------------------------
cd "$DATA"
export MK
scan_cmd() { echo "\$MK --store $1 --state state/$1 --json scan"; }
# hf FILE HYPERFINE-ARGS... COMMANDS...: progress to stderr, JSON to FILE
hf() {
	local file=$1
	shift
	hyperfine --style basic --export-json "$RES/$file" "$@" >&2
}

DROP='sync; echo 3 > /proc/sys/vm/drop_caches'
COLD_NOTE=
if [ $DO_COLD = 1 ]; then
	if ! (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
		DO_COLD=0
		COLD_NOTE="Cold-cache figures could not be taken here: writing /proc/sys/vm/drop_caches failed ($( (echo 3 >/proc/sys/vm/drop_caches) 2>&1 | sed 's/.*: //' ), user $(id -un))."
	fi
fi

for s in s10k m10k; do
	log "warm: $s"
	hf "warm-$s.json" --warmup 2 --runs "$RUNS" "$(scan_cmd $s)" "du -s $s"
	if [ $DO_COLD = 1 ]; then
		log "cold: $s"
		hf "cold-$s.json" --prepare "$DROP" --runs "$COLD_RUNS" "$(scan_cmd $s)" "du -s $s"
	fi
done

# The same 1M-message stores on a tmpfs: everything stays in memory.
TMPFS_NOTE=
if [ -n "$TMPFS" ]; then
	if [ "$(stat -f -c %T "$TMPFS" 2>/dev/null)" != tmpfs ]; then
		TMPFS_NOTE="No tmpfs figures: $TMPFS is not a tmpfs."
	elif [ "$(df -Pk "$TMPFS" | awk 'NR == 2 { print $4 }')" -lt $((4 * 1024 * 1024)) ]; then
		TMPFS_NOTE="No tmpfs figures: less than 4 GiB free on $TMPFS."
	else
		TMPDATA=$(mktemp -d "$TMPFS/mailkeep-bench.XXXXXX")
		trap 'rm -rf "$TMPDATA"' EXIT
		mkdir -p "$TMPDATA/state"
		for s in s10k m10k; do
			log "tmpfs: generating $s"
			read -r mb per share < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["mailboxes"], d["per_mailbox"], d["unsized_share"])' "$DATA/$s.json")
			py gen "$TMPDATA/$s" "$mb" "$per" "$share" >/dev/null
			(cd "$TMPDATA" && "$MK" --store "$s" --state "state/$s" --json scan >/dev/null)
			log "warm on tmpfs: $s"
			(cd "$TMPDATA" && hf "tmpfs-$s.json" --warmup 2 --runs "$RUNS" \
			    "$(scan_cmd $s)" "du -s $s")
			rm -rf "${TMPDATA:?}/$s"
		done
		rm -rf "$TMPDATA"
	fi
fi

FIRST_RECALC=
if [ $DO_DOVECOT = 1 ]; then
	for s in dc1k real; do
		log "dovecot over $s"
		chown -R nobody:nogroup "$s"
		touch "$s.dovecot"
		# the mail user must reach the store
		if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$s/." 2>/dev/null; then
			die "user nobody cannot reach $(show "$DATA/$s"); make its parent directories o+x"
		fi
		coproc DCSERVE { py serve "$REPO" "$DATA/$s" 2>"$RES/dovecot-$s.log"; }
		read -r DOVECOT_CONF <&"${DCSERVE[0]}" || die "dovecot did not start, see $RES/dovecot-$s.log"
		export DOVECOT_CONF
		t0=$EPOCHREALTIME
		doveadm -c "$DOVECOT_CONF" quota recalc -A
		t1=$EPOCHREALTIME
		FIRST_RECALC+="First \`doveadm quota recalc -A\` on \`$s\` (Dovecot builds its indexes): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s. "
		hf "warm-$s.json" --warmup 1 --runs "$RUNS" "$(scan_cmd $s)" "du -s $s" \
		    'doveadm -c "$DOVECOT_CONF" quota recalc -A'
		if [ $DO_COLD = 1 ]; then
			hf "cold-$s.json" --prepare "$DROP" --runs "$COLD_RUNS" "$(scan_cmd $s)" \
			    "du -s $s" 'doveadm -c "$DOVECOT_CONF" quota recalc -A'
		fi
		eval "exec ${DCSERVE[1]}>&-"
		wait "$DCSERVE_PID" || true
	done
fi

# --- peak memory -----------------------------------------------------------------
MEM_JSON=
for s in s1k s10k d1k m10k; do
	log "peak memory: $s"
	for i in 1 2 3; do
		/usr/bin/time -v -o "$RES/time-$s.$i" "$MK" --store "$s" --state "state/$s" \
		    --json scan >/dev/null
	done
	kib=$(py rss "$RES/time-$s.1" "$RES/time-$s.2" "$RES/time-$s.3")
	wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$RES/time-$s.3")
	MEM_JSON+="{\"store\": \"$s\", \"mailboxes\": ${MBOXES[$s]}, \"messages\": ${MSGS[$s]}, \"rss_kib\": $kib, \"wall\": \"$wall\"},"
done

# --- instructions ----------------------------------------------------------------
CG_JSON=
if [ $DO_CALLGRIND = 1 ]; then
	for s in s1k d1k s10k; do
		log "callgrind: $s"
		valgrind --tool=callgrind --callgrind-out-file="$RES/cg.$s" \
		    "$MK" --store "$s" --state "state/$s" --json scan >/dev/null 2>"$RES/cg.$s.log"
		ir=$(py cg_total "$RES/cg.$s")
		CG_JSON+="{\"store\": \"$s\", \"mailboxes\": ${MBOXES[$s]}, \"messages\": ${MSGS[$s]}, \"ir\": $ir},"
	done
fi

# --- report ----------------------------------------------------------------------
mem_gib=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
fstype=$(df -PT . | awk 'NR == 2 { print $2 }')
store_row() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(json.dumps({"name": sys.argv[2], "mailboxes": d["mailboxes"], "messages": d["messages"],
  "unsized": d.get("unsized", -1), "how": sys.argv[3]}))' "$DATA/$1.json" "$1" "$2"
}
STORES_JSON=
STORES_JSON+=$(store_row s1k "script")","
STORES_JSON+=$(store_row s10k "script")","
STORES_JSON+=$(store_row m10k "script")","
STORES_JSON+=$(store_row d1k "script")","
if [ $DO_DOVECOT = 1 ]; then
	STORES_JSON+=$(store_row dc1k "script, owned by nobody, indexed by Dovecot")","
	# gen-corpus.py does not report the legacy names: count them
	real_unsized=$(find real -path '*/cur/*' -o -path '*/new/*' | grep -vc ',S=' || true)
	STORES_JSON+=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(json.dumps({"name": "real", "mailboxes": d["mailboxes"], "messages": d["messages"],
  "unsized": int(sys.argv[2]), "how": "`bench/gen-corpus.py --mailboxes 100`, %.0f MiB, owned by nobody" % (d["bytes"] / 2**20)}))' \
	    "$DATA/real.json" "$real_unsized")","
fi

cat >"$RES/meta.json" <<EOF
{
  "date": "$(date -u +%Y-%m-%d)",
  "commit": "$commit",
  "machine": "$(nproc) cores, $mem_gib GiB RAM, $fstype, Linux $(uname -r | cut -d- -f1), $(hyperfine --version)",
  "mk": "$MK_SHOW",
  "data": "$DATA_SHOW",
  "load_start": "$LOAD_START",
  "load_end": "$(cut -d' ' -f1 /proc/loadavg)",
  "damon": $(if grep -qs '^on' /sys/kernel/mm/damon/admin/kdamonds/*/state; then echo true; else echo false; fi),
  "tmpfs_note": "$TMPFS_NOTE",
  "cold_note": $(printf '%s' "$COLD_NOTE" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))'),
  "first_recalc": "$FIRST_RECALC",
  "stores": [${STORES_JSON%,}],
  "groups": [
    {"file": "warm-s10k.json", "title": "Warm cache, 10,000 mailboxes, 1M messages, all names with ,S= (\`cd \$DATA; hyperfine --warmup 2 --runs $RUNS ...\`)"},
    {"file": "cold-s10k.json", "title": "Cold cache, same store (\`hyperfine --prepare '$DROP' --runs $COLD_RUNS ...\`)"},
    {"file": "tmpfs-s10k.json", "title": "Warm, the same store on a tmpfs (nothing to evict; \`hyperfine --warmup 2 --runs $RUNS ...\`)"},
    {"file": "warm-m10k.json", "title": "Warm cache, 10,000 mailboxes, 1M messages, 10% names without ,S= (\`hyperfine --warmup 2 --runs $RUNS ...\`)"},
    {"file": "cold-m10k.json", "title": "Cold cache, same store (\`hyperfine --prepare '$DROP' --runs $COLD_RUNS ...\`)"},
    {"file": "tmpfs-m10k.json", "title": "Warm, the same store on a tmpfs (\`hyperfine --warmup 2 --runs $RUNS ...\`)"},
    {"file": "warm-dc1k.json", "title": "Warm cache, 1,000 mailboxes, 100k messages, with Dovecot (\`hyperfine --warmup 1 --runs $RUNS ...\`)", "note": "\`\$DOVECOT_CONF\` is the config of a private Dovecot started over the store by \`tests/integration/mkenv.py\` (maildir quota backend, one passwd-file user per mailbox)."},
    {"file": "cold-dc1k.json", "title": "Cold cache, same store (\`hyperfine --prepare '$DROP' --runs $COLD_RUNS ...\`)"},
    {"file": "warm-real.json", "title": "Warm cache, realistic store, 100 mailboxes (\`hyperfine --warmup 1 --runs $RUNS ...\`)"},
    {"file": "cold-real.json", "title": "Cold cache, same store (\`hyperfine --prepare '$DROP' --runs $COLD_RUNS ...\`)"}
  ],
  "mem": [${MEM_JSON%,}],
  "cg": [${CG_JSON%,}]
}
EOF
py report "$RES"

if [ $CLEAN = 1 ]; then
	cd /
	log "removing $DATA"
	rm -rf "${DATA:?}"
fi
