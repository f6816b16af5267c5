#!/usr/bin/env python3
"""Self-test of the Dovecot harness in mkenv.py.

    python3 tests/integration/test_dovecot_env.py [maildir] [count]

Runs the scenario once per quota backend (both by default), prints one line
per check and, last, "N passed, M failed". Exits 0 only if nothing failed.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import Checks, Dovecot, make_message  # noqa: E402

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
GHOST = "ghost@example.org"
ALICE_QUOTA = 10 * 1024 * 1024
# Large enough that the CRLF-counted sizes (W=) exceed the on-disk sizes (S=)
# by more than 1 KiB in total, so the two backends report different values.
SIZES = [8000, 12000, 16000, 20000, 24000]


def walk(maildir):
    """Every message file of a Maildir++ tree, found without Dovecot's help:
    [{folder, path, ino, nlink, size, S, W, flags}]."""
    folders = {"INBOX": maildir}
    for name in os.listdir(maildir):
        if name.startswith(".") and os.path.isdir(os.path.join(maildir, name)):
            folders[name[1:].replace(".", "/")] = os.path.join(maildir, name)
    msgs = []
    for folder, path in folders.items():
        for sub in ("new", "cur"):
            for fn in os.listdir(os.path.join(path, sub)):
                full = os.path.join(path, sub, fn)
                st = os.stat(full)
                m = re.search(r",S=(\d+),W=(\d+)(?::2,(.*))?$", fn)
                msgs.append({"folder": folder, "path": full, "ino": st.st_ino,
                             "nlink": st.st_nlink, "size": st.st_size,
                             "S": int(m.group(1)), "W": int(m.group(2)),
                             "flags": m.group(3) or ""})
    return msgs


def kib(n):
    return -(-n // 1024)  # Dovecot rounds the STORAGE value up


def in_folder(msgs, folder):
    return [m for m in msgs if m["folder"] == folder]


def dovecot_processes(marker):
    """pids whose command line mentions marker (the instance's temp dir name)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


def check_quota(check, dc, user, limit_kib, backend, when):
    msgs = walk(dc.maildir(user))
    sum_size, sum_w = sum(m["size"] for m in msgs), sum(m["W"] for m in msgs)
    want = kib(sum_size if backend == "maildir" else sum_w)
    quota = dc.quota_get(user)
    check.equal(f"{when}: {user} STORAGE = ceil(sum of {'sizes' if backend == 'maildir' else 'W='}"
                f" / 1024), limit", quota["STORAGE"], (want, limit_kib))
    check.equal(f"{when}: {user} MESSAGE = files in cur/ and new/", quota["MESSAGE"],
                (len(msgs), None))
    return msgs, sum_size, sum_w


def scenario(check, backend):
    dc = Dovecot(quota_backend=backend)
    marker = os.path.basename(dc.tmp)
    dc.add_user(ALICE, "alice-pw", quota_bytes=ALICE_QUOTA)
    dc.add_user(BOB, "bob-pw")
    with dc:
        with open(os.path.join(dc.base_dir, "master.pid")) as f:
            check.equal("master.pid names the master we started", int(f.read()), dc.pid)

        # --- LMTP delivery ------------------------------------------------
        replies = [dc.deliver(ALICE, make_message(size, to=ALICE, seq=i))[ALICE]
                   for i, size in enumerate(SIZES)]
        check.equal("5 single deliveries over LMTP/TCP answered 250",
                    [code for code, _ in replies], [250] * 5)
        check.equal("5 files in alice's INBOX/new",
                    len([m for m in walk(dc.maildir(ALICE)) if "/new/" in m["path"]]), 5)
        res = dc.deliver([ALICE, GHOST, BOB], make_message(5000, to=BOB, seq=99),
                         unix_socket=True)
        check.equal("one LMTP/unix transaction, 3 recipients: per-recipient codes",
                    {r: code for r, (code, _) in res.items()},
                    {ALICE: 250, GHOST: 550, BOB: 250})
        bob_msgs = walk(dc.maildir(BOB))
        alice_inodes = {m["ino"] for m in walk(dc.maildir(ALICE))}
        check("multi-recipient copy is one hardlinked file (same inode, 2 links)",
              len(bob_msgs) == 1 and bob_msgs[0]["ino"] in alice_inodes
              and bob_msgs[0]["nlink"] == 2, repr(bob_msgs))

        # --- IMAP -----------------------------------------------------------
        im = dc.imap(ALICE)
        check.equal("IMAP login, INBOX holds 6 messages", im.select_box("INBOX"), 6)
        uids = im.uids()
        im.add_flags(uids[0], "\\Seen", "mkbackup")
        check("STORE +FLAGS (\\Seen mkbackup) shows in FETCH",
              {"\\Seen", "mkbackup"} <= im.flags(uids[0]), repr(im.flags(uids[0])))
        flagged = [m for m in walk(dc.maildir(ALICE)) if "S" in m["flags"]]
        with open(os.path.join(dc.maildir(ALICE), "dovecot-keywords")) as f:
            keywords = f.read().split()
        check("flags on disk: one file in cur/ with ':2,Sa', keyword a = mkbackup",
              len(flagged) == 1 and flagged[0]["flags"] == "Sa" and "/cur/" in flagged[0]["path"]
              and keywords == ["0", "mkbackup"], f"{flagged!r} {keywords!r}")

        before = {m["path"]: m for m in walk(dc.maildir(ALICE))}
        im.move(uids[1], "Junk")
        after = walk(dc.maildir(ALICE))
        moved = in_folder(after, "Junk")
        gone = set(before) - {m["path"] for m in after}
        check("UID MOVE to Junk: file leaves INBOX, lands in .Junk with the same inode",
              len(moved) == 1 and len(gone) == 1 and before[gone.pop()]["ino"] == moved[0]["ino"],
              repr(moved))
        check.equal("INBOX now holds 5 messages", im.select_box("INBOX"), 5)

        im.expunge_uid(uids[2])
        check.equal("UID EXPUNGE: INBOX holds 4 messages", im.select_box("INBOX"), 4)
        check.equal("expunged file is unlinked: 5 files left for alice",
                    len(walk(dc.maildir(ALICE))), 5)

        root = dc.maildir(ALICE)
        im.create_box("Projects/2024")
        check("CREATE Projects/2024 -> .Projects.2024/",
              os.path.isdir(os.path.join(root, ".Projects.2024", "cur"))
              and "Projects/2024" in im.list_boxes(), repr(os.listdir(root)))
        im.rename_box("Projects/2024", "Archive")
        check("RENAME -> .Archive/, old directory gone",
              os.path.isdir(os.path.join(root, ".Archive"))
              and not os.path.exists(os.path.join(root, ".Projects.2024")),
              repr(os.listdir(root)))
        im.delete_box("Archive")
        check("DELETE Archive removes .Archive/",
              not os.path.exists(os.path.join(root, ".Archive"))
              and "Archive" not in im.list_boxes(), repr(os.listdir(root)))

        im.append_msg("Sent", make_message(3000, seq=200), "\\Seen")
        sent = in_folder(walk(root), "Sent")
        check("APPEND to Sent with \\Seen -> .Sent/cur/...:2,S",
              len(sent) == 1 and sent[0]["flags"] == "S", repr(sent))

        # --- quota against an independent walk of the Maildir ----------------
        msgs, sum_size, sum_w = check_quota(check, dc, ALICE, ALICE_QUOTA // 1024, backend,
                                         "after IMAP")
        check("S= in every file name is the file's size",
              all(m["S"] == m["size"] for m in msgs), repr(msgs))
        check("test sizes tell the backends apart (sizes and W= sums differ in KiB)",
              kib(sum_size) != kib(sum_w), f"{sum_size} vs {sum_w}")
        check_quota(check, dc, BOB, None, backend, "after IMAP")
        typ, data = im.getquotaroot("INBOX")
        quota = dc.quota_get(ALICE)["STORAGE"]
        check.equal("IMAP GETQUOTAROOT agrees with doveadm", data[1],
                    [f'"User quota" (STORAGE {quota[0]} {quota[1]})'.encode()])
        im.logout()

        if backend == "maildir":
            with open(os.path.join(root, "maildirsize")) as f:
                header, *lines = f.read().splitlines()
            totals = [sum(int(line.split()[i]) for line in lines) for i in (0, 1)]
            check.equal("maildirsize: limit header and byte/message totals",
                        (header, totals), (f"{ALICE_QUOTA}S", [sum_size, len(msgs)]))
        else:
            out = dc.doveadm("mailbox", "status", "-u", ALICE, "-t", "messages vsize", "*")
            check.equal("doveadm mailbox status -t: vsize = sum of W=, messages",
                        out.split(), [f"messages={len(msgs)}", f"vsize={sum_w}"])

        # --- a file removed behind Dovecot's back, then quota recalc ----------
        os.unlink(sent[0]["path"])
        stale = dc.quota_get(ALICE)["MESSAGE"][0]
        if backend == "maildir":
            check.equal("maildir backend does not see an external unlink before recalc",
                        stale, len(msgs))
        else:
            check.equal("count backend sees an external unlink at once", stale, len(msgs) - 1)
        dc.quota_recalc(ALICE)
        check_quota(check, dc, ALICE, ALICE_QUOTA // 1024, backend, "after recalc")

        # --- a user added while running; over quota: one reply per recipient ----
        dc.add_user(CAROL, "carol-pw", quota_bytes=16 * 1024)
        code = dc.deliver(CAROL, make_message(17000, seq=300))[CAROL][0]
        value, limit = dc.quota_get(CAROL)["STORAGE"]
        check("quota_grace 10%: a 17000-byte mail into an empty 16 KiB quota is accepted",
              code == 250 and value > limit == 16, f"{code} {value}/{limit}")
        res = dc.deliver([CAROL, BOB], make_message(3000, seq=301))
        check.equal("over quota: 552 for carol after DATA, 250 for bob, same transaction",
                    {r: code for r, (code, _) in res.items()}, {CAROL: 552, BOB: 250})

        with open(dc.log) as f:
            problems = [line for line in f if re.search(r": (Error|Fatal|Panic): ", line)]
        check("dovecot log has no Error/Fatal/Panic lines", not problems, "".join(problems))
        master = dc.pid

    check("master process is gone after stop", not os.path.exists(f"/proc/{master}"))
    check.equal("no process of this instance is left", dovecot_processes(marker), [])
    if os.environ.get("MK_KEEP_TMP") != "1":
        check("temporary directory is removed", not os.path.exists(dc.tmp), dc.tmp)


def main():
    backends = sys.argv[1:] or ["maildir", "count"]
    check = Checks()
    for backend in backends:
        check.prefix = f"[{backend}] "
        try:
            scenario(check, backend)
        except Exception as exc:  # report, go on with the next backend
            check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
