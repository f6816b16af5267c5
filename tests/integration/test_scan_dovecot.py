#!/usr/bin/env python3
"""`mailkeep scan` against a real Dovecot.

Dovecot delivers over LMTP (one message to two users in one transaction,
which Dovecot stores as one hardlinked file), an IMAP client flags, moves,
expunges, creates, renames and deletes folders (one with a non-ASCII name),
then `mailkeep --json scan` must agree with Dovecot's own figures per
folder (doveadm mailbox status: messages and vsize; doveadm fetch
size.physical), with `doveadm quota get` of both quota backends, and with a
count this test makes by walking the Maildir itself.  Also the CLI's table
output, errors and exit codes, and the catalog it records.
"""

import json
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import Checks, Dovecot, make_message, run_mailkeep  # noqa: E402

ALICE, BOB = "alice@example.org", "bob@example.org"
ENTWUERFE = "Entw\u00fcrfe"


def walk(maildir):
    """Per folder (IMAP name): [messages, bytes (stat), vbytes (W= or CRLF)]."""
    out = {}
    for entry in [""] + sorted(os.listdir(maildir)):
        path = os.path.join(maildir, entry)
        if entry and not (entry.startswith(".") and os.path.isdir(path)
                          and not entry.startswith("..")):
            continue
        name = "INBOX" if not entry else decode_mutf7(entry[1:]).replace(".", "/")
        totals = [0, 0, 0]
        for sub in ("new", "cur"):
            d = os.path.join(path, sub)
            if not os.path.isdir(d):
                continue
            for fn in os.listdir(d):
                if fn.startswith("."):
                    continue
                full = os.path.join(d, fn)
                data = open(full, "rb").read()
                totals[0] += 1
                totals[1] += len(data)
                totals[2] += len(data) + data.count(b"\n") - data.count(b"\r\n")
        out[name] = totals
    return out


def decode_mutf7(s):
    def dec(m):
        b64 = m.group(1).replace(",", "/")
        raw = __import__("base64").b64decode(b64 + "=" * (-len(b64) % 4))
        return raw.decode("utf-16-be")
    return re.sub(r"&([^-]+)-", dec, s).replace("&-", "&")


def dovecot_folders(dc, user):
    """Per folder: [messages, physical bytes, vsize] as Dovecot computes them."""
    out = {}
    status = dc.doveadm("-f", "tab", "mailbox", "status", "-u", user,
                        "messages vsize", "*")
    lines = status.strip().splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t")))
        out[row["mailbox"]] = [int(row["messages"]), 0, int(row["vsize"])]
    for name in out:
        sizes = dc.doveadm("-f", "tab", "fetch", "-u", user, "size.physical",
                           "mailbox", name)
        out[name][1] = sum(int(x) for x in sizes.split()[1:])
    return out


def scenario(check, backend):
    with Dovecot(quota_backend=backend) as dc:
        dc.add_user(ALICE, "pw", quota_bytes=1024 * 1024)
        dc.add_user(BOB, "pw", quota_bytes=1024 * 1024)
        for i, size in enumerate([3000, 7000, 15000, 40000, 90000]):
            dc.deliver(ALICE, make_message(size, seq=i))
        dc.deliver([ALICE, BOB], make_message(12345, seq=100))
        dc.deliver(BOB, make_message(5000, seq=101))
        imap = dc.imap(ALICE)
        imap.select_box("INBOX")
        uids = imap.uids()
        imap.add_flags(uids[0], "\\Seen", "$Forwarded")
        imap.move(uids[1], "Junk")
        imap.expunge_uid(uids[2])
        imap.create_box("Projects/2024")
        imap.append_msg("Projects/2024", make_message(2500, seq=200), "\\Seen")
        imap.create_box("Old")
        imap.append_msg("Old", make_message(1800, seq=201))
        imap.rename_box("Old", "Archive")
        imap.create_box("Gone")
        imap.append_msg("Gone", make_message(1700, seq=202))
        imap.delete_box("Gone")
        imap.create_box("Entw&APw-rfe")
        imap.append_msg("Entw&APw-rfe", make_message(2222, seq=203), "\\Draft")
        imap.logout()

        store = os.path.join(dc.tmp, "vmail")
        state = os.path.join(dc.tmp, "mkstate")
        res = run_mailkeep("--store", store, "--state", state, "--json", "scan")
        check.equal("scan exits 0", res.returncode, 0)
        check.equal("scan says nothing on stderr", res.stderr, "")
        doc = json.loads(res.stdout)
        boxes = {m["address"]: m for m in doc["mailboxes"]}
        check.equal("both mailboxes found", sorted(boxes), [ALICE, BOB])

        for user in (ALICE, BOB):
            mine = {f["name"]: [f["messages"], f["bytes"], f["vbytes"]]
                    for f in boxes[user]["folders"]}
            check.equal(f"{user}: folders, messages, bytes and vbytes "
                        "equal Dovecot's", mine, dovecot_folders(dc, user))
            check.equal(f"{user}: the same as an independent walk", mine,
                        walk(dc.maildir(user)))
            total = [sum(v[i] for v in mine.values()) for i in range(3)]
            check.equal(f"{user}: totals are the sum of the folders",
                        [boxes[user]["messages"], boxes[user]["bytes"],
                         boxes[user]["vbytes"]], total)
            dc.quota_recalc(user)
            q = dc.quota_get(user)
            basis = boxes[user]["bytes"] if backend == "maildir" \
                else boxes[user]["vbytes"]
            check.equal(f"{user}: doveadm quota get ({backend}) STORAGE",
                        q["STORAGE"][0], -(-basis // 1024))
            check.equal(f"{user}: doveadm quota get ({backend}) MESSAGE",
                        q["MESSAGE"][0], boxes[user]["messages"])
        check(f"{ENTWUERFE} shown in UTF-8",
              ENTWUERFE in [f["name"] for f in boxes[ALICE]["folders"]])

        db = sqlite3.connect(os.path.join(state, "catalog.db"))
        rows = dict(db.execute("SELECT address, bytes FROM mailbox"))
        check.equal("the catalog holds the scanned usage", rows,
                    {u: boxes[u]["bytes"] for u in (ALICE, BOB)})
        mode = os.stat(os.path.join(state, "catalog.db")).st_mode & 0o777
        check.equal("the catalog is private (0600)", mode, 0o600)
        db.close()

        res = run_mailkeep("--store", store, "--state", state, "scan",
                           ALICE.upper())
        check.equal("scan MAILBOX (any case) exits 0", res.returncode, 0)
        check("the table lists the folders of a named mailbox",
              re.search(r"^  Projects/2024 +1 ", res.stdout, re.M) is not None,
              res.stdout)
        res = run_mailkeep("--store", store, "--state", state, "scan",
                           "nobody@example.org")
        check.equal("unknown mailbox: exit 1", res.returncode, 1)
        check("unknown mailbox: one clear line",
              res.stderr.count("\n") == 1 and "no such mailbox" in res.stderr,
              res.stderr)
        res = run_mailkeep("--store", store, "--state", state, "scan", "../x")
        check.equal("a path as mailbox: exit 1", res.returncode, 1)
        res = run_mailkeep("--store", store, "--state", state, "scan", "-x")
        check.equal("bad option: exit 2", res.returncode, 2)
        res = run_mailkeep("--store", store, "--state", state, "nosuch")
        check.equal("unknown command: exit 2", res.returncode, 2)


def main():
    check = Checks()
    for backend in sys.argv[1:] or ["maildir", "count"]:
        check.prefix = f"[{backend}] "
        try:
            scenario(check, backend)
        except Exception as exc:  # report, go on with the next backend
            check("scenario ran to the end", False,
                  f"{type(exc).__name__}: {exc}")
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
