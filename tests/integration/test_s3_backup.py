#!/usr/bin/env python3
"""Backups into a real Ceph RADOS Gateway (S3), started on 127.0.0.1.

A wrong secret and a credentials file others may read are refused with a
clear message, and nothing is written.  `repo init` makes the repository
in the bucket and `repo info` says where it lives, without secrets.  A
generated store is backed up, changed as Dovecot and its users change it
(deliveries, flag renames, moves, expunges), and backed up again; a large
pack goes up in parts.  The gateway is stopped in the middle of a
multipart upload and started again: the run retries and completes.  A run
killed during a multipart upload leaves no visible object, and the next run
completes.  A second host with its own state dir and credentials from the
environment backs up into the same repository at the same time, and does not
store again a body the first host stored.  Every
snapshot of both hosts restores byte for byte from the bucket.  A fresh
state dir with only the credentials and the key lists every run from the
bucket, and `mailkeep --offline restore` alone rebuilds its catalog from
it and restores every mailbox of both hosts.  A pack deleted behind our back is named by `check`.  A listing of
more than one page (1000 keys) is counted right.
"""

import concurrent.futures
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import BIN_DIR, CephRGW, Checks, wait_for  # noqa: E402
from test_backup_roundtrip import Store, first_difference, folders, tree  # noqa: E402

SOURCE_DIR = os.environ.get("MK_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GEN_CORPUS = os.path.join(SOURCE_DIR, "bench", "gen-corpus.py")

outputs = []  # every stdout and stderr, to look for secrets in


def mailkeep(conf, *args, env=None, background=False):
    cmd = [os.path.join(BIN_DIR, "mailkeep"), "-c", conf, *args]
    full_env = dict(os.environ)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        full_env.pop(k, None)
    full_env.update(env or {})
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=full_env)
    res = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)
    outputs.append(res.stdout + res.stderr)
    return res


def write_conf(path, root, state, location, **extra):
    lines = ["[store]", f"root = {root}", "[general]", f"state_dir = {state}",
             "[repository]", f"location = {location}",
             # Small parts, so that a pack of a few MiB goes up in parts.
             "multipart_threshold = 5M", "part_size = 5M", "retries = 8",
             "timeout = 10s"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_creds(path, access, secret, mode=0o600):
    with open(path, "w") as f:
        f.write(f"[default]\naws_access_key_id = {access}\n"
                f"aws_secret_access_key = {secret}\n")
    os.chmod(path, mode)
    return path


class Host:
    """One mail host: its store, state dir, configuration and the copies
    of its store taken at each backup."""

    def __init__(self, check, tmp, name, location, rng, creds=None, env=None):
        self.check, self.name, self.env = check, name, env
        self.root = os.path.join(tmp, name, "store")
        self.state = os.path.join(tmp, name, "state")
        self.tmp = os.path.join(tmp, name)
        self.location, self.rng = location, rng
        self.extra = {"credentials_file": creds} if creds else {}
        os.makedirs(self.tmp, exist_ok=True)
        self.conf = self.make_conf("mk.conf")
        self.store = Store(self.root, rng)
        self.copies = {}   # snapshot id -> the copy of its Maildir
        self.rounds = 0

    def make_conf(self, name, **extra):
        return write_conf(os.path.join(self.tmp, name), self.root, self.state,
                          self.location, **{**self.extra, **extra})

    def generate(self, mailboxes, seed):
        gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", self.root,
                              "--mailboxes", str(mailboxes), "--seed", str(seed),
                              "--messages-per-mailbox", "25",
                              "--attachment-share", "0.02"],
                             capture_output=True, text=True)
        return self.check(f"{self.name}: gen-corpus made a store", gen.returncode == 0,
                          gen.stderr)

    def copy(self):
        self.rounds += 1
        copy = os.path.join(self.tmp, "copies", str(self.rounds))
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        subprocess.run(["cp", "-a", self.root, copy], check=True)
        return copy

    def record(self, what, res, copy):
        """Map the snapshots of a finished `backup run --json` to copy."""
        ok = self.check(f"{self.name}: {what}: backup run exits 0", res.returncode == 0,
                        f"exit {res.returncode}: {res.stderr.strip()[-600:]}")
        if not ok:
            return {}
        got = {m["address"]: m for m in json.loads(res.stdout)["mailboxes"]}
        for address, m in got.items():
            rel = os.path.relpath(self.store.maildirs()[address], self.root)
            self.copies[m["snapshot"]] = os.path.join(copy, rel)
        return got

    def backup(self, what, conf=None):
        copy = self.copy()
        res = mailkeep(conf or self.conf, "--json", "backup", "run", env=self.env)
        return self.record(what, res, copy)

    def big_message(self, address, mib):
        data = (b"Subject: big\n\n" +
                __import__("base64").encodebytes(self.rng.randbytes(mib << 20)))
        self.store.deliver(self.store.maildirs()[address], data)

    def restore_all(self, later_copy):
        """Restore every snapshot the catalog lists; compare with its copy.
        Snapshots not in copies (from a killed run) saw the store as
        later_copy(mailbox) has it."""
        res = mailkeep(self.conf, "--json", "snapshots", env=self.env)
        if not self.check(f"{self.name}: snapshots --json", res.returncode == 0,
                          res.stderr):
            return
        snaps = json.loads(res.stdout)["snapshots"]
        bad, n = [], 0
        os.makedirs(os.path.join(self.tmp, "restored"), exist_ok=True)
        for s in snaps:
            want = self.copies.get(s["id"]) or later_copy(s["mailbox"])
            to = os.path.join(self.tmp, "restored", str(s["id"]))
            res = mailkeep(self.conf, "restore", s["mailbox"], "--snapshot",
                           str(s["id"]), "--to", to, env=self.env)
            n += 1
            if res.returncode != 0:
                bad.append(f"{s['id']}: exit {res.returncode}: {res.stderr.strip()}")
                continue
            diff = first_difference(tree(to), tree(want))
            if diff is None and folders(to) != folders(want):
                diff = "folders differ"
            if diff is not None:
                bad.append(f"snapshot {s['id']} ({s['mailbox']}): {diff}")
        self.check(f"{self.name}: all {n} snapshots restore byte for byte from the "
                   f"bucket", not bad and n >= len(self.copies), "; ".join(bad[:3]))


def main():
    check = Checks()
    tmp = tempfile.mkdtemp(prefix="mk-s3-")
    try:
        with CephRGW() as ceph:
            check("ceph: mon, osd and radosgw started; user and bucket made",
                  ceph.s3 is not None)
            scenario(check, ceph, tmp)
    except Exception as e:  # a cluster that does not start fails the test
        import traceback
        traceback.print_exc()
        check("the scenario ran to its end", False, repr(e))
    finally:
        if os.environ.get("MK_KEEP_TMP") == "1":
            print(f"keeping {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


def scenario(check, ceph, tmp):
    s3, bucket, env = ceph.s3, ceph.bucket, ceph.env
    rng = random.Random(20261126)
    access, secret = env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]
    location = f"s3:{env['S3_ENDPOINT']}/{bucket}/mail"
    creds = write_creds(os.path.join(tmp, "creds"), access, secret)

    # Refusals first: nothing may reach the bucket.
    bad_creds = write_creds(os.path.join(tmp, "creds.bad"), access, secret[:-4] + "0000")
    bad = Host(check, tmp, "bad", location, rng, creds=bad_creds)
    res = mailkeep(bad.conf, "repo", "init")
    check("wrong secret: repo init fails", res.returncode == 1, res.stdout + res.stderr)
    check("... saying the secret is wrong",
          "SignatureDoesNotMatch" in res.stderr and "secret key is wrong" in res.stderr,
          res.stderr)
    check.equal("... and nothing is in the bucket", s3.list(bucket), {})
    check("... and no key file is left behind",
          not os.path.exists(os.path.join(bad.state, "repo.key")))
    os.chmod(bad_creds, 0o644)
    res = mailkeep(bad.conf, "repo", "init")
    check("a credentials file others may read is refused",
          res.returncode == 1 and "chmod 600" in res.stderr, res.stderr)
    res = mailkeep(write_conf(os.path.join(bad.tmp, "none.conf"), bad.root, bad.state,
                              location), "repo", "init")
    check("no credentials at all: a clear error",
          res.returncode == 1 and "no S3 credentials" in res.stderr, res.stderr)
    check.equal("... still nothing in the bucket", s3.list(bucket), {})

    a = Host(check, tmp, "hosta", location, rng, creds=creds)
    if not a.generate(3, 11):
        return
    res = mailkeep(a.conf, "backup", "run")
    check("backup before repo init says to run 'mailkeep repo init'",
          res.returncode == 1 and "mailkeep repo init" in res.stderr, res.stderr)
    res = mailkeep(a.conf, "repo", "init")
    if not check("repo init in the bucket", res.returncode == 0, res.stderr):
        return
    keys = s3.list(bucket, "mail/")
    check("... wrote config and one key slot under the prefix",
          "mail/config" in keys and sum(k.startswith("mail/keys/") for k in keys) == 1,
          sorted(keys))
    res = mailkeep(a.conf, "--json", "repo", "info")
    info = json.loads(res.stdout) if res.returncode == 0 else {}
    check.equal("repo info shows endpoint, bucket and prefix", info.get("s3"), {
        "endpoint": env["S3_ENDPOINT"], "bucket": bucket, "prefix": "mail/",
        "region": "us-east-1", "url_style": "path"})
    res = mailkeep(a.conf, "repo", "info")
    check("repo info (text) names the bucket",
          res.returncode == 0 and f"bucket:       {bucket}" in res.stdout, res.stdout)
    res = mailkeep(a.conf, "repo", "init")
    check("a second repo init refuses: a repository exists already",
          res.returncode == 1 and "exists already" in res.stderr, res.stderr)

    # First run, with a pack larger than part_size: a multipart upload.
    boxes = sorted(a.store.maildirs())
    a.big_message(boxes[0], 6)
    first = a.backup("first")
    objs = s3.list(bucket, "mail/packs/")
    check("first: a pack of more than 5 MiB went up (in parts)",
          any(size > 5 << 20 for size in objs.values()), sorted(objs.values())[-3:])
    check.equal("first: no unfinished multipart upload", s3.uploads(bucket), [])
    check("first: every mailbox", sorted(first) == boxes, sorted(first))

    # Changes as Dovecot makes them, then an incremental run.
    for maildir in a.store.maildirs().values():
        a.store.flag_round(maildir)
        a.store.churn(maildir)
    second = a.backup("changed")
    check("changed: only new messages were read",
          sum(m["read_messages"] for m in second.values()) == 3 * len(boxes),
          json.dumps({k: v["read_messages"] for k, v in second.items()}))

    # The gateway stops in the middle of a multipart upload and comes back.
    a.big_message(boxes[1], 6)
    slow = a.make_conf("slow.conf", bandwidth_limit="2M")
    copy = a.copy()
    proc = mailkeep(slow, "--json", "backup", "run", background=True)
    started = wait_for(lambda: s3.uploads(bucket), timeout=60, interval=0.1)
    check("outage: a multipart upload is in flight", bool(started), "none seen")
    ceph.stop_rgw()
    time.sleep(2)
    ceph.start_rgw()
    out, err = proc.communicate(timeout=300)
    outputs.append(out + err)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    outage = a.record("outage", res, copy)
    check("outage: the run retried and completed", bool(outage), err[-600:])
    check.equal("outage: no unfinished multipart upload", s3.uploads(bucket), [])

    # A run killed during a multipart upload: no object appears.
    a.big_message(boxes[2], 6)
    proc = mailkeep(slow, "backup", "run", background=True)
    pending = wait_for(lambda: s3.uploads(bucket), timeout=60, interval=0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    check("killed: it was killed during a multipart upload", bool(pending), "none seen")
    visible = s3.list(bucket, "mail/")
    check("killed: the unfinished upload left no visible object",
          pending and all(key not in visible for key, _ in pending),
          f"{pending} in {len(visible)} keys")
    after = a.backup("after kill")
    check("after kill: the next run completes", bool(after))

    # A second host, credentials from the environment, backs up into the
    # same repository at the same time as the first.
    b_env = {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
    b = Host(check, tmp, "hostb", location, rng, env=b_env)
    if not b.generate(2, 12):
        return
    os.makedirs(b.state, 0o700)
    shutil.copy(os.path.join(a.state, "repo.key"), os.path.join(b.state, "repo.key"))
    for maildir in a.store.maildirs().values():
        a.store.flag_round(maildir)
        a.store.deliver(maildir, a.store.message("while b runs", 20000))
    copy_a, copy_b = a.copy(), b.copy()
    pa = mailkeep(a.conf, "--json", "backup", "run", background=True)
    pb = mailkeep(b.conf, "--json", "backup", "run", env=b_env, background=True)
    results = []
    for p in (pa, pb):
        out, err = p.communicate(timeout=300)
        outputs.append(out + err)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    conc_a = a.record("concurrent", results[0], copy_a)
    conc_b = b.record("concurrent", results[1], copy_b)
    check("concurrent: both hosts backed up every mailbox",
          len(conc_a) == 3 and len(conc_b) == 2, f"{len(conc_a)} and {len(conc_b)}")
    for maildir in b.store.maildirs().values():
        b.store.churn(maildir)
    b.backup("b changed")

    # One message to a mailbox of each host (the headers differ): the
    # body host a stored is not stored again by host b.
    body = __import__("base64").encodebytes(rng.randbytes(2 << 20))
    a_box, b_box = sorted(a.store.maildirs())[0], sorted(b.store.maildirs())[0]
    a.store.deliver(a.store.maildirs()[a_box],
                    f"To: {a_box}\nSubject: shared\n\n".encode() + body)
    shared_a = a.backup("shared body, host a")
    b.store.deliver(b.store.maildirs()[b_box],
                    f"To: {b_box}\nSubject: shared\n\n".encode() + body)
    shared_b = b.backup("shared body, host b")
    mb_a, mb_b = shared_a.get(a_box, {}), shared_b.get(b_box, {})
    check("host a stored the 2.7 MB body", mb_a.get("stored_bytes", 0) > len(body) // 2,
          mb_a)
    check("host b read it but did not store it again (dedup across hosts)",
          mb_b.get("read_bytes", 0) > len(body)
          and mb_b.get("stored_bytes", len(body)) < 64 << 10, mb_b)

    # Restore everything from the bucket.
    a.restore_all(lambda mailbox: a.copies[after[mailbox]["snapshot"]])
    b.restore_all(lambda mailbox: None)

    # A fresh machine: only the credentials and the key.
    fresh = Host(check, tmp, "fresh", location, rng, creds=creds)
    os.makedirs(os.path.join(fresh.root), exist_ok=True)
    os.makedirs(fresh.state, 0o700)
    shutil.copy(os.path.join(a.state, "repo.key"), os.path.join(fresh.state, "repo.key"))
    res = mailkeep(fresh.conf, "--json", "backup", "list")
    runs = json.loads(res.stdout)["runs"] if res.returncode == 0 else []
    res_a = mailkeep(a.conf, "--json", "backup", "list")
    runs_a = json.loads(res_a.stdout)["runs"] if res_a.returncode == 0 else None
    check("fresh state dir: backup list reads every run of both hosts from the bucket",
          res.returncode == 0 and len(runs) >= a.rounds + b.rounds and runs == runs_a,
          f"{len(runs)} runs, {a.rounds}+{b.rounds} rounds: {res.stderr}")
    if runs:
        res = mailkeep(fresh.conf, "--json", "backup", "list", runs[-1]["id"][:12])
        listed = json.loads(res.stdout)["snapshots"] if res.returncode == 0 else []
        check("fresh state dir: backup list RUN reads its mailbox snapshots",
              len(listed) > 0, res.stderr)

    # ... and `mailkeep --offline restore` alone, with no rebuild-catalog
    # step, rebuilds the empty catalog from the bucket (saying so) and
    # restores the last snapshot of every mailbox of both hosts.
    bad, said = [], []
    os.makedirs(os.path.join(fresh.tmp, "restored"))
    for host in (a, b):
        for mailbox in sorted(host.store.maildirs()):
            mine = max(i for i, path in host.copies.items()
                       if path.endswith(os.path.relpath(host.store.maildirs()[mailbox],
                                                        host.root)))
            to = os.path.join(fresh.tmp, "restored", mailbox)
            res = mailkeep(fresh.conf, "--offline", "restore", mailbox, "--to", to)
            said.append("rebuilding it from the repository s3:" in res.stderr)
            diff = (first_difference(tree(to), tree(host.copies[mine]))
                    if res.returncode == 0 else res.stderr.strip())
            if diff is not None:
                bad.append(f"{mailbox}: {diff}")
    check("fresh state dir: --offline restore rebuilds the catalog from the bucket "
          "once, and says so", said[:1] == [True] and not any(said[1:]), said)
    check("fresh state dir: --offline restore brings back the last snapshot of every "
          "mailbox of both hosts byte for byte", not bad and len(said) == 5,
          "; ".join(bad[:3]))
    res = mailkeep(fresh.conf, "--json", "snapshots")
    snaps = json.loads(res.stdout)["snapshots"] if res.returncode == 0 else []
    check("fresh state dir: the rebuilt catalog stays for snapshots and ls",
          len({s["mailbox"] for s in snaps}) == 5, res.stdout[:300] + res.stderr)

    # A pack deleted behind our back: check names it and what it affects.
    # One this host's catalog records: a pack only the other host has
    # recorded since this host last ran is not seen by its check (see
    # docs/backup.md, "Not built yet").
    db = sqlite3.connect(os.path.join(a.state, "catalog.db"))
    recorded = {name for (name,) in db.execute("SELECT name FROM pack")}
    db.close()
    packs = sorted(k for k in s3.list(bucket, "mail/packs/")
                   if os.path.basename(k) in recorded)
    check("host a's catalog records packs in the bucket", bool(packs),
          sorted(recorded)[:3])
    gone = packs[len(packs) // 2]
    s3.delete(bucket, gone)
    res = mailkeep(a.conf, "--json", "check")
    doc = json.loads(res.stdout) if res.stdout.startswith("{") else {}
    check("check after a pack vanished: exit 1, the pack named",
          # The pack is a problem of its own when this host recorded it,
          # else it is named in what it breaks (a run written by the other).
          res.returncode == 1 and any(
              gone[len("mail/"):] == p.get("object")
              or os.path.basename(gone) in p.get("detail", "")
              for p in doc.get("problems", [])),
          res.stdout[:300] + res.stderr[-300:])

    # More than one page of ListObjectsV2: 1100 keys under a repository's
    # packs/, counted by `repo info`.
    pages_loc = f"s3:{env['S3_ENDPOINT']}/{bucket}/pages"
    pages = Host(check, tmp, "pages", pages_loc, rng, creds=creds)
    os.makedirs(pages.root)
    res = mailkeep(pages.conf, "repo", "init", "--no-encryption")
    check("pages: repo init --no-encryption", res.returncode == 0, res.stderr)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put(bucket, f"pages/packs/{i % 256:02x}/{i:064x}", b"x"),
                      range(1100)))
    res = mailkeep(pages.conf, "--json", "repo", "info")
    packs = json.loads(res.stdout)["packs"] if res.returncode == 0 else None
    check.equal("pages: repo info counts 1100 packs over two pages", packs, 1100)

    check("no secret key in any output", all(secret not in o for o in outputs),
          "the secret was printed")
    check("no access key in any output", all(access not in o for o in outputs),
          "the access key was printed")


if __name__ == "__main__":
    sys.exit(main())
