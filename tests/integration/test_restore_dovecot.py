#!/usr/bin/env python3
"""`mailkeep ls`, `diff` and `restore` against a real Dovecot on loopback.

A mailbox gets mail over LMTP and IMAP (folders Archive and Archive/2024,
flags, a keyword, internal dates set by APPEND) and is backed up; then a
message is expunged, a flag changed, the Archive tree deleted, and it is
backed up again.  Checked, each through an IMAP client:
- ls finds by from:, subject:, message-id:, since:, larger: and words;
  --at picks the right snapshot; "nothing at that time" is an error;
- diff names the expunged message, the flag change and the deleted tree;
- restore of a folder into Restored-<date>/ (through doveadm import) shows
  the tree with the same flags, keyword and internal dates;
- restore --to original puts back only what is missing, and a second one
  nothing; a single message comes back by its ls id;
- a whole mailbox restored into an empty place shows the same UIDs and
  UIDVALIDITY to IMAP;
- a restore while LMTP delivers loses nothing; doveadm force-resync
  afterwards changes nothing IMAP sees;
- mbox and eml exports parse back (mailbox, email) into the same messages;
- bad input (path traversal, a symbolic link as target, a non-empty
  target, a wrong key, a quota without room) fails with a clear message,
  exit 1 or 2, and leaves the live Maildir as it was.
"""

import email
import email.policy
import hashlib
import imaplib
import mailbox
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import Checks, Dovecot, make_message, run_mailkeep  # noqa: E402

OTTO = "otto.friedrich@hosteurope.de"
COPY = "copy@hosteurope.de"
KOPIE = "kopie@hosteurope.de"


def fetch_state(imap, box):
    """{message-id: (flags, internaldate)} of a folder, and its UIDs."""
    imap.select_box(box)
    out = {}
    uids = imap.uids()
    if uids:
        typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE "
                             "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = item[0].decode()
            flags = set(re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split())
            flags.discard("\\Recent")
            date = re.search(r'INTERNALDATE "([^"]+)"', meta).group(1)
            mid = item[1].decode().split(":", 1)[1].strip()
            out[mid] = (frozenset(flags), imaplib.Internaldate2tuple(
                f'INTERNALDATE "{date}"'.encode())[:6])
    return out, uids


def selectable(imap):
    """The folders that can be selected (not the \\Noselect parents)."""
    out = []
    for line in imap.list()[1]:
        m = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
        if b"noselect" not in m.group(1).lower() and \
                b"nonexistent" not in m.group(1).lower():
            out.append(m.group(2).strip(b'"').decode())
    return out


def uidvalidity(imap, box):
    typ, data = imap.status(f'"{box}"', "(UIDVALIDITY UIDNEXT)")
    v = re.search(rb"UIDVALIDITY (\d+)", data[0])
    n = re.search(rb"UIDNEXT (\d+)", data[0])
    return int(v.group(1)), int(n.group(1))


def tree_digest(path):
    """Names, sizes and contents of every file below path (tmp/ aside)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        if os.path.basename(dirpath) == "tmp":
            continue
        for name in sorted(filenames):
            if name.startswith("dovecot"):
                continue
            p = os.path.join(dirpath, name)
            h.update(p.encode())
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def message(seq, subject, sender, size=900):
    return make_message(size, subject=subject, sender=sender,
                        to=OTTO, seq=seq)


def main():
    c = Checks()
    work = tempfile.mkdtemp(prefix="mailkeep-restore-")
    try:
        with Dovecot() as dc:
            run(c, dc, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


def run(c, dc, work):
    dc.add_user(OTTO, "secret")
    dc.add_user(COPY, "secret")
    state = os.path.join(work, "state")
    conf = os.path.join(work, "mailkeep.conf")
    with open(conf, "w") as f:
        f.write(f"[store]\nroot = {dc.tmp}/vmail\ntemplate = %d/%n/Maildir\n"
                f"[general]\nstate_dir = {state}\n"
                f"[restore]\ndoveadm = /usr/bin/doveadm\n"
                f"doveadm_config = {dc.conf}\n")

    def mk(*args):
        return run_mailkeep("-c", conf, *args)

    def mkj(*args):
        import json
        res = run_mailkeep("-c", conf, "--json", *args)
        return res, (json.loads(res.stdout) if res.returncode == 0 else None)

    # --- the mailbox -------------------------------------------------------
    for i in range(4):
        dc.deliver(OTTO, message(i, f"Lieferung {i}", f"lieferant{i}@example.net"))
    dc.deliver(OTTO, message(10, "=?utf-8?q?K=C3=BCche?= Angebot",
                             "Otto.Tischler@Example.NET", size=20000))
    imap = dc.imap(OTTO)
    imap.create_box("Archive")
    imap.create_box("Archive/2024")
    imap.append(
        '"Archive"', "(\\Seen $Forwarded)",
        imaplib.Time2Internaldate(time.mktime((2024, 3, 1, 9, 30, 0, 0, 0, -1))),
        message(20, "Archiv eins", "alt@example.net"))
    imap.append(
        '"Archive/2024"', "(\\Seen \\Flagged)",
        imaplib.Time2Internaldate(time.mktime((2024, 1, 2, 8, 0, 0, 0, 0, -1))),
        message(21, "Archiv zwei", "alt@example.net"))
    imap.select_box("INBOX")
    uids = imap.uids()
    imap.add_flags(uids[0], "\\Seen")
    imap.add_flags(uids[1], "\\Answered", "\\Seen")
    before = {b: fetch_state(imap, b)[0]
              for b in ("INBOX", "Archive", "Archive/2024")}
    inbox_validity = uidvalidity(imap, "INBOX")
    inbox_uids = fetch_state(imap, "INBOX")[1]
    maildir = dc.maildir(OTTO)

    res = mk("repo", "init")
    c("repo init", res.returncode == 0, res.stderr)
    res = mk("backup", "run")
    c("backup 1", res.returncode == 0, res.stderr)

    # Changes: expunge, flag, the Archive tree deleted.
    imap.select_box("INBOX")
    expunged_mid = "<mailkeep-test-2-900@example.net>"
    imap.expunge_uid(uids[2])
    imap.add_flags(uids[3], "\\Flagged")
    imap.delete_box("Archive/2024")
    imap.delete_box("Archive")
    res = mk("backup", "run")
    c("backup 2", res.returncode == 0, res.stderr)

    # --- ls ------------------------------------------------------------------
    res, doc = mkj("ls", OTTO, "--snapshot", "1")
    c.equal("ls snapshot 1 lists every message",
            len(doc["messages"]) if doc else None, 7)
    ids = {m["message_id"]: m["id"] for m in (doc or {}).get("messages", [])}
    for query, want in (
            ("from:otto.tischler@example.net", 1),
            ("subject:küche", 1),
            ("küche angebot", 1),
            ("message-id:mailkeep-test-20-900@example.net", 1),
            ("larger:10K", 1),
            ("smaller:10K", 6),
            ("since:2025-01-01", 5),
            ("before:2024-02-01", 1),
            ("from:nobody", 0)):
        res, d = mkj("ls", OTTO, "--snapshot", "1", "--search", query)
        c.equal(f"ls --search {query!r}",
                len(d["messages"]) if d else res.stderr, want)
    res, d = mkj("ls", OTTO, "--snapshot", "1", "--folder", "Archive")
    c.equal("ls --folder Archive holds its subfolder",
            sorted(m["folder"] for m in d["messages"]) if d else res.stderr,
            ["Archive", "Archive/2024"])
    res, d = mkj("ls", OTTO, "--at", "now")
    c.equal("ls --at now is the newest snapshot", d and d["snapshot"], 2)
    res = mk("ls", OTTO, "--at", "2001-01-01")
    c("ls --at before every snapshot: exit 1, clear error",
      res.returncode == 1 and "nothing at that time" in res.stderr, res.stderr)
    res = mk("ls", "nobody@hosteurope.de")
    c("ls of an unknown mailbox: exit 1",
      res.returncode == 1 and "no snapshots of" in res.stderr, res.stderr)
    res = mk("ls", OTTO, "--search", "body:x")
    c("ls with an unknown search key: exit 2",
      res.returncode == 2 and "unknown search key" in res.stderr, res.stderr)
    res = mk("ls", OTTO, "--at", "someday")
    c("ls --at someday: exit 2", res.returncode == 2, res.stderr)

    # --- diff ----------------------------------------------------------------
    res, d = mkj("diff", OTTO, "1", "2")
    folders = {f["folder"]: f for f in (d or {}).get("folders", [])}
    inbox = folders.get("INBOX", {})
    c.equal("diff: the expunged message is removed",
            inbox.get("removed"), [ids.get(expunged_mid)])
    c.equal("diff: one flag change",
            [(x["before"], x["after"]) for x in inbox.get("flags", [])],
            [("", "F")])
    c.equal("diff: the Archive tree is removed",
            sorted((k, len(v["removed"])) for k, v in folders.items()
                   if k != "INBOX"), [("Archive", 1), ("Archive/2024", 1)])

    live_before = tree_digest(maildir)

    # --- bad input: nothing changes ------------------------------------------
    link = os.path.join(work, "link")
    os.symlink(maildir, link)
    nonempty = os.path.join(work, "nonempty")
    os.mkdir(nonempty)
    open(os.path.join(nonempty, "keep"), "w").close()
    for name, args, code, text in (
            ("folder with ..", ["--folder", "../../etc", "--to", os.path.join(work, "x1")], 1, "folder"),
            ("message id with /", ["--message", "../../etc/passwd", "--to", os.path.join(work, "x2")], 1, "not a message id"),
            ("unknown message", ["--message", "123.M1P1.nowhere"], 1, "no message"),
            ("unknown folder", ["--folder", "Nowhere"], 1, "no folder"),
            ("target is a symbolic link", ["--to", link], 1, "symbolic link"),
            ("target not empty", ["--to", nonempty], 1, "not empty"),
            ("mbox into the live mailbox", ["--format", "mbox"], 2, "export"),
            ("bad format", ["--format", "pst", "--to", os.path.join(work, "x3")], 2, "maildir, mbox or eml")):
        res = mk("restore", OTTO, "--snapshot", "1", *args)
        c(f"restore, {name}: exit {code}, clear error",
          res.returncode == code and text in res.stderr,
          f"exit {res.returncode}: {res.stderr.strip()}")
    c("bad input left the live Maildir alone", tree_digest(maildir) == live_before)
    c("bad input made no target directories",
      not any(os.path.exists(os.path.join(work, x)) for x in ("x1", "x2", "x3")))
    c("a non-empty target keeps what it held",
      os.listdir(nonempty) == ["keep"])
    # A wrong key: another key file.
    wrong = os.path.join(work, "wrong.conf")
    other = os.path.join(work, "other-repo")
    with open(conf) as f, open(wrong, "w") as g:
        g.write(f.read() + f"[repository]\nkey_file = {work}/other.key\n")
    run_mailkeep("--store", os.path.join(work, "o"), "--state", other,
                 "repo", "init")
    shutil.copy(os.path.join(other, "repo.key"), os.path.join(work, "other.key"))
    res = run_mailkeep("-c", wrong, "restore", OTTO, "--snapshot", "1",
                       "--to", os.path.join(work, "x4"))
    c("restore with a wrong key: exit 1, clear error",
      res.returncode == 1 and "key" in res.stderr.lower(), res.stderr)
    c("a wrong key wrote nothing", not os.path.exists(os.path.join(work, "x4")))
    # Quota: a limit below the usage refuses, --force restores.
    mk("scan", OTTO)
    mk("quota", "set", OTTO, "storage=1K")
    res = mk("restore", OTTO, "--snapshot", "1", "--folder", "Archive")
    c("restore past the quota: exit 1, says --force",
      res.returncode == 1 and "--force" in res.stderr, res.stderr)
    c("the refused restore left the live Maildir alone",
      tree_digest(maildir) == live_before)

    # --- restore a folder into Restored-<date>/ ------------------------------
    res, d = mkj("restore", OTTO, "--snapshot", "1", "--folder", "Archive",
                 "--force")
    c("restore --folder Archive", res.returncode == 0, res.stderr)
    mk("quota", "set", OTTO, "storage=0")
    prefix = d["folder"] if d else "?"
    c("the new folder is Restored-<date>",
      re.fullmatch(r"Restored-\d{4}-\d{2}-\d{2}", prefix) is not None, prefix)
    boxes = set(imap.list_boxes())
    c("IMAP lists Restored-<date>/Archive and Archive/2024",
      {f"{prefix}/Archive", f"{prefix}/Archive/2024"} <= boxes, sorted(boxes))
    for box in ("Archive", "Archive/2024"):
        got = fetch_state(imap, f"{prefix}/{box}")[0]
        c.equal(f"{prefix}/{box}: same messages, flags, keyword, dates",
                got, before[box])
    c("nothing was left in the staging area",
      [n for n in os.listdir(os.path.join(maildir, "tmp"))
       if n.startswith("mailkeep")] == [])

    # --- restore one message -------------------------------------------------
    res, d = mkj("restore", OTTO, "--snapshot", "1", "--message",
                 ids.get(expunged_mid, "?"), "--to", "original")
    c("restore --message (the expunged one) --to original",
      res.returncode == 0 and d["messages"] == 1, res.stderr)
    got = fetch_state(imap, "INBOX")[0]
    c.equal("the expunged message is back with its flags and date",
            got.get(expunged_mid), before["INBOX"][expunged_mid])

    # --- restore --to original -----------------------------------------------
    res, d = mkj("restore", OTTO, "--snapshot", "1", "--to", "original")
    c("restore --to original", res.returncode == 0, res.stderr)
    c.equal("only the missing Archive messages came back",
            (d["messages"], d["skipped"]) if d else None, (2, 5))
    for box in ("Archive", "Archive/2024"):
        c.equal(f"{box} is back as it was", fetch_state(imap, box)[0],
                before[box])
    got = fetch_state(imap, "INBOX")[0]
    c.equal("INBOX: nothing duplicated, later flag changes kept",
            sorted(got), sorted(before["INBOX"]))
    res, d = mkj("restore", OTTO, "--snapshot", "1", "--to", "original")
    c.equal("a second restore --to original adds nothing",
            (d["messages"], d["skipped"]) if d else res.stderr, (0, 7))

    # --- whole mailbox into an empty place: same UIDs, UIDVALIDITY -----------
    copy = dc.maildir(COPY)
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    res = mk("restore", OTTO, "--snapshot", "1", "--to", copy)
    c("restore --to DIR (whole mailbox)", res.returncode == 0, res.stderr)
    for dirpath, dirnames, filenames in os.walk(os.path.dirname(copy)):
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), dc.uid, dc.gid)
    os.chown(os.path.dirname(copy), dc.uid, dc.gid)
    cimap = dc.imap(COPY)
    c.equal("the copy has INBOX's UIDVALIDITY and next UID",
            uidvalidity(cimap, "INBOX"), inbox_validity)
    c.equal("the copy has INBOX's UIDs", fetch_state(cimap, "INBOX")[1],
            inbox_uids)
    for box in ("INBOX", "Archive", "Archive/2024"):
        c.equal(f"the copy's {box} is as it was", fetch_state(cimap, box)[0],
                before[box])
    cimap.logout()

    # --- restore while LMTP delivers ------------------------------------------
    delivered, errors = [], []

    def deliver():
        for i in range(25):
            try:
                r = dc.deliver(OTTO, message(100 + i, f"live {i}", "live@example.net"))
                if r[OTTO][0] == 250:
                    delivered.append(f"<mailkeep-test-{100 + i}-900@example.net>")
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))

    t = threading.Thread(target=deliver)
    t.start()
    res = mk("restore", OTTO, "--snapshot", "1")
    t.join()
    c("restore into the live mailbox during LMTP deliveries",
      res.returncode == 0 and not errors, res.stderr + " ".join(errors))
    got = fetch_state(imap, "INBOX")[0]
    c.equal("every delivery arrived", sorted(m for m in delivered if m in got),
            sorted(delivered))
    c.equal("25 deliveries", len(delivered), 25)
    prefix2 = [b for b in imap.list_boxes()
               if b.startswith("Restored-") and b.endswith("-2/INBOX")]
    c("a second new-folder restore the same day gets '-2'", len(prefix2) == 1,
      imap.list_boxes())
    if prefix2:
        c.equal("the restored INBOX is complete",
                fetch_state(imap, prefix2[0])[0], before["INBOX"])
        # Restored copies have base names of their own, so the next
        # snapshot keeps them beside their originals.
        res = mk("--json", "backup", "run")
        c("backup run after the restores", res.returncode == 0, res.stderr)
        res = mk("--json", "ls", OTTO)
        listed = json.loads(res.stdout)["messages"] if res.returncode == 0 else []
        per = {}
        for m in listed:
            per[m["folder"]] = per.get(m["folder"], 0) + 1
        c.equal("the next snapshot holds every restored copy",
                per.get(prefix2[0]), len(before["INBOX"]))
        c.equal("... and every message of INBOX beside them", per.get("INBOX"),
                len(got))
        c("... the copies named <ID>.<folder>", all(
            m["id"].endswith("." + prefix2[0].split("/")[0])
            for m in listed if m["folder"] == prefix2[0]), listed[:2])

    # --- force-resync finds nothing to repair ---------------------------------
    boxes = sorted(selectable(imap))
    states = {b: fetch_state(imap, b) for b in boxes}
    imap.logout()
    dc.doveadm("force-resync", "-u", OTTO, "*")
    imap = dc.imap(OTTO)
    c.equal("doveadm force-resync changed nothing IMAP sees",
            {b: fetch_state(imap, b) for b in boxes}, states)
    imap.logout()

    # --- exports --------------------------------------------------------------
    ref = os.path.join(work, "ref")
    mk("restore", OTTO, "--snapshot", "1", "--to", ref)
    originals = {}
    for dirpath, _, filenames in os.walk(ref):
        if os.path.basename(dirpath) in ("new", "cur"):
            folder = os.path.basename(os.path.dirname(dirpath)) if \
                os.path.dirname(dirpath) != ref else ""
            for n in filenames:
                with open(os.path.join(dirpath, n), "rb") as f:
                    originals[(folder, n.split(":")[0].split(",")[0])] = (
                        f.read(), os.stat(os.path.join(dirpath, n)).st_mtime)
    mb = os.path.join(work, "mbox")
    res = mk("restore", OTTO, "--snapshot", "1", "--format", "mbox", "--to", mb)
    c("export mbox", res.returncode == 0, res.stderr)
    parsed = {}
    for name in sorted(os.listdir(mb)):
        folder = "" if name == "INBOX.mbox" else "." + name[:-5]
        box = mailbox.mbox(os.path.join(mb, name))
        for key in box.keys():
            raw = box.get_bytes(key)
            # mboxrd: one '>' less before From_ lines in the body.
            raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)
            email.message_from_bytes(raw)  # parses
            parsed.setdefault(folder, []).append(raw)
        box.close()
    want = {}
    for (folder, base), (raw, _) in originals.items():
        want.setdefault(folder, []).append(raw)
    c.equal("every mbox parses back into the same messages",
            {k: sorted(v) for k, v in parsed.items()},
            {k: sorted(v) for k, v in want.items()})
    em = os.path.join(work, "eml")
    res = mk("restore", OTTO, "--snapshot", "1", "--format", "eml", "--to", em)
    c("export eml", res.returncode == 0, res.stderr)
    got = {}
    for dirpath, _, filenames in os.walk(em):
        rel = os.path.relpath(dirpath, em)
        folder = "" if rel == "INBOX" else "." + rel
        for n in filenames:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                got[(folder, n[:-4])] = (f.read(), os.stat(p).st_mtime)
    c.equal("every .eml is its message byte for byte, mtime = INTERNALDATE",
            got, originals)
    for raw, _ in got.values():
        m = email.message_from_bytes(raw)
        if m["Message-ID"] is None:
            c("an .eml without Message-ID", False, raw[:200])

    imap_copies(c, dc, mk, mkj)


def base_names(folder_dir):
    """Base names of a Maildir folder's messages."""
    out = set()
    for sub in ("new", "cur"):
        for n in os.listdir(os.path.join(folder_dir, sub)):
            out.add(re.split("[,:]", n)[0])
    return out


def imap_copies(c, dc, mk, mkj):
    """IMAP COPY keeps the base name in the other folder (a hardlink):
    both copies are in the snapshot, and a deleted copy comes back."""
    dc.add_user(KOPIE, "secret")
    for i in range(3):
        dc.deliver(KOPIE, message(200 + i, f"Kopie {i}", "kopie@example.net"))
    imap = dc.imap(KOPIE)
    imap.create_box("Projekte")
    imap.select_box("INBOX")
    for uid in imap.uids()[:2]:
        imap.copy_to(uid, "Projekte")
    projekte = fetch_state(imap, "Projekte")[0]
    maildir = dc.maildir(KOPIE)
    shared = base_names(maildir) & base_names(os.path.join(maildir, ".Projekte"))
    c.equal("Dovecot's COPY kept the base names", len(shared), 2)
    res = mk("backup", "run", KOPIE)
    c("backup with copies", res.returncode == 0, res.stderr)
    res, d = mkj("ls", KOPIE)
    per = {}
    for m in (d or {}).get("messages", []):
        per.setdefault(m["folder"], set()).add(m["id"])
    c.equal("the snapshot holds INBOX and both copies",
            {k: len(v) for k, v in per.items()}, {"INBOX": 3, "Projekte": 2})
    c.equal("... the copies under the base names they share",
            per.get("Projekte"), shared)
    snap = d["snapshot"] if d else 0
    imap.select_box("INBOX")
    imap.delete_box("Projekte")
    res = mk("backup", "run", KOPIE)
    c("backup after the copies' folder was deleted", res.returncode == 0,
      res.stderr)
    res, d = mkj("restore", KOPIE, "--snapshot", str(snap), "--folder",
                 "Projekte")
    c("restore --folder Projekte", res.returncode == 0 and d["messages"] == 2,
      res.stderr)
    prefix = d["folder"] if d else "?"
    c.equal("the copies are back with their flags and dates",
            fetch_state(imap, f"{prefix}/Projekte")[0], projekte)
    imap.logout()


if __name__ == "__main__":
    sys.exit(main())
