#!/usr/bin/env python3
"""mailkeepd under faults, on Maildirs made by hand (no Dovecot).

  kill9      kill -9 in the middle of a writer's activity, restart: once
             ready, usage equals an independent count exactly
  overflow   100k files at once with a tiny inotify queue: IN_Q_OVERFLOW,
             usage exact again, overflows > 0 in /v1/status and /metrics
  symlinks   folders, cur/, messages and a home that are symbolic links are
             not followed; the daemon keeps running
  twice      a second daemon on the same state directory exits 1
  reload     SIGHUP and POST /v1/reload with an invalid config file keep the
             daemon running and log the reason
  empty      a daemon over an empty store becomes ready
  late       a home (or domain) directory made before its Maildir
  rmrf       a whole Maildir removed with rm -rf, several times
  newdir     a folder whose cur/ is made just as the daemon fails to watch
             it (an LD_PRELOAD shim makes it): mail put there is counted
  hops       messages moved on (new/ to cur/, to another folder, unlinked)
             before the daemon reads the event of their arrival

    python3 test_live_reliability.py [SCENARIO...]

Needs root.  overflow lowers fs.inotify.max_queued_events to 16 from just
before mailkeepd starts until it has made its inotify instance (a moment),
then puts the old value back.  MK_KEEP_TMP=1 keeps the temp dir.
"""

import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (BIN_DIR, Checks, Mailkeepd, MailkeepdError,  # noqa: E402
                   make_maildir, run_mailkeep, wait_for)

SYNC = "sync@barrier.test"
QUEUE_SYSCTL = "/proc/sys/fs/inotify/max_queued_events"


class Store:
    """A store root (%d/%n/Maildir) with the barrier mailbox, and a state
    directory, in the test's temp dir."""

    def __init__(self, tmp, name):
        self.root = os.path.join(tmp, name, "store")
        self.state = os.path.join(tmp, name, "state")
        self.seq = 0
        make_maildir(self.maildir(SYNC))

    def maildir(self, address):
        user, domain = address.split("@")
        return os.path.join(self.root, domain, user, "Maildir")

    def message(self, maildir, folder="", sub="cur", size=100, sized=True,
                flags="S"):
        """Write a message (tmp/ then rename, as an MDA does); returns its
        path.  sized: with ,S= and ,W= in the name."""
        self.seq += 1
        body = (b"line of a test message\n" * (size // 23 + 1))[:size - 1] + b"\n"
        base = f"{1700000000 + self.seq}.M{self.seq}P{os.getpid()}.test"
        vsize = len(body) + body.count(b"\n")
        name = base + (f",S={len(body)},W={vsize}" if sized else "")
        if sub == "cur":
            name += ":2," + flags
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(body)
        path = os.path.join(maildir, folder, sub, name)
        os.rename(tmp, path)
        return path


def diff(got, want):
    if not isinstance(got, dict) or not isinstance(want, dict):
        return f"got {got!r}, want {want!r}"
    out = [f"{k}: got {got[k]}, want {want[k]}"
           for k in ("messages", "bytes", "vbytes") if got[k] != want[k]]
    for name in sorted(set(got["folders"]) | set(want["folders"])):
        if got["folders"].get(name) != want["folders"].get(name):
            out.append(f"folder {name!r}: got {got['folders'].get(name)}, "
                       f"want {want['folders'].get(name)}")
    return "; ".join(out)


def agree(check, mk, st, what, addresses, timeout=1.0):
    """Each mailbox equals a walk of its Maildir (polling up to timeout),
    after the barrier mailbox shows every earlier event was handled."""
    if timeout > 0:
        check(f"{what}: the barrier file counted within a second",
              mk.sync(SYNC, st.maildir(SYNC)))
    for address in addresses:
        ok, got, want = mk.agrees(address, st.maildir(address), timeout)
        check(f"{what}: {address} equals a walk of its Maildir", ok,
              diff(got, want))


def log_errors(mk):
    """The log lines that say what went wrong (errors, sanitizer reports)."""
    lines = [line for line in mk.log_text().splitlines()
             if re.search(r": error: |ERROR: |SUMMARY: |runtime error", line)]
    return "\n".join(lines[-6:])


def alive(check, mk, what):
    ok = mk.alive() and mk.status() is not None
    if not ok:
        wait_for(lambda: not mk.alive())  # for its exit status
    check(f"{what}: mailkeepd still runs and answers", ok,
          f"exit status {mk.proc.poll()}; log:\n{log_errors(mk)}")
    return ok


# --- kill -9 in the middle of activity -------------------------------------

class Writer(threading.Thread):
    """Maildir activity as an MDA and an IMAP server cause it: deliveries
    (with and without ,S=), new/ to cur/, flag changes, moves between
    folders, expunges, folders made, renamed and deleted Dovecot's way."""

    def __init__(self, st, addresses, seed):
        super().__init__(daemon=True)
        self.st, self.addresses = st, addresses
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.ops = 0
        self.error = None

    def files(self, md, folder, sub):
        d = os.path.join(md, folder, sub)
        return [os.path.join(d, f) for f in os.listdir(d)] if os.path.isdir(d) else []

    def folders(self, md):
        return [""] + [e for e in os.listdir(md) if e.startswith(".")
                       and not e.startswith("..")]

    def step(self):
        rng, st = self.rng, self.st
        md = st.maildir(rng.choice(self.addresses))
        folder = rng.choice(self.folders(md))
        op = rng.random()
        if op < 0.35:
            st.message(md, folder, rng.choice(["new", "cur"]),
                       rng.randint(50, 5000), sized=rng.random() < 0.8)
        elif op < 0.5:
            for path in self.files(md, folder, "new")[:3]:
                os.rename(path, path.replace("/new/", "/cur/") + ":2,")
        elif op < 0.65:
            files = self.files(md, folder, "cur")
            if files:
                path = rng.choice(files)
                os.rename(path, path.split(":2,")[0] + ":2,"
                          + rng.choice(["S", "FS", "RS", "Sa", ""]))
        elif op < 0.75:
            files = self.files(md, folder, "cur")
            to = rng.choice(self.folders(md))
            if files:
                path = rng.choice(files)
                os.rename(path, os.path.join(md, to, "cur", os.path.basename(path)))
        elif op < 0.88:
            files = self.files(md, folder, rng.choice(["new", "cur"]))
            if files:
                os.unlink(rng.choice(files))
        elif op < 0.94:
            make_maildir(md, f".F{rng.randint(0, 9999)}")
        elif op < 0.97 and folder:
            new = f".R{rng.randint(0, 9999)}"
            if not os.path.exists(os.path.join(md, new)):
                os.rename(os.path.join(md, folder), os.path.join(md, new))
        elif folder:
            trash = os.path.join(md, "..DOVECOT-TRASHED")
            os.rename(os.path.join(md, folder), trash)
            shutil.rmtree(trash)

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    self.step()
                except FileNotFoundError:
                    pass
                self.ops += 1
                time.sleep(0.0005)
        except Exception as exc:  # reported by the scenario
            self.error = exc


def scenario_kill9(check, tmp):
    st = Store(tmp, "kill9")
    boxes = ["one@a.test", "two@a.test", "three@b.test"]
    for address in boxes:
        md = make_maildir(st.maildir(address), ".Work", ".Archive.2024")
        for folder in ("", ".Work", ".Archive.2024"):
            for i in range(5):
                st.message(md, folder, "cur", 200 + 300 * i, sized=i != 2)
    mk = Mailkeepd()
    with mk:
        mk.start(st.root, st.state)
        agree(check, mk, st, "first start", boxes)
        check.equal("SIGTERM: exit 0 (writes the catalog)", mk.stop(), 0)
        check("the catalog was written",
              os.path.getsize(os.path.join(st.state, "catalog.db")) > 0)
        mk.start(st.root, st.state)
        agree(check, mk, st, "restart from the catalog", boxes)

        writer = Writer(st, boxes, seed=20240601)
        writer.start()
        time.sleep(0.8)
        alive(check, mk, "under the writer's activity")
        mk.kill(signal.SIGKILL)
        check.equal("kill -9 in the middle of activity", mk.stop(), -signal.SIGKILL)
        time.sleep(0.5)  # activity the daemon misses
        writer.stop.set()
        writer.join()
        check("the writer ran without error", writer.error is None and writer.ops > 200,
              f"{writer.ops} operations, error {writer.error!r}")
        lock = os.path.join(st.state, "mailkeepd.lock")
        check("the lock file still names the dead daemon",
              open(lock).read().strip() == str(mk.pid))
        try:
            mk.start(st.root, st.state)
        except MailkeepdError as exc:
            check("restart after kill -9", False, str(exc))
            return
        check.equal("restart after kill -9: the lock names the new pid",
                    open(lock).read().strip(), str(mk.pid))
        agree(check, mk, st, "after kill -9, once ready (no waiting)", boxes,
              timeout=0)
        for address in boxes:
            st.message(st.maildir(address), "", "new", 1234)
        agree(check, mk, st, "a delivery after the restart", boxes)
        check.equal("SIGTERM after the restart: exit 0", mk.stop(), 0)


# --- inotify queue overflow ------------------------------------------------

def overflows(mk):
    doc = mk.status() or {}
    code, metrics = mk.get("/metrics")
    m = re.search(r"^mailkeep_watch_overflows_total (\d+)$", metrics, re.M)
    return doc.get("watch", {}).get("overflows"), int(m.group(1)) if m else None


def settled(mk):
    doc = mk.status() or {}
    return (doc.get("usage", {}).get("stale") == 0
            and doc.get("scans", {}).get("queued") == 0
            and doc.get("scans", {}).get("running") == 0)


def has_inotify(pid):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                return True
    except OSError:
        pass
    return False


def scenario_overflow(check, tmp):
    st = Store(tmp, "overflow")
    big, small = "big@a.test", "small@a.test"
    make_maildir(st.maildir(big), ".Keep")
    make_maildir(st.maildir(small))
    st.message(st.maildir(big), ".Keep", "cur", 777)
    st.message(st.maildir(small), "", "cur", 555)
    with open(QUEUE_SYSCTL) as f:
        saved = f.read().strip()
    mk = Mailkeepd()

    def restore(pid=None):
        # Once the daemon has its inotify instance (which keeps the limit
        # in force when it was made): the lowered limit lasts a moment only.
        if pid is not None:
            wait_for(lambda: has_inotify(pid), timeout=10, interval=0.001)
        with open(QUEUE_SYSCTL, "w") as f:
            f.write(saved + "\n")
    try:
        with open(QUEUE_SYSCTL, "w") as f:
            f.write("16\n")
        mk.start(st.root, st.state, spawned=restore)
    finally:
        restore()
    check.equal("the inotify queue limit is restored", open(QUEUE_SYSCTL).read().strip(),
                saved)
    with mk:
        agree(check, mk, st, "before the burst", [big, small])
        cur = os.path.join(st.maildir(big), "cur")
        # Stopped, the daemon cannot read while 200k events come in: the
        # 16-event queue overflows for sure.
        mk.kill(signal.SIGSTOP)
        try:
            names = burst(cur, 0, 100000)
            st.message(st.maildir(small), "", "new", 999)
        finally:
            mk.kill(signal.SIGCONT)
        converge(check, mk, st, "100k files created at once", [big, small])
        status_n, metrics_n = overflows(mk)
        check("/v1/status counts inotify overflows", (status_n or 0) > 0,
              f"overflows {status_n!r}")
        check.equal("/metrics counts the same overflows", metrics_n, status_n)
        alive(check, mk, "after the burst")

        # Running, the daemon takes overflows while it rescans.
        t0 = time.monotonic()
        for i, name in enumerate(names[:5000]):
            os.unlink(os.path.join(cur, name))
            if i % 2:
                burst(cur, 100000 + i, 1)
        print(f"NOTE 5000 removed and 2500 created with mailkeepd running, "
              f"in {time.monotonic() - t0:.1f} s", flush=True)
        converge(check, mk, st, "files removed and created while it runs",
                 [big, small])
        st.message(st.maildir(big), ".Keep", "new", 4321, sized=False)
        agree(check, mk, st, "live events after the overflows", [big, small])
        alive(check, mk, "at the end")
        check.equal("SIGTERM: exit 0", mk.stop(), 0)


def burst(cur, first, n):
    """n small messages with ,S= and ,W= names, written straight into cur/."""
    names = []
    for i in range(first, first + n):
        size = 10 + i % 50
        name = f"{1700000000 + i}.M{i}P1.burst,S={size},W={size + 1}:2,S"
        fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * (size - 1) + b"\n")
        os.close(fd)
        names.append(name)
    return names


def converge(check, mk, st, what, addresses):
    """After a burst: wait (bounded, not a speed requirement) until the
    daemon has read its inotify queue (the barrier) and no scan is queued
    or running, then the usage must be exact."""
    t0 = time.monotonic()
    mk.sync(SYNC, st.maildir(SYNC), timeout=120)
    wait_for(lambda: settled(mk), timeout=120, interval=0.1)
    print(f"NOTE {what}: rescans done {time.monotonic() - t0:.1f} s later",
          flush=True)
    agree(check, mk, st, what, addresses)


# --- symbolic links --------------------------------------------------------

def rescan(check, mk, address, why):
    code, _ = mk.post("/v1/rescan?mailbox=" + address)
    check.equal(f"POST /v1/rescan?mailbox=... ({why}): 202", code, 202)
    wait_for(lambda: settled(mk), timeout=10)


def scenario_symlinks(check, tmp):
    st = Store(tmp, "symlinks")
    box = "sym@a.test"
    md = make_maildir(st.maildir(box), ".Ext", ".Keep")
    for folder in ("", ".Ext", ".Keep"):
        st.message(md, folder, "cur", 1000)
        st.message(md, folder, "new", 333, sized=False)
    outside = make_maildir(os.path.join(tmp, "symlinks", "outside", "Maildir"))
    out_files = [st.message(outside, "", "cur", 50000 + i) for i in range(3)]
    with Mailkeepd().start(st.root, st.state) as mk:
        agree(check, mk, st, "before the links", [box])

        # (mv, not rm -rf: scenario rmrf covers that)
        away = os.path.join(tmp, "symlinks", "moved-away")
        os.rename(os.path.join(md, ".Ext"), away)
        os.symlink(outside, os.path.join(md, ".Ext"))
        agree(check, mk, st, "a folder replaced by a link to a directory "
              "outside (mv; ln -s)", [box])
        check("the linked folder is not listed",
              "Ext" not in (mk._try_usage(box) or {}).get("folders", {}))
        st.message(away, "", "new", 4444)
        agree(check, mk, st, "a message put into the folder moved away", [box])
        alive(check, mk, "after the folder link")

        os.symlink(outside, os.path.join(md, ".Linked"))
        agree(check, mk, st, "a new folder that is a link", [box])

        keep_cur = os.path.join(md, ".Keep", "cur")
        os.rename(keep_cur, os.path.join(md, ".Keep", "cur.old"))
        os.symlink(os.path.join(outside, "cur"), keep_cur)
        agree(check, mk, st, "a folder's cur/ replaced by a link (mv; ln -s)",
              [box])
        rescan(check, mk, box, "so that one failure does not carry over")

        link = os.path.join(md, "new", os.path.basename(out_files[0]).split(":")[0])
        os.symlink(out_files[0], link)
        agree(check, mk, st, "a message name (with ,S= and ,W=) that is a "
              "link in new/", [box])
        os.unlink(link)
        os.symlink(out_files[1], os.path.join(md, "new", "1700000999.unsized.link"))
        agree(check, mk, st, "a message name (without ,S=) that is a link "
              "in new/", [box])

        os.symlink(os.path.dirname(outside), os.path.join(st.root, "a.test", "evil"))
        real = make_maildir(st.maildir("real@a.test"))  # the store is listed again
        check("a mailbox made after the link appears within a second",
              wait_for(lambda: mk.usage("real@a.test") is not None))
        check.equal("a home that is a link is not a mailbox",
                    mk.get("/v1/mailboxes/evil@a.test")[0], 404)
        st.message(real, "", "new", 100)

        rescan(check, mk, box, "at the end")
        agree(check, mk, st, "after a rescan", [box])
        alive(check, mk, "after the links")

        check.equal("SIGTERM: exit 0", mk.stop(), 0)


# --- one daemon per state directory ----------------------------------------

def scenario_twice(check, tmp):
    st = Store(tmp, "twice")
    with Mailkeepd().start(st.root, st.state) as mk:
        res = run_mailkeep("-f", "--store", st.root, "--state", st.state,
                           program="mailkeepd", timeout=20)
        check.equal("a second daemon on the same state dir: exit 1",
                    res.returncode, 1)
        check("... with one clear line naming the running pid",
              res.stderr.count("\n") == 1
              and f"another mailkeepd (pid {mk.pid}) uses {st.state}" in res.stderr,
              repr(res.stderr))
        doc = mk.status() or {}
        check.equal("the first daemon still answers on its socket",
                    doc.get("pid"), mk.pid)
        check("... and still counts", mk.sync(SYNC, st.maildir(SYNC)))
        check.equal("SIGTERM: exit 0", mk.stop(), 0)
    res = run_mailkeep("-f", "--store", st.root, "--state", st.state, "-x",
                       program="mailkeepd", timeout=20)
    check.equal("a bad option: exit 2", res.returncode, 2)


# --- configuration reloads -------------------------------------------------

def scenario_reload(check, tmp):
    st = Store(tmp, "reload")
    conf = os.path.join(tmp, "reload", "mailkeep.conf")
    good = (f"[store]\nroot = {st.root}\n\n[general]\nstate_dir = {st.state}\n\n"
            f"[daemon]\nstatus_socket = {st.state}/status.sock\n"
            f"control_socket = {st.state}/control.sock\n")
    with open(conf, "w") as f:
        f.write(good)
    res = run_mailkeep("-c", conf, "-n", program="mailkeepd", timeout=20)
    # The first line is mailkeep's verdict; lines about Dovecot may follow.
    check.equal("mailkeepd -n: the config is valid",
                (res.returncode, res.stdout.split("\n")[0]), (0, "configuration OK"))
    with Mailkeepd().start(None, st.state, ["-c", conf]) as mk:
        line = good.count("\n") + 1
        with open(conf, "w") as f:
            f.write(good + "[general\nlog_level = debug\n")
        logged = len(mk.log_text())
        mk.kill(signal.SIGHUP)
        reason = f"reload: {conf}:{line}: bad section line '[general'; keeping " \
                 "the running configuration"
        check("SIGHUP with an invalid file: the reason is logged within a second",
              wait_for(lambda: reason in mk.log_text()[logged:]), mk.log_tail(5))
        alive(check, mk, "SIGHUP with an invalid file")
        check.equal("... same pid", (mk.status() or {}).get("pid"), mk.pid)
        check("... and still counts", mk.agrees(SYNC, st.maildir(SYNC))[0]
              and mk.sync(SYNC, st.maildir(SYNC)))

        code, doc = mk.post("/v1/reload")
        check.equal("POST /v1/reload with an invalid file: 400 and the reason",
                    (code, doc), (400, {"error": f"{conf}:{line}: bad section line '[general'"}))

        with open(conf, "w") as f:
            f.write(good + "[general]\nstate_dir = /nonexistent\n")
        logged = len(mk.log_text())
        mk.kill(signal.SIGHUP)
        check("SIGHUP with a key given twice: refused and logged",
              wait_for(lambda: "given twice; keeping the running"
                       in mk.log_text()[logged:]), mk.log_tail(5))

        with open(conf, "w") as f:
            f.write(good.replace("[general]\n", "[general]\nlog_level = debug\n"))
        logged = len(mk.log_text())
        mk.kill(signal.SIGHUP)
        check("SIGHUP with a valid file again: reloaded",
              wait_for(lambda: "configuration reloaded" in mk.log_text()[logged:]),
              mk.log_tail(5))
        alive(check, mk, "after the valid reload")

        with open(conf, "wb") as f:
            f.write(good.encode() + b"\xff\xfe not UTF-8\n")
        logged = len(mk.log_text())
        mk.kill(signal.SIGHUP)
        check("SIGHUP with a line that is not UTF-8: refused and logged",
              wait_for(lambda: "keeping the running" in mk.log_text()[logged:]),
              mk.log_tail(5))
        alive(check, mk, "SIGHUP with a line that is not UTF-8")
        try:
            code, doc = mk.post("/v1/reload")
        except OSError as exc:  # http.client errors are OSErrors too
            code, doc = None, repr(exc)
        check("POST /v1/reload with a line that is not UTF-8: 400",
              code == 400 and "not UTF-8" in str(doc), f"got {code} {doc!r}")
        if alive(check, mk, "POST /v1/reload with a line that is not UTF-8"):
            check.equal("SIGTERM: exit 0", mk.stop(), 0)


# --- mailboxes appearing ---------------------------------------------------

def scenario_empty(check, tmp):
    root = os.path.join(tmp, "empty", "store")
    state = os.path.join(tmp, "empty", "state")
    os.makedirs(root)
    mk = Mailkeepd()
    try:
        mk.start(root, state, timeout=5)
        ok, detail = True, ""
    except MailkeepdError as exc:
        ok, detail = False, str(exc).splitlines()[0]
    check("a daemon over an empty store reports ready", ok, detail)
    mk.stop()


def scenario_late(check, tmp):
    st = Store(tmp, "late")
    with Mailkeepd().start(st.root, st.state) as mk:
        os.makedirs(os.path.join(st.root, "a.test", "early"))
        os.makedirs(os.path.join(st.root, "c.test"))
        # Let the daemon list the store while these have no Maildir yet.
        time.sleep(0.6)
        md = make_maildir(st.maildir("early@a.test"))
        st.message(md, "", "new", 2000)
        agree(check, mk, st, "a home made before its Maildir", ["early@a.test"])
        md = make_maildir(st.maildir("first@c.test"))
        st.message(md, "", "new", 3000)
        agree(check, mk, st, "a domain made before its first Maildir",
              ["first@c.test"])
        alive(check, mk, "late Maildirs")


def scenario_rmrf(check, tmp):
    st = Store(tmp, "rmrf")
    keep = "keep@a.test"
    st.message(make_maildir(st.maildir(keep)), "", "cur", 100)
    with Mailkeepd().start(st.root, st.state) as mk:
        for n in range(5):
            address = f"gone{n}@a.test"
            md = make_maildir(st.maildir(address), ".A", ".B", ".B.C")
            for folder in ("", ".A", ".B", ".B.C"):
                st.message(md, folder, "cur", 500)
            ok, got, want = mk.agrees(address, md)
            check(f"round {n}: a new mailbox is counted within a second", ok,
                  diff(got, want))
            shutil.rmtree(os.path.dirname(md))
            ok, got, _ = mk.agrees(address, md)
            check(f"round {n}: rm -rf of it: gone within a second", ok,
                  f"got {got!r}")
            if not mk.alive():
                break
        alive(check, mk, "after the rm -rf rounds")
        if mk.alive():
            agree(check, mk, st, "the other mailbox", [keep])


def scenario_hops(check, tmp):
    st = Store(tmp, "hops")
    address = "hops@a.test"
    md = make_maildir(st.maildir(address), ".Work")
    with Mailkeepd().start(st.root, st.state) as mk:
        # Each message leaves new/ straight after it arrived there, while
        # the daemon is stopped: it reads each arrival when the file has
        # gone on already.  Names with sizes first (their leaving needs no
        # look at the file), then names without (whose leaving makes the
        # daemon count the mailbox again).
        for sized in (True, False):
            mk.kill(signal.SIGSTOP)
            for i in range(300):
                path = st.message(md, "", "new", 300 + i, sized=sized)
                cur = path.replace("/new/", "/cur/") + ":2,"
                os.rename(path, cur)
                if i % 3 == 1:
                    os.rename(cur, os.path.join(md, ".Work", "cur",
                                                os.path.basename(cur)))
                elif i % 3 == 2:
                    os.unlink(cur)
            mk.kill(signal.SIGCONT)
            agree(check, mk, st, "messages moved on before the daemon looked"
                  + ("" if sized else " (names without sizes)"), [address])
        alive(check, mk, "hops")


def scenario_newdir(check, tmp):
    st = Store(tmp, "newdir")
    address = "newdir@a.test"
    md = make_maildir(st.maildir(address))
    shim = os.path.join(BIN_DIR, "tests", "libmkdir_race.so")
    with Mailkeepd().start(st.root, st.state,
                           env={"LD_PRELOAD": shim}) as mk:
        # The folder arrives whole but without cur/ (made aside, renamed
        # in): the daemon's watch on its cur/ fails and the shim makes
        # cur/ right then.
        aside = os.path.join(md, "tmp", ".Race")
        for sub in ("new", "tmp"):
            os.makedirs(os.path.join(aside, sub))
        os.rename(aside, os.path.join(md, ".Race"))
        check("the shim made cur/ when the daemon watched the new folder",
              wait_for(lambda: os.path.isdir(os.path.join(md, ".Race", "cur")),
                       1.0))
        agree(check, mk, st, "a folder without cur/", [address])
        st.message(md, ".Race", "cur", 700)
        agree(check, mk, st, "mail in the cur/ made as the watch failed",
              [address])
        alive(check, mk, "newdir")


SCENARIOS = {"kill9": scenario_kill9, "overflow": scenario_overflow,
             "symlinks": scenario_symlinks, "twice": scenario_twice,
             "reload": scenario_reload,
             "empty": scenario_empty, "late": scenario_late, "rmrf": scenario_rmrf,
             "newdir": scenario_newdir, "hops": scenario_hops}


def main():
    names = sys.argv[1:] or list(SCENARIOS)
    for name in names:
        if name not in SCENARIOS:
            print(f"unknown scenario {name}; choose from {' '.join(SCENARIOS)}")
            return 2
    check = Checks()
    tmp = tempfile.mkdtemp(prefix="mailkeep-live-")
    os.chmod(tmp, 0o755)
    try:
        for name in names:
            check.prefix = f"[{name}] "
            os.makedirs(os.path.join(tmp, name))
            t0 = time.monotonic()
            try:
                SCENARIOS[name](check, tmp)
            except Exception as exc:  # report, go on with the next scenario
                traceback.print_exc()
                check("scenario ran to the end", False,
                      f"{type(exc).__name__}: {exc}")
            if os.environ.get("MK_KEEP_TMP") != "1":
                shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
            print(f"NOTE {name}: {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        if os.environ.get("MK_KEEP_TMP") == "1":
            print(f"keeping {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
