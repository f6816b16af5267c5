#!/usr/bin/env python3
"""Helper of bench/bench-backup.sh.

  bench_backup.py churn STORE POOL ROUND [--new-share F] [--flag-share F]
      Change STORE as a day of mail does: deliver new messages (F of the
      store's message count, default 1%) taken from the generated POOL
      store into random mailboxes' new/ with fresh Dovecot names, and
      rename a share of cur/ files (default 10%) to other flags, as an IMAP
      client marking mail read, answered or flagged does.  ROUND picks the
      slice of the pool and seeds the choice, so every round is different
      and every run of the script is the same.

  bench_backup.py summary RESULTS...
      RESULTS hold lines "tool scenario run seconds max_rss_kib
      repo_bytes [cpu_seconds]"; print the markdown table of medians and
      ratios.  A tool found in a later file replaces its earlier rows.
"""

import os
import random
import statistics
import sys
import time

FLAGS = ["S", "RS", "FS", "S", "RS", "DS"]


def messages(root):
    """Every message file below root, as (dir, name), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if os.path.basename(dirpath) in ("cur", "new"):
            out.extend((dirpath, n) for n in sorted(filenames))
    return out


def mailboxes(root):
    """The Maildir directories of a gen-corpus store."""
    out = []
    for domain in sorted(os.listdir(root)):
        d = os.path.join(root, domain)
        for local in sorted(os.listdir(d)):
            md = os.path.join(d, local, "Maildir")
            if os.path.isdir(md):
                out.append(md)
    return out


def churn(store, pool, rnd, new_share, flag_share):
    rng = random.Random(1000 + rnd)
    all_msgs = messages(store)
    boxes = mailboxes(store)
    pool_msgs = messages(pool)
    n_new = max(1, int(len(all_msgs) * new_share))
    start = (rnd * n_new) % max(1, len(pool_msgs))
    picked = [pool_msgs[(start + i) % len(pool_msgs)] for i in range(n_new)]
    now = int(time.time())
    for i, (d, name) in enumerate(picked):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        box = rng.choice(boxes)
        base = "%d.M%dP%d.bench%d,S=%d,W=%d" % (
            now, i, rnd, rnd, len(data), len(data) + data.count(b"\n"))
        tmp = os.path.join(box, "tmp", base)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(box, "new", base))
    cur = [(d, n) for d, n in all_msgs if os.path.basename(d) == "cur"]
    renamed = 0
    for d, name in rng.sample(cur, int(len(all_msgs) * flag_share)):
        base, _, flags = name.partition(":2,")
        new_flags = rng.choice([f for f in FLAGS if f != flags] or ["S"])
        os.rename(os.path.join(d, name),
                  os.path.join(d, base + ":2," + new_flags))
        renamed += 1
    print("churn round %d: %d new messages, %d flag renames (store of %d)"
          % (rnd, n_new, renamed, len(all_msgs)), file=sys.stderr)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%.0f %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024.0


def summary(paths):
    rows = {}
    for path in paths:
        fresh = {}
        with open(path) as f:
            for line in f:
                tool, scen, _run, sec, rss, repo, *cpu = line.split()
                fresh.setdefault((tool, scen), []).append(
                    (float(sec), int(rss), int(repo),
                     float(cpu[0]) if cpu else None))
        for tool in {k[0] for k in fresh}:
            for k in [k for k in rows if k[0] == tool]:
                del rows[k]
        rows.update(fresh)
    tools = [t for t in ("mailkeep", "restic", "borg")
             if any(k[0] == t for k in rows)]
    scens = [("first", "first backup"), ("unchanged", "unchanged re-run"),
             ("churn", "after 1% new + 10% flag changes")]
    print("| scenario | " + " | ".join(tools) +
          " | best peer / mailkeep |")
    print("|---|" + "---|" * (len(tools) + 1))
    for col, what in ((0, "median wall time"), (3, "median CPU (user + sys)")):
        for key, title in scens:
            cells, med = [], {}
            for t in tools:
                v = [x[col] for x in rows.get((t, key), []) if x[col] is not None]
                if not v:
                    cells.append("–")
                    continue
                med[t] = statistics.median(v)
                cells.append("%.2f s (n=%d)" % (med[t], len(v)))
            peers = [med[t] for t in med if t != "mailkeep"]
            ratio = ("%.1fx" % (min(peers) / med["mailkeep"])
                     if peers and med.get("mailkeep") else "–")
            print("| %s, %s | %s | %s |"
                  % (title, what, " | ".join(cells), ratio))
    for key, title in scens:
        cells = []
        for t in tools:
            v = rows.get((t, key))
            cells.append("%.0f MB" % (max(x[1] for x in v) / 1024.0)
                         if v else "–")
        print("| %s, peak RSS | %s | |" % (title, " | ".join(cells)))
    cells, sizes = [], {}
    for t in tools:
        v = rows.get((t, "first"))
        if v:
            sizes[t] = statistics.median(x[2] for x in v)
            cells.append(human(sizes[t]))
        else:
            cells.append("–")
    peers = [sizes[t] for t in sizes if t != "mailkeep"]
    ratio = ("%.2fx" % (min(peers) / sizes["mailkeep"])
             if peers and sizes.get("mailkeep") else "–")
    print("| repository after the first backup | %s | %s |"
          % (" | ".join(cells), ratio))
    cells = []
    for t in tools:
        v = rows.get((t, "churn"))
        f = rows.get((t, "first"))
        if v and f:
            grow = [x[2] for x in v]
            cells.append("+" + human((grow[-1] - statistics.median(
                x[2] for x in f)) / len(grow)))
        else:
            cells.append("–")
    print("| repository growth per churn round | %s | |" % " | ".join(cells))


def main(argv):
    if len(argv) >= 4 and argv[0] == "churn":
        new_share, flag_share = 0.01, 0.10
        rest = argv[4:]
        while rest:
            if rest[0] == "--new-share":
                new_share = float(rest[1])
            elif rest[0] == "--flag-share":
                flag_share = float(rest[1])
            else:
                sys.exit("bench_backup: unknown option " + rest[0])
            rest = rest[2:]
        churn(argv[1], argv[2], int(argv[3]), new_share, flag_share)
    elif len(argv) >= 2 and argv[0] == "summary":
        summary(argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
