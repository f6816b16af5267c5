#!/usr/bin/env python3
"""Faults in the backup repository and the catalog, with the real mailkeep.

A store from bench/gen-corpus.py is backed up over a few rounds of changes,
a copy of each mailbox kept per round, then:

- a flipped byte in a pack that holds one mailbox's message: `check
  --sample 100` exits 1 and names that message, its folder and mailbox;
  every other mailbox still restores byte for byte, and the restore of the
  damaged one exits 1 naming the message it could not restore.  A flip in
  a pack's index, a truncated pack and a deleted pack are found by the
  structure check alone (no sample).  With the pack put back, check passes.
- a deleted catalog: `repo rebuild-catalog` brings back the same
  snapshots, every one restores byte for byte, check passes, and the next
  run reads no message again.
- a full disk: the repository on a small tmpfs mounted by the test (and
  unmounted afterwards); the run fails with "No space left on device",
  the mailboxes committed before still restore, and once the tmpfs grows
  the next run completes and check passes.
- kill -9 of `mailkeep backup run` at random moments, 20 times, the store
  changing between runs: check passes after each kill, the next run
  completes, and every snapshot restores the store as it was at its run.
- key slots: add a passphrase slot, list, verify, remove; the last slot is
  never removed; a wrong passphrase is refused.

Needs root for the tmpfs (the CI runs as root).  Needs no Dovecot.
"""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import BIN_DIR, run_mailkeep, run_scenario  # noqa: E402
from test_backup_roundtrip import (GEN_CORPUS, Store,  # noqa: E402
                                   first_difference)


def digest_tree(maildir):
    """{path: (sha256, mtime_ns)} of files, {dir/: None}; tmp/ left out."""
    out = {}
    for dirpath, _, filenames in os.walk(maildir):
        rel = os.path.relpath(dirpath, maildir)
        out[rel + "/"] = None
        if os.path.basename(dirpath) == "tmp":
            continue
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.join(rel, name)] = (
                    hashlib.sha256(f.read()).hexdigest(), os.lstat(path).st_mtime_ns)
    return out


def snapshots(env):
    res = run_mailkeep(*env, "--json", "snapshots", check=True)
    return json.loads(res.stdout)["snapshots"]


def restore_equal(check, env, tmp, snap, want, what):
    """Restore one snapshot into a new directory; compare with want."""
    dest = tempfile.mkdtemp(prefix="r-", dir=tmp)
    os.rmdir(dest)
    res = run_mailkeep(*env, "restore", snap["mailbox"], "--snapshot",
                       str(snap["id"]), "--to", dest)
    ok = check(f"{what}: snapshot {snap['id']} of {snap['mailbox']} restores",
               res.returncode == 0, res.stderr.strip())
    if ok:
        diff = first_difference(digest_tree(dest), want)
        check(f"{what}: snapshot {snap['id']} of {snap['mailbox']} is byte "
              "for byte what the store held", diff is None, diff)
    shutil.rmtree(dest, ignore_errors=True)


def catalog_rows(state, sql, *args):
    db = sqlite3.connect(f"file:{os.path.join(state, 'catalog.db')}?mode=ro",
                         uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def pack_path(state, pack):
    return os.path.join(state, "repository", "packs", pack[:2], pack)


def rewrite(path, data):
    """Packs are read-only files: make it writable, write, restore mode."""
    mode = os.stat(path).st_mode
    os.chmod(path, 0o600)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode & 0o7777)


def check_json(env, *extra):
    res = run_mailkeep(*env, "--json", "check", *extra)
    doc = json.loads(res.stdout) if res.stdout.strip() else {}
    return res, doc


def flipped_byte(check, env, state, tmp, latest):
    """A byte flipped in one message's body, then elsewhere in packs."""
    # The largest message body of the first mailbox: its pack and place.
    victim = sorted(latest)[0]
    row = catalog_rows(
        state,
        "SELECT p.name, b.offset, b.length, m.base, v.suffix, d.name "
        "FROM message_version v JOIN backup_mailbox bm ON bm.id = v.mailbox "
        "JOIN message m ON m.id = v.message JOIN blob b ON b.ref = m.body "
        "JOIN pack p ON p.id = b.pack JOIN dir_name d ON d.id = v.dir "
        "WHERE bm.address = ? AND v.vanished IS NULL "
        "ORDER BY b.length DESC LIMIT 1", victim)
    if not check("the catalog names a message body to damage", len(row) == 1):
        return
    pack, offset, length, base, suffix, _ = row[0]
    path = pack_path(state, pack)
    with open(path, "rb") as f:
        original = f.read()
    users = catalog_rows(
        state,
        "SELECT DISTINCT bm.address FROM blob b JOIN message m ON m.body = b.ref "
        "JOIN message_version v ON v.message = m.id JOIN backup_mailbox bm ON "
        "bm.id = v.mailbox JOIN pack p ON p.id = b.pack WHERE p.name = ?", pack)
    users = {u[0] for u in users}
    # Only the mailboxes holding this very body (a body delivered to
    # several mailboxes is stored once) lose a message.
    holders = catalog_rows(
        state,
        "SELECT DISTINCT bm.address FROM blob b JOIN message m ON m.body = b.ref "
        "JOIN message_version v ON v.message = m.id JOIN backup_mailbox bm ON "
        "bm.id = v.mailbox JOIN pack p ON p.id = b.pack WHERE p.name = ? AND "
        "b.offset = ?", pack, offset)
    holders = {h[0] for h in holders}
    data = bytearray(original)
    data[offset + length // 2] ^= 0x20
    rewrite(path, bytes(data))

    res, doc = check_json(env, "--sample", "100")
    check("flipped byte: check --sample 100 exits 1", res.returncode == 1,
          res.stderr.strip())
    check("flipped byte: check names the damaged message on stderr",
          base + suffix in res.stderr and victim in res.stderr, res.stderr)
    affected = doc.get("affected", [])
    check("flipped byte: the JSON report lists the message, its folder and "
          "mailbox", any(a.get("mailbox") == victim and
                         a.get("message") == base + suffix and
                         a.get("folder") for a in affected), affected)
    check.equal("flipped byte: exactly the mailboxes holding that body are "
                "affected", set(doc.get("mailboxes", [])), holders)
    check("flipped byte: one line per problem on stderr",
          len([l for l in res.stderr.splitlines() if l.strip()]) ==
          len(doc.get("problems", [])) + len(affected), res.stderr)

    res = run_mailkeep(*env, "check")
    # The structure check does not read blob data: the index still holds.
    check("flipped byte: the structure check alone does not read the body",
          res.returncode == 0, res.stderr)

    for snap in latest.values():
        if snap["mailbox"] in holders:
            dest = os.path.join(tmp, "damaged-restore")
            res = run_mailkeep(*env, "restore", snap["mailbox"], "--snapshot",
                               str(snap["id"]), "--to", dest)
            check(f"flipped byte: restore of {snap['mailbox']} exits 1",
                  res.returncode == 1, res.stderr)
            if snap["mailbox"] == victim:
                # Named by its base name, the ID that ls and restore take.
                check("flipped byte: the restore names the message it could "
                      "not restore", base in res.stderr, res.stderr)
            shutil.rmtree(dest, ignore_errors=True)
        else:
            restore_equal(check, env, tmp, snap, snap["want"],
                          "flipped byte, another mailbox")

    # The index (the pack's tail) damaged: found without reading data.
    data = bytearray(original)
    data[len(data) - 40] ^= 0x01
    rewrite(path, bytes(data))
    res, doc = check_json(env)
    check("damaged index: check exits 1 without a sample", res.returncode == 1,
          res.stderr)
    check("damaged index: reported as pack-damaged",
          any(p["kind"] == "pack-damaged" for p in doc.get("problems", [])),
          doc.get("problems"))
    check("damaged index: every mailbox with a message in it is named",
          users <= set(doc.get("mailboxes", [])), (users, doc.get("mailboxes")))

    rewrite(path, original[:len(original) // 3])
    res, doc = check_json(env)
    check("truncated pack: check exits 1 and names the mailboxes",
          res.returncode == 1 and users <= set(doc.get("mailboxes", [])),
          res.stderr)

    os.rename(path, path + ".aside")
    res, doc = check_json(env)
    check("deleted pack: check exits 1 with pack-missing",
          res.returncode == 1 and
          any(p["kind"] == "pack-missing" for p in doc.get("problems", [])),
          res.stderr)
    os.rename(path + ".aside", path)

    rewrite(path, original)
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("pack put back: check passes", res.returncode == 0, res.stderr)


def lost_catalog(check, env, state, tmp, wants):
    before = snapshots(env)
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        path = os.path.join(state, name)
        if os.path.exists(path):
            os.unlink(path)
    res = run_mailkeep(*env, "snapshots")
    check("lost catalog: no snapshots without it", "no snapshots" in res.stdout,
          res.stdout)
    res = run_mailkeep(*env, "--json", "repo", "rebuild-catalog")
    if not check("lost catalog: repo rebuild-catalog exits 0",
                 res.returncode == 0, res.stderr):
        return
    doc = json.loads(res.stdout)
    check.equal("lost catalog: every snapshot is rebuilt", doc["snapshots"],
                len(before))
    after = snapshots(env)
    key = lambda s: (s["mailbox"], s["time"], s["messages"], s["bytes"])  # noqa: E731
    check.equal("lost catalog: the same snapshots as before",
                sorted(map(key, after)), sorted(map(key, before)))
    # Snapshot ids are renumbered: match them by mailbox and order.
    old_by_box, new_by_box = {}, {}
    for s in before:
        old_by_box.setdefault(s["mailbox"], []).append(s)
    for s in after:
        new_by_box.setdefault(s["mailbox"], []).append(s)
    for box, olds in old_by_box.items():
        for old, new in zip(olds, new_by_box.get(box, [])):
            restore_equal(check, env, tmp, new, wants[old["id"]], "rebuilt catalog")
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("rebuilt catalog: check passes", res.returncode == 0, res.stderr)
    res = run_mailkeep(*env, "--json", "backup", "run")
    if check("rebuilt catalog: the next run completes", res.returncode == 0,
             res.stderr):
        boxes = json.loads(res.stdout)["mailboxes"]
        check.equal("rebuilt catalog: the next run reads no message again",
                    sum(m["read_messages"] for m in boxes), 0)
        check.equal("rebuilt catalog: ... and stores no new blob",
                    sum(m["new_blobs"] for m in boxes), 0)


def full_disk(check, rng, tmp):
    root, state = os.path.join(tmp, "fd-store"), os.path.join(tmp, "fd-state")
    env = ("--store", root, "--state", state)
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root,
                          "--mailboxes", "6", "--seed", "11",
                          "--messages-per-mailbox", "40",
                          "--attachment-share", "0.3"],
                         capture_output=True, text=True)
    if not check("full disk: gen-corpus made a store", gen.returncode == 0,
                 gen.stderr):
        return
    repo = os.path.join(state, "repository")
    os.makedirs(repo)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700",
                            "mk-faults", repo], capture_output=True, text=True)
    if not check("full disk: a 2 MiB tmpfs is mounted for the repository",
                 mount.returncode == 0, mount.stderr):
        return
    try:
        run_mailkeep(*env, "repo", "init", check=True)
        store = Store(root, rng)
        wants = {a: digest_tree(p) for a, p in store.maildirs().items()}
        res = run_mailkeep(*env, "--json", "backup", "run")
        check("full disk: the run fails", res.returncode == 1, res.stdout)
        check("full disk: with a clear error",
              "No space left on device" in res.stderr, res.stderr)
        done = snapshots(env)
        for snap in done:
            restore_equal(check, env, tmp, snap, wants[snap["mailbox"]],
                          "full disk, committed before")
        res = run_mailkeep(*env, "check")
        check("full disk: check passes on what was committed",
              res.returncode == 0, res.stderr)
        grow = subprocess.run(["mount", "-o", "remount,size=256m", repo],
                              capture_output=True, text=True)
        check("full disk: the tmpfs grows", grow.returncode == 0, grow.stderr)
        res = run_mailkeep(*env, "--json", "backup", "run")
        check("full disk: after space is freed the next run completes",
              res.returncode == 0, res.stderr)
        res = run_mailkeep(*env, "check", "--sample", "100")
        check("full disk: check passes after it", res.returncode == 0, res.stderr)
        latest = {}
        for snap in snapshots(env):
            latest[snap["mailbox"]] = snap
        check.equal("full disk: every mailbox has a snapshot",
                    sorted(latest), sorted(wants))
        for snap in latest.values():
            restore_equal(check, env, tmp, snap, wants[snap["mailbox"]],
                          "full disk, after")
    finally:
        subprocess.run(["umount", repo], capture_output=True)


def kill_loop(check, rng, tmp, rounds=20):
    root, state = os.path.join(tmp, "k-store"), os.path.join(tmp, "k-state")
    env = ("--store", root, "--state", state)
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root,
                          "--mailboxes", "3", "--seed", "5",
                          "--messages-per-mailbox", "30"],
                         capture_output=True, text=True)
    if not check("kill -9: gen-corpus made a store", gen.returncode == 0,
                 gen.stderr):
        return
    run_mailkeep(*env, "repo", "init", check=True)
    store = Store(root, rng)
    boxes = store.maildirs()
    states = []  # (start_ns, {address: digest tree})
    killed = 0
    # How long a run takes here, from the last one not killed: the kill
    # falls at a random moment within about that time, or just after.
    last = None
    for i in range(rounds):
        for maildir in boxes.values():
            for j in range(rng.randint(1, 4)):
                store.deliver(maildir, store.message(f"k{i}.{j}",
                                                     body_len=rng.randint(2000, 400000)))
            store.flag_round(maildir)
        states.append((time.time_ns(),
                       {a: digest_tree(p) for a, p in boxes.items()}))
        start = time.monotonic()
        proc = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), *env,
                                 "backup", "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if last is None:
            proc.wait()
            last = time.monotonic() - start
        else:
            time.sleep(rng.uniform(0.0, 1.2 * last))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            elif proc.returncode == 0:
                last = time.monotonic() - start
        proc.wait()
        proc.stderr.close()
        check(f"kill -9 round {i}: the run ended or was killed",
              proc.returncode in (0, -signal.SIGKILL), proc.returncode)
        res = run_mailkeep(*env, "check", "--sample", "100")
        check(f"kill -9 round {i}: check passes", res.returncode == 0,
              res.stderr.strip())
    check("kill -9: runs were killed in the middle", killed > 0,
          f"{killed} of {rounds}")
    states.append((time.time_ns(), {a: digest_tree(p) for a, p in boxes.items()}))
    res = run_mailkeep(*env, "backup", "run")
    check("kill -9: the next run completes", res.returncode == 0, res.stderr)
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("kill -9: check passes after it", res.returncode == 0, res.stderr)
    # Each snapshot holds the store as it was when its run started.
    times = dict(catalog_rows(state, "SELECT id, time_ns FROM snapshot"))
    for snap in snapshots(env):
        t = times[snap["id"]]
        want = None
        for start, trees in states:
            if start <= t:
                want = trees[snap["mailbox"]]
        restore_equal(check, env, tmp, snap, want, "kill -9")


def keys(check, env, tmp):
    res = run_mailkeep(*env, "--json", "repo", "key", "list")
    slots = json.loads(res.stdout)["slots"] if res.returncode == 0 else []
    check.equal("keys: one slot after init", len(slots), 1)
    check("keys: a single slot is warned about", "only one key slot" in res.stderr,
          res.stderr)
    res = run_mailkeep(*env, "repo", "info")
    check("keys: repo info warns about a single slot",
          "only one key slot" in res.stderr, res.stderr)
    only = slots[0]["id"] if slots else ""
    res = run_mailkeep(*env, "repo", "key", "remove", only)
    check("keys: the last slot is never removed",
          res.returncode == 1 and "last key slot" in res.stderr, res.stderr)
    passfile = os.path.join(tmp, "recovery.pass")
    with open(passfile, "w") as f:
        f.write("correct horse battery staple\n")
    res = run_mailkeep(*env, "repo", "key", "add")
    check("keys: key add without a new key is a usage error",
          res.returncode == 2, res.stderr)
    res = run_mailkeep(*env, "--json", "repo", "key", "add",
                       "--new-passphrase-file", passfile)
    if not check("keys: a passphrase slot is added", res.returncode == 0,
                 res.stderr):
        return
    added = json.loads(res.stdout)["slot"]
    res = run_mailkeep(*env, "--json", "repo", "key", "list")
    listed = json.loads(res.stdout)["slots"]
    check.equal("keys: two slots listed", sorted(s["id"] for s in listed),
                sorted([only, added]))
    check("keys: no warning with two slots", "only one key slot" not in res.stderr,
          res.stderr)
    res = run_mailkeep(*env, "--json", "repo", "key", "verify",
                       "--passphrase-file", passfile)
    check("keys: the passphrase verifies against its slot",
          res.returncode == 0 and json.loads(res.stdout)["slot"] == added,
          res.stderr)
    wrong = os.path.join(tmp, "wrong.pass")
    with open(wrong, "w") as f:
        f.write("not the passphrase\n")
    res = run_mailkeep(*env, "repo", "key", "verify", "--passphrase-file", wrong)
    check("keys: a wrong passphrase does not verify",
          res.returncode == 1 and "no key slot opens" in res.stderr, res.stderr)
    newkey = os.path.join(tmp, "second.key")
    res = run_mailkeep(*env, "--json", "repo", "key", "add",
                       "--new-key-file", newkey)
    ok = check("keys: a new key file slot is added", res.returncode == 0 and
               os.path.exists(newkey), res.stderr)
    if ok:
        third = json.loads(res.stdout)["slot"]
        res = run_mailkeep(*env, "repo", "key", "remove", third)
        check("keys: a slot is removed", res.returncode == 0, res.stderr)
        res = run_mailkeep(*env, "repo", "key", "verify", "--key-file", newkey)
        check("keys: its key no longer opens the repository",
              res.returncode == 1, res.stderr)
    res = run_mailkeep(*env, "repo", "key", "remove", added)
    check("keys: the passphrase slot is removed again", res.returncode == 0,
          res.stderr)


def main():
    return run_scenario(scenario, 20261126, "mk-faults-")


def scenario(check, rng, tmp):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    env = ("--store", root, "--state", state)
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root,
                          "--mailboxes", "5", "--seed", "3",
                          "--messages-per-mailbox", "40",
                          "--attachment-share", "0.05"],
                         capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    run_mailkeep(*env, "repo", "init", check=True)
    store = Store(root, rng)
    boxes = store.maildirs()
    wants = {}  # snapshot id -> digest tree
    for rnd in range(3):
        if rnd > 0:
            for maildir in boxes.values():
                store.flag_round(maildir)
                store.deliver(maildir, store.message(f"round {rnd}"))
        trees = {a: digest_tree(p) for a, p in boxes.items()}
        res = run_mailkeep(*env, "--json", "backup", "run")
        if not check(f"round {rnd}: backup run exits 0", res.returncode == 0,
                     res.stderr):
            return
        for m in json.loads(res.stdout)["mailboxes"]:
            wants[m["snapshot"]] = trees[m["address"]]
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("a healthy repository passes check", res.returncode == 0, res.stderr)
    res = run_mailkeep(*env, "check", "--sample", "101")
    check("check --sample 101 is a usage error", res.returncode == 2, res.stderr)
    latest = {}
    for snap in snapshots(env):
        snap["want"] = wants[snap["id"]]
        latest[snap["mailbox"]] = snap

    keys(check, env, tmp)
    flipped_byte(check, env, state, tmp, latest)
    lost_catalog(check, env, state, tmp, wants)
    full_disk(check, rng, tmp)
    kill_loop(check, rng, tmp)


if __name__ == "__main__":
    sys.exit(main())
