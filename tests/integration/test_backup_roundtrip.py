#!/usr/bin/env python3
"""`mailkeep backup run`, `snapshots` and `restore` round trip.

A store from bench/gen-corpus.py is backed up, then changed the way Dovecot
and its users change it (deliveries into new/, flag renames in cur/, new/ to
cur/ moves, moves between folders, expunges, a folder rename, a message to
several mailboxes, odd and large files, a deleted mailbox) and backed up
again, round after round; one backup is killed with SIGKILL.  A copy of the
store is kept after each round.  At the end EVERY snapshot of every mailbox
is restored into a fresh directory and must equal, byte for byte, the copy
of that round: the same folders, file names, contents and file mtimes.
Also: an unchanged store stores (almost) nothing, a pure flag-change round
reads nothing, a body delivered to three mailboxes is stored once, a wrong
key and a missing repository fail with a clear message, and the runs read
back from the repository agree with the catalog.  Needs no Dovecot.
"""

import base64
import gzip
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (BIN_DIR, Checks, count_messages,  # noqa: E402
                   maildir_tree as tree, run_mailkeep, run_scenario,
                   store_maildirs)

SOURCE_DIR = os.environ.get("MK_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GEN_CORPUS = os.path.join(SOURCE_DIR, "bench", "gen-corpus.py")
MAILBOXES = 5


def first_difference(got, want):
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            where = ("only restored" if key not in want else
                     "missing" if key not in got else "differs")
            return f"{key}: {where}"
    return None


def folders(maildir):
    return [""] + sorted(d for d in os.listdir(maildir)
                         if d.startswith(".") and os.path.isdir(os.path.join(maildir, d)))


class Store:
    """The generated store and the changes made to it."""

    def __init__(self, root, rng):
        self.root, self.rng, self.clock, self.seq = root, rng, 1794000000, 0

    def maildirs(self):
        return store_maildirs(self.root)

    def deliver(self, maildir, data, folder=""):
        """As Dovecot's LDA: write in tmp/, rename into new/."""
        self.clock += 7
        self.seq += 1
        vsize = len(data) + data.count(b"\n") - data.count(b"\r\n")
        name = f"{self.clock}.M{self.seq}P4242.testhost,S={len(data)},W={vsize}"
        tmp = os.path.join(maildir, folder, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.utime(tmp, ns=(self.clock * 10**9 + 5, self.clock * 10**9 + 5))
        os.rename(tmp, os.path.join(maildir, folder, "new", name))
        return name

    def message(self, subject, body_len=3000, to="user@example.org"):
        words = ["mail", "backup", "quota", "Postfach", "Sicherung", "dovecot"]
        body = " ".join(self.rng.choice(words) for _ in range(body_len // 7))
        return (f"Delivered-To: {to}\nFrom: a@example.net\nTo: {to}\n"
                f"Subject: {subject}\nMessage-ID: <{self.rng.random()}@t>\n\n"
                f"{body}\n").encode()

    def files(self, maildir, folder, sub):
        d = os.path.join(maildir, folder, sub)
        return sorted(f for f in os.listdir(d) if not f.startswith(".")) \
            if os.path.isdir(d) else []

    def set_flags(self, maildir, folder, name, flags):
        base = name.split(":")[0]
        new = f"{base}:2,{''.join(sorted(set(flags)))}"
        src = os.path.join(maildir, folder, "cur", name)
        os.rename(src, os.path.join(maildir, folder, "cur", new))

    def flag_round(self, maildir):
        """Flags changed in cur/, new/ moved to cur/ (seen): renames only."""
        for name in self.rng.sample(self.files(maildir, "", "cur"),
                                    min(8, len(self.files(maildir, "", "cur")))):
            flags = name.split(":2,")[1] if ":2," in name else ""
            self.set_flags(maildir, "", name, flags + self.rng.choice("RFT"))
        for name in self.files(maildir, "", "new")[:2]:
            os.rename(os.path.join(maildir, "new", name),
                      os.path.join(maildir, "cur", name + ":2,S"))

    def churn(self, maildir):
        """Deliveries, moves between folders, expunges, a folder rename."""
        for i in range(3):
            self.deliver(maildir, self.message(f"new {i}"))
        cur = self.files(maildir, "", "cur")
        for name in cur[:3]:
            os.rename(os.path.join(maildir, "cur", name),
                      os.path.join(maildir, ".Archive", "cur", name))
        for name in cur[3:5]:
            os.unlink(os.path.join(maildir, "cur", name))
        old, new = os.path.join(maildir, ".Archive.2024"), os.path.join(maildir, ".Old2024")
        if os.path.isdir(old):
            os.rename(old, new)


last_stderr = [""]


def backup(check, env, what):
    res = run_mailkeep(*env, "--json", "backup", "run")
    last_stderr[0] = res.stderr
    ok = check(f"{what}: backup run exits 0", res.returncode == 0,
               f"exit {res.returncode}: {res.stderr.strip()}")
    if not ok:
        return {}
    doc = json.loads(res.stdout)
    return {m["address"]: m for m in doc["mailboxes"]}


def run_open(state):
    """Whether the catalog has a backup run that has not ended."""
    db = sqlite3.connect(os.path.join(state, "catalog.db"), timeout=5)
    try:
        return db.execute("SELECT count(*) FROM run WHERE ended_ns IS NULL"
                          ).fetchone()[0] > 0
    except sqlite3.Error:
        return False
    finally:
        db.close()


def repo_bytes(state):
    total = 0
    for dirpath, _, filenames in os.walk(os.path.join(state, "repository")):
        total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in filenames)
    return total


def main():
    return run_scenario(scenario, 20261124, "mk-backup-")


def scenario(check, rng, tmp):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    env = ("--store", root, "--state", state)
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root, "--mailboxes",
                          str(MAILBOXES), "--seed", "7", "--messages-per-mailbox", "60",
                          "--attachment-share", "0.05"], capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    store = Store(root, rng)
    boxes = store.maildirs()
    check.equal("the store has its mailboxes", len(boxes), MAILBOXES)

    res = run_mailkeep(*env, "backup", "run")
    check("backup run before repo init fails", res.returncode == 1, res.stderr)
    check("... and says to run 'mailkeep repo init'",
          "mailkeep repo init" in res.stderr, res.stderr)
    res = run_mailkeep(*env, "repo", "init")
    if not check("repo init", res.returncode == 0, res.stderr):
        return

    copies = {}      # snapshot id -> the copy of its Maildir
    rounds = []      # per round: {address: backup JSON}

    def snap_round(name):
        copy = os.path.join(tmp, "copies", name)
        subprocess.run(["cp", "-a", root, copy], check=True)
        got = backup(check, env, name)
        rounds.append(got)
        for address, m in got.items():
            rel = os.path.relpath(store.maildirs()[address], root)
            copies[m["snapshot"]] = os.path.join(copy, rel)
            check.equal(f"{name}: {address}: messages counted",
                        m["messages"], count_messages(os.path.join(copy, rel)))
        return got

    os.makedirs(os.path.join(tmp, "copies"))
    first = snap_round("first")
    check.equal("first: every mailbox backed up", sorted(first), sorted(boxes))
    check("first: every message read once",
          all(m["read_messages"] == m["messages"] for m in first.values()),
          json.dumps(first))
    read = sum(m["read_bytes"] for m in first.values())
    stored = sum(m["stored_bytes"] for m in first.values())
    check("first: stored less than read (compression)", 0 < stored < read,
          f"read {read}, stored {stored}")

    before = repo_bytes(state)
    again = snap_round("unchanged")
    check.equal("unchanged: nothing read",
                sum(m["read_bytes"] + m["read_messages"] for m in again.values()), 0)
    check.equal("unchanged: nothing stored for the mailboxes",
                sum(m["stored_bytes"] + m["new_blobs"] for m in again.values()), 0)
    grown = repo_bytes(state) - before
    check("unchanged: the repository grew by the run's list and object only "
          "(< 4 KiB)",
          grown < 4096, f"{grown} bytes")
    check.equal("unchanged: no version rows", sum(
        m["new_versions"] + m["vanished"] for m in again.values()), 0)

    for maildir in store.maildirs().values():
        store.flag_round(maildir)
    flags = snap_round("flags")
    check.equal("flags: no message read (bytes read 0)",
                sum(m["read_bytes"] + m["read_messages"] for m in flags.values()), 0)
    check("flags: new versions recorded",
          all(m["new_versions"] > 0 and m["new_versions"] == m["vanished"]
              for m in flags.values()), json.dumps(flags))

    # One message to three mailboxes: Dovecot writes one copy each, with
    # its own Delivered-To; the body is stored once.
    payload = base64.encodebytes(rng.randbytes(300000))
    addresses = sorted(store.maildirs())[:3]
    for address in addresses:
        head = (f"Delivered-To: {address}\nFrom: b@example.net\n"
                f"Subject: to three\n\n").encode()
        store.deliver(store.maildirs()[address], head + payload)
    multi = snap_round("multi")
    stored = [multi[a]["stored_bytes"] for a in addresses]
    check("multi: the first mailbox stores the body",
          stored[0] > 200000, f"stored {stored}")
    check("multi: the others store only what differs (< 8 KiB each)",
          all(s < 8192 for s in stored[1:]), f"stored {stored}")

    for address, maildir in store.maildirs().items():
        store.churn(maildir)
    odd = store.maildirs()[addresses[0]]
    store.deliver(odd, b"Subject: large\n\n" + base64.encodebytes(rng.randbytes(3 << 20)))
    store.deliver(odd, gzip.compress(store.message("compressed")))
    store.deliver(odd, b"Subject: crlf\r\n\r\nbody\r\n")
    store.deliver(odd, b"Subject: no end of header")
    store.deliver(odd, b"")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(odd, ".Neu", sub))
    open(os.path.join(odd, ".Neu", "maildirfolder"), "wb").close()
    store.deliver(odd, store.message("in a new folder"), ".Neu")
    churn = snap_round("churn")
    check("churn: new messages read",
          all(m["read_messages"] >= 3 for m in churn.values()), json.dumps(churn))
    check.equal("churn: the odd mailbox read exactly its new files",
                churn[addresses[0]]["read_messages"], 3 + 6)

    gone = sorted(store.maildirs())[-1]
    shutil.rmtree(os.path.dirname(store.maildirs()[gone]))
    for maildir in store.maildirs().values():
        store.flag_round(maildir)
    deleted = snap_round("deleted")
    check("deleted: the removed mailbox is not backed up",
          gone not in deleted and len(deleted) == MAILBOXES - 1, sorted(deleted))

    # Kill a backup that has much to read; the next one must cope.
    big = store.maildirs()[addresses[1]]
    for i in range(40):
        store.deliver(big, b"Subject: bulk\n\n" + base64.encodebytes(rng.randbytes(400000)))
    def npacks():
        return sum(len(f) for _, _, f in os.walk(os.path.join(state, "repository", "packs")))
    packs = npacks()
    proc = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), *env, "backup", "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill it once its run is open in the catalog (a slow build may take
    # a while to get there), while it reads.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None \
            and not run_open(state):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    before_kill = max(copies)
    after = snap_round("after kill")
    check.equal("after kill: every mailbox backed up", len(after), MAILBOXES - 1)
    check("after kill: the killed run was published by the next one",
          not killed or "had not ended" in last_stderr[0], last_stderr[0])

    # Every snapshot of every mailbox, restored, is its round's copy.
    res = run_mailkeep(*env, "--json", "snapshots")
    check.equal("snapshots --json exits 0", res.returncode, 0)
    snaps = json.loads(res.stdout)["snapshots"]
    check("snapshots --json has the documented keys",
          all(set(s) == {"id", "mailbox", "time", "messages", "bytes"} for s in snaps)
          and all(s["time"].endswith("Z") and len(s["time"]) == 20 for s in snaps),
          snaps[:2])
    known = [s for s in snaps if s["id"] in copies]
    check("every snapshot of the rounds is listed",
          len(known) == len(copies), f"{len(known)} of {len(copies)}")
    # Snapshots the killed run committed saw the store as the next round's
    # copy has it: nothing changed it in between.
    by_address = {m: copies[after[m]["snapshot"]] for m in after}
    for s in snaps:
        if s["id"] not in copies and before_kill < s["id"]:
            copies[s["id"]] = by_address[s["mailbox"]]
    bad = []
    os.makedirs(os.path.join(tmp, "restored"))
    for s in snaps:
        to = os.path.join(tmp, "restored", str(s["id"]))
        res = run_mailkeep(*env, "restore", s["mailbox"], "--snapshot", str(s["id"]),
                           "--to", to)
        if res.returncode != 0:
            bad.append(f"{s['id']}: exit {res.returncode}: {res.stderr.strip()}")
            continue
        diff = first_difference(tree(to), tree(copies[s["id"]]))
        if diff is not None:
            bad.append(f"snapshot {s['id']} ({s['mailbox']}): {diff}")
        elif folders(to) != folders(copies[s["id"]]):
            bad.append(f"snapshot {s['id']}: folders differ")
    check(f"all {len(copies)} snapshots restore byte for byte (names, contents, "
          "mtimes, folders)", not bad, "; ".join(bad[:3]))
    check("the restored folder rename and new folder are there",
          os.path.isdir(os.path.join(tmp, "restored", str(churn[addresses[0]]["snapshot"]),
                                     ".Neu", "cur")))

    sid = str(first[addresses[0]]["snapshot"])
    res = run_mailkeep(*env, "restore", addresses[0], "--snapshot", sid, "--to",
                       os.path.join(tmp, "restored", sid))
    check("restore into a non-empty directory fails",
          res.returncode == 1 and "not empty" in res.stderr, res.stderr)
    res = run_mailkeep(*env, "restore", addresses[1], "--snapshot", sid, "--to",
                       os.path.join(tmp, "elsewhere"))
    check("restore of another mailbox's snapshot fails",
          res.returncode == 1 and "no snapshot" in res.stderr
          and not os.path.exists(os.path.join(tmp, "elsewhere")), res.stderr)
    res = run_mailkeep(*env, "restore", addresses[0], "--snapshot", "x",
                       "--to", os.path.join(tmp, "x"))
    check.equal("restore with a malformed --snapshot is bad usage",
                res.returncode, 2)
    res = run_mailkeep("help", "restore")
    check("help restore names the targets and formats",
          "--to new-folder|original|DIR" in res.stdout
          and "--format maildir|mbox|eml" in res.stdout, res.stdout)

    # The runs as the repository has them agree with the catalog.
    res = run_mailkeep(*env, "--json", "backup", "list")
    runs = json.loads(res.stdout)["runs"] if res.returncode == 0 else []
    check("backup list shows every run (the killed one published later)",
          len(runs) == len(rounds) + 1, f"{len(runs)} runs: {res.stderr}")
    res = run_mailkeep(*env, "--json", "backup", "list", runs[-1]["id"][:12])
    listed = json.loads(res.stdout)["snapshots"] if res.returncode == 0 else []
    check.equal("backup list RUN reads the run's mailbox snapshots",
                sorted((s["mailbox"], s["messages"]) for s in listed),
                sorted((a, m["messages"]) for a, m in after.items()))

    key = os.path.join(state, "repo.key")
    shutil.copy(key, key + ".good")
    with open(key, "w") as f:
        f.write(rng.randbytes(32).hex() + "\n")
    res = run_mailkeep(*env, "backup", "run")
    check("a wrong key fails with a clear error",
          res.returncode == 1 and "no key slot opens with this key" in res.stderr,
          res.stderr)
    os.replace(key + ".good", key)
    res = run_mailkeep(*env, "--json", "backup", "run", addresses[0].upper())
    check("the right key works again (a named mailbox, any case)",
          res.returncode == 0 and len(json.loads(res.stdout)["mailboxes"]) == 1,
          res.stderr)


if __name__ == "__main__":
    sys.exit(main())
