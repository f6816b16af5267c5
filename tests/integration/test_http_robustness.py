#!/usr/bin/env python3
"""mailkeepd's HTTP sockets against hostile and broken clients.

Every file in tests/fuzz/corpus/http/ is one raw request, sent as is to the
status socket and to the control socket (the write side is then shut, so
incomplete requests end at once).  The name says what must come back:
  ok-*    a 2xx answer on both sockets
  bad-*   an error status (4xx, 5xx) or a closed connection, never 2xx
  other   anything, as long as the connection ends and the daemon lives
Add a file there for each new case (or each input that ever broke it).

Besides the corpus: slow clients (half a request, nothing at all, a whole
request one byte at a time, several at once) must be cut off at the
daemon's request_timeout (set short here) while other clients, one of them
on a kept-alive connection that outlives the timeout, are answered; the
control socket answers a peer that is not root (user nobody) 403; the
status socket answers POST 405; requests that are too long, use a method
that is not served or are given up by their client get exactly one answer
or none; a bounded random mutation pass (fixed seed) over the corpus; more
connections than the daemon has file descriptors, during which it neither
spins nor stops answering; and a mailbox whose directory name is not
UTF-8.  After everything the daemon still answers.

    python3 test_http_robustness.py [--no-slow] [--mutations N]
"""

import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkenv import Checks, Mailkeepd, make_maildir, wait_for  # noqa: E402

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz",
                      "corpus", "http")
NOBODY = 65534
DAEMON_TIMEOUT = 3  # request_timeout in the daemon's configuration here
ENDS_WITHIN = DAEMON_TIMEOUT + 10  # bound for "the connection ends"


def exchange(path, data, timeout=ENDS_WITHIN, shut=True):
    """Send data on a new connection to the UNIX socket path (then shut
    the write side) and read until the peer closes.  Returns (answer bytes,
    how it ended: "eof", "reset", "timeout" or "refused")."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    out, how = b"", "eof"
    try:
        s.connect(path)
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before reading it all
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        how = "timeout"
    except ConnectionResetError:
        how = "reset"
    except (ConnectionRefusedError, FileNotFoundError):
        how = "refused"  # nobody listens: the daemon is gone
    finally:
        s.close()
    return out, how


def statuses(answer):
    """The status codes of every HTTP answer in a byte stream."""
    return [int(c) for c in re.findall(rb"(?:^|\r\n)HTTP/1\.[01] (\d{3}) ", answer)]


def as_nobody(path, data):
    """exchange() from a child process running as user nobody; returns
    (answer, how) or (b"", "connect: <error>")."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                answer, how = exchange(path, data, timeout=5)
            except OSError as exc:
                answer, how = b"", f"connect: {exc.strerror}"
            os.write(w, how.encode() + b"\n" + answer)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        result = f.read()
    os.waitpid(pid, 0)
    how, _, answer = result.partition(b"\n")
    return answer, how.decode()


def corpus():
    files = sorted(os.listdir(CORPUS))
    return [(name, open(os.path.join(CORPUS, name), "rb").read()) for name in files]


def replay(check, mk):
    sockets = {"status": mk.status_socket, "control": mk.control_socket}
    for name, data in corpus():
        results, problems = {}, []
        for which, path in sockets.items():
            answer, how = exchange(path, data)
            codes = statuses(answer)
            results[which] = (codes, how)
            if how == "timeout":
                problems.append(f"{which}: still open after {ENDS_WITHIN} s")
            if how == "refused":
                problems.append(f"{which}: connection refused")
            if name.startswith("ok-") and (not codes or any(c // 100 != 2 for c in codes)):
                problems.append(f"{which}: want 2xx, got {codes} ({how})")
            if name.startswith("bad-") and any(c // 100 == 2 for c in codes):
                problems.append(f"{which}: want an error or a close, got {codes}")
            if answer and not codes:
                problems.append(f"{which}: an answer that is not HTTP: {answer[:60]!r}")
            if not mk.alive():
                problems.append(f"{which}: mailkeepd died (exit {mk.proc.poll()})")
                break
        check(f"corpus {name}", not problems, "; ".join(problems) + f" (all: {results})")
        if not mk.alive():
            return False
    return True


def mutate(rng, data):
    data = bytearray(data[:4096])
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a byte
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:  # insert bytes
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 2:  # cut
            del data[pos:pos + rng.randint(1, 32)]
        elif op == 3:  # a special token
            data[pos:pos] = rng.choice([b"\r\n", b"\n", b"\x00", b":", b"%", b"%zz",
                                        b"%ff", b"?", b"&", b"=", b" ", b"HTTP/1.1",
                                        b"Content-Length: 5\r\n",
                                        b"Transfer-Encoding: chunked\r\n",
                                        b"ffffffffffffffff\r\n", b"\xff\xfe"])
        elif op == 4:  # truncate
            del data[pos:]
        else:  # repeat a slice
            end = min(len(data), pos + rng.randint(1, 64))
            data[pos:pos] = data[pos:end] * rng.randint(1, 8)
    return bytes(data)


def mutation_pass(check, mk, tmp, count, seed=20240601):
    rng = random.Random(seed)
    seeds = [data for _, data in corpus() if len(data) < 4096]
    sockets = [mk.status_socket, mk.control_socket]
    hung = []
    for i in range(count):
        data = mutate(rng, rng.choice(seeds))
        _, how = exchange(rng.choice(sockets), data)
        if how == "timeout":
            hung.append(i)
        if how == "refused" or not mk.alive():
            saved = os.path.join(tmp, f"crash-{i}")
            with open(saved, "wb") as f:
                f.write(data)
            check(f"{count} mutated requests (seed {seed})", False,
                  f"mailkeepd died at #{i}, input kept in {saved}: {data[:200]!r}")
            return False
    check(f"{count} mutated requests (seed {seed}): every connection ended, "
          "mailkeepd lives", not hung, f"still open after {ENDS_WITHIN} s: {hung}")
    return True


def trickle(path, data, pause):
    """Send data one byte every `pause` seconds on a new connection, the
    way a slowloris client does, then read the answer.  Returns how it
    ended: "cut" (the daemon closed the connection before the request was
    complete, without an answer), "answered" or "other: ..."."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        for byte in data:
            s.settimeout(pause)
            try:
                chunk = s.recv(65536)
                return "cut" if not chunk else f"other: {chunk[:40]!r} before the end"
            except socket.timeout:
                pass
            s.sendall(bytes([byte]))
        s.settimeout(ENDS_WITHIN)
        return "answered" if s.recv(65536) else "cut"
    except (ConnectionResetError, BrokenPipeError):
        return "cut"
    except OSError as exc:
        return f"other: {exc!r}"
    finally:
        s.close()


def kept_alive(path, count, pause):
    """`count` requests on one connection, `pause` seconds apart: the
    status codes answered."""
    codes = []
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(ENDS_WITHIN)
    try:
        s.connect(path)
        for _ in range(count):
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            m = re.search(rb"Content-Length: (\d+)", head, re.I)
            while m and len(body) < int(m.group(1)):
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            codes += statuses(head + b"\r\n") or ["none"]
            time.sleep(pause)
    except OSError as exc:
        codes.append(repr(exc))
    finally:
        s.close()
    return codes


def slow_clients(check, mk):
    """Half requests, silent clients and slowloris clients, all at once,
    while other clients are served."""
    half = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n"
    whole = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n\r\n"
    results = {}

    def hold(key, path, first):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        how = "timeout"
        try:
            s.connect(path)
            s.sendall(first)
            s.settimeout(ENDS_WITHIN)
            how = "eof" if not s.recv(65536) else "answered"
        except socket.timeout:
            how = "timeout"
        except (ConnectionResetError, BrokenPipeError):
            how = "reset"
        finally:
            s.close()
        results[key] = how

    def slowloris(key, path):
        # Each byte comes well within the per-read timeout; the whole
        # request would take 20 times the request deadline.
        results[key] = trickle(path, whole, DAEMON_TIMEOUT * 20 / len(whole))

    sockets = (("status", mk.status_socket), ("control", mk.control_socket))
    threads = []
    for i in range(10):
        for which, path in sockets:
            threads.append(threading.Thread(target=hold, args=(f"half-{which}-{i}", path, half)))
            threads.append(threading.Thread(target=hold, args=(f"silent-{which}-{i}", path, b"")))
    for i in range(4):
        for which, path in sockets:
            threads.append(threading.Thread(target=slowloris,
                                            args=(f"slowloris-{which}-{i}", path)))
    for t in threads:
        t.start()
    time.sleep(0.5)
    # One connection kept alive across twice the deadline: each request
    # has its own deadline, so all are answered.
    alive = kept_alive(mk.status_socket, 4, DAEMON_TIMEOUT / 2)
    served = []
    for _ in range(10):
        for control in (False, True):
            try:
                served.append(mk.request("GET", "/v1/status", control=control)[0])
            except OSError as exc:
                served.append(repr(exc))
        time.sleep(0.1)
    check.equal(f"other clients are served while {len(threads)} slow ones hang",
                served, [200] * 20)
    check.equal("a kept-alive connection gets an answer to each request, "
                "longer than request_timeout in all", alive, [200] * 4)
    for t in threads:
        t.join()
    cut = {k: v for k, v in results.items() if not k.startswith("slowloris")}
    late = {k: how for k, how in cut.items() if how not in ("eof", "reset")}
    check(f"half requests and silent clients are disconnected without an answer",
          not late and len(cut) == 40, f"{late}")
    loris = {k: v for k, v in results.items() if k.startswith("slowloris")}
    check("8 clients sending a request one byte at a time, slower than "
          "request_timeout, are disconnected before it is complete",
          len(loris) == 8 and all(v == "cut" for v in loris.values()), f"{loris}")
    code, metrics = mk.get("/metrics")
    m = re.search(r"^mailkeep_http_timeouts_total (\d+)$", metrics, re.M)
    check("/metrics counts the connections closed at the deadline",
          m is not None and int(m.group(1)) >= len(loris), metrics[:200])


def one_answer_checks(check, mk):
    """Requests evhttp refuses itself get exactly one answer, and a request
    after them on the same connection none (the connection is closed)."""
    follow = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n"
    cases = [
        ("a header block over the limit", 400,
         b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Big: "
         + b"a" * 10000 + b"\r\n\r\n"),
        ("a body over the limit", 413,
         b"POST /v1/rescan HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
         + b"x" * 100000),
        ("a method that is not served (PUT)", 501,
         b"PUT /v1/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"),
        ("a method that does not exist", 501,
         b"BREW /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("a request line without a version", 400, b"GET /v1/status\r\n\r\n"),
    ]
    for what, code, data in cases:
        for which, path in (("status", mk.status_socket), ("control", mk.control_socket)):
            answer, how = exchange(path, data + follow)
            check.equal(f"{which}: {what}: exactly one answer, {code}, then the end",
                        (statuses(answer), how in ("eof", "reset")), ([code], True))
    # A client that gives up: half a request, a whole one closed before
    # the answer is read, and one closed at once after the request line.
    for data in (b"GET /v1/sta", follow, b"GET /v1/mailboxes HTTP/1.1\r\n"):
        for path in (mk.status_socket, mk.control_socket):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(data)
            s.close()
    check("clients that gave up early: mailkeepd lives and answers",
          mk.alive() and mk.status() is not None)


def nobody_checks(check, mk):
    answer, how = as_nobody(mk.control_socket, b"GET /v1/status HTTP/1.0\r\n\r\n")
    check.equal("control socket, user nobody, GET: 403", (statuses(answer), how),
                ([403], "eof"))
    for path in ("/v1/rescan", "/v1/reload"):
        answer, how = as_nobody(mk.control_socket,
                                f"POST {path} HTTP/1.0\r\n\r\n".encode())
        check.equal(f"control socket, user nobody, POST {path}: 403",
                    statuses(answer), [403])
    answer, how = as_nobody(mk.status_socket, b"GET /v1/status HTTP/1.0\r\n\r\n")
    check.equal("status socket (0660): user nobody cannot connect", how,
                "connect: Permission denied")
    mode = os.stat(mk.control_socket).st_mode & 0o777
    check.equal("the control socket is mode 0666", oct(mode), oct(0o666))
    answer, _ = exchange(mk.control_socket, b"POST /v1/rescan HTTP/1.0\r\n\r\n")
    check.equal("control socket, root, POST /v1/rescan: 202", statuses(answer), [202])


def method_checks(check, mk):
    for path in ("/v1/rescan", "/v1/reload", "/v1/status"):
        answer, _ = exchange(mk.status_socket,
                             f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
                             "Content-Length: 0\r\n\r\n".encode())
        check.equal(f"status socket, POST {path}: 405", statuses(answer), [405])


def cpu_seconds(pid):
    """User and system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def crowd(check, mk, n=100, limit=64):
    """More connections than the daemon has file descriptors (its soft
    limit is lowered to `limit` for this), opened by user nobody: any local
    user can do this, the control socket is 0666.  They are held open and
    send nothing."""
    import resource
    saved = resource.prlimit(mk.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(mk.pid, resource.RLIMIT_NOFILE, (limit, saved[1]))
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    size = os.path.getsize(mk.log)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            conns = []
            for _ in range(n):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(mk.control_socket)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    break
                conns.append(s)
            os.write(ready_w, b"x")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    try:
        os.read(ready_r, 1)
        # Measured while the connections are held, before request_timeout
        # closes them, beside a peer that does spin: the machine may be
        # busy, so what a spinning process gets here is measured too.
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            cpu0, peer0 = cpu_seconds(mk.pid), cpu_seconds(spinner.pid)
            time.sleep(DAEMON_TIMEOUT / 3)
            used = cpu_seconds(mk.pid) - cpu0
            peer = cpu_seconds(spinner.pid) - peer0
        finally:
            spinner.kill()
            spinner.wait()
        codes = []
        for _ in range(5):
            try:
                codes.append(mk.request("GET", "/v1/status", timeout=5)[0])
            except OSError as exc:
                codes.append(repr(exc))
            time.sleep(0.2)
        log = mk.log_text()[size:]
        grown = os.path.getsize(mk.log) - size
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        resource.prlimit(mk.pid, resource.RLIMIT_NOFILE, saved)
    check.equal(f"{n} idle connections from user nobody, {limit} descriptors: "
                "the status socket still answers", codes, [200] * 5)
    check("... mailkeepd does not spin meanwhile: its CPU time is under a "
          "quarter of a spinning peer's", used < peer / 4,
          f"mailkeepd {used:.2f} s, the spinning peer {peer:.2f} s")
    check("... the log says descriptors ran out",
          "Too many open files" in log, log[-500:])
    check(f"... and does not flood", grown < 10000,
          f"the log grew by {grown} bytes")
    check("... it answers again once they are closed",
          wait_for(lambda: mk.status() is not None, 2.0))


def non_utf8_mailbox(check, mk, store):
    """A mailbox directory whose name is not UTF-8 (the store takes names
    as they are on disk)."""
    make_maildir(os.path.join(store, "example.org", os.fsdecode(b"caf\xe9"), "Maildir"))
    ok = wait_for(lambda: (mk.status() or {}).get("usage", {}).get("mailboxes") == 3)
    check("a mailbox named caf\\xe9 is found within a second", ok)
    code, doc = mk.get("/v1/mailboxes")
    check.equal("GET /v1/mailboxes: 200", code, 200)
    check("every listed mailbox has an address",
          all("address" in m for m in doc.get("mailboxes", [])),
          f"{[m for m in doc.get('mailboxes', []) if 'address' not in m]}")
    answer, how = exchange(mk.status_socket,
                           b"GET /v1/mailboxes/caf%E9@example.org HTTP/1.0\r\n\r\n")
    check.equal("GET /v1/mailboxes/caf%E9@example.org: 200", statuses(answer), [200])
    answer, how = exchange(mk.control_socket,
                           b"POST /v1/rescan?mailbox=caf%E9%40example.org HTTP/1.0\r\n\r\n")
    check("POST /v1/rescan?mailbox=caf%E9%40example.org: an answer",
          statuses(answer) in ([202], [400], [404]), f"{statuses(answer)}, {how}")
    check("... and mailkeepd lives", mk.alive() and mk.status() is not None,
          "log: " + " | ".join(mk.log_text().splitlines()[-2:]))


def scenario(check, tmp, args):
    store = os.path.join(tmp, "store")
    state = os.path.join(tmp, "state")
    make_maildir(os.path.join(store, "example.org", "alice", "Maildir"))
    make_maildir(os.path.join(store, "example.org", "bob", "Maildir"))
    os.makedirs(state, 0o755)  # nobody must reach the control socket
    conf = os.path.join(tmp, "mailkeep.conf")
    with open(conf, "w") as f:
        f.write(f"[daemon]\nstatus_socket = {state}/status.sock\n"
                f"control_socket = {state}/control.sock\n"
                f"request_timeout = {DAEMON_TIMEOUT}s\n\n"
                f"[policy]\nsocket = {state}/policy.sock\n")
    with Mailkeepd().start(store, state, ["-c", conf]) as mk:
        nobody_checks(check, mk)
        method_checks(check, mk)
        one_answer_checks(check, mk)
        if replay(check, mk) and args.mutations > 0:
            mutation_pass(check, mk, tmp, args.mutations)
        if mk.alive() and not args.no_slow:
            slow_clients(check, mk)
        if mk.alive():
            crowd(check, mk)
        check("after everything: mailkeepd lives and /v1/status answers",
              mk.alive() and mk.status() is not None,
              f"exit status {mk.proc.poll()}; log:\n{mk.log_tail(10)}")
        if mk.alive():
            code, metrics = mk.get("/metrics")
            m = re.search(r"^mailkeep_http_requests_total (\d+)$", metrics, re.M)
            check("/metrics counts the requests",
                  m is not None and int(m.group(1)) > len(corpus()), metrics[:200])

            def open_connections():
                text = mk.get("/metrics")[1]
                m = re.search(r"^mailkeep_http_connections (\d+)$", text, re.M)
                return int(m.group(1)) if m else None
            # Only the connection asking is left: none was forgotten open.
            check("... and no connection is left open but the one asking",
                  wait_for(lambda: open_connections() == 1, 2.0),
                  f"mailkeep_http_connections {open_connections()}")
            non_utf8_mailbox(check, mk, store)
        if mk.alive():
            check.equal("SIGTERM: exit 0", mk.stop(), 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-slow", action="store_true", help="skip the slow clients (~10 s)")
    ap.add_argument("--mutations", type=int, default=300)
    args = ap.parse_args()
    check = Checks()
    tmp = tempfile.mkdtemp(prefix="mailkeep-http-")
    os.chmod(tmp, 0o755)
    try:
        scenario(check, tmp, args)
    except Exception as exc:
        traceback.print_exc()
        check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
    finally:
        if os.environ.get("MK_KEEP_TMP") == "1":
            print(f"keeping {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
