#!/usr/bin/env python3
"""A restore that meets a damaged pack and a missing one.

A mailbox is backed up over three rounds, each storing one new pack.
Then one byte of one message body of the first pack is flipped and the
second pack is deleted.  The restore of the last snapshot (a Maildir
tree, and an mbox and an eml export):

- restores every other message byte for byte (name, content, mtime);
- names every message it could not restore, by folder and base name, one
  line each on stderr and in --json "failures": exactly the message whose
  body was hit and the messages of the second round;
- exits 1 saying how many could not be restored and how many were;
- leaves no partial or temporary file anywhere in the target.

Another mailbox whose messages share the damaged pack but not the damaged
blob restores completely.  A damaged message list (a folder of the
snapshot) is reported as such and the other folders still restore.
Needs no Dovecot.
"""

import email
import json
import mailbox
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (make_maildir, maildir_tree as tree, run_mailkeep,  # noqa: E402
                   run_scenario)
from test_backup_faults import catalog_rows as catalog, rewrite  # noqa: E402
from test_backup_roundtrip import Store  # noqa: E402

VICTIM, OTHER = "anna@example.org", "bert@example.org"


def packs(state):
    out = set()
    for dirpath, _, names in os.walk(os.path.join(state, "repository", "packs")):
        out.update(os.path.join(dirpath, n) for n in names)
    return out


def all_files(top):
    """Every file beneath top, hidden ones and tmp/ included."""
    out = []
    for dirpath, _, names in os.walk(top):
        out += [os.path.relpath(os.path.join(dirpath, n), top) for n in names]
    return sorted(out)


def message_key(path):
    """(IMAP folder, base name) of a message file's path in a Maildir
    tree, None for anything else."""
    parts = path.split("/")
    if len(parts) == 2 and parts[0] in ("cur", "new") and parts[1]:
        return ("INBOX", base(parts[1]))
    if len(parts) == 3 and parts[1] in ("cur", "new") and parts[2]:
        return (parts[0][1:].replace(".", "/"), base(parts[2]))
    return None


def base(name):
    return name.split(":")[0].split(",")[0]


def scenario(check, rng, tmp):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    env = ("--store", root, "--state", state)
    store = Store(root, rng)
    boxes = {a: make_maildir(os.path.join(root, "example.org", a.split("@")[0], "Maildir"),
                             ".Archive") for a in (VICTIM, OTHER)}
    run_mailkeep(*env, "repo", "init", check=True)
    rounds = []   # per round: {(folder, base name)} delivered to VICTIM
    round_packs = []
    for rnd, count in enumerate((4, 3, 2)):
        got = set()
        for folder, imap in (("", "INBOX"), (".Archive", "Archive")):
            for i in range(count):
                name = store.deliver(boxes[VICTIM], store.message(
                    f"r{rnd} {imap} {i}", body_len=700), folder)
                got.add((imap, base(name)))
        if rnd == 0:
            store.deliver(boxes[OTHER], store.message("other", body_len=700))
        if rnd == 2:
            store.flag_round(boxes[VICTIM])
        rounds.append(got)
        before = packs(state)
        res = run_mailkeep(*env, "backup", "run")
        check(f"round {rnd}: backup run", res.returncode == 0, res.stderr)
        # The pack that holds this round's messages (the run's lists may
        # go into another).
        some = sorted(got)[0][1]
        pack = catalog(state, "SELECT p.name FROM message m JOIN blob b ON "
                       "b.ref = m.body JOIN pack p ON p.id = b.pack WHERE m.base = ?",
                       some)
        new = {os.path.basename(p): p for p in packs(state) - before}
        check(f"round {rnd}: its messages are in a new pack",
              len(pack) == 1 and pack[0][0] in new, (pack, sorted(new)))
        round_packs.append(new.get(pack[0][0]) if pack else None)
        holders = catalog(state, "SELECT DISTINCT m.base FROM message m JOIN blob b "
                          "ON b.ref IN (m.body, m.header) JOIN pack p ON p.id = b.pack "
                          "WHERE p.name = ?", pack[0][0] if pack else "")
        check.equal(f"round {rnd}: ... which holds exactly them",
                    {h[0] for h in holders} - {base(n) for n in os.listdir(
                        os.path.join(boxes[OTHER], "new"))},
                    {name for _, name in got})
    want = tree(boxes[VICTIM])
    want_other = tree(boxes[OTHER])

    # The damage: a byte in one first-round body, the second pack gone.
    hit_folder, hit = sorted(rounds[0])[1]
    row = catalog(state,
                  "SELECT b.offset, b.length FROM message m "
                  "JOIN blob b ON b.ref = m.body WHERE m.base = ?", hit)
    if not check("the catalog locates the body to damage", len(row) == 1, row):
        return
    offset, length = row[0]
    with open(round_packs[0], "rb") as f:
        data = bytearray(f.read())
    data[offset + length // 2] ^= 0x01
    rewrite(round_packs[0], bytes(data))
    os.unlink(round_packs[1])
    lost = {(hit_folder, hit)} | rounds[1]
    # Expected: everything but the lost messages, metadata as it was.
    expect = {k: v for k, v in want.items() if message_key(k) not in lost}

    to = os.path.join(tmp, "maildir")
    res = run_mailkeep(*env, "--json", "restore", VICTIM, "--to", to)
    check("maildir: exit 1", res.returncode == 1, res.stderr)
    doc = json.loads(res.stdout) if res.stdout.startswith("{") else {}
    failures = {(f["folder"], f["name"]) for f in doc.get("failures", [])
                if f.get("kind") == "message"}
    check.equal("maildir: --json names exactly the messages not restored", failures, lost)
    lines = [line for line in res.stderr.splitlines() if "not restored: " in line]
    check.equal("maildir: one line per message on stderr, with folder and name",
                sorted(line.split(": ")[4] for line in lines),
                sorted(f"{folder}/{name}" for folder, name in lost))
    check(f"maildir: the error says {len(lost)} could not be restored and how many "
          "were", f"{len(lost)} messages could not be restored "
          f"({len(rounds[0]) + len(rounds[2]) - 1} were)" in res.stderr, res.stderr)
    check.equal("maildir: --json counts", (doc.get("failed"), doc.get("messages")),
                (len(lost), len(rounds[0]) + len(rounds[2]) - 1))
    got = tree(to) if os.path.isdir(to) else {}
    diff = sorted(set(got) ^ set(expect)) + sorted(
        k for k in set(got) & set(expect) if got[k] != expect[k])
    check("maildir: every other message restored byte for byte, nothing more",
          not diff, diff[:5])
    check("maildir: no partial or temporary file left",
          not [f for f in all_files(to) if os.path.basename(f).startswith(".")
               or "/tmp/" in "/" + f], all_files(to))

    for fmt in ("mbox", "eml"):
        to = os.path.join(tmp, fmt)
        res = run_mailkeep(*env, "restore", VICTIM, "--format", fmt, "--to", to)
        check(f"{fmt}: exit 1 naming what was lost",
              res.returncode == 1 and all(f"{folder}/{name}:" in res.stderr
                                          for folder, name in lost), res.stderr)
        subjects = set()
        if fmt == "mbox":
            for name in os.listdir(to):
                for msg in mailbox.mbox(os.path.join(to, name), create=False):
                    subjects.add(msg["Subject"])
        else:
            for dirpath, _, names in os.walk(to):
                for name in names:
                    with open(os.path.join(dirpath, name), "rb") as f:
                        subjects.add(email.message_from_bytes(f.read())["Subject"])
        want_subjects = {email.message_from_bytes(v[0])["Subject"]
                         for k, v in expect.items() if message_key(k)}
        check.equal(f"{fmt}: the export holds exactly the messages restored",
                    subjects, want_subjects)
        check(f"{fmt}: no partial or temporary file left",
              not [f for f in all_files(to) if os.path.basename(f).startswith(".")],
              all_files(to))

    to = os.path.join(tmp, "other")
    res = run_mailkeep(*env, "restore", OTHER, "--to", to)
    check("another mailbox sharing the damaged pack restores completely",
          res.returncode == 0 and tree(to) == want_other, res.stderr)

    # A message list damaged: the third pack holds the last snapshot's
    # lists; flip a byte in the Archive list's blob.
    res = run_mailkeep(*env, "--json", "snapshots", VICTIM)
    snap = json.loads(res.stdout)["snapshots"][-1]["id"]
    rows = catalog(state,
                   "SELECT b.offset, b.length FROM blob b JOIN pack p ON p.id = b.pack "
                   "WHERE p.name = ? AND b.ref NOT IN (SELECT header FROM message "
                   "WHERE header IS NOT NULL) AND b.ref NOT IN (SELECT body FROM "
                   "message WHERE body IS NOT NULL) AND b.ref NOT IN (SELECT object "
                   "FROM snapshot) ORDER BY b.offset",
                   os.path.basename(round_packs[2]))
    with open(round_packs[2], "rb") as f:
        original = f.read()
    # Try each candidate tree blob until the restore reports a list.
    found = False
    for offset, length in rows:
        data = bytearray(original)
        data[offset + length // 2] ^= 0x01
        rewrite(round_packs[2], bytes(data))
        to = os.path.join(tmp, f"list-{offset}")
        res = run_mailkeep(*env, "--json", "restore", VICTIM, "--snapshot", str(snap),
                           "--to", to)
        doc = json.loads(res.stdout) if res.stdout.startswith("{") else {}
        lists = [f for f in doc.get("failures", []) if f.get("kind") == "list"]
        if lists:
            found = True
            folder = lists[0]["folder"]
            check("damaged list: exit 1, the folder named on stderr",
                  res.returncode == 1 and f"messages of folder {folder} whose list "
                  "could not be read" in res.stderr, res.stderr)
            other = "INBOX" if folder == "Archive" else "Archive"
            want_sub = {k: v for k, v in expect.items()
                        if (message_key(k) or ("",))[0] == other}
            got = tree(to)
            check(f"damaged list: the other folder ({other}) is restored",
                  want_sub and all(got.get(k) == v for k, v in want_sub.items()),
                  sorted(want_sub)[:3])
            break
    rewrite(round_packs[2], original)
    check("damaged list: a list blob of the last snapshot was found and reported",
          found, rows)


def main():
    return run_scenario(scenario, 20261128, "mk-damage-")


if __name__ == "__main__":
    sys.exit(main())
