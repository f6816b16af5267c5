#!/usr/bin/env python3
"""bench/bench_daemon.py: benchmarks of mailkeepd, the live usage daemon.

    bench/bench_daemon.py gen OUT MAILBOXES PER_MAILBOX
    bench/bench_daemon.py run [options]          (see --help)

Usually started by bench/bench-daemon.sh, which checks the tools first.
Python 3.9+, standard library only.
"""

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

# --- stores ------------------------------------------------------------------
#
# Names-only Maildir++ stores: INBOX and five folders, each with cur/ new/
# tmp/, messages named the way Dovecot names them (,S= and ,W= in every
# name), as empty files.  The daemon takes sizes from the names, so it
# never reads a message of these stores.

NOW = 1793491200  # 2026-11-01T00:00:00Z, as gen-corpus.py
DAY = 86400
FOLDERS = ("", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive")
WEIGHTS = (50, 16, 1, 6, 4, 23)
HOSTS = ("imap1", "imap2", "mail-be01", "mail-be02", "dovecot3")
FLAGS = ("S", "S", "S", "S", "RS", "FS", "", "DS")


def mailbox_path(i, n_domains):
    return "dom%04d.example/user%05d/Maildir" % (i % n_domains, i)


def mailbox_address(i, n_domains):
    return "user%05d@dom%04d.example" % (i, i % n_domains)


def gen_mailbox(job):
    out, seed, i, n_domains, per = job
    rng = random.Random(seed * 1000003 + i)
    root = os.path.join(out, mailbox_path(i, n_domains))
    os.makedirs(os.path.dirname(os.path.dirname(root)), 0o700, exist_ok=True)
    os.mkdir(os.path.dirname(root), 0o700)
    os.mkdir(root, 0o700)
    for f in FOLDERS:
        path = os.path.join(root, f)
        if f:
            os.mkdir(path, 0o700)
            os.close(os.open(os.path.join(path, "maildirfolder"),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for sub in ("cur", "new", "tmp"):
            os.mkdir(os.path.join(path, sub), 0o700)
    names, nbytes = set(), 0
    for _ in range(per):
        folder = rng.choices(FOLDERS, WEIGHTS)[0]
        in_new = folder == "" and rng.random() < 0.03
        t = NOW - rng.randrange(730 * DAY)
        while True:
            size = max(300, int(rng.lognormvariate(8.8244, 0.8)))  # ~6.8 KB
            base = "%d.M%dP%d.%s,S=%d,W=%d" % (
                t, rng.randrange(1000000), rng.randrange(1000, 99999),
                rng.choice(HOSTS), size, size + size // 45)
            if base not in names:
                break
        names.add(base)
        name = base if in_new else base + ":2," + rng.choice(FLAGS)
        os.close(os.open(os.path.join(root, folder, "new" if in_new else "cur",
                                      name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        nbytes += size
    return per, nbytes


def gen(out, mailboxes, per, seed=1):
    """Write the store to OUT (via OUT.partial) and OUT.json."""
    mailboxes, per = int(mailboxes), int(per)
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp, 0o755)
    n_domains = max(1, mailboxes // 50)
    jobs = [(tmp, seed, i, n_domains, per) for i in range(mailboxes)]
    t0 = time.monotonic()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        done = list(pool.imap_unordered(gen_mailbox, jobs, chunksize=50))
    os.rename(tmp, out)
    meta = {"mailboxes": mailboxes, "per_mailbox": per, "seed": seed,
            "domains": n_domains, "messages": sum(d[0] for d in done),
            "bytes": sum(d[1] for d in done),
            "seconds": round(time.monotonic() - t0, 1)}
    with open(out + ".json", "w") as f:
        json.dump(meta, f)
        f.write("\n")
    return meta



# --- HTTP over UNIX and TCP sockets --------------------------------------------


class Http:
    """A GET-only HTTP/1.1 client on one kept-alive connection.  addr is
    a UNIX socket path or a (host, port) pair."""

    def __init__(self, addr, timeout=30.0):
        self.addr, self.timeout = addr, timeout
        self.sock, self.buf = None, b""

    def connect(self):
        if isinstance(self.addr, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.timeout)
        try:
            s.connect(self.addr)
        except OSError:
            s.close()
            raise
        self.sock, self.buf = s, b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def get(self, path):
        """(status, body) of GET path.  A kept-alive connection that the
        daemon closed meanwhile (idle timeout) is opened again once."""
        if self.sock is None:
            self.connect()
            return self._get(path)
        try:
            return self._get(path)
        except (BrokenPipeError, ConnectionResetError, ConnectionError):
            self.close()
            self.connect()
            return self._get(path)

    def _get(self, path):
        sock = self.sock
        sock.sendall(b"GET " + path.encode() +
                     b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = sock.recv(262144)
            if not chunk:
                self.close()
                raise ConnectionError("connection closed by the daemon")
            buf += chunk
        head = buf[:end].lower()
        i = head.find(b"\r\ncontent-length:")
        j = head.find(b"\r\n", i + 2)
        total = end + 4 + int(head[i + 17:j if j > 0 else len(head)])
        while len(buf) < total:
            chunk = sock.recv(262144)
            if not chunk:
                self.close()
                raise ConnectionError("connection closed by the daemon")
            buf += chunk
        self.buf = buf[total:]
        status = int(head[9:12])
        if b"\r\nconnection: close" in head:
            self.close()
        return status, buf[end + 4:total]

    def json(self, path):
        status, body = self.get(path)
        if status != 200:
            raise RuntimeError("GET %s: %d %s" % (path, status, body[:200]))
        return json.loads(body)


# --- the daemon ------------------------------------------------------------------


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_kv(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def slab_objects(name):
    """Objects in a kernel slab cache (None if not readable).  Caches of
    the same size are often merged, so deltas are approximate."""
    try:
        with open("/sys/kernel/slab/%s/objects" % name) as f:
            n = int(f.read().split()[0])
        with open("/sys/kernel/slab/%s/object_size" % name) as f:
            return n, int(f.read())
    except (OSError, ValueError):
        return None


class Daemon:
    """mailkeepd -f -c STATE/mailkeepd.conf, with the TCP /metrics
    listener on a free loopback port."""

    def __init__(self, exe, store, state, prefix=(), env=None):
        self.exe, self.store, self.state = exe, store, state
        self.prefix, self.env = list(prefix), env
        self.sock = os.path.join(state, "status.sock")
        self.port = None
        self.proc = None

    def start(self):
        os.makedirs(self.state, exist_ok=True)
        self.port = free_port()
        conf = os.path.join(self.state, "mailkeepd.conf")
        with open(conf, "w") as f:
            f.write("[store]\nroot = %s\n\n[general]\nstate_dir = %s\n\n"
                    "[daemon]\nstatus_socket = %s\ncontrol_socket = %s\n"
                    "metrics_listen = 127.0.0.1:%d\n" % (
                        self.store, self.state, self.sock,
                        os.path.join(self.state, "control.sock"), self.port))
        self.logf = open(os.path.join(self.state, "mailkeepd.log"), "ab")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.prefix + [self.exe, "-f", "-c", conf], stdin=subprocess.DEVNULL,
            stdout=self.logf, stderr=subprocess.STDOUT, env=self.env)
        self.pid = self.proc.pid
        self.http = Http(self.sock)

    def status(self):
        try:
            return self.http.json("/v1/status")
        except (OSError, ConnectionError):
            self.http.close()
            raise

    def wait_ready(self, timeout=1800.0, interval=0.01):
        """Seconds from the start to /v1/status ready=true."""
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mailkeepd exited with %d; see %s" % (
                    self.proc.returncode, self.logf.name))
            try:
                st = self.status()
                if st["ready"]:
                    return time.monotonic() - self.t0
            except OSError:
                pass
            if time.monotonic() - self.t0 > timeout:
                raise RuntimeError("mailkeepd not ready after %d s" % timeout)
            time.sleep(interval)

    def stop(self):
        """SIGTERM; seconds until it exited (it writes the catalog)."""
        self.http.close()
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=1800)
        self.logf.close()
        if rc != 0:
            raise RuntimeError("mailkeepd exited with %d" % rc)
        return time.monotonic() - t

    def mem(self):
        st = read_kv("/proc/%d/status" % self.pid)
        kib = lambda k: int(st[k].split()[0]) if k in st else None
        return {"rss_kib": kib("VmRSS"), "hwm_kib": kib("VmHWM"),
                "anon_kib": kib("RssAnon"), "file_kib": kib("RssFile"),
                "threads": int(st.get("Threads", 0))}

    def cpu(self):
        """CPU seconds of all its threads so far (schedstat: ns)."""
        total = 0
        tdir = "/proc/%d/task" % self.pid
        for tid in os.listdir(tdir):
            try:
                with open("%s/%s/schedstat" % (tdir, tid)) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total / 1e9

    def watches(self):
        """inotify watches the kernel holds for the process."""
        n = 0
        fddir = "/proc/%d/fd" % self.pid
        for fd in os.listdir(fddir):
            try:
                if os.readlink(os.path.join(fddir, fd)) != "anon_inode:inotify":
                    continue
                with open("/proc/%d/fdinfo/%s" % (self.pid, fd)) as f:
                    n += sum(1 for line in f if line.startswith("inotify wd:"))
            except OSError:
                pass
        return n


# --- helpers ------------------------------------------------------------------------


def log(*args):
    print("bench-daemon:", *args, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))]


def med(values):
    return statistics.median(values)


def load_store(data, name):
    with open(os.path.join(data, name + ".json")) as f:
        meta = json.load(f)
    meta["name"] = name
    meta["path"] = os.path.join(data, name)
    return meta


def mailbox_of_path(meta, path):
    """The address of a message path in a store."""
    rel = os.path.relpath(path, meta["path"]).split(os.sep)
    return "%s@%s" % (rel[1], rel[0])


def mailbox_of(meta, i):
    n_domains = meta["domains"]
    return mailbox_address(i, n_domains), os.path.join(
        meta["path"], mailbox_path(i, n_domains))


BODY_LINE = b"Benchmark delivery for mailkeepd, one line of text. 0123456789\n"


def message(i, rng):
    """An RFC 5322 message of 1 to 16 KB with LF line ends."""
    head = ("Return-Path: <bench@example.org>\nDelivered-To: bench\n"
            "Message-ID: <%d.%d@bench.example>\nFrom: bench@example.org\n"
            "To: bench\nSubject: delivery %d\n\n" % (
                i, rng.randrange(1 << 30), i)).encode()
    return head + BODY_LINE * rng.randrange(16, 256)


def dovecot_name(i, size, vsize):
    t = time.time()
    return "%d.M%dP%d.benchhost,S=%d,W=%d" % (
        int(t), int(t * 1e6) % 1000000, os.getpid() * 1000 + i % 1000,
        size, vsize)


def deliver(maildir, i, rng, fsync):
    """Write into tmp/, then rename into new/ the way an MDA does.
    Returns (new path, size, ns of the write, ns when rename() returned)."""
    data = message(i, rng)
    size, vsize = len(data), len(data) + data.count(b"\n")
    name = dovecot_name(i, size, vsize)
    tmp = os.path.join(maildir, "tmp", name)
    new = os.path.join(maildir, "new", name)
    t0 = time.perf_counter_ns()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    if fsync:
        os.fsync(fd)
    os.close(fd)
    t1 = time.perf_counter_ns()
    os.rename(tmp, new)
    t2 = time.perf_counter_ns()
    return new, size, t1 - t0, t2


# --- 1. delivery latency ----------------------------------------------------------------


def phase_latency(d, meta, n, seed, fsync, n_rtt):
    rng = random.Random(seed)
    http = Http(d.sock)
    ids = rng.sample(range(meta["mailboxes"]), min(n, meta["mailboxes"]))
    probe = "/v1/mailboxes/" + mailbox_of(meta, ids[0])[0]
    for _ in range(50):
        http.get(probe)
    rtt = []
    for _ in range(n_rtt):
        t = time.perf_counter_ns()
        http.get(probe)
        rtt.append(time.perf_counter_ns() - t)
    res = {"n": n, "fsync": fsync, "rtt_ns": rtt, "deliver": [],
           "expunge": [], "write_ns": [], "loadavg": [loadavg()]}
    delivered = []
    for k in range(n):
        address, maildir = mailbox_of(meta, ids[k % len(ids)])
        path = "/v1/mailboxes/" + address
        before = http.json(path)
        new, size, wns, t_renamed = deliver(maildir, k, rng, fsync)
        polls = 0
        while True:
            doc = http.json(path)
            t_seen = time.perf_counter_ns()
            polls += 1
            if doc["messages"] != before["messages"]:
                break
            if t_seen - t_renamed > 10e9:
                raise RuntimeError("%s: delivery not seen in 10 s" % address)
        if (doc["messages"] != before["messages"] + 1 or
                doc["bytes"] != before["bytes"] + size):
            raise RuntimeError("%s: usage %s after delivering %d bytes to %s"
                               % (address, doc, size, before))
        res["deliver"].append((t_seen - t_renamed, polls))
        res["write_ns"].append(wns)
        delivered.append((path, new, size))
        time.sleep(rng.uniform(0.002, 0.010))
    # The same messages expunged: unlink, poll until the count drops.
    for path, new, size in delivered:
        before = http.json(path)
        os.unlink(new)
        t_gone = time.perf_counter_ns()
        polls = 0
        while True:
            doc = http.json(path)
            t_seen = time.perf_counter_ns()
            polls += 1
            if doc["messages"] != before["messages"]:
                break
            if t_seen - t_gone > 10e9:
                raise RuntimeError("%s: expunge not seen in 10 s" % path)
        if doc["bytes"] != before["bytes"] - size:
            raise RuntimeError("%s: wrong usage after an expunge" % path)
        res["expunge"].append((t_seen - t_gone, polls))
        time.sleep(rng.uniform(0.002, 0.010))
    http.close()
    res["loadavg"].append(loadavg())
    return res


# --- event bursts ------------------------------------------------------------------------


def wait_events(d, target_events, target_messages, timeout=600, interval=0.005):
    t0 = time.monotonic()
    while True:
        st = d.status()
        if (st["watch"]["events"] >= target_events and
                st["usage"]["messages"] == target_messages):
            return st
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("events not handled: %s" % st)
        time.sleep(interval)


def prepare_burst(meta, n, nmb, seed):
    """n messages written into tmp/ of nmb mailboxes: (tmp, new) pairs,
    and the address of the last one."""
    rng = random.Random(seed)
    ids = rng.sample(range(meta["mailboxes"]), min(nmb, meta["mailboxes"]))
    moves = []
    for k in range(n):
        address, maildir = mailbox_of(meta, ids[k % len(ids)])
        data = message(k, rng)
        name = dovecot_name(k, len(data), len(data) + data.count(b"\n"))
        name = name.replace(".benchhost", ".b%d" % k)
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        moves.append((tmp, os.path.join(maildir, "new", name)))
    return moves, address


def wait_mailbox(d, address, messages, timeout=600, interval=0.02):
    """Until the mailbox shows `messages`.  One inotify queue holds the
    events of all watches in order, so once the last event is applied,
    all earlier ones are too."""
    http = Http(d.sock)
    t0 = time.monotonic()
    try:
        while http.json("/v1/mailboxes/" + address)["messages"] != messages:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("%s: events not handled" % address)
            time.sleep(interval)
    finally:
        http.close()


def phase_burst(d, meta, n, nmb, seed, hook=None):
    """Deliver n messages as fast as rename() goes, then expunge them;
    the time until the daemon shows both, and its CPU time."""
    moves, last = prepare_burst(meta, n, nmb, seed)
    per_last = sum(1 for _, new in moves if mailbox_of_path(meta, new) == last)
    res = {}
    for what in ("deliver", "expunge"):
        st = d.status()
        ev0, msgs0 = st["watch"]["events"], st["usage"]["messages"]
        last0 = Http(d.sock).json("/v1/mailboxes/" + last)["messages"]
        if hook:
            hook("start", what)
        cpu0 = d.cpu()
        t0 = time.monotonic()
        if what == "deliver":
            for tmp, new in moves:
                os.rename(tmp, new)
            want, last_want = msgs0 + n, last0 + per_last
        else:
            for _, new in moves:
                os.unlink(new)
            want, last_want = msgs0 - n, last0 - per_last
        t_fs = time.monotonic() - t0
        if hook:
            # Under valgrind: no polls while collecting.
            hook("end", what)
        wait_mailbox(d, last, last_want)
        t = time.monotonic() - t0
        cpu = d.cpu() - cpu0
        st = wait_events(d, ev0 + n, want)
        res[what] = {"events": st["watch"]["events"] - ev0, "seconds": t,
                     "fs_seconds": t_fs, "cpu_seconds": cpu,
                     "overflows": st["watch"]["overflows"],
                     "rescans": st["scans"]["rescans"]}
    return res


# --- 4. requests per second ---------------------------------------------------------


def rps_worker(addr, path, t_start, t_end, q):
    try:
        http = Http(addr)
        for _ in range(20):
            http.get(path)
        n = errors = 0
        while time.time() < t_start:
            time.sleep(0.001)
        while time.time() < t_end:
            status, _ = http.get(path)
            n += 1
            errors += status != 200
        q.put((n, errors))
    except Exception as e:  # noqa: BLE001 - reported by the parent
        q.put((0, repr(e)))


def rps_run(d, addr, path, conc, duration):
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    t_start = time.time() + 0.5 + 0.05 * conc
    t_end = t_start + duration
    procs = [ctx.Process(target=rps_worker, args=(addr, path, t_start, t_end, q))
             for _ in range(conc)]
    for p in procs:
        p.start()
    time.sleep(max(0, t_start - time.time()))
    cpu0 = d.cpu()
    time.sleep(max(0, t_end - time.time()))
    cpu1 = d.cpu()
    got = [q.get(timeout=duration + 60) for _ in procs]
    for p in procs:
        p.join()
    for n, err in got:
        if isinstance(err, str) or err:
            raise RuntimeError("client failed on %s: %s" % (path, err))
    n = sum(g[0] for g in got)
    return {"requests": n, "rps": n / duration,
            "cpu_us_per_request": (cpu1 - cpu0) / n * 1e6 if n else None}


def wrk_run(port, path, conc, duration):
    threads = min(conc, 2)
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conc, "-d%ds" % duration,
           "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return {"rps": float(line.split()[1]), "cmd": " ".join(cmd)}
    raise RuntimeError("wrk printed no Requests/sec:\n" + out)


def phase_rps(d, meta, concs, duration, runs, use_wrk):
    address = mailbox_of(meta, meta["mailboxes"] // 2)[0]
    targets = [
        ("unix", "/v1/status", d.sock),
        ("unix", "/v1/mailboxes/" + address, d.sock),
        ("unix", "/metrics", d.sock),
        ("tcp", "/metrics", ("127.0.0.1", d.port)),
    ]
    out = []
    for kind, path, addr in targets:
        for conc in concs:
            r = [rps_run(d, addr, path, conc, duration) for _ in range(runs)]
            row = {"socket": kind, "path": path, "clients": conc,
                   "client": "python", "rps": [x["rps"] for x in r],
                   "loadavg": loadavg(),
                   "cpu_us": [x["cpu_us_per_request"] for x in r]}
            log("  %s %s x%d: %.0f req/s, %.1f us daemon CPU each" % (
                kind, path, conc, med(row["rps"]), med(row["cpu_us"])))
            out.append(row)
            if kind == "tcp" and use_wrk:
                w = []
                for _ in range(runs):
                    cpu0 = d.cpu()
                    x = wrk_run(d.port, path, conc, duration)
                    x["cpu_us"] = (d.cpu() - cpu0) / (x["rps"] * duration) * 1e6
                    w.append(x)
                row = {"socket": kind, "path": path, "clients": conc,
                       "client": "wrk", "rps": [x["rps"] for x in w],
                       "cpu_us": [x["cpu_us"] for x in w], "cmd": w[0]["cmd"]}
                log("  %s %s x%d (wrk): %.0f req/s" % (
                    kind, path, conc, med(row["rps"])))
                out.append(row)
    return out


# --- 2./3. startup time and memory -------------------------------------------------------


def phase_startup(exe, meta, state_root, runs, settle):
    """runs pairs of starts: cold (fresh state directory, no catalog),
    then warm (a restart on the catalog the cold run wrote at exit)."""
    state = os.path.join(state_root, meta["name"])
    rows = []
    # A first, unmeasured cold start brings the store's directories into
    # the page cache ("prime", reported apart).
    plan = [("prime", 0)] + [(mode, r) for r in range(runs)
                             for mode in ("cold", "warm")]
    for mode, r in plan:
        if mode != "warm":
            shutil.rmtree(state, ignore_errors=True)
        slab0 = slab_objects("inotify_inode_mark")
        d = Daemon(exe, meta["path"], state)
        d.start()
        ready = d.wait_ready()
        cpu = d.cpu()
        hwm_ready = d.mem()["hwm_kib"]
        time.sleep(settle)
        m = d.mem()
        st = d.status()
        slab1 = slab_objects("inotify_inode_mark")
        row = dict(m, mode=mode, run=r, ready_s=ready, cpu_s=cpu,
                   loadavg=loadavg(),
                   hwm_at_ready_kib=hwm_ready, watches=d.watches(),
                   status_watches=st["watch"]["watches"],
                   polled=st["usage"]["polled"],
                   mailboxes=st["usage"]["mailboxes"],
                   messages=st["usage"]["messages"],
                   slab_marks=(slab1[0] - slab0[0]) if slab0 and slab1
                   else None,
                   slab_mark_size=slab1[1] if slab1 else None)
        row["stop_s"] = d.stop()
        if (row["messages"] != meta["messages"] or
                row["mailboxes"] != meta["mailboxes"] or row["polled"]):
            raise RuntimeError("%s: daemon counted %s" % (meta["name"], st))
        log("  %s %s #%d: ready in %.2f s (CPU %.1f s), RSS %.1f MiB, "
            "HWM %.1f MiB, anon %.1f MiB, %d watches" % (
                meta["name"], mode, r + 1, ready, cpu,
                m["rss_kib"] / 1024, m["hwm_kib"] / 1024,
                m["anon_kib"] / 1024, row["watches"]))
        rows.append(row)
    return rows


# --- profiles ------------------------------------------------------------------------------


def check_complete(d, meta):
    """Every mailbox counted and watched: another process of the same user
    holding inotify watches can push this one into polling."""
    st = d.status()
    if (st["usage"]["messages"] != meta["messages"] or
            st["usage"]["mailboxes"] != meta["mailboxes"] or
            st["usage"]["polled"]):
        raise RuntimeError("%s: daemon counted %s (polled mailboxes: is "
                           "fs.inotify.max_user_watches shared with another "
                           "daemon?)" % (meta["name"], st["usage"]))
    return st


def wait_idle(d, quiet=1.0, timeout=1800):
    """Until the daemon used no CPU for `quiet` seconds."""
    t0 = time.monotonic()
    last, since = d.cpu(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.2)
        c = d.cpu()
        if c - last > 0.002:
            since = time.monotonic()
        last = c
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("mailkeepd never went idle")


PERSIST_S = 30  # live.c: live_persist_tv


def after_persist(d):
    """Just after a tick of the daemon's persist timer (every 30 s from
    the start) and the catalog write it caused: a window of ~25 s
    without one, so that a profile holds only the work asked for."""
    t = time.monotonic() - d.t0
    tick = (int(t // PERSIST_S) + 1) * PERSIST_S
    time.sleep(tick - t + 3.0)
    wait_idle(d, quiet=0.5)


def cg_parse(fn, top):
    """Total instructions of a callgrind dump and its top functions by
    self cost."""
    total = None
    with open(fn) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", fn],
                         check=True, capture_output=True, text=True).stdout
    funcs = []
    started = False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started or not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[0][0].isdigit():
            continue
        ir = int(parts[0].replace(",", ""))
        name, _, obj = parts[2].partition(" [")
        name = name.split(":", 1)[1] if ":" in name else name
        if name.startswith("0x"):
            # No symbols (a stripped library): name the object.
            name = "%s+%s" % (os.path.basename(obj.rstrip("]")),
                              name.split("'")[0])
        funcs.append((name, ir))
        if len(funcs) >= top:
            break
    incl = subprocess.run(["callgrind_annotate", "--inclusive=yes", fn],
                          check=True, capture_output=True, text=True).stdout
    return total, funcs, "mk_catalog_put_usage" in incl


def phase_callgrind(exe, meta, state_root, res_dir, n_events, n_req, seed):
    """Instructions of the event loop thread and workers while the daemon
    handles n_events deliveries and expunges, and n_req requests of each
    kind (collection only between the dumps)."""
    state = os.path.join(state_root, "cg-" + meta["name"])
    out = os.path.join(res_dir, "callgrind")
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
              "--callgrind-out-file=%s/cg.out" % out]
    d = Daemon(exe, meta["path"], state, prefix=prefix)
    d.start()
    d.wait_ready(timeout=3600, interval=0.5)
    check_complete(d, meta)

    def ctl(*args):
        subprocess.run(["callgrind_control"] + list(args) + [str(d.pid)],
                       check=True, capture_output=True)

    ctl("-i", "on")
    dumps = []

    def hook(when, what):
        if when == "start":
            after_persist(d)
            ctl("-z")
        else:
            wait_idle(d)
            ctl("-d", what)
            dumps.append(what)

    burst = phase_burst(d, meta, n_events, 100, seed, hook)
    address = mailbox_of(meta, meta["mailboxes"] // 2)[0]
    http = Http(d.sock)
    reqs = {"status": "/v1/status", "mailbox": "/v1/mailboxes/" + address,
            "metrics": "/metrics"}
    for name, path in reqs.items():
        http.get(path)
        after_persist(d)
        ctl("-z")
        for _ in range(n_req):
            http.get(path)
        wait_idle(d)
        ctl("-d", name)
        dumps.append(name)
    http.close()
    d.stop()
    res = {"events": n_events, "requests": n_req, "burst": burst,
           "paths": reqs, "dumps": {}}
    files = sorted((f for f in os.listdir(out) if f.startswith("cg.out.")),
                   key=lambda f: [int(x) for x in f.split(".")[2:] if x.isdigit()])
    # One file per dump, in order (a final one at exit is ignored).
    for what, fn in zip(dumps, files):
        total, funcs, persist = cg_parse(os.path.join(out, fn), 12)
        per = n_events if what in ("deliver", "expunge") else n_req
        res["dumps"][what] = {"file": fn, "ir": total, "per": per,
                              "top": funcs, "catalog_write": persist}
        if persist:
            log("  callgrind %s: a catalog write fell into the window" % what)
        log("  callgrind %s: %.0f instructions each" % (what, total / per))
    return res


def phase_heap(native, exe, meta, state_root, res_dir, settle, mode):
    """A massif snapshot of the heap once the daemon is ready: "cold" with
    a fresh state directory, "warm" restarted on a catalog that a native
    run wrote just before."""
    state = os.path.join(state_root, "heap-" + meta["name"])
    shutil.rmtree(state, ignore_errors=True)
    if mode == "warm":
        d = Daemon(native, meta["path"], state)
        d.start()
        d.wait_ready()
        d.stop()
    snap = os.path.join(res_dir, "massif-%s-%s.out" % (meta["name"], mode))
    allocs = ["--alloc-fn=mk_x" + f for f in (
        "malloc", "calloc", "reallocarray", "strdup", "strndup", "asprintf",
        "grow")]
    prefix = ["valgrind", "--tool=massif", "--vgdb=yes", "--threshold=0.5",
              "--massif-out-file=%s.exit" % snap] + allocs
    d = Daemon(exe, meta["path"], state, prefix=prefix)
    d.start()
    d.wait_ready(timeout=3600, interval=0.5)
    check_complete(d, meta)
    wait_idle(d, quiet=settle)
    subprocess.run(["vgdb", "--pid=%d" % d.pid, "detailed_snapshot", snap],
                   check=True, capture_output=True)
    d.stop()
    return massif_parse(snap, meta)


def massif_parse(snap, meta):
    """Heap bytes, malloc overhead and the first-level allocation sites."""
    res = {"file": os.path.basename(snap), "sites": []}
    with open(snap) as f:
        lines = f.read().splitlines()
    for line in lines:
        if line.startswith("mem_heap_B="):
            res["heap_B"] = int(line.split("=")[1])
        elif line.startswith("mem_heap_extra_B="):
            res["extra_B"] = int(line.split("=")[1])
    # heap_tree: "n<k>: <bytes> <where>", children indented by one space
    # per level; keep depth 1 and 2.
    for line in lines:
        s = line.lstrip(" ")
        depth = len(line) - len(s)
        if not s.startswith("n") or ":" not in s or depth not in (1, 2):
            continue
        head, rest = s.split(":", 1)
        parts = rest.strip().split(" ", 1)
        if not parts[0].isdigit():
            continue
        where = parts[1] if len(parts) > 1 else ""
        if "(" in where and ":" in where:
            where = where.split(": ", 1)[-1]
        res["sites"].append({"depth": depth, "bytes": int(parts[0]),
                             "where": where})
    # The direct callers of malloc, summed by function (inlined copies of
    # a function show up as several sites).
    funcs = {}
    for x in res["sites"]:
        if x["depth"] == 1:
            name = x["where"].split(" (")[0]
            if name == "???" and "(in " in x["where"]:
                name = os.path.basename(x["where"].split("(in ")[1].rstrip(")"))
            funcs[name] = funcs.get(name, 0) + x["bytes"]
    res["functions"] = sorted(funcs.items(), key=lambda x: -x[1])
    return res


# --- report ------------------------------------------------------------------------------


def machine_info(repo, data):
    info = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
            "kernel": os.uname().release}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        info["mem_gib"] = round(int(read_kv("/proc/meminfo")["MemTotal"]
                                    .split()[0]) / 1048576)
        info["fs"] = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE", "--target", data],
            capture_output=True, text=True).stdout.strip() or "?"
        info["commit"] = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "diff", "--quiet", "HEAD", "--",
             "daemon", "lib", "include"]).returncode
        if dirty:
            info["commit"] += " with uncommitted changes"
        info["max_user_watches"] = int(open(
            "/proc/sys/fs/inotify/max_user_watches").read())
        info["max_queued_events"] = int(open(
            "/proc/sys/fs/inotify/max_queued_events").read())
    except (OSError, KeyError, ValueError):
        pass
    return info


def ms(ns):
    return "%.2f ms" % (ns / 1e6) if ns < 10e6 else "%.1f ms" % (ns / 1e6)


def mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


def report(results):
    out = []
    w = out.append
    m = results.get("meta", {})
    stores = results.get("stores", {})
    w("Measured %s with `bench/bench-daemon.sh` (mailkeep %s, Release build)"
      % (m.get("date", "?"), m.get("commit", "?")))
    w("on %s CPUs (%s), %s GiB RAM, kernel %s, stores on %s; inotify limits "
      "%s watches, %s queued events. `$DATA` is the script's data directory."
      % (m.get("cpus"), m.get("cpu", "?"), m.get("mem_gib", "?"),
         m.get("kernel", "?"), m.get("fs", "?"),
         f"{m.get('max_user_watches', 0):,}",
         f"{m.get('max_queued_events', 0):,}"))
    w("")
    if stores:
        w("| store | mailboxes | messages per mailbox | messages | folders each |")
        w("|---|---:|---:|---:|---:|")
        for name, s in stores.items():
            w("| `%s` | %s | %s | %s | 6 |" % (
                name, f"{s['mailboxes']:,}", f"{s['per_mailbox']:,}",
                f"{s['messages']:,}"))
        w("")
    lat = results.get("latency")
    if lat:
        w("**1. Delivery to updated usage** (`%s`, %d deliveries to random "
          "mailboxes, then the same %d messages expunged):" % (
              lat["store"], lat["n"], lat["n"]))
        w("")
        rtt = lat["rtt_ns"]
        w("| | median | p90 | p99 | max | seen by the first poll |")
        w("|---|---:|---:|---:|---:|---:|")
        for what, label in (("deliver", "delivery: rename() into new/ to "
                             "the new count in a response"),
                            ("expunge", "expunge: unlink() to the new count")):
            v = [x[0] for x in lat[what]]
            first = sum(1 for x in lat[what] if x[1] == 1) / len(v)
            w("| %s | %s | %s | %s | %s | %.0f %% |" % (
                label, ms(med(v)), ms(pct(v, 90)), ms(pct(v, 99)),
                ms(max(v)), first * 100))
        w("| poll round trip alone (GET /v1/mailboxes/ADDRESS, no change) "
          "| %s | %s | %s | %s | |" % (ms(med(rtt)), ms(pct(rtt, 90)),
                                       ms(pct(rtt, 99)), ms(max(rtt))))
        wr = lat["write_ns"]
        w("| the MDA's write into tmp/ (open, write%s, close), before the "
          "clock starts | %s | %s | %s | %s | |" % (
              ", fsync" if lat["fsync"] else "", ms(med(wr)), ms(pct(wr, 90)),
              ms(pct(wr, 99)), ms(max(wr))))
        w("")
        if lat.get("loadavg"):
            w("Load average at the start and the end: %s." %
              " and ".join("%.1f" % x for x in lat["loadavg"]))
            w("")
    b = results.get("burst")
    if b:
        w("**Event throughput** (`%s`: %s messages renamed from tmp/ into "
          "new/ of %s mailboxes as fast as one Python loop goes, then "
          "unlinked):" % (b["store"], f"{b['n']:,}", f"{b['mailboxes']:,}"))
        w("")
        w("| | file system calls took | all counted after | events/s "
          "| daemon CPU per event | overflows | rescans |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for what in ("deliver", "expunge"):
            x = b[what]
            w("| %s | %.3f s | %.3f s | %s | %.1f µs | %d | %d |" % (
                what, x["fs_seconds"], x["seconds"],
                f"{x['events'] / x['seconds']:,.0f}",
                x["cpu_seconds"] / x["events"] * 1e6, x["overflows"],
                x["rescans"]))
        w("")
    st = results.get("startup")
    if st:
        w("**2. Memory and 3. startup** (%d cold and %d warm starts per "
          "store, medians; RSS read %s s after ready):" % (
              max(len([r for r in rows if r["mode"] == "cold"])
                  for rows in st.values()),
              max(len([r for r in rows if r["mode"] == "warm"])
                  for rows in st.values()),
              results.get("settle", "?")))
        w("")
        w("| store | start | ready after (min to max) | CPU to ready | watches "
          "| VmRSS | RssAnon | VmHWM | exit (writes catalog) |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, rows in st.items():
            for mode in ("cold", "warm"):
                r = [x for x in rows if x["mode"] == mode]
                if not r:
                    continue
                ready = [x["ready_s"] for x in r]
                w("| `%s` | %s | %.2f s (%.2f to %.2f) | %.2f s | %s | %s | %s "
                  "| %s | %.2f s |" % (
                      name, mode, med(ready), min(ready), max(ready),
                      med([x["cpu_s"] for x in r]),
                      f"{int(med([x['watches'] for x in r])):,}",
                      mib(med([x["rss_kib"] for x in r])),
                      mib(med([x["anon_kib"] for x in r])),
                      mib(med([x["hwm_kib"] for x in r])),
                      med([x["stop_s"] for x in r])))
        w("")
        primes = ["`%s` %.1f s" % (name, x["ready_s"]) for name, rows in
                  st.items() for x in rows if x["mode"] == "prime"]
        if primes:
            w("Before these, one unmeasured cold start per store brought its "
              "directories into the page cache; it took " +
              ", ".join(primes) + ".")
            w("")
        loads = [x["loadavg"] for rows in st.values() for x in rows
                 if "loadavg" in x]
        if loads:
            w("Load average during these starts: median %.1f, %.1f to %.1f "
              "(other work on the machine)." % (med(loads), min(loads),
                                                max(loads)))
            w("")
        derived = memory_derived(results)
        if derived:
            w("Derived (RssAnon, cold starts): " + "; ".join(derived) + ".")
            w("")
    rps = results.get("rps")
    if rps:
        w("**4. Requests per second** (`%s`; each client one kept-alive "
          "connection, %d runs of %d s, medians; daemon CPU from "
          "/proc/PID/task/*/schedstat):" % (results["rps_store"], len(rps[0]["rps"]),
                                results["rps_duration"]))
        w("")
        w("| request | socket | client | clients | requests/s (min to max) "
          "| daemon CPU per request | one core's worth (1 s / CPU) |")
        w("|---|---|---|---:|---:|---:|---:|")
        for r in rps:
            path = r["path"]
            if path.startswith("/v1/mailboxes/"):
                path = "/v1/mailboxes/ADDRESS"
            w("| GET %s | %s | %s | %d | %s (%s to %s) | %.0f µs | %s/s |" % (
                path, "UNIX" if r["socket"] == "unix" else "TCP",
                r["client"], r["clients"], f"{med(r['rps']):,.0f}",
                f"{min(r['rps']):,.0f}", f"{max(r['rps']):,.0f}",
                med(r["cpu_us"]), f"{1e6 / med(r['cpu_us']):,.0f}"))
        loads = [r["loadavg"] for r in rps if "loadavg" in r]
        if loads:
            w("")
            w("Load average during these runs: %.1f to %.1f." % (
                min(loads), max(loads)))
        w("")
    heap = results.get("heap")
    if heap:
        w("**Heap once ready** (`valgrind --tool=massif`, RelWithDebInfo "
          "build, snapshot by `vgdb detailed_snapshot` after ready; the "
          "`mk_x*` allocation wrappers are skipped):")
        w("")
        w("| run | heap | malloc overhead | largest allocation sites |")
        w("|---|---:|---:|---|")
        for name, h in heap.items():
            w("| `%s` | %s | %s | %s |" % (
                name, mib(h["heap_B"] / 1024.0), mib(h["extra_B"] / 1024.0),
                ", ".join("`%s` %.0f KiB" % (f, b / 1024.0)
                          for f, b in h["functions"][:7])))
        w("")
    cg = results.get("callgrind")
    if cg:
        w("**Instructions** (`valgrind --tool=callgrind --instr-atstart=no` on "
          "`%s`, RelWithDebInfo build, counting switched on after ready; %s "
          "events of each kind, %s requests of each kind):" % (
              cg["store"], f"{cg['events']:,}", f"{cg['requests']:,}"))
        w("")
        w("| work | instructions each | top functions by own instructions "
          "(share) |")
        w("|---|---:|---|")
        labels = {"deliver": "inotify event: a delivery (IN_MOVED_TO)",
                  "expunge": "inotify event: an expunge (IN_DELETE)",
                  "status": "GET /v1/status", "mailbox":
                  "GET /v1/mailboxes/ADDRESS", "metrics": "GET /metrics (UNIX)"}
        for what, x in cg["dumps"].items():
            top = ", ".join("`%s` %.0f %%" % (n, ir * 100.0 / x["ir"])
                            for n, ir in x["top"][:5])
            w("| %s | %s | %s |" % (labels.get(what, what),
                                    f"{x['ir'] / x['per']:,.0f}", top))
        w("")
    return "\n".join(out)


def memory_derived(results):
    st = results.get("startup", {})

    def anon(name, mode="cold"):
        r = [x["anon_kib"] for x in st.get(name, []) if x["mode"] == mode]
        return med(r) if r else None

    out = []
    s1, s10, d1 = anon("s1k"), anon("s10k"), anon("d1k")
    stores = results.get("stores", {})
    if s1 and s10:
        n = stores["s10k"]["mailboxes"] - stores["s1k"]["mailboxes"]
        per = (s10 - s1) * 1024.0 / n
        results.setdefault("derived", {})["per_mailbox_B"] = per
        out.append("%.0f bytes per mailbox (`s10k` minus `s1k`), %.1f MiB per "
                   "10,000 mailboxes" % (per, per * 10000 / 1048576))
    if s1 and d1:
        n = stores["d1k"]["messages"] - stores["s1k"]["messages"]
        per = (d1 - s1) * 1024.0 / n
        results.setdefault("derived", {})["per_message_B"] = per
        out.append("%.2f bytes per message (`d1k` minus `s1k`)" % per)
    rows = [x for x in st.get("s10k", []) if x.get("slab_marks")]
    if rows:
        marks = med([x["slab_marks"] for x in rows])
        watches = med([x["watches"] for x in rows])
        out.append("kernel: %s inotify marks of %d bytes appeared in slab "
                   "`inotify_inode_mark` for %s watches" % (
                       f"{int(marks):,}", rows[0]["slab_mark_size"],
                       f"{int(watches):,}"))
    return out


# --- main ----------------------------------------------------------------------------------

STORES = {"s1k": (1000, 100), "s10k": (10000, 100), "d1k": (1000, 1000)}
PHASES = ("startup", "latency", "burst", "rps", "callgrind", "heap")


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(
        prog="bench_daemon.py",
        description="Benchmarks of mailkeepd: delivery latency, memory, "
        "startup time, requests per second, instruction counts.")
    ap.add_argument("cmd", choices=("run", "report"))
    ap.add_argument("--data", default="bench-data/daemon",
                    help="stores, state and results (default %(default)s)")
    ap.add_argument("--mailkeepd", default=os.path.join(repo, "build-bd",
                                                         "mailkeepd"))
    ap.add_argument("--mailkeepd-prof", default=os.path.join(
        repo, "build-bd-prof", "mailkeepd"),
        help="a build with symbols for valgrind (RelWithDebInfo)")
    ap.add_argument("--stores", default=",".join(STORES),
                    help="stores to make and start on (default %(default)s; "
                    "the phases after startup need s10k)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="comma-separated subset of " + ",".join(PHASES))
    ap.add_argument("--runs", type=int, default=5,
                    help="cold+warm start pairs per store")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds after ready before reading RSS")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--rtt-n", type=int, default=1000)
    ap.add_argument("--no-fsync", action="store_true",
                    help="deliveries without fsync() before the rename")
    ap.add_argument("--burst", type=int, default=10000,
                    help="messages per burst (below max_queued_events)")
    ap.add_argument("--rps-duration", type=int, default=5)
    ap.add_argument("--rps-runs", type=int, default=3)
    ap.add_argument("--clients", default="1,10")
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--cg-events", type=int, default=5000)
    ap.add_argument("--cg-requests", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    data = os.path.abspath(args.data)
    res_dir = os.path.join(data, "results")
    state_root = os.path.join(data, "state")
    os.makedirs(res_dir, exist_ok=True)
    res_file = os.path.join(res_dir, "daemon.json")
    results = {}
    if os.path.exists(res_file):
        with open(res_file) as f:
            results = json.load(f)

    def save():
        tmp = res_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.rename(tmp, res_file)

    if args.cmd == "report":
        print(report(results))
        return
    phases = [p for p in args.phases.split(",") if p]
    for p in phases:
        if p not in PHASES:
            ap.error("unknown phase " + p)
    for exe in (args.mailkeepd,):
        if not os.access(exe, os.X_OK):
            sys.exit("bench-daemon: %s not found; build it first" % exe)
    prof = args.mailkeepd_prof if os.access(args.mailkeepd_prof, os.X_OK) \
        else args.mailkeepd

    stores = {}
    names = args.stores.split(",")
    for name in names:
        if name not in STORES:
            ap.error("unknown store " + name)
    for name, (n, per) in ((k, STORES[k]) for k in names):
        fn = os.path.join(data, name + ".json")
        ok = False
        if os.path.exists(fn) and os.path.isdir(os.path.join(data, name)):
            with open(fn) as f:
                s = json.load(f)
            ok = s["mailboxes"] == n and s["per_mailbox"] == per
        if not ok:
            shutil.rmtree(os.path.join(data, name), ignore_errors=True)
            log("generating %s: %d mailboxes x %d messages" % (name, n, per))
            gen(os.path.join(data, name), n, per, args.seed)
        stores[name] = load_store(data, name)
        log("%s: %d mailboxes, %d messages" % (
            name, stores[name]["mailboxes"], stores[name]["messages"]))
    results["stores"] = {k: {x: v[x] for x in ("mailboxes", "per_mailbox",
                                                 "messages", "domains")}
                         for k, v in stores.items()}
    results["meta"] = machine_info(repo, data)
    results["settle"] = args.settle
    save()

    if "startup" in phases:
        results["startup"] = {}
        for name in names:
            log("startup and memory: %s" % name)
            results["startup"][name] = phase_startup(
                args.mailkeepd, stores[name], state_root, args.runs,
                args.settle)
            save()
    if any(p in phases for p in ("latency", "burst", "rps")):
        meta = stores["s10k"]
        state = os.path.join(state_root, "live-s10k")
        shutil.rmtree(state, ignore_errors=True)
        d = Daemon(args.mailkeepd, meta["path"], state)
        d.start()
        log("live daemon on s10k: ready in %.1f s" % d.wait_ready())
        check_complete(d, meta)
        time.sleep(args.settle)
        try:
            if "latency" in phases:
                log("latency: %d deliveries" % args.latency_n)
                lat = phase_latency(d, meta, args.latency_n, args.seed,
                                    not args.no_fsync, args.rtt_n)
                lat["store"] = "s10k"
                results["latency"] = lat
                v = [x[0] for x in lat["deliver"]]
                log("  delivery: median %s, p99 %s; poll RTT median %s" % (
                    ms(med(v)), ms(pct(v, 99)), ms(med(lat["rtt_ns"]))))
                save()
            if "burst" in phases:
                log("burst: %d messages" % args.burst)
                b = phase_burst(d, meta, args.burst, 1000, args.seed + 1)
                b.update(store="s10k", n=args.burst, mailboxes=1000)
                results["burst"] = b
                for what in ("deliver", "expunge"):
                    x = b[what]
                    log("  %s: %d events in %.3f s, %.1f us CPU each" % (
                        what, x["events"], x["seconds"],
                        x["cpu_seconds"] / x["events"] * 1e6))
                save()
            if "rps" in phases:
                log("requests per second")
                results["rps"] = phase_rps(
                    d, meta, [int(c) for c in args.clients.split(",")],
                    args.rps_duration, args.rps_runs, not args.no_wrk)
                results["rps_store"] = "s10k"
                results["rps_duration"] = args.rps_duration
                save()
        finally:
            d.stop()
    if "callgrind" in phases:
        log("callgrind on s10k (%s)" % prof)
        cg = phase_callgrind(prof, stores["s10k"], state_root, res_dir,
                             args.cg_events, args.cg_requests, args.seed + 2)
        cg["store"] = "s10k"
        results["callgrind"] = cg
        save()
    if "heap" in phases:
        results["heap"] = {}
        for mode in ("cold", "warm"):
            log("massif heap snapshot on s1k, %s" % mode)
            results["heap"]["s1k-" + mode] = phase_heap(
                args.mailkeepd, prof, stores["s1k"], state_root, res_dir,
                args.settle, mode)
            save()
    text = report(results)
    with open(os.path.join(res_dir, "daemon.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "gen":
        print(json.dumps(gen(*sys.argv[2:])))
    else:
        main()
