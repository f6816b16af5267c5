#!/usr/bin/env python3
"""The installed systemd unit, sysusers.d and tmpfiles.d files and the
sample configuration, checked without a running systemd.

`cmake --install $MK_BIN_DIR --prefix /usr` into a temporary DESTDIR, then:
- the files are where they belong, the unit's paths are filled in, and a
  second install leaves an existing mailkeep.conf alone;
- the unit has the settings docs/operations.md relies on (Type=notify,
  watchdog, reload, user, directories, hardening);
- `systemd-sysusers --root` and `systemd-tmpfiles --root --create` apply
  the snippets to the DESTDIR (user mailkeep, /var/lib/mailkeep 0700);
- `systemd-analyze verify --root` accepts the unit.  It needs the standard
  units (sysinit.target, multi-user.target...) inside the root, so the
  host's are copied next to the installed files; a broken probe unit
  shows that verify does complain here.  `systemd-analyze security
  --offline` rates the exposure;
- the sample lists every key of lib/conf.c's table with its default, and
  `mailkeepd -n` accepts it as it is, with every key uncommented, and
  adjusted to temporary directories; a broken file exits 1 with FILE:LINE;
- mailkeepd started as the unit starts it (ExecStart, NOTIFY_SOCKET,
  WATCHDOG_USEC, JOURNAL_STREAM) sends READY/STATUS/WATCHDOG, logs with
  <N> priority prefixes, answers on the status socket, reloads on SIGHUP
  (keeping its configuration when the new file is invalid) and stops on
  SIGTERM.  It runs as the test's user (root) outside any sandbox: without
  systemd as PID 1, User= and the hardening settings themselves cannot be
  exercised here.

Needs root, cmake, systemd 252 (Debian 12) for systemd-analyze,
systemd-sysusers and systemd-tmpfiles; systemd need not be PID 1.
One PASS/FAIL line per check, then "N passed, M failed"; exit 1 on failure.
MK_KEEP_TMP=1 keeps the temporary directory.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import Checks, wait_for  # noqa: E402

SOURCE_DIR = os.environ.get("MK_SOURCE_DIR", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
BIN_DIR = os.environ.get("MK_BIN_DIR", os.path.join(SOURCE_DIR, "build"))

# Settings the unit must have: (key, predicate over its values, wanted).
REQUIRED = [
    ("Type", lambda v: v == ["notify"], "notify"),
    ("WatchdogSec", lambda v: v == ["30"], "30"),
    ("Restart", lambda v: v == ["on-failure"], "on-failure"),
    ("ExecReload", lambda v: "/bin/kill -HUP $MAINPID" in v,
     "/bin/kill -HUP $MAINPID"),
    ("User", lambda v: v == ["mailkeep"], "mailkeep"),
    ("RuntimeDirectory", lambda v: v == ["mailkeep"], "mailkeep"),
    ("StateDirectory", lambda v: v == ["mailkeep"], "mailkeep"),
    ("StateDirectoryMode", lambda v: v == ["0700"], "0700"),
    ("ConfigurationDirectory", lambda v: v == ["mailkeep"], "mailkeep"),
    ("ProtectSystem", lambda v: v == ["strict"], "strict"),
    ("ReadWritePaths", lambda v: any("/var/vmail" in x for x in v),
     "the store root /var/vmail"),
    ("NoNewPrivileges", lambda v: v == ["yes"], "yes"),
    ("PrivateTmp", lambda v: v == ["yes"], "yes"),
    ("ProtectHome", lambda v: v == ["yes"], "yes"),
    ("PrivateDevices", lambda v: v == ["yes"], "yes"),
    ("ProtectKernelTunables", lambda v: v == ["yes"], "yes"),
    ("ProtectKernelModules", lambda v: v == ["yes"], "yes"),
    ("ProtectKernelLogs", lambda v: v == ["yes"], "yes"),
    ("ProtectControlGroups", lambda v: v == ["yes"], "yes"),
    ("RestrictAddressFamilies",
     lambda v: v == ["AF_UNIX AF_INET AF_INET6"], "AF_UNIX AF_INET AF_INET6"),
    ("RestrictNamespaces", lambda v: v == ["yes"], "yes"),
    ("LockPersonality", lambda v: v == ["yes"], "yes"),
    ("MemoryDenyWriteExecute", lambda v: v == ["yes"], "yes"),
    ("RestrictRealtime", lambda v: v == ["yes"], "yes"),
    ("SystemCallFilter", lambda v: "@system-service" in v, "@system-service"),
    ("SystemCallArchitectures", lambda v: v == ["native"], "native"),
    ("CapabilityBoundingSet", lambda v: v == [""], "empty"),
    ("UMask", lambda v: v == ["0077"], "0077"),
    ("LimitNOFILE", lambda v: len(v) == 1 and v[0].isdigit()
     and int(v[0]) >= 65536, ">= 65536"),
]


# What the input files named in the sample hold for the check of every key.
INPUT_CONTENT = {
    "warn_template": "Subject: Your mailbox is %{percent}% full\n\n"
                     "%{address} holds %{usage} of %{limit}.\n",
    "metrics_token_file": "0123456789abcdef0123\n",
}


def run(args, env=None, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, env=env,
                          timeout=timeout)


def parse_unit(path):
    """{section: {key: [values in order]}}; comments and blank lines
    skipped, no line continuations (the unit has none)."""
    units, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = units.setdefault(line.strip("[]"), {})
                continue
            key, _, value = line.partition("=")
            section.setdefault(key.strip(), []).append(value.strip())
    return units


def conf_table(path):
    """lib/conf.c's key table: [(section, key, default or None)]; a default
    of MK_LOCALSTATEDIR "/x" is taken as /var/x (a build for /usr)."""
    text = open(path).read()
    table = text[text.index("conf_keys[] = {"):]
    table = table[:table.index("\n};")]
    keys = []
    for m in re.finditer(r'\{\s*"(\w+)",\s*"(\w+)",\s*CONF_\w+,\s*'
                         r'CONF_AT\([^)]*\),\s*(NULL|MK_LOCALSTATEDIR\s*"[^"]*"'
                         r'|"[^"]*")', table):
        d = m.group(3)
        if d == "NULL":
            d = None
        elif d.startswith("MK_LOCALSTATEDIR"):
            d = "/var" + d.split('"')[1]
        else:
            d = d.strip('"')
        keys.append((m.group(1), m.group(2), d))
    return keys


def sample_keys(lines):
    """The keys of the sample: {(section, key): (line index, value)} from
    "#key = value" lines; sections from "[name]" lines."""
    keys, section = {}, None
    for i, line in enumerate(lines):
        m = re.match(r"^\[(\w+)\]\s*$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^#(\w+) = (.*)$", line)
        if m:
            keys[(section, m.group(1))] = (i, m.group(2))
    return keys


def write_conf(path, lines, set_values=None, uncomment_all=False):
    """Write the sample's lines to path, uncommenting the keys in
    set_values with those values (and with uncomment_all every other key
    at its shown value)."""
    out, section = [], None
    for line in lines:
        m = re.match(r"^\[(\w+)\]\s*$", line)
        if m:
            section = m.group(1)
        m = re.match(r"^#(\w+) = (.*)$", line)
        if m and set_values and (section, m.group(1)) in set_values:
            line = f"{m.group(1)} = {set_values[(section, m.group(1))]}"
        elif m and uncomment_all:
            line = f"{m.group(1)} = {m.group(2)}"
        out.append(line)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def http_unix(path, method, target):
    """(status code, body) of one HTTP/1.0 request over a UNIX socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(f"{method} {target} HTTP/1.0\r\nHost: localhost\r\n"
                  "Content-Length: 0\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


class Notify:
    """A NOTIFY_SOCKET: collects the datagrams the daemon sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.messages.extend(data.decode().splitlines())

    def wait(self, pred, start=0, timeout=10):
        """The first message from index start on that pred accepts, or
        None; returns (index, message)."""
        def find():
            self.poll()
            for i in range(start, len(self.messages)):
                if pred(self.messages[i]):
                    return (i, self.messages[i])
            return None
        return wait_for(find, timeout=timeout, interval=0.05) or (None, None)

    def close(self):
        self.sock.close()


def install(check, dest):
    env = dict(os.environ, DESTDIR=dest)
    res = run(["cmake", "--install", BIN_DIR, "--prefix", "/usr"], env=env)
    check.equal("cmake --install --prefix /usr into DESTDIR exits 0",
                res.returncode, 0)
    if res.returncode != 0:
        print(res.stdout + res.stderr)
    return res


def find_one(check, dest, pattern, what):
    found = sorted(glob.glob(os.path.join(dest, pattern), recursive=True))
    check(f"{what} installed once ({pattern})", len(found) == 1,
          f"found {found}")
    return found[0] if found else None


def check_files(check, dest):
    """The installed files; returns the unit's path."""
    for rel in ("usr/sbin/mailkeepd", "usr/bin/mailkeep"):
        path = os.path.join(dest, rel)
        check(f"/{rel} installed, executable", os.access(path, os.X_OK),
              path)
    unit = find_one(check, dest, "**/systemd/system/mailkeepd.service",
                    "mailkeepd.service")
    if unit:
        check("the unit is in a lib/systemd/system directory",
              os.path.dirname(unit).endswith("lib/systemd/system"), unit)
    users = find_one(check, dest, "**/sysusers.d/mailkeep.conf",
                     "sysusers.d/mailkeep.conf")
    tmpf = find_one(check, dest, "**/tmpfiles.d/mailkeep.conf",
                    "tmpfiles.d/mailkeep.conf")
    for path, want in ((users, "usr/lib/sysusers.d/mailkeep.conf"),
                       (tmpf, "usr/lib/tmpfiles.d/mailkeep.conf")):
        if path:
            check.equal(f"{os.path.basename(os.path.dirname(path))} under "
                        "/usr/lib", os.path.relpath(path, dest), want)
    sample = os.path.join(dest, "etc/mailkeep/mailkeep.conf.sample")
    check("/etc/mailkeep/mailkeep.conf.sample installed (prefix /usr: /etc)",
          os.path.isfile(sample), sample)
    check("no mailkeep.conf installed",
          not os.path.exists(os.path.join(dest, "etc/mailkeep/mailkeep.conf")))
    if unit:
        text = open(unit).read()
        check("no @placeholders@ left in the unit",
              re.search(r"@\w+@", text) is None,
              re.findall(r"@\w+@", text))
    return unit, users, tmpf, sample


def check_prefix_warning(check, res):
    """The install warns when the build's built-in paths (its configure
    prefix) differ from what the unit provides."""
    prefix = None
    with open(os.path.join(BIN_DIR, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("CMAKE_INSTALL_PREFIX:"):
                prefix = line.split("=", 1)[1].strip()
    warned = "mailkeepd.service provides /var/lib/mailkeep" in \
        re.sub(r"\s+", " ", res.stderr)
    check(f"install warns about built-in paths iff configured for a prefix "
          f"other than /usr (here {prefix})",
          warned == (prefix != "/usr"), res.stderr)


def check_no_overwrite(check, dest):
    conf = os.path.join(dest, "etc/mailkeep/mailkeep.conf")
    with open(conf, "w") as f:
        f.write("# the operator's own\n")
    install(check, dest)
    check.equal("a second install leaves mailkeep.conf alone",
                open(conf).read(), "# the operator's own\n")
    os.unlink(conf)


def check_unit(check, unit):
    u = parse_unit(unit)
    svc = u.get("Service", {})
    for key, pred, want in REQUIRED:
        vals = svc.get(key, [])
        check(f"unit: {key}={want}", pred(vals), f"got {vals}")
    check.equal("unit: ExecStart", svc.get("ExecStart"),
                ["/usr/sbin/mailkeepd -c /etc/mailkeep/mailkeep.conf"])
    check("unit: ExecReload checks the file before the SIGHUP",
          svc.get("ExecReload", [None])[0] ==
          "/usr/sbin/mailkeepd -n -c /etc/mailkeep/mailkeep.conf",
          svc.get("ExecReload"))
    check.equal("unit: WantedBy=multi-user.target",
                u.get("Install", {}).get("WantedBy"), ["multi-user.target"])
    return u


def check_sysusers_tmpfiles(check, dest):
    res = run(["systemd-sysusers", f"--root={dest}"])
    check("systemd-sysusers --root applies sysusers.d/mailkeep.conf",
          res.returncode == 0 and res.stderr.count("\n") <= 2,
          res.stdout + res.stderr)
    pw = {}
    if os.path.exists(os.path.join(dest, "etc/passwd")):
        for line in open(os.path.join(dest, "etc/passwd")):
            f = line.rstrip("\n").split(":")
            pw[f[0]] = f
    user = pw.get("mailkeep")
    check("user mailkeep created, no login shell, home /var/lib/mailkeep",
          user is not None and user[5] == "/var/lib/mailkeep"
          and user[6].endswith("nologin"), user)
    groups = open(os.path.join(dest, "etc/group")).read() \
        if os.path.exists(os.path.join(dest, "etc/group")) else ""
    check("group mailkeep created",
          re.search(r"^mailkeep:x:\d+:", groups, re.M) is not None, groups)
    res = run(["systemd-tmpfiles", f"--root={dest}", "--create"])
    check.equal("systemd-tmpfiles --root --create exits 0", res.returncode, 0)
    state = os.path.join(dest, "var/lib/mailkeep")
    st = os.stat(state) if os.path.isdir(state) else None
    check("/var/lib/mailkeep is 0700 and owned by mailkeep",
          st is not None and user is not None
          and stat.S_IMODE(st.st_mode) == 0o700
          and st.st_uid == int(user[2]) and st.st_gid == int(user[3]),
          st and (oct(st.st_mode), st.st_uid, st.st_gid))


def verify_root(tmp, dest):
    """A copy of the DESTDIR with the host's unit files beside ours, for
    systemd-analyze verify --root (which resolves the default dependencies
    sysinit.target, basic.target, ... inside the root)."""
    vroot = os.path.join(tmp, "verify-root")
    shutil.copytree(dest, vroot, symlinks=True)
    for hostdir in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        real = os.path.realpath(hostdir)
        if not os.path.isdir(real):
            continue
        target = os.path.join(vroot, real.lstrip("/"))
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(real):
            src, dst = os.path.join(real, name), os.path.join(target, name)
            if name == "mailkeepd.service" or os.path.lexists(dst):
                continue
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif os.path.isdir(src):
                shutil.copytree(src, dst, symlinks=True)
            else:
                shutil.copy2(src, dst)
    return vroot


def check_verify(check, tmp, dest, unit):
    if not check("systemd-analyze is installed",
                 shutil.which("systemd-analyze") is not None):
        return
    res = run(["systemd-analyze", "--version"])
    check(f"systemd-analyze: {res.stdout.splitlines()[0]}",
          res.returncode == 0)
    vroot = verify_root(tmp, dest)
    inroot = "/" + os.path.relpath(unit, dest)
    args = ["systemd-analyze", "verify", "--man=no", "--generators=no",
            f"--root={vroot}"]
    res = run(args + [inroot])
    out = res.stdout + res.stderr
    ours = [line for line in out.splitlines() if "mailkeep" in line]
    check("systemd-analyze verify --root accepts mailkeepd.service",
          res.returncode == 0 and not ours, out.strip())
    # The same check must fail on a broken unit.
    probe = os.path.join(vroot, "etc/systemd/system/mk-probe.service")
    os.makedirs(os.path.dirname(probe), exist_ok=True)
    with open(probe, "w") as f:
        f.write("[Service]\nExecStart=/usr/sbin/mailkeepd-missing\n"
                "ProtectSystem=bogus\n")
    res = run(args + ["/etc/systemd/system/mk-probe.service"])
    out = res.stdout + res.stderr
    check("systemd-analyze verify --root reports a broken probe unit",
          "mailkeepd-missing" in out and "bogus" in out, out.strip())
    res = run(["systemd-analyze", "security", "--offline=yes",
               f"--root={vroot}", "--no-pager", inroot])
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", res.stdout)
    check("systemd-analyze security --offline: exposure at most 2.0",
          m is not None and float(m.group(1)) <= 2.0,
          m.group(0) if m else (res.stdout + res.stderr)[-500:])
    shutil.rmtree(vroot)


def check_sample(check, sample, unit_doc):
    lines = open(sample).read().splitlines()
    table = conf_table(os.path.join(SOURCE_DIR, "lib/conf.c"))
    check("lib/conf.c's key table parsed", len(table) >= 14, table)
    keys = sample_keys(lines)
    missing = [f"[{s}] {k}" for s, k, _ in table if (s, k) not in keys]
    check("the sample lists every key of lib/conf.c", not missing,
          f"missing {missing}")
    extra = [f"[{s}] {k}" for s, k in keys
             if (s, k) not in {(s2, k2) for s2, k2, _ in table}]
    check("the sample has no key unknown to lib/conf.c", not extra,
          f"unknown {extra}")
    wrong = [(s, k, keys[(s, k)][1], d) for s, k, d in table
             if d is not None and (s, k) in keys and keys[(s, k)][1] != d]
    check("the sample shows the defaults of lib/conf.c", not wrong,
          f"(section, key, sample, table): {wrong}")
    svc = unit_doc.get("Service", {})
    shown = {k: v for (s, k), (i, v) in keys.items()}
    store_root = keys.get(("store", "root"), (0, "?"))[1]
    check("sample status_socket/control_socket are in the unit's "
          "RuntimeDirectory",
          svc.get("RuntimeDirectory") == ["mailkeep"]
          and shown.get("status_socket") == "/run/mailkeep/status.sock"
          and shown.get("control_socket") == "/run/mailkeep/control.sock",
          (shown.get("status_socket"), shown.get("control_socket")))
    check("sample state_dir is the unit's StateDirectory",
          shown.get("state_dir") == "/var/lib/mailkeep"
          and svc.get("StateDirectory") == ["mailkeep"],
          shown.get("state_dir"))
    check("sample store root is in the unit's ReadWritePaths",
          any(store_root in p for p in svc.get("ReadWritePaths", [])),
          store_root)
    return lines, keys


def config_ok(out):
    """mailkeepd -n's own verdict, before the lines about Dovecot's
    settings (printed when doveconf is on PATH)."""
    first, *rest = out.split("\n")
    return first == "configuration OK" and all(
        line.startswith("dovecot: ") for line in rest if line)


def check_config_n(check, tmp, mailkeepd, lines, keys):
    conf = os.path.join(tmp, "conf")
    os.makedirs(conf)
    path = os.path.join(conf, "as-is.conf")
    write_conf(path, lines)
    res = run([mailkeepd, "-n", "-c", path])
    check("mailkeepd -n: the sample as it is is OK",
          res.returncode == 0 and config_ok(res.stdout),
          res.stdout + res.stderr)
    # Every key at its shown value; files the check reads (a value under
    # /etc/) are made in the temporary directory, a template with content.
    inputs = {}
    for (section, key), (_, value) in keys.items():
        if value.startswith("/etc/"):
            p = os.path.join(conf, "input-" + os.path.basename(value))
            with open(p, "w") as f:
                f.write(INPUT_CONTENT.get(key, ""))
            inputs[(section, key)] = p
    path = os.path.join(conf, "all.conf")
    write_conf(path, lines, set_values=inputs, uncomment_all=True)
    res = run([mailkeepd, "-n", "-c", path])
    check("mailkeepd -n: the sample with every key uncommented is OK",
          res.returncode == 0 and config_ok(res.stdout),
          res.stdout + res.stderr)

    store, state = os.path.join(tmp, "vmail"), os.path.join(tmp, "state")
    run_dir = os.path.join(tmp, "run")
    maildir = os.path.join(store, "example.org/alice/Maildir")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    with open(os.path.join(maildir, "new", "1.M1P1.test,S=5"), "w") as f:
        f.write("hello")
    os.makedirs(run_dir)
    values = {("store", "root"): store, ("general", "state_dir"): state,
              ("daemon", "status_socket"): f"{run_dir}/status.sock",
              ("daemon", "control_socket"): f"{run_dir}/control.sock",
              ("policy", "socket"): f"{run_dir}/policy.sock"}
    good = os.path.join(conf, "mailkeep.conf")
    write_conf(good, lines, set_values=values)
    res = run([mailkeepd, "-n", "-c", good])
    check("mailkeepd -n: the sample adjusted to temporary dirs is OK",
          res.returncode == 0 and config_ok(res.stdout),
          res.stdout + res.stderr)

    # Broken files: exit 1, "FILE:LINE: reason" on stderr.
    wi = keys[("daemon", "workers")][0]
    bad = list(lines)
    bad[wi] = "workers = 0"
    bad_path = os.path.join(conf, "bad-value.conf")
    write_conf(bad_path, bad, set_values=values)
    res = run([mailkeepd, "-n", "-c", bad_path])
    check("mailkeepd -n: workers = 0 exits 1 naming FILE:LINE",
          res.returncode == 1 and f"{bad_path}:{wi + 1}: workers" in res.stderr
          and "configuration OK" not in res.stdout, res.stderr)
    ri = keys[("store", "root")][0]
    bad = list(lines)
    bad[ri] = "rooot = /var/vmail"
    typo_path = os.path.join(conf, "typo.conf")
    write_conf(typo_path, bad)
    res = run([mailkeepd, "-n", "-c", typo_path])
    check("mailkeepd -n: a misspelt key exits 1 naming FILE:LINE",
          res.returncode == 1 and
          f"{typo_path}:{ri + 1}: unknown key 'rooot' in [store]" in res.stderr,
          res.stderr)
    return good, bad_path, values


def exec_line(unit_doc, key, dest, conf, index=0):
    """The unit's command line, with the installed binary's path inside
    DESTDIR and our configuration file."""
    argv = unit_doc["Service"][key][index].split()
    argv[0] = os.path.join(dest, argv[0].lstrip("/"))
    argv[argv.index("-c") + 1] = conf
    return argv


def check_daemon(check, tmp, dest, unit_doc, good, bad_path, values):
    """mailkeepd started as systemd would start it."""
    notify = Notify(os.path.join(tmp, "notify.sock"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_", "WATCHDOG_", "LISTEN_"))
           and k != "JOURNAL_STREAM"}
    env.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000",
               JOURNAL_STREAM="8:12345")
    log_path = os.path.join(tmp, "mailkeepd.log")
    argv = exec_line(unit_doc, "ExecStart", dest, good)
    status_sock = values[("daemon", "status_socket")]
    control_sock = values[("daemon", "control_socket")]
    policy_sock = values[("policy", "socket")]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env,
                                stdin=subprocess.DEVNULL)
    try:
        i, msg = notify.wait(lambda m: m == "READY=1")
        check("ExecStart: READY=1 sent", i is not None, notify.messages)
        check("ExecStart: the daemon did not fork (Type=notify)",
              proc.poll() is None)
        i2, msg = notify.wait(lambda m: m.startswith("STATUS="))
        check("STATUS= sent", i2 is not None, notify.messages)
        i2, msg = notify.wait(lambda m: "1 mailboxes" in m and
                              "starting" not in m)
        check("STATUS= reaches '1 mailboxes' without 'starting'",
              i2 is not None, notify.messages)
        i2, _ = notify.wait(lambda m: m == "WATCHDOG=1", timeout=4)
        check("WATCHDOG=1 within 4 s (WATCHDOG_USEC=2 s)", i2 is not None,
              notify.messages)
        log = open(log_path).read().splitlines()
        check("journal lines: <6>main: ... started with the sockets",
              any(line.startswith("<6>main: mailkeepd ") and status_sock
                  in line for line in log), log)
        check("every log line has a <N>module: prefix",
              log and all(re.match(r"^<[0-7]>\w+: ", line) for line in log),
              log)
        code, body = http_unix(status_sock, "GET", "/v1/status")
        check("status socket: GET /v1/status 200",
              code == 200 and json.loads(body).get("pid") == proc.pid, body)
        code, body = http_unix(status_sock, "GET", "/metrics")
        check("status socket: /metrics has mailkeep_up 1",
              code == 200 and "\nmailkeep_up 1\n" in body, body[:200])
        modes = {p: stat.S_IMODE(os.stat(p).st_mode)
                 for p in (status_sock, control_sock, policy_sock)}
        check("socket modes: status 0660, control 0666 (peer checked), "
              "policy open to everyone",
              modes[status_sock] == 0o660 and modes[control_sock] == 0o666
              and modes[policy_sock] & 0o666 == 0o666,
              {k: oct(v) for k, v in modes.items()})
        state = values[("general", "state_dir")]
        check("state dir 0700, catalog.db 0600",
              stat.S_IMODE(os.stat(state).st_mode) == 0o700 and
              stat.S_IMODE(os.stat(f"{state}/catalog.db").st_mode) == 0o600)

        # Reload: ExecReload's check, then SIGHUP.
        good_text = open(good).read()
        n = len(notify.messages)
        res = run(exec_line(unit_doc, "ExecReload", dest, good, 0))
        check("ExecReload check on a good file exits 0", res.returncode == 0,
              res.stderr)
        proc.send_signal(signal.SIGHUP)
        i, _ = notify.wait(lambda m: m == "RELOADING=1", start=n)
        j, _ = notify.wait(lambda m: m == "READY=1", start=(i or n))
        check("SIGHUP: RELOADING=1 then READY=1", i is not None and
              j is not None and j > i, notify.messages[n:])
        check("SIGHUP: '<6>main: configuration reloaded' logged",
              wait_for(lambda: "<6>main: configuration reloaded" in
                       open(log_path).read(), timeout=5))
        # An invalid file: the reload check fails, and a SIGHUP anyway
        # keeps the running configuration.
        shutil.copy(bad_path, good)
        res = run(exec_line(unit_doc, "ExecReload", dest, good, 0))
        check("ExecReload check on a broken file exits 1 (reload refused)",
              res.returncode == 1 and f"{good}:" in res.stderr, res.stderr)
        n = len(notify.messages)
        proc.send_signal(signal.SIGHUP)
        j, _ = notify.wait(lambda m: m == "READY=1", start=n)
        check("SIGHUP with a broken file: READY=1 again", j is not None,
              notify.messages[n:])
        line = wait_for(lambda: [x for x in open(log_path).read()
                                 .splitlines() if "reload:" in x], timeout=5)
        check("'<3>main: reload: FILE:LINE: ...; keeping the running "
              "configuration' logged",
              line and line[-1].startswith(f"<3>main: reload: {good}:")
              and line[-1].endswith("keeping the running configuration"),
              line)
        code, _ = http_unix(status_sock, "GET", "/v1/status")
        check("still answering after the failed reload",
              code == 200 and proc.poll() is None)
        with open(good, "w") as f:
            f.write(good_text)

        n = len(notify.messages)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            rc = None
        notify.poll()
        check("SIGTERM: STOPPING=1 sent", "STOPPING=1" in notify.messages[n:],
              notify.messages[n:])
        check.equal("SIGTERM: exit 0", rc, 0)
        check("sockets removed at stop",
              not any(os.path.exists(p)
                      for p in (status_sock, control_sock, policy_sock)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def main():
    check = Checks()
    tmp = tempfile.mkdtemp(prefix="mk-units-")
    dest = os.path.join(tmp, "destdir")
    try:
        res = install(check, dest)
        if res.returncode == 0:
            installed = re.findall(r"^-- (?:Installing|Up-to-date): (\S+)",
                                   res.stdout, re.M)
            check(f"installed: {', '.join(os.path.relpath(p, dest) for p in installed)}",
                  len(installed) >= 6, res.stdout)
            check_prefix_warning(check, res)
            unit, _, _, sample = check_files(check, dest)
            check_no_overwrite(check, dest)
            if unit:
                unit_doc = check_unit(check, unit)
                check_sysusers_tmpfiles(check, dest)
                check_verify(check, tmp, dest, unit)
                lines, keys = check_sample(check, sample, unit_doc)
                mailkeepd = os.path.join(dest, "usr/sbin/mailkeepd")
                good, bad, values = check_config_n(check, tmp, mailkeepd,
                                                   lines, keys)
                check_daemon(check, tmp, dest, unit_doc, good, bad, values)
    except Exception as exc:  # report it as a failure, then clean up
        import traceback
        traceback.print_exc()
        check("test ran to the end", False, f"{type(exc).__name__}: {exc}")
    finally:
        if os.environ.get("MK_KEEP_TMP") == "1":
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
