#!/usr/bin/env python3
"""Retention, `mailkeep prune`, `forget` and the repository locks.

A generated store is backed up round after round with changes in between
(deliveries, flag renames, moves, expunges, a folder rename), a copy of the
store kept per round.  Then, with keep_last = 3 and gc_grace = 0s:

- `prune --dry-run` says what it would forget and changes nothing;
- `prune` forgets exactly the snapshots the policy drops (catalog and run
  objects: empty runs are gone), every kept snapshot still restores byte
  for byte, the forgotten ones do not; the next prune (the grace is over)
  deletes the tombstoned packs and the repository shrinks;
- a prune killed with SIGKILL at random moments, many times, leaves a
  repository where the next prune, the next backup and every restore work;
- a backup in flight (stopped with SIGSTOP while it holds its lock) keeps a
  prune out, and a prune that waits for it runs after it and keeps all the
  backup wrote; a backup killed mid-run is published by the prune, not lost;
- a stale lock of a dead host is removed with a message, a live one refuses;
- a second `backup run` on the same catalog is refused with a clear message;
- `forget MAILBOX --purge` and deleted_retention drop a mailbox's snapshots.
Needs no Dovecot.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import run_scenario, BIN_DIR, Checks, run_mailkeep, wait_for  # noqa: E402
from test_backup_roundtrip import (GEN_CORPUS, Store, first_difference,  # noqa: E402
                                   repo_bytes, tree)

MAILBOXES = 4
KEEP_LAST = 3


def write_conf(path, **extra):
    keys = {"keep_last": KEEP_LAST, "gc_grace": "0s", "repack_threshold": 60}
    keys.update(extra)
    with open(path, "w") as f:
        f.write("[retention]\n")
        for k, v in keys.items():
            f.write(f"{k} = {v}\n")


def snapshots(env):
    res = run_mailkeep(*env, "--json", "snapshots")
    return {s["id"]: s for s in json.loads(res.stdout)["snapshots"]} \
        if res.returncode == 0 else {}


def restore_all(check, env, tmp, copies, ids, what):
    """Restore every snapshot in ids and compare it with its copy."""
    bad = []
    snaps = snapshots(env)
    where = os.path.join(tmp, "restored", what)
    os.makedirs(where)
    for sid in sorted(ids):
        to = os.path.join(where, str(sid))
        res = run_mailkeep(*env, "restore", snaps[sid]["mailbox"], "--snapshot",
                           str(sid), "--to", to)
        if res.returncode != 0:
            bad.append(f"{sid}: exit {res.returncode}: {res.stderr.strip()}")
            continue
        diff = first_difference(tree(to), tree(copies[sid]))
        if diff is not None:
            bad.append(f"snapshot {sid}: {diff}")
    shutil.rmtree(where)
    return check(f"{what}: all {len(ids)} kept snapshots restore byte for byte",
                 not bad and len(ids) > 0, "; ".join(bad[:3]))


def objects(state, sub):
    d = os.path.join(state, "repository", sub)
    out = []
    for dirpath, _, filenames in os.walk(d):
        out += [os.path.join(dirpath, f) for f in filenames if not f.startswith(".")]
    return sorted(out)


def wait_lock(state, timeout=30):
    return wait_for(lambda: objects(state, "locks"), timeout=timeout)


def main():
    return run_scenario(scenario, 20261126, "mk-prune-")


def scenario(check, rng, tmp):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    conf = os.path.join(tmp, "mailkeep.conf")
    write_conf(conf)
    env = ("-c", conf, "--store", root, "--state", state)
    # Another host: its own state and catalog, the same repository.
    conf2 = os.path.join(tmp, "other.conf")
    with open(conf2, "w") as f:
        f.write(f"[repository]\nlocation = {state}/repository\n"
                f"key_file = {state}/repo.key\n")
    env2 = ("-c", conf2, "--store", root, "--state", os.path.join(tmp, "other"))
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root, "--mailboxes",
                          str(MAILBOXES), "--seed", "11", "--messages-per-mailbox", "50",
                          "--attachment-share", "0.1"], capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    store = Store(root, rng)
    if not check("repo init", run_mailkeep(*env, "repo", "init").returncode == 0):
        return
    copies = {}
    os.makedirs(os.path.join(tmp, "copies"))
    nround = [0]
    last = [""]

    def snap_round(change=True, what=None):
        nround[0] += 1
        for maildir in store.maildirs().values():
            if change:
                store.churn(maildir)
                store.flag_round(maildir)
        copy = os.path.join(tmp, "copies", str(nround[0]))
        subprocess.run(["cp", "-a", root, copy], check=True)
        res = run_mailkeep(*env, "--json", "backup", "run")
        last[0] = res.stderr
        if not check(what or f"round {nround[0]}: backup run", res.returncode == 0,
                     res.stderr):
            return {}
        doc = json.loads(res.stdout)
        for m in doc["mailboxes"]:
            rel = os.path.relpath(store.maildirs()[m["address"]], root)
            copies[m["snapshot"]] = os.path.join(copy, rel)
        return doc

    for i in range(6):
        snap_round(change=i > 0)
    mailbox_of = {sid: s["mailbox"] for sid, s in snapshots(env).items()}
    all_ids = set(mailbox_of)
    check.equal("6 rounds: one snapshot per mailbox per round", len(all_ids),
                6 * MAILBOXES)
    by_box = {}
    for sid, s in snapshots(env).items():
        by_box.setdefault(s["mailbox"], []).append(sid)
    want_kept = {sid for ids in by_box.values() for sid in sorted(ids)[-KEEP_LAST:]}

    # --- dry run -------------------------------------------------------
    before_files = objects(state, "")
    before_bytes = repo_bytes(state)
    res = run_mailkeep(*env, "--json", "prune", "--dry-run")
    check("prune --dry-run exits 0", res.returncode == 0, res.stderr)
    dry = json.loads(res.stdout) if res.returncode == 0 else {}
    check.equal("dry run: forgets what keep_last drops",
                dry.get("forgotten"), len(all_ids) - len(want_kept))
    check("dry run: says which packs it would repack or tombstone",
          any(p["action"] in ("repack", "tombstone") for p in dry.get("packs", [])),
          json.dumps(dry.get("packs", []))[:300])
    check.equal("dry run: the repository is unchanged", objects(state, ""), before_files)
    check.equal("dry run: the catalog is unchanged", set(snapshots(env)), all_ids)
    res = run_mailkeep(*env, "prune", "--dry-run")
    check("dry run in text: 'would forget' lines with sizes",
          "would forget" in res.stdout and "packs:" in res.stdout, res.stdout[:300])

    # --- prune ------------------------------------------------------------
    res = run_mailkeep(*env, "--json", "prune")
    check("prune exits 0", res.returncode == 0, res.stderr)
    kept = set(snapshots(env))
    check.equal("prune: the catalog keeps the last 3 of each mailbox", kept, want_kept)
    runs = json.loads(run_mailkeep(*env, "--json", "backup", "list").stdout)["runs"]
    check.equal("prune: runs left without snapshots are gone from the repository",
                len(runs), KEEP_LAST)
    check("prune: tombstones were written", len(objects(state, "tombstones")) > 0)
    restore_all(check, env, tmp, copies, kept, "after prune")
    gone = min(all_ids - kept)
    res = run_mailkeep(*env, "restore", mailbox_of[gone],
                       "--snapshot", str(gone), "--to", os.path.join(tmp, "gone"))
    check("a forgotten snapshot does not restore", res.returncode == 1, res.stderr)
    res = run_mailkeep(*env, "--json", "prune")
    check("second prune exits 0", res.returncode == 0, res.stderr)
    after_bytes = repo_bytes(state)
    check("after the grace the repository shrank",
          after_bytes < before_bytes, f"{before_bytes} -> {after_bytes}")
    restore_all(check, env, tmp, copies, kept, "after the second prune")

    # --- kill -9 at random moments -------------------------------------
    for i in range(2):
        snap_round()
    t0 = time.monotonic()
    run_mailkeep(*env, "prune", "--dry-run")
    took = max(time.monotonic() - t0, 0.05)
    kills = 0
    for i in range(12):
        if i % 4 == 0:
            snap_round()
        p = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), *env, "prune"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, took * 1.5))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    check("prunes were killed in the middle", kills > 0, f"{kills} kills")
    res = run_mailkeep(*env, "prune")
    check("the prune after the kills exits 0", res.returncode == 0, res.stderr)
    res = run_mailkeep(*env, "prune")
    check("and the one after it too", res.returncode == 0, res.stderr)
    kept = set(snapshots(env))
    check.equal("after the kills: 3 snapshots per mailbox", len(kept), KEEP_LAST * MAILBOXES)
    restore_all(check, env, tmp, copies, kept, "after the kills")
    snap_round()

    # --- a backup in flight ------------------------------------------------
    for maildir in store.maildirs().values():
        for i in range(3):
            store.deliver(maildir, store.message(f"big {i}", body_len=2_000_000))
    copy = os.path.join(tmp, "copies", "inflight")
    subprocess.run(["cp", "-a", root, copy], check=True)
    bk = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), *env, "--json", "backup",
                           "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    if check("the backup takes its lock", wait_lock(state)):
        bk.send_signal(signal.SIGSTOP)
        res = run_mailkeep(*env, "prune")
        check("prune on the same catalog while a backup runs is refused",
              res.returncode == 1 and "another backup run or prune" in res.stderr,
              res.stdout + res.stderr)
        res = run_mailkeep(*env2, "prune")
        check("prune from another host while a backup holds its lock is refused",
              res.returncode == 1, res.stdout + res.stderr)
        check("... naming the shared lock", "locked by a shared lock" in res.stderr,
              res.stderr)
        second = run_mailkeep(*env, "backup", "run")
        check("a second backup run on the same catalog is refused",
              second.returncode == 1, second.stderr)
        check("... with a clear message", "another backup run or prune" in second.stderr,
              second.stderr)
        pr = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), *env, "prune",
                               "--lock-wait", "300"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        check("a waiting prune waits while the backup is stopped", pr.poll() is None)
        bk.send_signal(signal.SIGCONT)
    out, err = bk.communicate(timeout=300)
    check("the backup in flight completes", bk.returncode == 0, err)
    if bk.returncode == 0:
        for m in json.loads(out)["mailboxes"]:
            rel = os.path.relpath(store.maildirs()[m["address"]], root)
            copies[m["snapshot"]] = os.path.join(copy, rel)
    pout, perr = pr.communicate(timeout=300) if "pr" in dir() else ("", "")
    check("the waiting prune ran after it", pr.returncode == 0, perr)
    kept = set(snapshots(env))
    restore_all(check, env, tmp, copies, kept, "after the prune that waited")

    # A backup killed mid-run: what it committed is published by prune.
    for maildir in store.maildirs().values():
        for i in range(2):
            store.deliver(maildir, store.message(f"killed {i}", body_len=3_000_000))
    copy = os.path.join(tmp, "copies", "killed")
    subprocess.run(["cp", "-a", root, copy], check=True)
    before = set(snapshots(env))
    bk = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), *env, "backup", "run"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: set(snapshots(env)) - before, timeout=60, interval=0.01)
    bk.send_signal(signal.SIGKILL)
    bk.wait()
    committed = set(snapshots(env)) - before
    for sid in committed:
        address = snapshots(env)[sid]["mailbox"]
        copies[sid] = os.path.join(copy, os.path.relpath(store.maildirs()[address], root))
    res = run_mailkeep(*env, "prune")
    check("prune after a killed backup exits 0", res.returncode == 0, res.stderr)
    # Killed before its last mailbox: its run is surely still open.
    if bk.returncode == -signal.SIGKILL and len(committed) < len(store.maildirs()):
        check("... and published the interrupted run",
              "interrupted run was published" in res.stderr, res.stderr)
    res = run_mailkeep(*env, "prune")
    kept = set(snapshots(env))
    check("the killed run's committed snapshots are kept", committed <= kept,
          f"{committed} not in {kept}")
    restore_all(check, env, tmp, copies, kept, "after the killed backup")

    # --- stale and live locks ---------------------------------------------
    old = time.time_ns() - 7200 * 10**9
    lock = {"magic": "mailkeep lock", "version": 1, "kind": "exclusive",
            "host": "dead-host.example", "pid": 4242, "time": "", "time_ns": old}
    name = os.path.join(state, "repository", "locks", "0" * 32)
    with open(name, "w") as f:
        json.dump(lock, f)
    snap_round(change=False, what="a stale lock does not stop a backup")
    check("... it is removed, and the log says so",
          "removing stale exclusive lock" in last[0] and not os.path.exists(name),
          last[0])
    lock["time_ns"] = time.time_ns()
    lock["host"] = "live-host.example"
    with open(name, "w") as f:
        json.dump(lock, f)
    res = run_mailkeep(*env, "backup", "run")
    check("a live exclusive lock of another host refuses a backup",
          res.returncode == 1 and "live-host.example" in res.stderr, res.stderr)
    os.unlink(name)
    snap_round()

    # --- forget --purge and deleted_retention --------------------------------
    boxes = sorted(store.maildirs())
    victim = boxes[0]
    res = run_mailkeep(*env, "forget", victim, "--purge", "--dry-run")
    check("forget --purge --dry-run lists the snapshots",
          res.returncode == 0 and victim in res.stdout, res.stderr)
    check("... and forgets nothing", any(s["mailbox"] == victim
                                         for s in snapshots(env).values()))
    res = run_mailkeep(*env, "forget", victim, "--purge")
    check("forget --purge exits 0", res.returncode == 0, res.stderr)
    left = snapshots(env)
    check("forget --purge drops every snapshot of the mailbox",
          not any(s["mailbox"] == victim for s in left.values()))
    check("... and no other", {s["mailbox"] for s in left.values()} == set(boxes[1:]))
    res = run_mailkeep(*env, "forget")
    check.equal("forget without a mailbox is bad usage", res.returncode, 2)
    # A mailbox gone from the store, with deleted_retention 0s.
    gone_box = boxes[1]
    shutil.rmtree(os.path.dirname(store.maildirs()[gone_box]))
    write_conf(conf, deleted_retention="0s")
    res = run_mailkeep(*env, "prune")
    check("prune with deleted_retention 0s exits 0", res.returncode == 0, res.stderr)
    left = snapshots(env)
    check("a mailbox gone from the store loses its snapshots after deleted_retention",
          not any(s["mailbox"] == gone_box for s in left.values()))
    check("... the others keep theirs",
          {s["mailbox"] for s in left.values()} == set(boxes[2:]))
    run_mailkeep(*env, "prune")
    restore_all(check, env, tmp, copies, set(left), "at the end")
    with open(conf, "a") as f:
        f.write("keep_daily = lots\n")
    res = run_mailkeep(*env, "prune")
    check("a bad retention value is refused with the key named",
          res.returncode == 1 and "keep_daily" in res.stderr, res.stderr)
    write_conf(conf, deleted_retention="0s")
    check.equal("... and nothing was forgotten", snapshots(env), left)



if __name__ == "__main__":
    sys.exit(main())
