#!/usr/bin/env python3
"""TLS and virtual-host URLs against a real Ceph RADOS Gateway on 127.0.0.1.

The test makes a throwaway CA and a certificate for localhost,
mailkeep.localhost and 127.0.0.1 with the openssl command, and starts the
gateway's beast frontend with an ssl_endpoint beside its plain one.

TLS: with `ca_file` set to the test CA, `repo init`, `backup run` and a
restore byte for byte go over https.  Refused with a clear error (curl's
reason and what to do), and nothing written to the bucket or the state
dir: no `ca_file` (the system's CAs do not know the test CA), a `ca_file`
with another CA, a host name the certificate does not name
(other.localhost), a `ca_file` that is missing, a directory or not PEM,
and an https location on the plain port.

Virtual-host URLs (`url_style = virtual`: https://BUCKET.HOST/KEY):
against the gateway without `rgw_dns_name` they are refused (NoSuchBucket,
with the hint); with `rgw_dns_name = localhost` (set in the monitor's
config database, the gateway restarted) `repo init`, backup and restore
work, and the gateway's access log shows mailkeep's requests with paths
that start with the prefix, not the bucket: the bucket came from the Host
header.  A bucket whose BUCKET.localhost the certificate does not name is
refused.  libcurl resolves localhost and *.localhost to loopback itself
(RFC 6761), so nothing leaves the machine and /etc/hosts is not touched.
"""

import json
import os
import re
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import CephRGW, free_ports, run_scenario  # noqa: E402
from test_s3_backup import Host, mailkeep, outputs, write_creds  # noqa: E402


def openssl(*args):
    res = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {res.stderr.strip()[-500:]}")


def make_ca(tmp, name, cn):
    """A self-signed CA: (cert path, key path)."""
    cert, key = os.path.join(tmp, f"{name}.pem"), os.path.join(tmp, f"{name}.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={cn}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_server_cert(tmp, ca, sans):
    """A server certificate signed by ca for sans: (cert path, key path)."""
    cert, key = os.path.join(tmp, "server.pem"), os.path.join(tmp, "server.key")
    csr, ext = os.path.join(tmp, "server.csr"), os.path.join(tmp, "server.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


def main():
    return run_scenario(with_gateway, 20261127, "mk-s3tls-")


def with_gateway(check, rng, tmp):
    """Make the CAs and the certificate, start the gateway with an https
    endpoint, run the scenario."""
    try:
        ca = make_ca(tmp, "ca", "mailkeep test CA")
        other_ca = make_ca(tmp, "other-ca", "another CA")
        server = make_server_cert(
            tmp, ca, ["DNS:localhost", "DNS:mailkeep.localhost", "IP:127.0.0.1"])
        port = free_ports(1)[0]
        frontend = (f"ssl_endpoint=127.0.0.1:{port} ssl_certificate={server[0]} "
                    f"ssl_private_key={server[1]}")
        with CephRGW(frontend_extra=frontend) as ceph:
            check("ceph: mon, osd and radosgw started with an https endpoint",
                  ceph.s3 is not None)
            scenario(check, ceph, rng, tmp, port, ca[0], other_ca[0])
    except Exception as e:  # a cluster or a CA that cannot be made fails the test
        traceback.print_exc()
        check("the scenario ran to its end", False, repr(e))


def refused(check, ceph, host, what, want, prefix, fast=False, **extra):
    """init with extra settings fails naming every string in want, and
    writes nothing: no object under prefix, no key file."""
    conf = host.make_conf(re.sub(r"[^a-z]+", "-", what) + ".conf", **extra)
    if fast:  # one try: a wrong port is not worth the backoff
        with open(conf) as f:
            text = f.read().replace("retries = 8\n", "retries = 0\n")
        with open(conf, "w") as f:
            f.write(text)
    res = mailkeep(conf, "repo", "init")
    missing = [w for w in want if w not in res.stderr]
    check(f"{what}: repo init fails with a clear error",
          res.returncode == 1 and not missing,
          f"exit {res.returncode}, missing {missing}: {res.stderr.strip()}")
    check(f"{what}: nothing written",
          ceph.s3.list(ceph.bucket, prefix) == {}
          and not os.path.exists(os.path.join(host.state, "repo.key")),
          sorted(ceph.s3.list(ceph.bucket, prefix)))


def round_trip(check, ceph, host, prefix):
    """init, back up, change, back up, restore every snapshot; the error
    of init if it failed."""
    res = mailkeep(host.conf, "repo", "init")
    if not check(f"{host.name}: repo init", res.returncode == 0, res.stderr.strip()):
        return res.stderr
    keys = ceph.s3.list(ceph.bucket, prefix)
    check(f"{host.name}: config and a key slot are in the bucket under {prefix}",
          f"{prefix}config" in keys, sorted(keys))
    if not host.generate(2, 7):
        return None
    first = host.backup("first")
    for maildir in host.store.maildirs().values():
        host.store.flag_round(maildir)
        host.store.churn(maildir)
    second = host.backup("changed")
    check(f"{host.name}: both runs backed up every mailbox",
          len(first) == 2 and len(second) == 2, f"{len(first)}, {len(second)}")
    check(f"{host.name}: packs went up",
          any(k.startswith(f"{prefix}packs/") for k in ceph.s3.list(ceph.bucket, prefix)))
    host.restore_all(lambda mailbox: None)
    return None


def access_log(ceph):
    """(method, path, status) of every request in the gateway's log."""
    with open(os.path.join(ceph.dir, "log", "client.rgw.a.log"), errors="replace") as f:
        return re.findall(r'beast: \S+ \S+ - \S+ \[[^]]*\] "(\w+) (\S+) HTTP/[\d.]+" (\d+)',
                          f.read())


def scenario(check, ceph, rng, tmp, port, ca, other_ca):
    env, bucket = ceph.env, ceph.bucket
    creds = write_creds(os.path.join(tmp, "creds"), env["S3_ACCESS_KEY"],
                        env["S3_SECRET_KEY"])
    https = f"s3:https://127.0.0.1:{port}/{bucket}/tls"
    plain_port = env["S3_ENDPOINT"].rsplit(":", 1)[1]

    # Refusals first: the bucket stays empty.
    bad = Host(check, tmp, "bad", https, rng, creds=creds)
    refused(check, ceph, bad, "no ca_file (the system's CAs)",
            ["SSL certificate problem", "set [repository] ca_file"], "tls/")
    refused(check, ceph, bad, "ca_file with another CA",
            ["SSL certificate problem", f"against the CAs in ca_file {other_ca}"],
            "tls/", ca_file=other_ca)
    bad.location = f"s3:https://other.localhost:{port}/{bucket}/tls"
    refused(check, ceph, bad, "a name the certificate does not name",
            ["target host name 'other.localhost'",
             "certificate is not for other.localhost", "subjectAltName"],
            "tls/", ca_file=ca)
    bad.location = https
    refused(check, ceph, bad, "ca_file missing",
            [f"ca_file {tmp}/nonexistent.pem: No such file or directory"],
            "tls/", ca_file=os.path.join(tmp, "nonexistent.pem"))
    refused(check, ceph, bad, "ca_file a directory",
            [f"ca_file {tmp}: not a file"], "tls/", ca_file=tmp)
    garbage = os.path.join(tmp, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("this is not a certificate\n")
    refused(check, ceph, bad, "ca_file not PEM",
            [f"ca_file {garbage} is not a PEM file of CA certificates"],
            "tls/", ca_file=garbage)
    bad.location = f"s3:https://127.0.0.1:{plain_port}/{bucket}/tls"
    refused(check, ceph, bad, "https to the plain http port",
            ["no TLS handshake", "speaks https"], "tls/", fast=True, ca_file=ca)

    # With the test CA: the whole round over https.
    tls = Host(check, tmp, "tls", https, rng, creds=creds)
    tls.extra["ca_file"] = ca
    tls.conf = tls.make_conf("mk.conf")
    round_trip(check, ceph, tls, "tls/")  # its checks say what failed

    # Virtual-host URLs: refused while the gateway takes buckets only from
    # the path.
    virt_loc = f"s3:https://localhost:{port}/{bucket}/virt"
    virt = Host(check, tmp, "virt", virt_loc, rng, creds=creds)
    virt.extra.update(ca_file=ca, url_style="virtual")
    virt.conf = virt.make_conf("mk.conf")
    refused(check, ceph, virt, "virtual-host without rgw_dns_name",
            ["NoSuchBucket", "rgw_dns_name"], "virt/")

    # The gateway learns its DNS name: BUCKET.localhost is the bucket.
    res = subprocess.run(["ceph", "-c", os.path.join(ceph.dir, "ceph.conf"), "config",
                          "set", "client.rgw.a", "rgw_dns_name", "localhost"],
                         capture_output=True, text=True, timeout=60)
    check("ceph config set rgw_dns_name localhost", res.returncode == 0, res.stderr)
    ceph.stop_rgw()
    ceph.start_rgw()
    before = len(access_log(ceph))
    failed = round_trip(check, ceph, virt, "virt/")
    if failed and "resolve" in failed:
        check(f"virtual: libcurl resolves {bucket}.localhost to loopback itself "
              "(RFC 6761, libcurl 7.78 or later; nothing else is used)", False, failed)
    res = mailkeep(virt.conf, "--json", "repo", "info")
    info = json.loads(res.stdout).get("s3", {}) if res.returncode == 0 else {}
    check.equal("virtual: repo info says where and how", info, {
        "endpoint": f"https://localhost:{port}", "bucket": bucket, "prefix": "virt/",
        "region": "us-east-1", "url_style": "virtual"})
    log = access_log(ceph)[before:]
    mine = [(m, p, s) for m, p, s in log if m in ("PUT", "GET", "HEAD", "POST")]
    check("virtual: the gateway saw mailkeep's requests at /virt/... with the "
          "bucket only in the Host header",
          any(m == "PUT" and p.startswith("/virt/packs/") and s == "200"
              for m, p, s in mine)
          and not any(p.startswith(f"/{bucket}/") for _, p, _ in mine),
          f"{len(mine)} requests, e.g. {mine[:3]}")

    # A bucket the certificate does not name as BUCKET.localhost.
    other = "mk-nosan"
    ceph.s3.make_bucket(other)
    nosan = Host(check, tmp, "nosan", f"s3:https://localhost:{port}/{other}/v", rng,
                 creds=creds)
    res = mailkeep(nosan.make_conf("mk.conf", ca_file=ca, url_style="virtual"),
                   "repo", "init")
    check("virtual: a bucket not in the certificate's names is refused",
          res.returncode == 1 and f"target host name '{other}.localhost'" in res.stderr
          and "must name BUCKET.HOST" in res.stderr, res.stderr.strip())
    check("... and nothing written", ceph.s3.list(other) == {})

    check("no secret key in any output",
          all(env["S3_SECRET_KEY"] not in o for o in outputs), "the secret was printed")


if __name__ == "__main__":
    sys.exit(main())
