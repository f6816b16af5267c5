#!/usr/bin/env bash
# Run mailkeepd on a generated demo store with embedded defaults: no
# configuration file; catalog and sockets go to demo/state.
#   scripts/demo.sh [BUILD_DIR]
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build/gcc}" && pwd)
demo=$top/demo
cd "$top"

if [ ! -d "$demo/store" ]; then
	echo "== generating a demo store: 50 mailboxes of realistic mail"
	python3 bench/gen-corpus.py --out "$demo/store" --mailboxes 50 --seed 7
fi
mkdir -p "$demo/state"
cli="$build/mailkeep --store $demo/store --state $demo/state"

echo "== mailkeep scan (no daemon needed)"
$cli scan > "$demo/state/scan.txt"
head -n 8 "$demo/state/scan.txt"
echo "   ... (all of it in $demo/state/scan.txt)"
if [ ! -d "$demo/state/repository" ]; then
	echo "== mailkeep repo init (a local backup repository in $demo/state)"
	$cli repo init > /dev/null 2>&1
fi
cat <<MSG

== starting mailkeepd in the foreground (Ctrl-C stops it)
   In another terminal:
     $cli status
     curl -s --unix-socket $demo/state/status.sock http://localhost/v1/mailboxes?sort=bytes\&limit=5
     curl -s --unix-socket $demo/state/status.sock http://localhost/metrics
   Then move, copy or delete files under $demo/store and ask again.
   Back up, look, restore:
     $cli backup run
     $cli snapshots
     $cli ls ADDRESS
     $cli restore ADDRESS --snapshot 1 --to $demo/restored

MSG
exec "$build/mailkeepd" -f --store "$demo/store" --state "$demo/state"
