#!/usr/bin/env python3
"""Backups as jobs of mailkeepd: schedule, requests, progress, cancel, kill -9.

A real mailkeepd runs on a store from bench/gen-corpus.py with a repository
made by `mailkeep repo init`, configured with `[backup] run_at_start = yes`,
concurrency 2 and a bandwidth limit, so that a run lasts a few seconds:

- the run at start shows its progress in /v1/jobs, never more than two
  mailboxes at once (and two at some point), while /v1/status and the
  Postfix policy service keep answering; it reads exactly the store's
  message bytes; /v1/mailboxes/<address> gains last_backup, /metrics the
  backup series, `mailkeep status` the backups;
- a new schedule taken by SIGHUP (one that fires in the next minute or
  two) starts a run; a bad schedule is refused and the old one kept;
- `mailkeep backup run` goes through the daemon and exits 0; unknown
  mailboxes, bad bodies, unknown jobs are clear errors;
- a running job is cancelled: the CLI that waits for it exits 1, what was
  committed stays, and the next run completes;
- mailkeepd killed with SIGKILL in the middle of a job: after a restart
  the run at start completes, and every snapshot restores, the newest of
  each mailbox byte for byte as the store is;
- `mailkeep restore` runs as a restore job of the daemon, into a new
  folder of the live mailbox and into a directory beneath [restore] root,
  with progress and a result; bad requests are refused.
Needs no Dovecot.
"""

import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (BIN_DIR, Checks, Mailkeepd, count_messages, daemon_config,  # noqa: E402
                   maildir_tree as tree, run_mailkeep, store_maildirs as maildirs,
                   wait_for)

SOURCE_DIR = os.environ.get("MK_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GEN_CORPUS = os.path.join(SOURCE_DIR, "bench", "gen-corpus.py")
MAILBOXES = 5
FINISHED = ("done", "failed", "cancelled")

CONFIG = """\
[restore]
root = {restores}
[backup]
run_at_start = yes
concurrency = 2
bandwidth = {bandwidth}
schedule = {schedule}
"""


def write_config(path, store, state, schedule="0 0 1 1 *", bandwidth="6M"):
    with open(path, "w") as f:
        f.write(daemon_config(store, state) +
                CONFIG.format(schedule=schedule,
                              bandwidth=bandwidth,
                              restores=os.path.join(os.path.dirname(state),
                                                    "restores")))


def message_bytes(maildir):
    total = 0
    for dirpath, _, filenames in os.walk(maildir):
        if os.path.basename(dirpath) in ("new", "cur"):
            total += sum(os.lstat(os.path.join(dirpath, f)).st_size
                         for f in filenames if not f.startswith("."))
    return total


class Store:
    def __init__(self, root, rng):
        self.root, self.rng, self.seq = root, rng, 0

    def deliver(self, maildir, data):
        self.seq += 1
        name = f"{1795000000 + self.seq}.M{self.seq}P77.jobs,S={len(data)}"
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(maildir, "new", name))
        return len(data)

    def big(self, size):
        return b"Subject: big\n\n" + base64.encodebytes(self.rng.randbytes(size))

    def grow(self, per_mailbox, size):
        """per_mailbox large messages into every mailbox; bytes added."""
        return sum(self.deliver(m, self.big(size))
                   for m in maildirs(self.root).values() for _ in range(per_mailbox))


def policy_answer(path, recipient):
    req = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           f"sender=a@example.net\nrecipient={recipient}\nsize=1000\n\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(req)
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


class Jobs:
    """/v1/jobs through a Mailkeepd, remembering what was seen."""

    def __init__(self, mk):
        self.mk = mk

    def get(self, jid):
        code, doc = self.mk.get(f"/v1/jobs/{jid}")
        return doc if code == 200 else None

    def all(self):
        code, doc = self.mk.get("/v1/jobs")
        return doc if code == 200 else {"jobs": []}

    def follow(self, jid, timeout=300):
        """Poll the job until it finishes; returns (last doc, max running,
        distinct bytes_read values seen while running)."""
        top, seen, doc = 0, set(), None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = self.get(jid)
            if doc is None:
                break
            top = max(top, doc["mailboxes"]["running"])
            if doc["state"] == "running":
                seen.add(doc["bytes_read"])
            if doc["state"] in FINISHED:
                break
            time.sleep(0.05)
        return doc, top, seen


def main():
    check = Checks()
    tmp = tempfile.mkdtemp(prefix="mk-jobs-")
    mk = Mailkeepd()
    try:
        scenario(check, tmp, mk)
    finally:
        mk.stop()
        if os.environ.get("MK_KEEP_TMP") == "1":
            print(f"keeping {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


def scenario(check, tmp, mk):
    rng = random.Random(20261126)
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    conf = os.path.join(tmp, "mailkeep.conf")
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root, "--mailboxes",
                          str(MAILBOXES), "--seed", "11", "--messages-per-mailbox", "40",
                          "--attachment-share", "0.1"], capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    store = Store(root, rng)
    boxes = maildirs(root)
    # Every mailbox has enough to read that runs overlap under the limit.
    store.grow(1, 1 << 20)
    write_config(conf, root, state)
    os.makedirs(state)
    res = run_mailkeep("-c", conf, "repo", "init")
    if not check("repo init", res.returncode == 0, res.stderr):
        return
    res = run_mailkeep("-n", "-c", conf, program="mailkeepd")
    check("mailkeepd -n accepts the [backup] section", res.returncode == 0, res.stderr)
    bad = os.path.join(tmp, "bad.conf")
    write_config(bad, root, state, schedule="0 0 31 2 *")
    res = run_mailkeep("-n", "-c", bad, program="mailkeepd")
    check("mailkeepd -n refuses a schedule that never fires",
          res.returncode == 1 and "never fires" in res.stderr, res.stderr)

    mk.start(None, state, ["-c", conf])
    jobs = Jobs(mk)

    # The run at start.
    first = wait_for(lambda: [j for j in jobs.all()["jobs"] if j["trigger"] == "start"], 30)
    if not check("run_at_start queues a backup job", bool(first), jobs.all()):
        return
    jid = first[0]["id"]
    running = wait_for(lambda: (jobs.get(jid) or {}).get("bytes_read", 0) > 0
                       and jobs.get(jid)["state"] == "running", 60)
    check("the job runs and reads", bool(running), jobs.get(jid))
    before = jobs.get(jid)
    code, status = mk.get("/v1/status")
    answer = policy_answer(os.path.join(state, "policy.sock"), sorted(boxes)[0])
    after = jobs.get(jid)
    check("status and policy answered while the job ran",
          code == 200 and answer.startswith("action=") and
          before["state"] == "running" and after["state"] == "running",
          f"{code} {answer!r} {before['state']} {after['state']}")
    check("/v1/status shows the running job",
          status.get("backup", {}).get("jobs_running") == 1, status.get("backup"))
    doc, top, seen = jobs.follow(jid)
    check.equal("the run at start is done", doc and doc["state"], "done")
    check.equal("every mailbox backed up",
                (doc["mailboxes"]["done"], doc["mailboxes"]["total"]),
                (MAILBOXES, MAILBOXES))
    check.equal("concurrency 2: at most two mailboxes at once, and two at a time",
                top, 2)
    check("progress: bytes_read grew while it ran", len(seen) >= 3, sorted(seen))
    want = sum(message_bytes(m) for m in boxes.values())
    check.equal("bytes_read is every message byte of the store", doc["bytes_read"], want)
    check("bytes_stored is counted", 0 < doc["bytes_stored"], doc)
    code, mb = mk.get("/v1/mailboxes/" + sorted(boxes)[0])
    check("/v1/mailboxes/<address> has last_backup",
          code == 200 and isinstance(mb.get("last_backup"), str) and
          mb["last_backup"].endswith("Z"), mb.get("last_backup"))
    code, metrics = mk.get("/metrics")
    lines = dict(l.rsplit(" ", 1) for l in metrics.splitlines()
                 if l and not l.startswith("#"))
    check.equal("/metrics: backup bytes read", lines.get("mailkeep_backup_read_bytes_total"),
                str(want))
    check.equal("/metrics: no mailbox never backed up",
                lines.get("mailkeep_backup_never_mailboxes"), "0")
    check.equal("/metrics: the age histogram counts every mailbox",
                lines.get("mailkeep_backup_age_seconds_count"), str(MAILBOXES))
    check("/metrics: the oldest last success is set",
          int(lines.get("mailkeep_backup_oldest_success_timestamp_seconds", "0")) > 0)
    check("/metrics: no per-mailbox labels",
          not any("@" in l for l in metrics.splitlines() if "backup" in l))
    res = run_mailkeep("-c", conf, "status")
    check("mailkeep status shows backups and the job",
          res.returncode == 0 and "backups" in res.stdout and f"job {jid}" in res.stdout,
          res.stdout + res.stderr)

    # A bad schedule is refused on reload, a good one is taken.
    write_config(conf, root, state, schedule="61 * * * *")
    mk.kill(signal.SIGHUP)
    time.sleep(0.5)
    code, status = mk.get("/v1/status")
    check.equal("a bad schedule on reload keeps the old one",
                status["backup"]["schedule"], "0 0 1 1 *")
    soon = time.time() + (60 if time.localtime().tm_sec < 45 else 120)
    lt = time.localtime(soon)
    schedule = f"{lt.tm_min} {lt.tm_hour} * * *"
    write_config(conf, root, state, schedule=schedule)
    mk.kill(signal.SIGHUP)
    ok = wait_for(lambda: mk.get("/v1/status")[1]["backup"]["schedule"] == schedule, 5)
    check("SIGHUP takes the new schedule", ok, mk.get("/v1/status")[1]["backup"])

    # mailkeep backup run through the daemon.
    added = store.grow(1, 200 << 10)
    res = run_mailkeep("-c", conf, "--json", "backup", "run")
    doc = json.loads(res.stdout) if res.returncode == 0 else {}
    check("backup run through the daemon exits 0",
          res.returncode == 0 and doc.get("trigger") == "request" and doc.get("state") == "done",
          res.stdout + res.stderr)
    check.equal("... and read only the new messages", doc.get("bytes_read"), added)
    name = sorted(boxes)[1]
    res = run_mailkeep("-c", conf, "--json", "backup", "run", name.upper())
    doc = json.loads(res.stdout) if res.returncode == 0 else {}
    check.equal("a named mailbox (any case) through the daemon",
                (res.returncode, doc.get("mailboxes", {}).get("total")), (0, 1))
    res = run_mailkeep("-c", conf, "backup", "run", "nobody@example.org")
    check("an unknown mailbox: exit 1, says so",
          res.returncode == 1 and "no such mailbox: nobody@example.org" in res.stderr,
          res.stderr)
    res = subprocess.run([os.path.join(BIN_DIR, "mailkeep"), "-c", conf, "backup",
                          "run", b"\xff@example.org"], capture_output=True)
    check("a name that is not UTF-8: exit 2, says so",
          res.returncode == 2 and b"not UTF-8" in res.stderr, res.stderr)
    res = run_mailkeep("-c", conf, "backup", "run", "--offline")
    check("--offline while mailkeepd runs is refused",
          res.returncode == 1 and "mailkeepd is running" in res.stderr, res.stderr)
    for body, what in (("{", "not JSON"), ('{"mailboxes":"a"}', "not an array"),
                       ('{"mailboxes":[1]}', "not strings"), ('{"x":[]}', "unknown key"),
                       ("[]", "not an object")):
        code, doc = mk.post("/v1/backup", body)
        check.equal(f"POST /v1/backup {what}: 400", code, 400)
    for path in ("/v1/jobs/abc", "/v1/jobs/0", "/v1/jobs/99999", "/v1/jobs/1x"):
        check.equal(f"GET {path}: 404", mk.get(path)[0], 404)
    check.equal("cancel of an unknown job: 404", mk.post("/v1/jobs/99999/cancel")[0], 404)
    check.equal("cancel of a finished job: 409", mk.post(f"/v1/jobs/{jid}/cancel")[0], 409)
    check.equal("POST /v1/backup on the status socket: 405",
                mk.request("POST", "/v1/backup")[0], 405)

    # Cancel a running job submitted by the CLI.
    res = run_mailkeep("-c", conf, "--json", "snapshots")
    committed = {s["id"] for s in json.loads(res.stdout)["snapshots"]}
    store.grow(3, 1 << 20)
    cli = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), "-c", conf, "backup", "run"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def cli_job():
        for j in jobs.all()["jobs"]:
            if j["trigger"] == "request" and j["state"] == "running" and j["bytes_read"] > 0:
                return j
        return None
    job = wait_for(cli_job, 60)
    if check("the CLI's job runs", job is not None, jobs.all()):
        code, doc = mk.post(f"/v1/jobs/{job['id']}/cancel")
        check("cancel answers 200 and the job asks to stop",
              code == 200 and doc["cancel_requested"], doc)
        doc, _, _ = jobs.follow(job["id"])
        check.equal("the job ends cancelled", doc["state"], "cancelled")
        check("it stopped before the end",
              doc["mailboxes"]["done"] < doc["mailboxes"]["total"], doc["mailboxes"])
    out, err = cli.communicate(timeout=60)
    check("the waiting CLI exits 1 and says cancelled",
          cli.returncode == 1 and "cancelled" in out + err, f"{cli.returncode} {out} {err}")
    res = run_mailkeep("-c", conf, "--json", "snapshots")
    now = {s["id"] for s in json.loads(res.stdout)["snapshots"]}
    check("nothing committed before the cancel is lost", committed <= now)
    res = run_mailkeep("-c", conf, "--json", "backup", "run")
    doc = json.loads(res.stdout) if res.returncode == 0 else {}
    check("the next run completes",
          res.returncode == 0 and doc["mailboxes"]["done"] == MAILBOXES,
          res.stdout + res.stderr)

    # The schedule fires (within two minutes of the reload).
    sched = wait_for(lambda: [j for j in jobs.all()["jobs"]
                              if j["trigger"] == "schedule" and j["state"] in FINISHED],
                     soon - time.time() + 120, 0.5)
    check("the new schedule started a run that finished",
          bool(sched) and sched[0]["state"] == "done", jobs.all()["jobs"][-3:])

    # kill -9 in the middle of a job, restart: the next run completes.
    # A slower limit (taken by a reload) keeps the job running meanwhile.
    write_config(conf, root, state, schedule=schedule, bandwidth="1M")
    mk.kill(signal.SIGHUP)
    store.grow(3, 1 << 20)
    code, doc = mk.post("/v1/backup")
    check.equal("POST /v1/backup: 202", code, 202)
    wait_for(lambda: (jobs.get(doc["id"]) or {}).get("bytes_read", 0) > 0, 60)
    mid = jobs.get(doc["id"])
    check("the job runs (limited to 1 MiB/s) when mailkeepd is killed",
          mid["state"] == "running" and mid["bytes_read"] > 0, mid)
    mk.kill(signal.SIGKILL)
    mk.proc.wait()
    check("mailkeepd was killed in the middle of the job",
          mk.proc.returncode == -signal.SIGKILL)
    mk.start(None, state, ["-c", conf])
    first = wait_for(lambda: [j for j in jobs.all()["jobs"] if j["trigger"] == "start"], 30)
    doc, _, _ = jobs.follow(first[0]["id"]) if first else (None, 0, set())
    check("after the restart the run at start completes",
          doc is not None and doc["state"] == "done" and
          doc["mailboxes"]["done"] == MAILBOXES, doc)
    check("the log says the killed run was published",
          "had not ended" in mk.log_text(), mk.log_tail())

    res = run_mailkeep("-c", conf, "--json", "snapshots")
    snaps = json.loads(res.stdout)["snapshots"]
    newest = {}
    for s in snaps:
        if s["id"] > newest.get(s["mailbox"], {"id": 0})["id"]:
            newest[s["mailbox"]] = s
    bad = []
    os.makedirs(os.path.join(tmp, "restored"))
    for s in snaps:
        to = os.path.join(tmp, "restored", str(s["id"]))
        res = run_mailkeep("-c", conf, "restore", s["mailbox"], "--snapshot",
                           str(s["id"]), "--to", to)
        if res.returncode != 0:
            bad.append(f"{s['id']}: {res.stderr.strip()}")
        elif count_messages(to) != s["messages"]:
            bad.append(f"{s['id']}: {count_messages(to)} messages, want {s['messages']}")
        elif newest[s["mailbox"]] is s and tree(to) != tree(boxes[s["mailbox"]]):
            bad.append(f"{s['id']}: differs from the store")
    check(f"all {len(snaps)} snapshots restore; the newest equal the store",
          not bad and len(snaps) > 5 * MAILBOXES, "; ".join(bad[:3]))

    # Restores as jobs: into the live mailbox, into a directory beneath
    # [restore] root; refusals.  (Last: a restore into the live mailbox
    # puts a second file of each base name there.)
    os.makedirs(os.path.join(tmp, "restores"))
    name = sorted(boxes)[2]
    res = run_mailkeep("-c", conf, "--json", "snapshots", name)
    snap = max(json.loads(res.stdout)["snapshots"], key=lambda s: s["id"])
    inbox_before = count_messages(boxes[name])
    res = run_mailkeep("-c", conf, "--json", "restore", name, "--snapshot",
                       str(snap["id"]))
    doc = json.loads(res.stdout) if res.returncode == 0 else {}
    folder = doc.get("result", {}).get("folder", "")
    check("restore into a new folder runs as a daemon job",
          res.returncode == 0 and doc.get("kind") == "restore" and
          doc.get("state") == "done" and folder.startswith("Restored-"),
          res.stdout + res.stderr)
    check.equal("... with its progress complete",
                (doc.get("progress", {}).get("messages"),
                 doc.get("progress", {}).get("messages_total")),
                (snap["messages"], snap["messages"]))
    check.equal("... and the mailbox holds the snapshot's messages once more",
                count_messages(boxes[name]), inbox_before + snap["messages"])
    to = os.path.join(tmp, "restores", "r1")
    res = run_mailkeep("-c", conf, "--json", "restore", name, "--snapshot",
                       str(snap["id"]), "--to", to)
    doc = json.loads(res.stdout) if res.returncode == 0 else {}
    check("restore to a directory beneath [restore] root is a daemon job",
          res.returncode == 0 and doc.get("kind") == "restore" and
          count_messages(to) == snap["messages"], res.stdout + res.stderr)
    for body, what, want in (
            ({"mailbox": name, "snapshot": snap["id"], "to": os.path.join(tmp, "x")},
             "a directory outside [restore] root", 400),
            ({"mailbox": name, "snapshot": snap["id"],
              "to": os.path.join(tmp, "restores", "..", "x")}, "a '..' in the directory", 400),
            ({"mailbox": "nobody@example.org", "snapshot": 1}, "an unknown mailbox", 404),
            ({"mailbox": name}, "no snapshot", 400),
            ({"mailbox": name, "snapshot": "1"}, "a snapshot that is a string", 400),
            ({"mailbox": name, "snapshot": snap["id"], "format": "mbox"},
             "an export into the live mailbox", 400),
            ({"mailbox": name, "snapshot": snap["id"], "to": to},
             "a directory that is not empty (the job fails)", 202)):
        code, doc = mk.post("/v1/restore", json.dumps(body))
        check.equal(f"POST /v1/restore with {what}: {want}", code, want)
    if code == 202:
        doc, _, _ = jobs.follow(doc["id"])
        check("... and the failed job says why",
              doc["state"] == "failed" and "not empty" in json.dumps(doc["errors"]),
              doc)


if __name__ == "__main__":
    sys.exit(main())
