#!/usr/bin/env python3
"""Two mailkeepd hosts, one bucket, a prune from an admin host, and the
repository locks, against a real Ceph RADOS Gateway on 127.0.0.1.

- Two mailkeepd daemons with separate stores and state directories back
  up concurrently into one repository in the bucket, twice (the stores
  changed in between).  A lock of a dead host with a time two hours old
  is in the bucket before the second round: it is removed, and the log
  says so.
- A third backup of the first host is in flight (it holds its shared
  lock in the bucket): a prune from an admin host is refused naming it;
  a prune with --lock-wait waits, then forgets the first round (keep_last
  = 2).
- A `backup run` killed while it holds its lock leaves the lock object
  behind: the next prune takes it as stale (this host, process gone),
  removes it with a message, runs and deletes the packs the first one
  tombstoned (gc_grace 0).
- Every snapshot the admin host rebuilds from the bucket restores byte
  for byte as its host's store was; after the prune both daemons back up
  again and the newest snapshot of every mailbox restores from each
  host's own catalog.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (BIN_DIR, CephRGW, Mailkeepd, daemon_config, run_scenario,  # noqa: E402
                   wait_for)
from test_backup_jobs import Jobs  # noqa: E402
from test_s3_backup import Host as S3Host  # noqa: E402
from test_backup_roundtrip import GEN_CORPUS, Store, first_difference, tree  # noqa: E402

CONFIG = """\
[repository]
location = {location}
credentials_file = {creds}
key_file = {key}
retries = 8
timeout = 10s
[backup]
concurrency = 1
bandwidth = {bandwidth}
[retention]
keep_last = 2
gc_grace = 0s
"""


def mailkeep(conf, *args, background=False):
    cmd = [os.path.join(BIN_DIR, "mailkeep"), "-c", conf, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


class Host:
    """A mail host (its store, state and daemon), or the admin host."""

    def __init__(self, tmp, name, location, creds, key, bandwidth="0"):
        self.name = name
        self.root = os.path.join(tmp, name, "store")
        self.state = os.path.join(tmp, name, "state")
        self.tmp = os.path.join(tmp, name)
        os.makedirs(self.root)
        os.makedirs(self.state, 0o700)
        self.conf = os.path.join(self.tmp, "mk.conf")
        self.write_conf(location, creds, key, bandwidth)
        self.copies = {}   # (mailbox, time) -> the copy of its Maildir
        self.rounds = 0
        self.mk = Mailkeepd()
        self.store = None

    def write_conf(self, location, creds, key, bandwidth):
        with open(self.conf, "w") as f:
            f.write(daemon_config(self.root, self.state) +
                    CONFIG.format(location=location, creds=creds, key=key,
                                  bandwidth=bandwidth))

    def snapshots(self):
        res = mailkeep(self.conf, "--json", "snapshots")
        return json.loads(res.stdout)["snapshots"] if res.returncode == 0 else []

    copy = S3Host.copy   # the next round's copy of the store

    def record(self, copy, before):
        """The snapshots that appeared since before saw the store as copy."""
        for s in self.snapshots():
            if s["id"] not in before:
                rel = os.path.relpath(self.store.maildirs()[s["mailbox"]], self.root)
                self.copies[(s["mailbox"], s["time"])] = os.path.join(copy, rel)

    def start_job(self):
        """Copy the store, POST /v1/backup; (job id, copy, snapshots before).

        Snapshots are told apart by mailbox and time, which `snapshots`
        gives to the second: start in a second later than every earlier
        snapshot, so that two rounds never share one."""
        time.sleep(1.0 - time.time() % 1.0)
        copy, before = self.copy(), {s["id"] for s in self.snapshots()}
        code, job = self.mk.post("/v1/backup")
        return (job["id"] if code == 202 else None), copy, before


def restore_compare(check, host, conf, snaps, copies, what):
    bad = []
    where = os.path.join(host.tmp, "restored", what.replace(" ", "-"))
    os.makedirs(where)
    for s in snaps:
        want = copies.get((s["mailbox"], s["time"]))
        to = os.path.join(where, str(s["id"]))
        res = mailkeep(conf, "restore", s["mailbox"], "--snapshot", str(s["id"]),
                       "--to", to)
        if want is None:
            bad.append(f"{s['mailbox']} at {s['time']}: no copy for it")
        elif res.returncode != 0:
            bad.append(f"{s['id']}: exit {res.returncode}: {res.stderr.strip()}")
        elif (diff := first_difference(tree(to), tree(want))) is not None:
            bad.append(f"{s['id']} ({s['mailbox']}): {diff}")
    return check(f"{what}: all {len(snaps)} snapshots restore byte for byte",
                 not bad and snaps, "; ".join(bad[:3]))


def main():
    return run_scenario(scenario, 20261127, "mk-s3d-")


def scenario(check, rng, tmp):
    with CephRGW() as ceph:
        check("ceph: mon, osd and radosgw started; user and bucket made",
              ceph.s3 is not None)
        hosts = []
        try:
            cluster_scenario(check, rng, tmp, ceph, hosts)
        finally:
            for h in hosts:
                h.mk.stop()


def cluster_scenario(check, rng, tmp, ceph, hosts):
    s3, bucket, env = ceph.s3, ceph.bucket, ceph.env
    location = f"s3:{env['S3_ENDPOINT']}/{bucket}/shared"
    creds = os.path.join(tmp, "creds")
    with open(creds, "w") as f:
        f.write(f"[default]\naws_access_key_id = {env['S3_ACCESS_KEY']}\n"
                f"aws_secret_access_key = {env['S3_SECRET_KEY']}\n")
    os.chmod(creds, 0o600)
    key = os.path.join(tmp, "repo.key")
    a = Host(tmp, "hosta", location, creds, key, bandwidth="4M")
    b = Host(tmp, "hostb", location, creds, key, bandwidth="4M")
    admin = Host(tmp, "admin", location, creds, key)
    hosts += [a, b]
    for h, seed in ((a, 21), (b, 22)):
        gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", h.root, "--mailboxes",
                              "2", "--seed", str(seed), "--messages-per-mailbox", "20",
                              "--attachment-share", "0.05"], capture_output=True, text=True)
        if not check(f"{h.name}: gen-corpus made a store", gen.returncode == 0,
                     gen.stderr):
            return
        h.store = Store(h.root, rng)
    check("the two stores have different mailboxes",
          not set(a.store.maildirs()) & set(b.store.maildirs()))
    res = mailkeep(admin.conf, "repo", "init")
    if not check("repo init in the bucket", res.returncode == 0, res.stderr):
        return
    for h in (a, b):
        h.mk.start(None, h.state, ["-c", h.conf])
    jobs = {h.name: Jobs(h.mk) for h in (a, b)}

    def concurrent_round(what):
        started = {h.name: h.start_job() for h in (a, b)}
        overlap = wait_for(lambda: all((jobs[h.name].get(started[h.name][0]) or {})
                                       .get("state") in ("running", "done")
                                       for h in (a, b)), timeout=60)
        docs = {h.name: jobs[h.name].follow(started[h.name][0])[0] for h in (a, b)}
        ok = check(f"{what}: both daemons' backup jobs are done",
                   overlap and all(d and d["state"] == "done" for d in docs.values()),
                   json.dumps(docs)[:600])
        for h in (a, b):
            h.record(*started[h.name][1:])
        return ok, docs

    # Round 1, then changes and round 2 with a dead host's lock in the bucket.
    concurrent_round("round 1")
    for h in (a, b):
        for maildir in h.store.maildirs().values():
            h.store.churn(maildir)
            h.store.flag_round(maildir)
    old = {"magic": "mailkeep lock", "version": 1, "kind": "exclusive",
           "host": "dead-host.example", "pid": 4242, "time": "",
           "time_ns": time.time_ns() - 7200 * 10**9}
    stale = "shared/locks/" + "0" * 32
    s3.put(bucket, stale, json.dumps(old).encode())
    _, docs = concurrent_round("round 2")
    check("a dead host's lock, two hours old, is removed from the bucket",
          stale not in s3.list(bucket, "shared/locks/"), sorted(s3.list(bucket, "shared/")))
    check("... and a daemon's log says so",
          any("removing stale exclusive lock shared/locks/" in h.mk.log_text()
              or "removing stale exclusive lock locks/" in h.mk.log_text()
              for h in (a, b)), a.mk.log_tail() + b.mk.log_tail())
    check("... it stopped no backup", all(d and d["state"] == "done"
                                          for d in docs.values()))

    # Round 3 of host a is in flight: a prune waits for it.
    for maildir in a.store.maildirs().values():
        for i in range(2):
            a.store.deliver(maildir, a.store.message(f"big {i}", body_len=3 << 20))
    jid, copy, before = a.start_job()
    held = wait_for(lambda: s3.list(bucket, "shared/locks/"), timeout=30, interval=0.05)
    check("round 3: the job holds a lock in the bucket", bool(held), "none seen")
    res = mailkeep(admin.conf, "prune")
    check("a prune while the backup is in flight is refused, naming its lock",
          res.returncode == 1 and "locked by a shared lock" in res.stderr
          and f"pid {a.mk.pid}" in res.stderr, res.stderr)
    waiting = mailkeep(admin.conf, "--json", "prune", "--lock-wait", "300",
                       background=True)
    doc, _, _ = jobs["hosta"].follow(jid)
    check("round 3: the backup in flight completes", doc and doc["state"] == "done", doc)
    still = waiting.poll() is None
    a.record(copy, before)
    out, err = waiting.communicate(timeout=300)
    check("the prune with --lock-wait waited for it and then ran",
          still and waiting.returncode == 0, err)
    pruned = json.loads(out) if waiting.returncode == 0 else {}
    check.equal("the prune forgot the first round of host a (keep_last 2; host b "
                "has two rounds)", pruned.get("forgotten"), 2)

    # A backup run killed while it holds its lock: the next prune clears it.
    for maildir in b.store.maildirs().values():
        b.store.deliver(maildir, b.store.message("killed", body_len=6 << 20))
    cli = Host(tmp, "cli", location, creds, key, bandwidth="1M")
    cli.root = b.root
    cli.write_conf(location, creds, key, "1M")
    proc = mailkeep(cli.conf, "backup", "run", background=True)
    held = wait_for(lambda: s3.list(bucket, "shared/locks/"), timeout=60, interval=0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    left = s3.list(bucket, "shared/locks/")
    check("a killed backup run left its lock in the bucket", held and left, f"{left}")
    res = mailkeep(admin.conf, "--json", "prune")
    check("the next prune removes the stale lock of the killed process and runs",
          res.returncode == 0 and "removing stale shared lock" in res.stderr
          and "last refreshed" in res.stderr, res.stderr)
    check("... no lock is left", not s3.list(bucket, "shared/locks/"),
          s3.list(bucket, "shared/locks/"))
    doc = json.loads(res.stdout) if res.returncode == 0 else {}
    check("... and (the grace is 0) deleted the packs the first one tombstoned",
          doc.get("deleted_bytes", 0) > 0 and any(p["action"] == "delete"
                                                  for p in doc.get("packs", [])),
          json.dumps({k: v for k, v in doc.items() if k != "snapshots"})[:600])

    # Every kept snapshot of both hosts, rebuilt on the admin host.
    res = mailkeep(admin.conf, "repo", "rebuild-catalog")
    check("admin: repo rebuild-catalog from the bucket", res.returncode == 0, res.stderr)
    snaps = admin.snapshots()
    copies = {**a.copies, **b.copies}
    kept = {k for k in copies if sum(1 for j in copies
                                     if j[0] == k[0] and j[1] > k[1]) < 2}
    check.equal("admin: the kept snapshots are the last two of every mailbox",
                {(s["mailbox"], s["time"]) for s in snaps}, kept)
    restore_compare(check, admin, admin.conf, snaps, copies, "after the prunes")

    # Both daemons back up again (their catalogs still name what was
    # pruned): nothing they store relies on a deleted pack.
    for h in (a, b):
        for maildir in h.store.maildirs().values():
            h.store.flag_round(maildir)
            h.store.deliver(maildir, h.store.message("after the prune", 20000))
    concurrent_round("round 4, after the prune")
    for h in (a, b):
        newest = {}
        for s in h.snapshots():
            if s["id"] > newest.get(s["mailbox"], {"id": 0})["id"]:
                newest[s["mailbox"]] = s
        restore_compare(check, h, h.conf, list(newest.values()), h.copies,
                        f"{h.name} round 4")
        check(f"{h.name}: mailkeepd still runs", h.mk.alive(), h.mk.log_tail())


if __name__ == "__main__":
    sys.exit(main())
