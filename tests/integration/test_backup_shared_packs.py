#!/usr/bin/env python3
"""Packs shared by the mailboxes of a run, and SIGKILL at random moments.

A run no longer ends one pack per mailbox: small mailboxes share packs,
and a mailbox's catalog rows are committed only once every pack holding
its new blobs is stored.  Checked here: a first run over several small
mailboxes writes fewer packs than mailboxes; then, round after round,
large incompressible messages are delivered (so that a run stores several
packs, some in the middle of a mailbox), a backup is killed with SIGKILL
after a random delay, and the next backup completes.  After each round:
every pack the catalog records exists in the repository, and every
snapshot committed since the round began (by the killed run or the next)
restores byte for byte to the store as it was.  Needs no Dovecot.
"""

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import BIN_DIR, Checks, run_mailkeep  # noqa: E402
from test_backup_roundtrip import (Store, first_difference, run_scenario,  # noqa: E402
                                   tree)

SOURCE_DIR = os.environ.get("MK_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GEN_CORPUS = os.path.join(SOURCE_DIR, "bench", "gen-corpus.py")
MAILBOXES = 8
KILL_ROUNDS = 4


def pack_files(state):
    out = set()
    for dirpath, _, filenames in os.walk(os.path.join(state, "repository", "packs")):
        out.update(f for f in filenames if len(f) == 64)
    return out


def recorded_packs(state):
    db = sqlite3.connect(os.path.join(state, "catalog.db"))
    try:
        return {row[0] for row in db.execute("SELECT name FROM pack")}
    finally:
        db.close()


def snapshots(check, env):
    res = run_mailkeep(*env, "--json", "snapshots")
    if not check("snapshots --json exits 0", res.returncode == 0, res.stderr):
        return []
    return json.loads(res.stdout)["snapshots"]


def main():
    return run_scenario(scenario, 20261126, "mk-shared-")


def scenario(check, rng, tmp):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    env = ("--store", root, "--state", state)
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root, "--mailboxes",
                          str(MAILBOXES), "--seed", "11", "--messages-per-mailbox", "30",
                          "--attachment-share", "0"], capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    store = Store(root, rng)
    boxes = store.maildirs()
    res = run_mailkeep(*env, "repo", "init")
    if not check("repo init", res.returncode == 0, res.stderr):
        return

    res = run_mailkeep(*env, "--json", "backup", "run")
    if not check("first backup exits 0", res.returncode == 0, res.stderr):
        return
    first = json.loads(res.stdout)["mailboxes"]
    check.equal("first: every mailbox committed",
                sorted(m["address"] for m in first if m.get("snapshot")), sorted(boxes))
    # The mailboxes' blobs share one pack; the run's list takes another.
    packs = pack_files(state)
    check(f"first: {MAILBOXES} small mailboxes share packs (fewer packs than "
          "mailboxes)", 0 < len(packs) < MAILBOXES, f"{len(packs)} packs")
    check.equal("first: the packs counted per mailbox add up to the mailboxes' packs",
                sum(m["packs"] for m in first), len(packs) - 1)

    copies = os.path.join(tmp, "copies")
    os.makedirs(copies)
    restored = os.path.join(tmp, "restored")
    os.makedirs(restored)
    killed_any = False
    for rnd in range(KILL_ROUNDS):
        # Incompressible mail, about 40 MB a round: more than one pack.
        for i in range(10):
            address = rng.choice(sorted(boxes))
            store.deliver(boxes[address], b"Subject: bulk %d/%d\n\n" % (rnd, i)
                          + base64.encodebytes(rng.randbytes(3 << 20)))
        for maildir in boxes.values():
            store.flag_round(maildir)
        copy = os.path.join(copies, str(rnd))
        subprocess.run(["cp", "-a", root, copy], check=True)
        before = max((s["id"] for s in snapshots(check, env)), default=0)
        proc = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), *env, "backup", "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_any |= proc.returncode == -signal.SIGKILL
        check("round %d: the killed run left every recorded pack stored" % rnd,
              recorded_packs(state) <= pack_files(state),
              sorted(recorded_packs(state) - pack_files(state))[:3])
        res = run_mailkeep(*env, "--json", "backup", "run")
        if not check("round %d: the next backup exits 0" % rnd, res.returncode == 0,
                     res.stderr):
            return
        done = json.loads(res.stdout)["mailboxes"]
        check.equal("round %d: every mailbox committed" % rnd,
                    sorted(m["address"] for m in done if m.get("snapshot")),
                    sorted(boxes))
        check("round %d: every recorded pack is stored" % rnd,
              recorded_packs(state) <= pack_files(state))
        bad = []
        new = [s for s in snapshots(check, env) if s["id"] > before]
        for s in new:
            to = os.path.join(restored, str(s["id"]))
            res = run_mailkeep(*env, "restore", s["mailbox"], "--snapshot",
                               str(s["id"]), "--to", to)
            if res.returncode != 0:
                bad.append(f"{s['id']}: {res.stderr.strip()}")
                continue
            want = os.path.join(copy, os.path.relpath(boxes[s["mailbox"]], root))
            diff = first_difference(tree(to), tree(want))
            if diff is not None:
                bad.append(f"snapshot {s['id']} ({s['mailbox']}): {diff}")
            shutil.rmtree(to)
        check("round %d: the %d snapshots since the kill restore byte for byte"
              % (rnd, len(new)), new and not bad, "; ".join(bad[:3]))
        shutil.rmtree(copy)
    check("at least one backup was killed mid-run", killed_any)


if __name__ == "__main__":
    sys.exit(main())
