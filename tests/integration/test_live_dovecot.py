#!/usr/bin/env python3
"""mailkeepd's live usage against a real Dovecot.

mailkeepd runs over Dovecot's mail tree (maildir quota backend) while
Dovecot delivers over LMTP and an IMAP client selects, flags, moves,
expunges, creates, appends, renames and deletes; files are also written,
copied (cp -a) and synced (rsync -a) behind Dovecot's back, a mailbox is
born by a delivery to a new user and one is removed.  After each step
GET /v1/mailboxes/<address> (bytes, vbytes, messages and every folder's
messages, bytes and vbytes) must equal a count this test makes by walking
the Maildir itself, within a second.  Then `mailkeep status` and
`mailkeep --json status` read the daemon's status socket.
"""

import json
import os
import shutil
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (Checks, Dovecot, Mailkeepd, make_maildir,  # noqa: E402
                   make_message, run_mailkeep)

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
# Not a Dovecot user: a Maildir only this test writes to, as a barrier
# (once the daemon counts a file put there, it has handled every inotify
# event from before, so steps that leave the usage unchanged are tested).
SYNC = "sync@barrier.test"


def diff(got, want):
    """The parts of two usages that differ, for a failure line."""
    if not isinstance(got, dict) or not isinstance(want, dict):
        return f"got {got!r}, want {want!r}"
    out = [f"{k}: got {got[k]}, want {want[k]}"
           for k in ("messages", "bytes", "vbytes") if got[k] != want[k]]
    for name in sorted(set(got["folders"]) | set(want["folders"])):
        g, w = got["folders"].get(name), want["folders"].get(name)
        if g != w:
            out.append(f"folder {name!r}: got {g}, want {w}")
    return "; ".join(out)


def scenario(check):
    with Dovecot(quota_backend="maildir") as dc:
        dc.add_user(ALICE, "pw", quota_bytes=10 * 1024 * 1024)
        dc.add_user(BOB, "pw")
        seq = iter(range(1000))
        dc.deliver(ALICE, make_message(3000, seq=next(seq)))
        dc.deliver(BOB, make_message(2000, seq=next(seq)))
        store = os.path.join(dc.tmp, "vmail")
        state = os.path.join(dc.tmp, "mkstate")
        users = [ALICE, BOB]
        sync_md = make_maildir(os.path.join(store, "barrier.test", "sync",
                                            "Maildir"))

        with Mailkeepd().start(store, state) as mk:

            def agree(step, addresses=None):
                check(f"{step}: the barrier file counted within a second",
                      mk.sync(SYNC, sync_md))
                for address in addresses or users:
                    ok, got, want = mk.agrees(address, dc.maildir(address))
                    check(f"{step}: {address} equals a walk of its Maildir "
                          "within a second", ok, diff(got, want))

            agree("at start")
            code, doc = mk.get("/v1/mailboxes")
            check.equal("/v1/mailboxes lists every mailbox",
                        (code, sorted(m["address"] for m in doc["mailboxes"])),
                        (200, [ALICE, BOB, SYNC]))

            # LMTP
            for size in (1500, 7000, 40000):
                res = dc.deliver(ALICE, make_message(size, seq=next(seq)))
                assert res[ALICE][0] == 250, res
            agree("LMTP delivery", [ALICE])
            res = dc.deliver([ALICE, BOB], make_message(12345, seq=next(seq)))
            check.equal("two-recipient delivery accepted",
                        sorted(c for c, _ in res.values()), [250, 250])
            new_b = os.path.join(dc.maildir(BOB), "new")
            check("two-recipient delivery is one hardlinked file",
                  any(os.stat(os.path.join(new_b, f)).st_nlink == 2
                      for f in os.listdir(new_b)))
            agree("two-recipient delivery (hardlink)")

            # IMAP
            imap = dc.imap(ALICE)
            imap.select_box("INBOX")
            check.equal("SELECT moved new/ to cur/",
                        os.listdir(os.path.join(dc.maildir(ALICE), "new")), [])
            agree("IMAP SELECT (new/ to cur/)", [ALICE])
            uids = imap.uids()
            imap.add_flags(uids[0], "\\Seen")
            imap.add_flags(uids[1], "$Forwarded", "\\Flagged")
            agree("flags and a keyword (renames in cur/)", [ALICE])
            imap.move(uids[2], "Junk")
            agree("UID MOVE to a new folder", [ALICE])
            imap.expunge_uid(uids[3])
            agree("UID EXPUNGE", [ALICE])
            imap.create_box("Projects/2024")
            agree("CREATE folder", [ALICE])
            imap.append_msg("Projects/2024", make_message(2500, seq=next(seq)),
                            "\\Seen")
            imap.append_msg("Projects/2024", make_message(4100, seq=next(seq)))
            agree("APPEND", [ALICE])
            imap.create_box("Old")
            imap.append_msg("Old", make_message(1800, seq=next(seq)))
            imap.create_box("Old/Sub")
            imap.append_msg("Old/Sub", make_message(2700, seq=next(seq)))
            agree("folder and subfolder made", [ALICE])
            imap.rename_box("Old", "Archive")
            check("RENAME moved the subfolder too",
                  os.path.isdir(os.path.join(dc.maildir(ALICE), ".Archive.Sub")))
            agree("RENAME folder with a subfolder", [ALICE])
            imap.create_box("Gone")
            imap.append_msg("Gone", make_message(1700, seq=next(seq)))
            agree("folder to delete made", [ALICE])
            imap.delete_box("Gone")
            agree("DELETE folder (..DOVECOT-TRASHED)", [ALICE])

            # Behind Dovecot's back
            md = dc.maildir(ALICE)
            subprocess.run(
                ["sh", "-c", 'printf "Subject: by hand\\n\\nline one\\r\\n'
                 'line two\\n" > "$1" && mv "$1" "$2"', "sh",
                 os.path.join(md, "tmp", "hand.1"),
                 os.path.join(md, "new", "1700000000.hand1.example")],
                check=True)
            agree("a file without ,S= moved into new/", [ALICE])
            imap.select_box("INBOX")
            agree("that file taken to cur/ by SELECT", [ALICE])
            imap.logout()

            cur_a = os.path.join(md, "cur")
            src = os.path.join(cur_a, sorted(os.listdir(cur_a))[0])
            subprocess.run(["cp", "-a", src,
                            os.path.join(dc.maildir(BOB), "cur") + "/"],
                           check=True)
            agree("cp -a of a message into another mailbox's cur/", [BOB])

            src_dir = os.path.join(md, ".Archive") + "/"
            dst_dir = os.path.join(dc.maildir(BOB), ".Imported") + "/"
            if shutil.which("rsync"):
                subprocess.run(["rsync", "-a", src_dir, dst_dir], check=True)
                tool = "rsync -a"
            else:
                print("NOTE rsync is not installed: using cp -a instead",
                      flush=True)
                subprocess.run(["cp", "-a", src_dir, dst_dir], check=True)
                tool = "cp -a"
            agree(f"{tool} of a whole folder into a mailbox", [BOB])

            # Mailboxes come and go
            dc.add_user(CAROL, "pw")
            dc.deliver(CAROL, make_message(5555, seq=next(seq)))
            users.append(CAROL)
            agree("a delivery to a new user: the mailbox appears", [CAROL])
            shutil.rmtree(dc.maildir(BOB))
            users.remove(BOB)
            ok, got, _ = mk.agrees(BOB, dc.maildir(BOB))
            check("a removed Maildir: the mailbox disappears within a second",
                  ok, f"got {got!r}")
            agree("the other mailboxes after the removal")

            # The command line reads the status socket
            res = run_mailkeep("--store", store, "--state", state, "status")
            check.equal("mailkeep status: exit 0", (res.returncode, res.stderr),
                        (0, ""))
            check("mailkeep status: pid, ready, 3 mailboxes",
                  f"pid {mk.pid}," in res.stdout and ", ready" in res.stdout
                  and "mailboxes  3 " in res.stdout, res.stdout)
            res = run_mailkeep("--store", store, "--state", state, "--json",
                               "status")
            check.equal("mailkeep --json status: exit 0", res.returncode, 0)
            try:
                doc = json.loads(res.stdout)
            except ValueError:
                doc = {}
            check.equal("mailkeep --json status: the daemon's document",
                        (doc.get("pid"), doc.get("ready"),
                         doc.get("usage", {}).get("mailboxes")),
                        (mk.pid, True, 3))
            errors = [line for line in mk.log_text().splitlines()
                      if ": error: " in line]
            check.equal("no error in mailkeepd's log", errors, [])
            check.equal("SIGTERM: mailkeepd exits 0", mk.stop(), 0)


def main():
    check = Checks()
    try:
        scenario(check)
    except Exception as exc:
        traceback.print_exc()
        check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
