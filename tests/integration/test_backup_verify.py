#!/usr/bin/env python3
"""mailkeepd and its repository: locks held by jobs, the single key slot
warning, scheduled checks and test restores.

A real mailkeepd runs on a generated store with a repository made by
`mailkeep repo init` (one key file slot), a bandwidth limit so that a
backup job lasts seconds, and [verify] schedules that fire every minute:

- /v1/status, `mailkeep status` and /metrics warn of the single key slot;
  after `repo key add` (seen at the next job) the warning is gone;
- while a backup job runs it holds a shared repository lock: a prune from
  another catalog is refused naming it, one with --lock-wait waits until
  the job has ended and then runs; the lock is gone after the job;
- with [backup] lock_wait = 0, a live exclusive lock of another host fails
  a backup job at once with its name (test_backup_lockwait.py: waits);
- POST /v1/check and /v1/test-restore run a check (sample 100) and a test
  restore (a named mailbox, and one at random) that pass, with their
  results in /v1/jobs and the last success in /metrics; bad bodies are
  400, an unknown mailbox 404;
- a byte flipped in a pack fails the check and a test restore, counted in
  the failure metrics and /v1/jobs, and no scratch directory is left;
- the schedules started a check and a test restore on their own.
Needs no Dovecot.
"""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (BIN_DIR, Mailkeepd, daemon_config, run_mailkeep, run_scenario,  # noqa: E402
                   store_maildirs as maildirs, wait_for)
from test_backup_jobs import FINISHED, GEN_CORPUS, Jobs, Store  # noqa: E402

CONFIG = """\
[backup]
concurrency = 1
bandwidth = 4M
lock_wait = 0
[verify]
check_schedule = * * * * *
check_sample = 5
restore_schedule = * * * * *
[retention]
keep_last = 100
gc_grace = 0s
"""


def metric(text, name, labels=""):
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def lock_objects(state):
    d = os.path.join(state, "repository", "locks")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def main():
    return run_scenario(scenario, 20261127, "mk-verify-")


def scenario(check, rng, tmp):
    with Mailkeepd() as mk:
        daemon_scenario(check, rng, tmp, mk)


def daemon_scenario(check, rng, tmp, mk):
    root, state = os.path.join(tmp, "store"), os.path.join(tmp, "state")
    conf = os.path.join(tmp, "mailkeep.conf")
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", root, "--mailboxes", "3",
                          "--seed", "13", "--messages-per-mailbox", "30",
                          "--attachment-share", "0.1"], capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    store = Store(root, rng)
    boxes = sorted(maildirs(root))
    with open(conf, "w") as f:
        f.write(daemon_config(root, state) + CONFIG)
    os.makedirs(state)
    res = run_mailkeep("-c", conf, "repo", "init")
    if not check("repo init", res.returncode == 0, res.stderr):
        return
    res = run_mailkeep("-n", "-c", conf, program="mailkeepd")
    check("mailkeepd -n accepts the [verify] section", res.returncode == 0, res.stderr)
    bad = os.path.join(tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write(daemon_config(root, state) + CONFIG.replace(
            "check_schedule = * * * * *", "check_schedule = 0 0 31 2 *"))
    res = run_mailkeep("-n", "-c", bad, program="mailkeepd")
    check("mailkeepd -n refuses a check schedule that never fires",
          res.returncode == 1 and "[verify] check_schedule" in res.stderr, res.stderr)
    # Another catalog on the same repository: a prune from an admin host.
    other = os.path.join(tmp, "other.conf")
    with open(other, "w") as f:
        f.write(f"[general]\nstate_dir = {tmp}/other\n[repository]\n"
                f"location = {state}/repository\nkey_file = {state}/repo.key\n"
                "[retention]\nkeep_last = 100\ngc_grace = 0s\n")
    mk.start(None, state, ["-c", conf])
    jobs = Jobs(mk)

    # --- a single key slot -------------------------------------------------
    wait_for(lambda: (mk.status() or {}).get("repository", {}).get("key_slots"),
             timeout=10)
    repo = (mk.status() or {}).get("repository", {})
    check.equal("/v1/status: the repository has one key slot", repo.get("key_slots"), 1)
    check("/v1/status: single_key_slot and a warning",
          repo.get("single_key_slot") is True and "only one key slot" in
          (repo.get("warning") or ""), json.dumps(repo))
    res = run_mailkeep("-c", conf, "status")
    check("mailkeep status prints a warning line",
          res.returncode == 0 and "WARNING    only one key slot" in res.stdout
          and "only one key slot" in res.stderr, res.stdout + res.stderr)
    res = run_mailkeep("-c", conf, "--json", "status")
    sdoc = json.loads(res.stdout) if res.returncode == 0 else {}
    check("mailkeep --json status has repository.single_key_slot",
          sdoc.get("repository", {}).get("single_key_slot") is True, res.stdout[:300])
    code, text = mk.get("/metrics")
    check.equal("/metrics: mailkeep_repository_key_slots", metric(
        text, "mailkeep_repository_key_slots"), 1.0)

    # --- a backup job holds a shared lock ------------------------------------
    store.grow(1, 3 << 20)
    code, job = mk.post("/v1/backup")
    check("POST /v1/backup: 202", code == 202, job)
    held = wait_for(lambda: lock_objects(state), timeout=30)
    running = jobs.get(job["id"])
    check("the running backup job holds a repository lock",
          bool(held) and running and running["state"] == "running",
          f"{held} {running and running['state']}")
    if held:
        with open(os.path.join(state, "repository", "locks", held[0])) as f:
            lk = json.load(f)
        check("... a shared lock of the daemon's pid",
              lk.get("kind") == "shared" and lk.get("pid") == mk.pid, json.dumps(lk))
    res = run_mailkeep("-c", other, "prune")
    check("a prune while the job runs is refused, naming the shared lock",
          res.returncode == 1 and "locked by a shared lock" in res.stderr
          and f"pid {mk.pid}" in res.stderr, res.stderr)
    waiting = subprocess.Popen(
        [os.path.join(BIN_DIR, "mailkeep"), "-c", other, "prune", "--lock-wait", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done, _, _ = jobs.follow(job["id"])
    still = waiting.poll() is None
    check("the backup job completes", done and done["state"] == "done", done)
    check("a prune with --lock-wait was still waiting when the job ended", still)
    out, err = waiting.communicate(timeout=300)
    check("... and then ran", waiting.returncode == 0, err)
    check("no lock is left after the job and the prune",
          wait_for(lambda: not lock_objects(state), timeout=10), lock_objects(state))

    # --- a live exclusive lock of another host fails a backup job ----------
    name = os.path.join(state, "repository", "locks", "f" * 32)
    with open(name, "w") as f:
        json.dump({"magic": "mailkeep lock", "version": 1, "kind": "exclusive",
                   "host": "prune-host.example", "pid": 4242, "time": "",
                   "time_ns": time.time_ns()}, f)
    code, job = mk.post("/v1/backup")
    done, _, _ = jobs.follow(job["id"]) if code == 202 else (None, 0, 0)
    check("a backup job meets another host's exclusive lock: failed, naming it",
          done and done["state"] == "failed"
          and "prune-host.example" in json.dumps(done["errors"]), done)
    os.unlink(name)

    # --- a second key slot --------------------------------------------------
    res = run_mailkeep("-c", conf, "repo", "key", "add", "--new-key-file",
                       os.path.join(tmp, "second.key"))
    check("repo key add", res.returncode == 0, res.stderr)

    def run(path, body=None):
        code, job = mk.post(path, body)
        if code != 202:
            return code, job
        done, _, _ = jobs.follow(job["id"])
        return code, done

    code, done = run("/v1/check", json.dumps({"sample": 100}))
    check("POST /v1/check {sample:100}: done",
          code == 202 and done["state"] == "done" and done["kind"] == "check", done)
    result = (done or {}).get("result") or {}
    check("... read every pack, found no problem",
          result.get("sample") == 100 and result.get("packs_read", 0) > 0
          and result.get("packs_read") == result.get("packs")
          and result.get("problems") == 0, json.dumps(result))
    repo = (mk.status() or {}).get("repository", {})
    check("after repo key add the next job counts two slots, no warning",
          repo.get("key_slots") == 2 and repo.get("warning") is None, json.dumps(repo))
    code, done = run("/v1/test-restore", json.dumps({"mailbox": boxes[1]}))
    result = (done or {}).get("result") or {}
    check("POST /v1/test-restore of a named mailbox: done",
          code == 202 and done["state"] == "done" and result.get("mailbox") == boxes[1],
          done)
    check("... every message of its newest snapshot came back",
          result.get("messages", 0) > 0 and result.get("messages") == result.get("expected")
          and result.get("missing") == 0 and result.get("differ") == 0, json.dumps(result))
    code, done = run("/v1/test-restore")
    result = (done or {}).get("result") or {}
    check("POST /v1/test-restore: a mailbox at random, done",
          code == 202 and done["state"] == "done" and result.get("mailbox") in boxes, done)
    code, text = mk.get("/metrics")
    check("/metrics: the last success of both",
          (metric(text, "mailkeep_verify_last_success_timestamp_seconds",
                  '{kind="check"}') or 0) > 0 and
          (metric(text, "mailkeep_verify_last_success_timestamp_seconds",
                  '{kind="test-restore"}') or 0) > 0, text[-1500:])
    for body, want in (('{"sample":101}', 400), ('{"mailbox":"a@b"}', 400),
                       ("[1]", 400)):
        code, doc = mk.post("/v1/check", body)
        check(f"POST /v1/check {body}: {want}", code == want, f"{code} {doc}")
    code, doc = mk.post("/v1/test-restore", '{"mailbox":"nobody@example.org"}')
    check("POST /v1/test-restore of an unknown mailbox: 404", code == 404, f"{code} {doc}")
    code, doc = mk.post("/v1/test-restore", '{"mailbox":7}')
    check("POST /v1/test-restore with a number: 400", code == 400, f"{code} {doc}")

    # --- damage --------------------------------------------------------------
    code, text = mk.get("/metrics")
    failed_before = {k: metric(text, "mailkeep_verify_failures_total", f'{{kind="{k}"}}')
                     for k in ("check", "test-restore")}
    packs = []
    for dirpath, _, files in os.walk(os.path.join(state, "repository", "packs")):
        packs += [os.path.join(dirpath, f) for f in files]
    big = max(packs, key=os.path.getsize)
    with open(big, "r+b") as f:
        f.seek(os.path.getsize(big) // 3)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x55]))
    code, done = run("/v1/check", json.dumps({"sample": 100}))
    result = (done or {}).get("result") or {}
    check("after a flipped byte: the check fails",
          done and done["state"] == "failed" and result.get("problems", 0) > 0, done)
    check("... naming the pack in its first problems",
          any(os.path.basename(big) in p["object"] + p["detail"]
              for p in result.get("first_problems", [])), json.dumps(result)[:600])
    restores = [run("/v1/test-restore", json.dumps({"mailbox": b}))[1] for b in boxes]
    check("... and a test restore of a mailbox with a blob in that pack fails",
          any(r and r["state"] == "failed" for r in restores),
          [r and (r["state"], r["errors"]) for r in restores])
    code, text = mk.get("/metrics")
    check("/metrics: the failure counters went up", all(
        (metric(text, "mailkeep_verify_failures_total", f'{{kind="{k}"}}') or 0)
        > (failed_before[k] or 0) for k in failed_before), text[-1500:])
    code, doc = mk.get("/v1/jobs")
    v = doc.get("verify", {}) if code == 200 else {}
    check("/v1/jobs verify: failures and the last error",
          v.get("check", {}).get("failures", 0) > 0 and v.get("check", {}).get("last_error")
          and v.get("test_restore", {}).get("failures", 0) > 0, json.dumps(v))
    check("no scratch directory is left in the state directory",
          not [n for n in os.listdir(state) if n.startswith("test-restore-")],
          os.listdir(state))

    # --- the schedules --------------------------------------------------------
    def scheduled():
        code, doc = mk.get("/v1/jobs")
        kinds = {j["kind"] for j in doc.get("jobs", [])
                 if j["trigger"] == "schedule" and j["state"] in FINISHED}
        return {"check", "test-restore"} <= kinds
    check("the schedules ran a check and a test restore by themselves",
          wait_for(scheduled, timeout=130, interval=1))
    check("mailkeepd is still running", mk.alive(), mk.log_tail())


if __name__ == "__main__":
    sys.exit(main())
