#!/usr/bin/env python3
"""`mailkeep --offline restore` without a usable catalog, local repository.

Two hosts back up different mailboxes into one repository, each with its
own state directory.  Then:

- host A's catalog is deleted: `mailkeep --offline restore` rebuilds it in
  the state directory from the repository, says so on stderr, and
  restores byte for byte; the rebuilt catalog stays (snapshots, --at);
- a fresh state directory with only the key: `--snapshot ID` is refused
  (ids are the rebuilt catalog's, which the operator has not seen),
  after which `snapshots` lists them;
- a mailbox of host B restored from host A: A's catalog has snapshots of
  its own, so it is left as it is and a private temporary catalog is
  rebuilt (in $TMPDIR) and removed afterwards;
- a catalog that is not a database: left byte for byte as it was, the
  restore works from a temporary catalog;
- a mailbox in no catalog and no run of the repository: a clear error,
  and no temporary catalog is left.  Needs no Dovecot.
"""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import (BIN_DIR, make_maildir, maildir_tree as tree,  # noqa: E402
                   run_scenario)
from test_backup_roundtrip import Store, first_difference  # noqa: E402


def write_conf(path, root, state, repository):
    with open(path, "w") as f:
        f.write(f"[store]\nroot = {root}\n[general]\nstate_dir = {state}\n"
                f"[repository]\nlocation = {repository}\n"
                f"key_file = {state}/repo.key\n")
    return path


def mailkeep(conf, *args, tmpdir):
    env = dict(os.environ, TMPDIR=tmpdir)
    return subprocess.run([os.path.join(BIN_DIR, "mailkeep"), "-c", conf, *args],
                          capture_output=True, text=True, env=env, timeout=300)


def make_host(tmp, name, repository, rng, mailboxes):
    root, state = os.path.join(tmp, name, "store"), os.path.join(tmp, name, "state")
    os.makedirs(state, 0o700)
    store = Store(root, rng)
    for address in mailboxes:
        user, domain = address.split("@")
        maildir = make_maildir(os.path.join(root, domain, user, "Maildir"), ".Archive")
        for i in range(4):
            store.deliver(maildir, store.message(f"{address} {i}", body_len=800))
        store.deliver(maildir, store.message(f"{address} old", body_len=800), ".Archive")
    conf = write_conf(os.path.join(tmp, name, "mk.conf"), root, state, repository)
    return conf, state, store


def scenario(check, rng, tmp):
    tmpdir = os.path.join(tmp, "tmpdir")
    os.makedirs(tmpdir)
    repository = os.path.join(tmp, "repository")
    conf_a, state_a, store_a = make_host(
        tmp, "a", repository, rng, ["anna@example.org", "bert@example.org"])
    conf_b, state_b, store_b = make_host(tmp, "b", repository, rng, ["dora@example.net"])

    def run(conf, *args):
        return mailkeep(conf, *args, tmpdir=tmpdir)

    res = run(conf_a, "repo", "init")
    if not check("repo init", res.returncode == 0, res.stderr):
        return
    shutil.copy(os.path.join(state_a, "repo.key"), os.path.join(state_b, "repo.key"))
    wants, times = {}, []   # (address, round) -> tree; round -> time after it
    for rnd in range(2):
        for store, conf in ((store_a, conf_a), (store_b, conf_b)):
            for address, maildir in store.maildirs().items():
                if rnd > 0:
                    store.deliver(maildir, store.message(f"round {rnd}", body_len=600))
                    store.flag_round(maildir)
                wants[address, rnd] = tree(maildir)
            res = run(conf, "--offline", "backup", "run")
            check(f"round {rnd}: backup run", res.returncode == 0, res.stderr)
        # A time after this round's snapshots and before the next's
        # (--at takes whole seconds).
        time.sleep(1.1)
        times.append(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        time.sleep(1.1)

    def restored(conf, address, *args, want=None, what=""):
        to = os.path.join(tmp, "restored", f"{len(os.listdir(restored_dir))}")
        res = run(conf, "--offline", "restore", address, "--to", to, *args)
        ok = check(f"{what}: restore exits 0", res.returncode == 0, res.stderr)
        if ok and want is not None:
            check(f"{what}: byte for byte", first_difference(tree(to), want) is None,
                  first_difference(tree(to), want))
        return res

    restored_dir = os.path.join(tmp, "restored")
    os.makedirs(restored_dir)

    # Host A's catalog is gone.
    res = run(conf_a, "--json", "snapshots")
    before_a = json.loads(res.stdout)["snapshots"]
    for name in os.listdir(state_a):
        if name.startswith("catalog.db"):
            os.unlink(os.path.join(state_a, name))
    res = restored(conf_a, "anna@example.org", want=wants["anna@example.org", 1],
                   what="catalog gone")
    check("catalog gone: says it rebuilds the catalog in the state directory",
          f"the catalog {state_a}/catalog.db has no snapshot: rebuilding it from "
          f"the repository {repository}" in res.stderr, res.stderr)
    check("catalog gone: ... and what it found",
          "catalog rebuilt from the repository: 4 runs, 6 snapshots" in res.stderr,
          res.stderr)
    res = run(conf_a, "--json", "snapshots")
    after_a = json.loads(res.stdout)["snapshots"] if res.returncode == 0 else []
    check.equal("catalog gone: the rebuilt catalog stays, with every snapshot of "
                "the repository", len(after_a), len(before_a) + 2)
    res = restored(conf_a, "bert@example.org", "--at", times[0],
                   want=wants["bert@example.org", 0], what="rebuilt catalog, --at")
    check("rebuilt catalog: the next restore does not rebuild again",
          "rebuilding" not in res.stderr, res.stderr)
    check.equal("no temporary catalog left", os.listdir(tmpdir), [])

    # A fresh state directory with only the key: --snapshot is refused.
    fresh = os.path.join(tmp, "fresh")
    os.makedirs(fresh, 0o700)
    shutil.copy(os.path.join(state_a, "repo.key"), os.path.join(fresh, "repo.key"))
    conf_f = write_conf(os.path.join(tmp, "fresh.conf"), os.path.join(tmp, "a", "store"),
                        fresh, repository)
    res = run(conf_f, "--offline", "restore", "dora@example.net", "--snapshot", "3",
              "--to", os.path.join(tmp, "restored", "never"))
    check("fresh: --snapshot before the ids are known is refused",
          res.returncode == 1 and "numbered by the catalog just rebuilt" in res.stderr
          and "'mailkeep snapshots' lists them now" in res.stderr, res.stderr)
    check("fresh: ... and nothing is written",
          not os.path.exists(os.path.join(tmp, "restored", "never")))
    res = run(conf_f, "--json", "snapshots", "dora@example.net")
    snaps = json.loads(res.stdout)["snapshots"] if res.returncode == 0 else []
    check.equal("fresh: then snapshots lists the rebuilt ids", len(snaps), 2)
    if snaps:
        restored(conf_f, "dora@example.net", "--snapshot", str(snaps[0]["id"]),
                 want=wants["dora@example.net", 0], what="fresh, --snapshot after")

    # Host B's mailbox from host A: a temporary catalog, A's left alone.
    # A's rebuilt catalog has B's snapshots too: start A over from its
    # own runs, as a host that never rebuilt would be.
    for name in os.listdir(state_a):
        if name.startswith("catalog.db"):
            os.unlink(os.path.join(state_a, name))
    for address, maildir in store_a.maildirs().items():
        store_a.deliver(maildir, store_a.message("round 2", body_len=600))
        wants[address, 2] = tree(maildir)
    res = run(conf_a, "--offline", "backup", "run")
    check("host A backs up into a new catalog", res.returncode == 0, res.stderr)
    res = run(conf_a, "--json", "snapshots")
    mine = json.loads(res.stdout)["snapshots"]
    res = restored(conf_a, "dora@example.net", want=wants["dora@example.net", 1],
                   what="other host's mailbox")
    check("other host's mailbox: a temporary catalog, and it says so",
          "dora@example.net has no snapshot in the catalog" in res.stderr and
          f"rebuilding a temporary catalog from the repository {repository} in "
          f"{tmpdir}/mailkeep-catalog." in res.stderr and
          "is left as it is" in res.stderr, res.stderr)
    res = run(conf_a, "--json", "snapshots")
    check.equal("other host's mailbox: A's catalog is left as it was",
                json.loads(res.stdout)["snapshots"], mine)
    check.equal("other host's mailbox: the temporary catalog is removed",
                os.listdir(tmpdir), [])

    res = run(conf_a, "--offline", "restore", "dora@example.net", "--snapshot", "1",
              "--to", os.path.join(tmp, "restored", "never"))
    check("other host's mailbox by --snapshot: refused before any rebuild, "
          "pointing to --at",
          res.returncode == 1 and "use --at TIME" in res.stderr and
          "rebuilding" not in res.stderr, res.stderr)
    check("... nothing written, no temporary catalog",
          not os.path.exists(os.path.join(tmp, "restored", "never")) and
          os.listdir(tmpdir) == [])

    # A catalog that is not a database.
    catalog = os.path.join(state_a, "catalog.db")
    os.rename(catalog, catalog + ".good")
    for name in os.listdir(state_a):
        if name.startswith("catalog.db-"):
            os.unlink(os.path.join(state_a, name))
    junk = b"this is not an SQLite database\n" * 100
    with open(catalog, "wb") as f:
        f.write(junk)
    res = restored(conf_a, "anna@example.org", want=wants["anna@example.org", 2],
                   what="damaged catalog")
    check("damaged catalog: says it cannot be used",
          f"the catalog {catalog} cannot be used" in res.stderr and
          "rebuilding a temporary catalog" in res.stderr, res.stderr)
    with open(catalog, "rb") as f:
        check("damaged catalog: left byte for byte as it was", f.read() == junk)
    check.equal("damaged catalog: the temporary catalog is removed",
                os.listdir(tmpdir), [])
    os.unlink(catalog)
    os.rename(catalog + ".good", catalog)

    # A mailbox nobody backed up.
    res = run(conf_a, "--offline", "restore", "nobody@example.org", "--to",
              os.path.join(tmp, "restored", "nobody"))
    check("unknown mailbox: exit 1 with a clear error",
          res.returncode == 1 and "no snapshots of nobody@example.org in the catalog "
          "or the repository" in res.stderr, res.stderr)
    check("unknown mailbox: no catalog was rebuilt for it",
          "rebuilding" not in res.stderr and os.listdir(tmpdir) == [], res.stderr)
    check("unknown mailbox: nothing written",
          not os.path.exists(os.path.join(tmp, "restored", "nobody")))


def main():
    return run_scenario(scenario, 20261127, "mk-offline-")


if __name__ == "__main__":
    sys.exit(main())
