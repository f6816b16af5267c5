#!/usr/bin/env python3
"""A small S3 client (stdlib only, AWS Signature V4) for the tests: it looks
into the bucket behind mailkeep's back.

    s3client.py --env FILE mb BUCKET          make a bucket
    s3client.py --env FILE ls BUCKET [PREFIX] list keys and sizes
    s3client.py --env FILE uploads BUCKET     unfinished multipart uploads

FILE holds S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION lines.
Only loopback endpoints are accepted.
"""

import datetime
import hashlib
import hmac
import http.client
import sys
import urllib.parse
import xml.etree.ElementTree as ET

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                env[k] = v
    return env


class S3Error(RuntimeError):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status


class S3:
    def __init__(self, endpoint, access_key, secret_key, region="us-east-1"):
        url = urllib.parse.urlsplit(endpoint)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"{endpoint}: not a loopback endpoint")
        self.host, self.port = url.hostname, url.port or 80
        self.access_key, self.secret_key, self.region = access_key, secret_key, region

    @classmethod
    def from_env(cls, path):
        e = read_env(path)
        return cls(e["S3_ENDPOINT"], e["S3_ACCESS_KEY"], e["S3_SECRET_KEY"],
                   e.get("S3_REGION", "us-east-1"))

    def request(self, method, path, query=None, body=b""):
        query = query or {}
        now = datetime.datetime.now(datetime.timezone.utc)
        amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        host = f"{self.host}:{self.port}"
        qs = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}="
                      f"{urllib.parse.quote(v, safe='-_.~')}"
                      for k, v in sorted(query.items()))
        epath = urllib.parse.quote(path, safe="/-_.~")
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amzdate}
        signed = ";".join(sorted(headers))
        canon = "\n".join([method, epath, qs,
                           "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                           signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                         hashlib.sha256(canon.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={sig}")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, epath + ("?" + qs if qs else ""), body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status >= 300:
            raise S3Error(resp.status, data)
        return data

    def make_bucket(self, bucket):
        try:
            self.request("PUT", f"/{bucket}")
        except S3Error as e:
            if b"BucketAlreadyOwnedByYou" not in str(e).encode():
                raise

    def list(self, bucket, prefix=""):
        """{key: size} of every object under prefix."""
        out, token = {}, None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            root = ET.fromstring(self.request("GET", f"/{bucket}", q))
            for c in root.iter(NS + "Contents"):
                out[c.find(NS + "Key").text] = int(c.find(NS + "Size").text)
            if root.findtext(NS + "IsTruncated") != "true":
                return out
            token = root.findtext(NS + "NextContinuationToken")

    def uploads(self, bucket):
        """[(key, upload id)] of the unfinished multipart uploads."""
        root = ET.fromstring(self.request("GET", f"/{bucket}", {"uploads": ""}))
        return [(u.findtext(NS + "Key"), u.findtext(NS + "UploadId"))
                for u in root.iter(NS + "Upload")]

    def get(self, bucket, key):
        return self.request("GET", f"/{bucket}/{key}")

    def put(self, bucket, key, data):
        self.request("PUT", f"/{bucket}/{key}", body=data)

    def delete(self, bucket, key):
        self.request("DELETE", f"/{bucket}/{key}")


def main(argv):
    if len(argv) < 4 or argv[1] != "--env":
        print(__doc__, file=sys.stderr)
        return 2
    s3 = S3.from_env(argv[2])
    cmd, args = argv[3], argv[4:]
    if cmd == "mb" and len(args) == 1:
        s3.make_bucket(args[0])
    elif cmd == "ls" and len(args) in (1, 2):
        for k, size in sorted(s3.list(*args).items()):
            print(f"{size}\t{k}")
    elif cmd == "uploads" and len(args) == 1:
        for k, uid in s3.uploads(args[0]):
            print(f"{k}\t{uid}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
