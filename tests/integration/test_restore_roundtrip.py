#!/usr/bin/env python3
"""Months of simulated mail, a snapshot a day, every snapshot restored.

A seeded store of three mailboxes lives through 60 simulated days:
deliveries into new/ and straight into Sent, new/ to cur/ moves, flag and
keyword changes, moves between folders, expunges, a folder with a
subfolder renamed, a folder deleted, a message delivered to several
mailboxes as one hardlinked file, dovecot-uidlist and dovecot-keywords
rewritten, messages with "From " lines, without a final newline and with
CRLF line ends.  Every message's mtime (its INTERNALDATE) is its
simulated delivery time, and each day ends with `mailkeep backup run
--offline --time <that evening>`, so the snapshots carry simulated times.
A digest of each mailbox (per path: content hash and mtime) is kept for
each day.

Then for every snapshot of every mailbox:
- `restore --to DIR` gives back byte for byte what the store held that
  day: the same paths (folders, new/ or cur/, names with their flags), the
  same contents and mtimes, the same metadata files;
and for the snapshots of every 4th day, of the day of the rename and of
the deletion (every day with MK_RT_EXPORT_EVERY=1; MK_RT_DAYS sets the
number of days; the test runs on /dev/shm when there is one, since it is
about content, not durability, and fsyncs would dominate):
- `restore --format mbox` parses back with Python's mailbox.mbox into the
  same messages (after removing mboxrd's one '>' of quoting and the
  newline added to a message without one), each From_ line dated with the
  message's INTERNALDATE;
- `restore --format eml` parses back with email into the same messages,
  one file per message with its mtime.
Snapshots are picked by id and by `--at` with the simulated times.
Needs no Dovecot.
"""

import email
import email.policy
import hashlib
import json
import mailbox
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import make_maildir, run_mailkeep, run_scenario  # noqa: E402
from test_backup_faults import digest_tree  # noqa: E402
from test_backup_roundtrip import first_difference  # noqa: E402

# Two months by default; MK_RT_DAYS and MK_RT_EXPORT_EVERY=1 for more.
DAYS = max(int(os.environ.get("MK_RT_DAYS", "60")), 6)
EXPORT_EVERY = max(int(os.environ.get("MK_RT_EXPORT_EVERY", "4")), 1)
RENAME_DAY, DELETE_DAY = DAYS // 3, 2 * DAYS // 3
START = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400
MAILBOXES = ("anna@example.org", "bert@example.org", "carl@example.net")
FOLDERS = ("", ".Sent", ".Archive", ".Projects", ".Projects.Kueche")
KEYWORDS = b"0 $Forwarded\n1 Important\n"


def evening(day):
    return START + day * DAY + 22 * 3600


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Sim:
    """The store and what happens to it, day by day."""

    def __init__(self, root, rng):
        self.root, self.rng, self.seq = root, rng, 0
        self.contents = {}  # sha256 -> message bytes
        self.boxes = {}
        for address in MAILBOXES:
            user, domain = address.split("@")
            path = os.path.join(root, domain, user, "Maildir")
            make_maildir(path, *FOLDERS[1:])
            for folder in FOLDERS[1:]:
                open(os.path.join(path, folder, "maildirfolder"), "w").close()
            with open(os.path.join(path, "subscriptions"), "w") as f:
                f.write("Sent\nArchive\nProjects\n")
            self.boxes[address] = path

    def message(self, day, subject):
        """A small message; now and then an awkward one."""
        self.seq += 1
        words = ["Angebot", "Kueche", "quota", "backup", "Termin", "Rechnung"]
        lines = [" ".join(self.rng.choice(words) for _ in range(self.rng.randint(3, 12)))
                 for _ in range(self.rng.randint(1, 8))]
        kind = self.rng.random()
        if kind < 0.15:
            lines.insert(1, "From the desk of the director, with regards")
            lines.insert(2, ">From a quoted line")
            lines.append(">>From twice quoted")
        head = (f"From: sender{self.seq % 7}@example.com\nTo: someone@example.org\n"
                f"Subject: {subject} {self.seq}\n"
                f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(evening(day)))}\n"
                f"Message-ID: <{self.seq}.{self.rng.randrange(10**9)}@sim.example>\n")
        data = head + "\n" + "\n".join(lines) + "\n"
        if 0.15 <= kind < 0.2:
            data = data.replace("\n", "\r\n")
        elif 0.2 <= kind < 0.25:
            data = data.rstrip("\n")
        return data.encode()

    def deliver(self, day, maildirs, folder="", flags=None):
        """One file in tmp/, renamed into new/ (or cur/ with flags) of
        each Maildir: hardlinks when there are several, as LMTP does."""
        data = self.message(day, "mail")
        self.contents[hashlib.sha256(data).hexdigest()] = data
        t = evening(day) - self.rng.randint(3600, 20 * 3600)
        vsize = len(data) + data.count(b"\n") - data.count(b"\r\n")
        name = f"{t}.M{self.seq}P77.sim,S={len(data)},W={vsize}"
        sub = "new" if flags is None else "cur"
        final = name if flags is None else f"{name}:2,{flags}"
        tmp = os.path.join(maildirs[0], folder, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.utime(tmp, (t, t))
        for other in maildirs[1:]:
            os.link(tmp, os.path.join(other, folder, sub, final))
        os.rename(tmp, os.path.join(maildirs[0], folder, sub, final))

    def folders(self, maildir):
        return [""] + sorted(d for d in os.listdir(maildir) if d.startswith(".")
                             and os.path.isdir(os.path.join(maildir, d)))

    def files(self, maildir, folder, sub):
        d = os.path.join(maildir, folder, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def day(self, day):
        rng = self.rng
        names = list(self.boxes)
        for address, maildir in self.boxes.items():
            for _ in range(rng.randint(0, 3)):
                self.deliver(day, [maildir])
            if rng.random() < 0.4:
                self.deliver(day, [maildir], ".Sent", "S")
            # Read mail: new/ to cur/ with \\Seen.
            for name in self.files(maildir, "", "new")[:rng.randint(0, 2)]:
                os.rename(os.path.join(maildir, "new", name),
                          os.path.join(maildir, "cur", name + ":2,S"))
            folders = self.folders(maildir)
            for _ in range(rng.randint(0, 3)):
                folder = rng.choice(folders)
                cur = self.files(maildir, folder, "cur")
                if not cur:
                    continue
                name = rng.choice(cur)
                base, _, flags = name.partition(":2,")
                action = rng.random()
                src = os.path.join(maildir, folder, "cur", name)
                if action < 0.5:
                    flags = "".join(sorted(set(flags) ^ {rng.choice("FRSTab")}))
                    os.rename(src, os.path.join(maildir, folder, "cur",
                                                f"{base}:2,{flags}"))
                elif action < 0.8:
                    dest = rng.choice([f for f in folders if f != folder])
                    os.rename(src, os.path.join(maildir, dest, "cur", name))
                else:
                    os.unlink(src)
            # Dovecot rewrites its uidlist as mail comes and goes.
            with open(os.path.join(maildir, "dovecot-uidlist.tmp"), "w") as f:
                f.write(f"3 V{START} N{day + 100} G{day:08x}\n")
                for i, name in enumerate(self.files(maildir, "", "cur")):
                    f.write(f"{i + 1} :{name.partition(':2,')[0]}\n")
            os.rename(os.path.join(maildir, "dovecot-uidlist.tmp"),
                      os.path.join(maildir, "dovecot-uidlist"))
        if day % 9 == 4:
            self.deliver(day, [self.boxes[n] for n in names])
        anna = self.boxes[MAILBOXES[0]]
        if day == 10:
            with open(os.path.join(anna, "dovecot-keywords"), "wb") as f:
                f.write(KEYWORDS)
        if day == RENAME_DAY:
            for old, new in ((".Projects", ".Work"), (".Projects.Kueche", ".Work.Kueche")):
                os.rename(os.path.join(anna, old), os.path.join(anna, new))
            with open(os.path.join(anna, "subscriptions"), "w") as f:
                f.write("Sent\nArchive\nWork\n")
        if day == DELETE_DAY:
            shutil.rmtree(os.path.join(self.boxes[MAILBOXES[1]], ".Archive"))

    def messages(self, maildir):
        """{(folder, base name): path} of the messages of a Maildir."""
        out = {}
        for folder in self.folders(maildir):
            for sub in ("new", "cur"):
                for name in self.files(maildir, folder, sub):
                    out[folder, name.split(",")[0].split(":")[0]] = os.path.join(
                        folder, sub, name)
        return out


def export_name(folder):
    return folder[1:] if folder else "INBOX"


def unquote(data):
    out = []
    for line in data.split(b"\n"):
        stripped = line.lstrip(b">")
        if stripped.startswith(b"From ") and line.startswith(b">"):
            line = line[1:]
        out.append(line)
    return b"\n".join(out)


def check_exports(check, env, tmp, sim, address, snap, day_state, what, bad):
    """mbox and eml of one snapshot against the day's messages."""
    want = {}   # folder -> {base: (bytes, mtime)}
    for key, value in day_state.items():
        if value is None or not ("/new/" in "/" + key or "/cur/" in "/" + key):
            continue
        sha, mtime = value
        parts = key.split("/")
        folder = "" if len(parts) == 2 else parts[0]
        want.setdefault(folder, {})[parts[-1].split(",")[0].split(":")[0]] = (
            sim.contents[sha], mtime)
    for fmt in ("mbox", "eml"):
        to = os.path.join(tmp, "x", f"{fmt}-{snap['id']}")
        args = ["--snapshot", str(snap["id"])] if fmt == "eml" else [
            "--at", iso(snap["at"] + 1800)]
        res = run_mailkeep(*env, "restore", address, *args, "--format", fmt, "--to", to)
        if res.returncode != 0:
            bad.append(f"{what} {fmt}: exit {res.returncode}: {res.stderr.strip()}")
            continue
        got = {}
        if fmt == "mbox":
            for name in os.listdir(to):
                folder = "" if name == "INBOX.mbox" else "." + name[:-len(".mbox")]
                box = mailbox.mbox(os.path.join(to, name), create=False)
                for key in box.keys():
                    data = unquote(box.get_bytes(key))
                    msg = box.get_message(key)
                    got.setdefault(folder, {})[msg["Message-ID"]] = (
                        data, msg.get_from())
            for folder, msgs in want.items():
                for base, (data, mtime) in msgs.items():
                    parsed = email.message_from_bytes(data)
                    g = got.get(folder, {}).pop(parsed["Message-ID"], None)
                    body = data if data.endswith(b"\n") else data + b"\n"
                    date = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(mtime // 10**9))
                    if g is None or g[0] != body or g[1] != f"MAILER-DAEMON {date}":
                        bad.append(f"{what} mbox: {folder or 'INBOX'}/{base} differs "
                                   f"or is missing")
                        break
            if any(got.values()):
                bad.append(f"{what} mbox: more messages than the store held")
        else:
            for folder, msgs in want.items():
                d = os.path.join(to, export_name(folder))
                names = sorted(os.listdir(d)) if os.path.isdir(d) else []
                if names != sorted(f"{b}.eml" for b in msgs):
                    bad.append(f"{what} eml: {export_name(folder)}: other files")
                    continue
                for base, (data, mtime) in msgs.items():
                    path = os.path.join(d, f"{base}.eml")
                    with open(path, "rb") as f:
                        parsed = email.message_from_binary_file(f)
                    with open(path, "rb") as f:
                        raw = f.read()
                    if (raw != data or os.stat(path).st_mtime_ns != mtime or
                            parsed["Message-ID"] != email.message_from_bytes(
                                data)["Message-ID"]):
                        bad.append(f"{what} eml: {export_name(folder)}/{base} differs")
            # A folder of the snapshot with no message comes back empty.
            extra = {d for d in os.listdir(to) if os.listdir(os.path.join(to, d))} - {
                export_name(f) for f in want}
            if extra:
                bad.append(f"{what} eml: more folders than the store held: {extra}")
        shutil.rmtree(to)


def scenario(check, rng, tmp):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    env = ("--store", root, "--state", state)
    sim = Sim(root, rng)
    run_mailkeep(*env, "repo", "init", check=True)
    states = {}   # (address, day) -> digest tree
    snaps = {}    # (address, day) -> {"id", "at"}
    started = time.monotonic()
    for day in range(DAYS):
        sim.day(day)
        for address, maildir in sim.boxes.items():
            states[address, day] = digest_tree(maildir)
        res = run_mailkeep(*env, "--json", "backup", "run", "--offline", "--time",
                           iso(evening(day)))
        if not check(f"day {day}: backup run --time", res.returncode == 0, res.stderr):
            return
        for m in json.loads(res.stdout)["mailboxes"]:
            snaps[m["address"], day] = {"id": m["snapshot"], "at": evening(day)}
    check(f"{DAYS} days simulated and backed up", len(snaps) == DAYS * len(MAILBOXES),
          len(snaps))
    print(f"# simulated in {time.monotonic() - started:.1f} s", flush=True)

    res = run_mailkeep(*env, "--json", "snapshots")
    listed = {s["id"]: s for s in json.loads(res.stdout)["snapshots"]}
    check("every snapshot carries its simulated time",
          all(listed.get(s["id"], {}).get("time") == iso(s["at"]) for s in snaps.values()),
          [(k, s, listed.get(s["id"])) for k, s in list(snaps.items())[:2]])
    res = run_mailkeep(*env, "backup", "run", "--time", "yesterday")
    check("--time without --offline is a usage error", res.returncode == 2, res.stderr)
    res = run_mailkeep(*env, "backup", "run", "--offline", "--time", "someday")
    check("--time that does not parse is a usage error", res.returncode == 2, res.stderr)

    bad, exported = [], 0
    os.makedirs(os.path.join(tmp, "x"))
    for (address, day), snap in sorted(snaps.items(), key=lambda kv: kv[1]["id"]):
        what = f"{address} day {day} (snapshot {snap['id']})"
        to = os.path.join(tmp, "x", f"dir-{snap['id']}")
        pick = (["--at", iso(snap["at"] + 3600)] if day % 2 else
                ["--snapshot", str(snap["id"])])
        res = run_mailkeep(*env, "restore", address, *pick, "--to", to)
        if res.returncode != 0:
            bad.append(f"{what}: exit {res.returncode}: {res.stderr.strip()}")
            continue
        diff = first_difference(digest_tree(to), states[address, day])
        if diff is not None:
            bad.append(f"{what}: {diff}")
        shutil.rmtree(to)
        if day % EXPORT_EVERY == EXPORT_EVERY - 1 or day in (RENAME_DAY, DELETE_DAY):
            check_exports(check, env, tmp, sim, address, snap, states[address, day],
                          what, bad)
            exported += 1
    check(f"all {len(snaps)} snapshots restore byte for byte, and the mbox and eml "
          f"exports of {exported} of them parse back into the same messages", not bad,
          "; ".join(bad[:4]) + f" ({len(bad)} problems)")
    # The simulation did what it says.
    anna = [states[MAILBOXES[0], d] for d in (RENAME_DAY - 1, RENAME_DAY)]
    check("the folder rename is in the snapshots",
          ".Projects.Kueche/" in anna[0] and ".Work.Kueche/" in anna[1]
          and ".Projects/" not in anna[1])
    bert = [states[MAILBOXES[1], d] for d in (DELETE_DAY - 1, DELETE_DAY)]
    check("the folder deletion is in the snapshots",
          ".Archive/" in bert[0] and ".Archive/" not in bert[1])
    last = {a: states[a, DAYS - 1] for a in MAILBOXES}
    check("the store has grown and moved: every folder holds mail at the end",
          all(sum(1 for k in t if k.count("/") == 2 and "/cur/" in "/" + k) > 5
              for t in last.values()), {a: len(t) for a, t in last.items()})
    check("keywords, flags and messages awkward for mbox are in the store",
          any(":2," in k and any(c in k.split(":2,")[1] for c in "ab")
              for k in last[MAILBOXES[0]]) and
          any(b"\r\n" in c for c in sim.contents.values()) and
          any(not c.endswith(b"\n") for c in sim.contents.values()) and
          any(b"\n>From " in c for c in sim.contents.values()))
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("check --sample 100 passes after it all", res.returncode == 0, res.stderr)
    print(f"# done in {time.monotonic() - started:.1f} s", flush=True)


def main():
    # The test is about content, not durability: on a tmpfs the fsyncs of
    # some 900 runs and restores cost nothing.
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        tempfile.tempdir = "/dev/shm"
    return run_scenario(scenario, 20261129, "mk-rt-")


if __name__ == "__main__":
    sys.exit(main())
