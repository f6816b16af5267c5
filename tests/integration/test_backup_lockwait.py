#!/usr/bin/env python3
"""mailkeepd's jobs waiting for the repository lock, and the verify
results kept across restarts.

A real mailkeepd runs on a generated store with a local repository made
by `mailkeep repo init`.  An exclusive lock object is written into the
repository as a prune of another host writes it (docs/repository-format.md,
"Locks": kind, host, pid, time, refreshed now):

- `mailkeep backup run` through the daemon waits: /v1/jobs shows the job
  "waiting" with the holder's lock, host and pid, /metrics a waiting job,
  the log a line; /v1/status keeps answering; once the lock is removed
  the job takes its own, completes, the CLI exits 0, and a test restore
  of every mailbox brings back as many messages as the store has;
- a cancel during the wait ends the job "cancelled" and leaves no lock
  of the daemon behind;
- with `[backup] lock_wait = 2s` (taken by SIGHUP) a check gives up and
  fails naming the holder; with `lock_wait = 0` a backup fails at once;
- a lock of this host whose process is alive holds a job until that
  process is killed: the job then removes the stale lock and completes;
- the last check and test restore results (a failure, then passes) are
  in verify-results.json, and after SIGTERM and a new start /v1/jobs and
  /metrics show the same times, failures and mailbox;
- a damaged results file gives a warning and is ignored: the daemon
  starts, and the next check writes a good file again.
Needs no Dovecot.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (BIN_DIR, Mailkeepd, count_messages, daemon_config,  # noqa: E402
                   run_mailkeep, run_scenario, store_maildirs as maildirs, wait_for)
from test_backup_jobs import GEN_CORPUS, Jobs  # noqa: E402

CONFIG = """\
[backup]
concurrency = 1
lock_wait = {wait}
"""

HOLDER = "prune-host.example"


def metric(text, name, labels=""):
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def main():
    return run_scenario(scenario, 20261128, "mk-lockwait-")


def scenario(check, rng, tmp):
    with Mailkeepd() as mk:
        daemon_scenario(check, tmp, mk)


def daemon_scenario(check, tmp, mk):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    conf = os.path.join(tmp, "mailkeep.conf")
    locks = os.path.join(state, "repository", "locks")
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root, "--mailboxes", "3",
                          "--seed", "17", "--messages-per-mailbox", "20"],
                         capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    boxes = maildirs(root)

    def configure(wait):
        with open(conf, "w") as f:
            f.write(daemon_config(root, state) + CONFIG.format(wait=wait))

    def reload(wait):
        configure(wait)
        before = mk.log_text().count("configuration reloaded")
        mk.kill(signal.SIGHUP)
        return wait_for(lambda: mk.log_text().count("configuration reloaded") > before,
                        timeout=10)

    def hold(host=HOLDER, pid=4242):
        """An exclusive lock as a prune writes it; returns its path."""
        os.makedirs(locks, exist_ok=True)
        path = os.path.join(locks, "e" * 32)
        with open(path + ".tmp", "w") as f:
            json.dump({"magic": "mailkeep lock", "version": 1, "kind": "exclusive",
                       "host": host, "pid": pid, "time": "",
                       "time_ns": time.time_ns()}, f)
        os.rename(path + ".tmp", path)
        return path

    def ours():
        return [n for n in (os.listdir(locks) if os.path.isdir(locks) else [])
                if n != "e" * 32]

    configure("10m")
    os.makedirs(state)
    res = run_mailkeep("-c", conf, "repo", "init")
    if not check("repo init", res.returncode == 0, res.stderr):
        return
    res = run_mailkeep("-n", "-c", conf, program="mailkeepd")
    check("mailkeepd -n accepts [backup] lock_wait", res.returncode == 0, res.stderr)
    bad = os.path.join(tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write(daemon_config(root, state) + CONFIG.format(wait="soon"))
    res = run_mailkeep("-n", "-c", bad, program="mailkeepd")
    check("mailkeepd -n refuses lock_wait = soon, naming the key",
          res.returncode != 0 and "lock_wait" in res.stderr, res.stderr)
    mk.start(None, state, ["-c", conf])
    jobs = Jobs(mk)

    # --- a backup waits for a prune's exclusive lock ---------------------------
    lock = hold()
    cli = subprocess.Popen([os.path.join(BIN_DIR, "mailkeep"), "-c", conf, "backup", "run"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def waiting_job():
        code, doc = mk.get("/v1/jobs")
        for j in doc.get("jobs", []) if code == 200 else []:
            if j["state"] == "waiting":
                return j
        return None
    job = wait_for(waiting_job, timeout=30, interval=0.1)
    check("/v1/jobs: the backup job is waiting", job and job["kind"] == "backup", job)
    lw = (job or {}).get("lock_wait", {})
    holder = lw.get("holder", {})
    check("... naming the holder: lock, kind, host and pid",
          holder.get("lock") == "locks/" + "e" * 32 and holder.get("kind") == "exclusive"
          and holder.get("host") == HOLDER and holder.get("pid") == 4242
          and holder.get("refreshed"), json.dumps(lw))
    check("... with since, until and the next attempt",
          lw.get("waiting") is True and lw.get("since") and lw.get("until")
          and lw.get("next_attempt"), json.dumps(lw))
    code, text = mk.get("/metrics")
    check.equal("/metrics: one job waiting for the lock",
                metric(text, "mailkeep_jobs_waiting_for_lock"), 1.0)
    check.equal("/metrics: one lock wait counted",
                metric(text, "mailkeep_jobs_lock_waits_total"), 1.0)
    check("the log says it waits, naming the holder",
          re.search(r"job \d+ \(backup\): waiting up to 600 s for the repository lock: "
                    r".*host prune-host\.example, pid 4242", mk.log_text()), mk.log_tail())
    check("/v1/status answers while the job waits", mk.ready())
    tries = wait_for(lambda: (jobs.get(job["id"]) or {}).get("lock_wait", {})
                     .get("attempts", 0) >= 2, timeout=30, interval=0.2)
    check("... it tries again while the lock stays", tries)
    check("the CLI is still waiting for the job", cli.poll() is None)
    check("no lock of the daemon is left while it waits", not ours(), ours())
    os.unlink(lock)
    try:
        out, err = cli.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        cli.kill()
        out, err = cli.communicate()
    done = jobs.get(job["id"]) if job else None
    check("once the lock is gone the job completes and the CLI exits 0",
          cli.returncode == 0 and done and done["state"] == "done", f"{out} {err} {done}")
    check("... the job says it no longer waits",
          done and done.get("lock_wait", {}).get("waiting") is False, done)
    check("the log says when it took the lock",
          re.search(r"took the repository lock after \d+ s", mk.log_text()), mk.log_tail())
    check("no lock is left after the job", wait_for(lambda: not ours(), timeout=10), ours())
    for address, maildir in sorted(boxes.items()):
        code, tr = mk.post("/v1/test-restore", json.dumps({"mailbox": address}))
        tr, _, _ = jobs.follow(tr["id"]) if code == 202 else (None, 0, 0)
        result = (tr or {}).get("result", {})
        check(f"the snapshot of {address} restores, every message",
              tr and tr["state"] == "done"
              and result.get("messages") == count_messages(maildir) > 0, tr)

    # --- a cancel during the wait ------------------------------------------
    lock = hold()
    code, job = mk.post("/v1/backup")
    check("POST /v1/backup: 202", code == 202, job)
    seen = wait_for(lambda: (jobs.get(job["id"]) or {}).get("state") == "waiting",
                    timeout=30, interval=0.1)
    check("the second job waits", seen, jobs.get(job["id"]))
    code, doc = mk.post(f"/v1/jobs/{job['id']}/cancel")
    check("cancel: 200", code == 200, doc)
    done, _, _ = jobs.follow(job["id"], timeout=60)
    check("a cancel during the wait ends the job: cancelled",
          done and done["state"] == "cancelled", done)
    code, text = mk.get("/metrics")
    check.equal("/metrics: no job waiting any more",
                metric(text, "mailkeep_jobs_waiting_for_lock"), 0.0)
    check("no lock of the daemon is left", wait_for(lambda: not ours(), timeout=10), ours())

    # --- the wait's limit -----------------------------------------------------
    check("SIGHUP takes lock_wait = 2s", reload("2s"), mk.log_tail())
    code, job = mk.post("/v1/check")
    done, _, _ = jobs.follow(job["id"], timeout=120) if code == 202 else (None, 0, 0)
    errors = json.dumps((done or {}).get("errors"))
    check("a check that waits past lock_wait fails, naming the holder",
          done and done["state"] == "failed" and "gave up after waiting" in errors
          and HOLDER in errors and "pid 4242" in errors, done)
    code, text = mk.get("/metrics")
    check.equal("/metrics: one wait expired",
                metric(text, "mailkeep_jobs_lock_wait_expired_total"), 1.0)
    check("SIGHUP takes lock_wait = 0", reload("0"), mk.log_tail())
    code, job = mk.post("/v1/backup")
    done, _, _ = jobs.follow(job["id"], timeout=60) if code == 202 else (None, 0, 0)
    errors = json.dumps((done or {}).get("errors"))
    check("with lock_wait = 0 a backup fails at once, naming the holder, without waiting",
          done and done["state"] == "failed" and HOLDER in errors
          and "gave up" not in errors and "lock_wait" not in done, done)
    os.unlink(lock)

    # --- the holder's process dies --------------------------------------------
    check("SIGHUP takes lock_wait = 10m", reload("10m"), mk.log_tail())
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        lock = hold(host=os.uname().nodename, pid=sleeper.pid)
        code, job = mk.post("/v1/backup")
        seen = wait_for(lambda: (jobs.get(job["id"]) or {}).get("state") == "waiting",
                        timeout=30, interval=0.1)
        check("a live process of this host holding the lock makes the job wait", seen,
              jobs.get(job["id"]))
    finally:
        sleeper.kill()
        sleeper.wait()
    done, _, _ = jobs.follow(job["id"], timeout=300)
    check("once it is killed the job removes its stale lock and completes",
          done and done["state"] == "done" and not os.path.exists(lock)
          and "removing stale exclusive lock" in mk.log_text(), done)

    # --- verify results across a restart -------------------------------------
    code, job = mk.post("/v1/check", json.dumps({"sample": 100}))
    done, _, _ = jobs.follow(job["id"]) if code == 202 else (None, 0, 0)
    check("a check passes", done and done["state"] == "done", done)
    code, before = mk.get("/v1/jobs")
    vb = before.get("verify", {})
    code, text = mk.get("/metrics")
    mb = {k: {n: metric(text, n, f'{{kind="{k}"}}') for n in (
        "mailkeep_verify_last_success_timestamp_seconds",
        "mailkeep_verify_last_failure_timestamp_seconds",
        "mailkeep_verify_failures_total", "mailkeep_verify_last_problems")}
        for k in ("check", "test-restore")}
    check("before the restart: a check failure and a later success, a test restore",
          vb.get("check", {}).get("failures") == 1
          and vb["check"].get("last_success") and vb["check"].get("last_failure")
          and (vb["check"].get("last") or {}).get("state") == "done"
          and (vb.get("test_restore", {}).get("last") or {}).get("mailbox") in boxes,
          json.dumps(vb))
    path = os.path.join(state, "verify-results.json")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        saved = {"error": repr(exc)}
    check("verify-results.json holds both kinds",
          set(saved.get("kinds", {})) == {"check", "test-restore"}
          and saved["kinds"]["check"]["failures"] == 1, json.dumps(saved)[:500])
    check.equal("SIGTERM stops mailkeepd", mk.stop(), 0)
    mk.start(None, state, ["-c", conf])
    code, after = mk.get("/v1/jobs")
    va = after.get("verify", {}) if code == 200 else {}
    for kind in ("check", "test_restore"):
        for key in ("last_success", "last_failure", "failures", "last_error", "last"):
            check.equal(f"after the restart /v1/jobs verify.{kind}.{key} is kept",
                        va.get(kind, {}).get(key), vb.get(kind, {}).get(key))
    code, text = mk.get("/metrics")
    ma = {k: {n: metric(text, n, f'{{kind="{k}"}}') for n in mb[k]} for k in mb}
    check.equal("after the restart /metrics shows the same verify series", ma, mb)
    check("... and the last check's success time is not 0",
          (ma["check"]["mailkeep_verify_last_success_timestamp_seconds"] or 0) > 0, ma)

    # --- a damaged results file -------------------------------------------------
    check.equal("SIGTERM stops mailkeepd", mk.stop(), 0)
    with open(path, "w") as f:
        f.write('{"magic": "mailkeep verify results", "version": 1, "kinds": {"check": ')
    mk.start(None, state, ["-c", conf])
    check("a damaged results file: the daemon starts and warns, naming the file",
          mk.alive() and re.search(r"warning: jobs: .*verify-results\.json.*ignored", mk.log_text()),
          mk.log_tail())
    code, doc = mk.get("/v1/jobs")
    check("... and the results are unknown",
          code == 200 and doc["verify"]["check"]["last_success"] is None
          and doc["verify"]["check"]["failures"] == 0, json.dumps(doc.get("verify")))
    code, job = mk.post("/v1/check")
    done, _, _ = jobs.follow(job["id"]) if code == 202 else (None, 0, 0)
    check("the next check passes", done and done["state"] == "done", done)
    good = wait_for(lambda: _loads(path).get("kinds", {}).get("check", {}).get("ok"),
                    timeout=10)
    check("... and writes a good results file again", good, _read(path))
    check("mailkeepd is still running", mk.alive(), mk.log_tail())


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        return repr(exc)


def _loads(path):
    try:
        return json.loads(_read(path))
    except ValueError:
        return {}


if __name__ == "__main__":
    sys.exit(main())
