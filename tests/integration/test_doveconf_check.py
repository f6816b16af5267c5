#!/usr/bin/env python3
"""`mailkeepd -n` reads `doveconf -n` and reports the Dovecot settings
mailkeep relies on.

The configurations are those of the integration harness's real Dovecot
(tests/integration/mkenv.py: quota = maildir, and quota = count), read by
the real doveconf through [quota] doveconf = doveconf -n -c FILE:

 1. maildir, mailkeep's store and grace the same: no warning; "ok" lines
    for mail_location, the driver and the grace.
 2. maildir against a mailkeep configuration that disagrees everywhere
    (another template, maildirsize = no, basis = virtual, grace 5%, a
    default limit Dovecot lacks): one warning for each, naming both sides.
 3. count with basis = physical and maildirsize = yes: both warned.
 4. a doveconf command that fails: the settings are said to be unchecked,
    and mailkeep's own check still passes (exit 0).

    MK_BIN_DIR=$PWD/build python3 tests/integration/test_doveconf_check.py

Prints one PASS/FAIL line per check, then "N passed, M failed"; exits 1 on
failure.  Takes a few seconds; Dovecot is not started (doveconf only
reads its configuration).
"""

import os
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import BIN_DIR, Checks, Dovecot  # noqa: E402


def check_conf(dc, extra="", template=None, doveconf=None):
    """Run mailkeepd -n with a configuration over dc's store; returns
    (exit status, stdout lines starting with 'dovecot: ')."""
    conf = os.path.join(dc.tmp, "mailkeep.conf")
    with open(conf, "w") as f:
        f.write(f"[store]\nroot = {dc.tmp}/vmail\n")
        if template:
            f.write(f"template = {template}\n")
        f.write(f"[general]\nstate_dir = {dc.tmp}/mkstate\n[quota]\n")
        f.write(f"doveconf = {doveconf or f'doveconf -n -c {dc.conf}'}\n{extra}")
    res = subprocess.run([os.path.join(BIN_DIR, "mailkeepd"), "-n", "-c", conf],
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in res.stdout.splitlines() if line.startswith("dovecot: ")]
    return res.returncode, lines, res.stdout + res.stderr


def warnings(lines):
    return [line for line in lines if line.startswith("dovecot: warning: ")]


def main():
    check = Checks()
    dcs = []
    try:
        dc = Dovecot(quota_backend="maildir")
        dcs.append(dc)
        rc, lines, out = check_conf(dc)
        check("maildir, same settings: exit 0, no warning",
              rc == 0 and warnings(lines) == [] and "dovecot: 0 warnings" in out, out)
        check("... ok: mail_location matches [store] root and template",
              any("ok: mail_location = maildir:" in l and "matches" in l for l in lines))
        check("... ok: maildir reads maildirsize, grace 10% on both sides",
              any("quota driver maildir reads the maildirsize" in l for l in lines) and
              any("grace 10% on both sides" in l for l in lines))

        rc, lines, out = check_conf(
            dc, template="%d/%n/Mail",
            extra="maildirsize = no\nbasis = virtual\ngrace = 5%\ndefault = storage=1G\n")
        w = warnings(lines)
        check("maildir, every setting different: exit 0, 5 warnings", rc == 0 and len(w) == 5, out)
        check("... mail_location against the store, both named",
              any("mail_location = maildir:" in l and f"{dc.tmp}/vmail/%d/%n/Mail" in l
                  for l in w))
        check("... maildirsize = no", any("[quota] maildirsize = no" in l for l in w))
        check("... basis = virtual under maildir", any("basis = virtual" in l for l in w))
        check("... grace 10% (Dovecot) against 5%",
              any("grace is 10%" in l and "grace = 5%" in l for l in w))
        check("... [quota] default without a Dovecot default rule",
              any("[quota] default = storage=1G" in l for l in w))

        dc2 = Dovecot(quota_backend="count")
        dcs.append(dc2)
        rc, lines, out = check_conf(dc2)
        w = warnings(lines)
        check("count with basis = physical and maildirsize = yes: 2 warnings",
              rc == 0 and len(w) == 2 and
              any("count counts virtual sizes" in l for l in w) and
              any("does not read maildirsize" in l for l in w), out)
        rc, lines, out = check_conf(dc2, extra="basis = virtual\nmaildirsize = no\n")
        check("count with basis = virtual, maildirsize = no: no warning",
              rc == 0 and warnings(lines) == [], out)

        rc, lines, out = check_conf(dc, doveconf=f"doveconf -n -c {dc.tmp}/missing.conf")
        check("a failing doveconf: settings not checked, the reason given, exit 0",
              rc == 0 and any("settings not checked" in l and "failed" in l for l in lines)
              and "configuration OK" in out, out)
    except Exception:
        traceback.print_exc()
        check("the test ran to its end", False, "exception above")
    finally:
        for dc in dcs:
            dc.cleanup()
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
