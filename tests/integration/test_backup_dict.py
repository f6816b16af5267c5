#!/usr/bin/env python3
"""Compression dictionaries end to end, and repositories written before them.

1. A repository written by mailkeep before dictionaries existed (the
   committed fixture tests/fixtures/repo-1.0: one mailbox, three messages,
   its key file) is read by this build: rebuild-catalog, check and a
   restore give back the fixture's messages byte for byte, and a new
   backup into it works.
2. A generated store backed up with the default `dictionary = auto`:
   the run trains a header and a body dictionary (dicts/), headers and
   small bodies are stored with them, check reads every blob, a restore is
   byte-identical, rebuild-catalog keeps which dictionary each blob needs.
   `repo dict train` adds new current dictionaries, the old ones stay.
3. A dictionary object deleted: check names it and the mailboxes it
   breaks, a restore of such a mailbox fails with an error naming it.
4. `dictionary = off`: the run stores no dictionary.
Needs no Dovecot.
"""

import os
import shutil
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import run_mailkeep, run_scenario  # noqa: E402

SOURCE_DIR = os.environ.get("MK_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GEN_CORPUS = os.path.join(SOURCE_DIR, "bench", "gen-corpus.py")
FIXTURE = os.path.join(SOURCE_DIR, "tests", "fixtures", "repo-1.0")


def messages(maildir):
    """{folder/sub/name: bytes} of every message file below a Maildir."""
    out = {}
    for dirpath, _, files in os.walk(maildir):
        if os.path.basename(dirpath) not in ("cur", "new"):
            continue
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.relpath(os.path.join(dirpath, f), maildir)] = fh.read()
    return out


def blob_counts(state):
    db = sqlite3.connect(os.path.join(state, "catalog.db"))
    try:
        return dict(db.execute(
            "SELECT compression, count(*) FROM blob GROUP BY compression").fetchall())
    finally:
        db.close()


def dict_objects(state):
    d = os.path.join(state, "repository", "dicts")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def old_repository(check, tmp):
    store = os.path.join(tmp, "old-store")
    state = os.path.join(tmp, "old-state")
    shutil.copytree(os.path.join(FIXTURE, "store"), store)
    os.makedirs(state, mode=0o700)
    shutil.copytree(os.path.join(FIXTURE, "repository"),
                    os.path.join(state, "repository"))
    shutil.copy(os.path.join(FIXTURE, "repo.key"), os.path.join(state, "repo.key"))
    os.chmod(os.path.join(state, "repo.key"), 0o600)
    env = ("--store", store, "--state", state)
    res = run_mailkeep(*env, "repo", "rebuild-catalog")
    if not check("old repository: rebuild-catalog", res.returncode == 0, res.stderr):
        return
    check("... finds its run", "1 runs" in res.stdout, res.stdout)
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("old repository: check passes", res.returncode == 0,
          res.stdout + res.stderr)
    out = os.path.join(tmp, "old-restored")
    res = run_mailkeep(*env, "restore", "alice@example.org", "--to", out,
                       "--offline")
    check("old repository: restore", res.returncode == 0, res.stderr)
    want = messages(os.path.join(store, "example.org", "alice", "Maildir"))
    check.equal("old repository: three messages in the fixture", len(want), 3)
    check("old repository: restored byte for byte",
          messages(out) == want, f"{sorted(messages(out))} vs {sorted(want)}")
    # A new run into the old repository: too little mail for a dictionary.
    with open(os.path.join(store, "example.org", "alice", "Maildir", "new",
                           "1794000300.M4P1.host"), "wb") as f:
        f.write(b"From: dave@example.com\nSubject: after\n\nnew\n")
    res = run_mailkeep(*env, "backup", "run", "--offline")
    check("old repository: a new backup run", res.returncode == 0, res.stderr)
    check.equal("... trains no dictionary on four messages", dict_objects(state), [])
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("... and check passes", res.returncode == 0, res.stdout + res.stderr)


def with_dictionaries(check, tmp):
    store = os.path.join(tmp, "store")
    state = os.path.join(tmp, "state")
    gen = subprocess.run([sys.executable, GEN_CORPUS, "--out", store,
                          "--mailboxes", "8", "--seed", "11",
                          "--messages-per-mailbox", "60",
                          "--attachment-share", "0.02"],
                         capture_output=True, text=True)
    if not check("gen-corpus made a store", gen.returncode == 0, gen.stderr):
        return
    env = ("--store", store, "--state", state)
    res = run_mailkeep(*env, "repo", "init")
    if not check("repo init", res.returncode == 0, res.stderr):
        return
    res = run_mailkeep(*env, "backup", "run", "--offline")
    check("first backup", res.returncode == 0, res.stderr)
    dicts = dict_objects(state)
    check.equal("the first run trained two dictionaries", len(dicts), 2)
    counts = blob_counts(state)
    check("headers and small bodies use them", counts.get(2, 0) > 100, str(counts))
    check("large blobs and metadata do not", counts.get(1, 0) > 0, str(counts))
    res = run_mailkeep(*env, "--json", "repo", "dict", "list")
    check("dict list", res.returncode == 0 and res.stdout.count('"current": true') +
          res.stdout.count('"current":true') == 2, res.stdout + res.stderr)
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("check reads every blob with its dictionary", res.returncode == 0,
          res.stdout + res.stderr)
    check("... and counts the dictionaries", "2 dictionaries" in res.stdout,
          res.stdout)
    maildirs = sorted(
        os.path.join(dp) for dp, dn, _ in os.walk(store) if "cur" in dn and
        os.path.basename(dp) == "Maildir")
    first = maildirs[0]
    address = "{}@{}".format(os.path.basename(os.path.dirname(first)),
                             os.path.basename(os.path.dirname(os.path.dirname(first))))
    out = os.path.join(tmp, "restored")
    res = run_mailkeep(*env, "restore", address, "--to", out, "--offline")
    check("restore", res.returncode == 0, res.stderr)
    check("restored byte for byte", messages(out) == messages(first), address)

    # rebuild-catalog keeps which dictionary each blob needs.
    before = blob_counts(state)
    os.unlink(os.path.join(state, "catalog.db"))
    for suffix in ("-wal", "-shm"):
        if os.path.exists(os.path.join(state, "catalog.db" + suffix)):
            os.unlink(os.path.join(state, "catalog.db" + suffix))
    res = run_mailkeep(*env, "repo", "rebuild-catalog")
    check("rebuild-catalog", res.returncode == 0, res.stderr)
    check.equal("... the same blobs by compression", blob_counts(state), before)
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("check after the rebuild", res.returncode == 0, res.stdout + res.stderr)

    # Retraining: new current dictionaries, the old ones stay.
    res = run_mailkeep(*env, "repo", "dict", "train")
    check("repo dict train", res.returncode == 0, res.stdout + res.stderr)
    check.equal("four dictionaries now", len(dict_objects(state)), 4)
    with open(os.path.join(first, "new", "1794999999.M1P1.host"), "wb") as f:
        f.write(b"From: x@example.net\nTo: y@example.org\nSubject: after "
                b"retraining\n\nhello\n")
    res = run_mailkeep(*env, "backup", "run", "--offline")
    check("a run after retraining", res.returncode == 0, res.stderr)
    res = run_mailkeep(*env, "check", "--sample", "100")
    check("check after retraining", res.returncode == 0, res.stdout + res.stderr)

    # A dictionary gone: check and restore say which, and what it breaks.
    db = sqlite3.connect(os.path.join(state, "catalog.db"))
    used = db.execute("SELECT lower(hex(dict)), count(*) FROM blob WHERE dict IS "
                      "NOT NULL GROUP BY dict ORDER BY 2 DESC").fetchall()
    db.close()
    gone = used[0][0]
    os.unlink(os.path.join(state, "repository", "dicts", gone))
    res = run_mailkeep(*env, "check")
    check("check fails without a dictionary", res.returncode != 0, res.stdout)
    text = res.stdout + res.stderr
    check("... names the dictionary", gone[:16] in text and "missing" in text, text[-2000:])
    check("... and the mailboxes it breaks", "mailboxes affected" in text, text[-2000:])
    res = run_mailkeep(*env, "restore", address, "--to",
                       os.path.join(tmp, "restored2"), "--offline")
    check("restore without the dictionary fails", res.returncode != 0, res.stdout)
    check("... naming it", gone[:16] in res.stderr, res.stderr)


def dictionary_off(check, tmp):
    store = os.path.join(tmp, "store")  # made by with_dictionaries
    state = os.path.join(tmp, "state-off")
    conf = os.path.join(tmp, "off.conf")
    with open(conf, "w") as f:
        f.write(f"[store]\nroot = {store}\n[general]\nstate_dir = {state}\n"
                "[backup]\ndictionary = off\n")
    res = run_mailkeep("-c", conf, "repo", "init")
    check("off: repo init", res.returncode == 0, res.stderr)
    res = run_mailkeep("-c", conf, "backup", "run", "--offline")
    check("off: backup", res.returncode == 0, res.stderr)
    check.equal("off: no dictionary stored", dict_objects(state), [])
    check.equal("off: no blob uses one", blob_counts(state).get(2, 0), 0)
    with open(conf, "w") as f:
        f.write(f"[store]\nroot = {store}\n[general]\nstate_dir = {state}\n"
                "[backup]\ndictionary = sometimes\n")
    res = run_mailkeep("-c", conf, "backup", "run", "--offline")
    check("a bad dictionary value is refused", res.returncode != 0 and
          "dictionary" in res.stderr, res.stderr)


def scenario(check, rng, tmp):
    old_repository(check, tmp)
    with_dictionaries(check, tmp)
    dictionary_off(check, tmp)


def main():
    return run_scenario(scenario, 20261126, "mk-dict-")


if __name__ == "__main__":
    sys.exit(main())
