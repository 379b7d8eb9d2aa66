#!/usr/bin/env python3
"""`make bench-service-cost`: what one request of each kind costs the auth service,
in instructions (callgrind) and in CPU time (the process's own clock), on SQLite.

Kinds (all over one keep-alive connection, one request at a time, unless said):

* lookup: the edge's API-key lookup (valid service token, JSON body, a database read);
* refused_401: a wrong admin token on a 16,000-character admin path from an address
  under its failure budget (routed, counted, logged, answered 401);
* limited_429: the same from an address over its budget (answered 429);
* limited_429_short: the same on a short path (`/admin/v1/tenants`);
* limited_svc_429: a wrong service token on the lookup route, from an address over
  its budget (a flood aimed at the edge's own API);
* oversized_431: a 60,000-character path (the HTTP layer refuses the head; a new
  connection each time).

Instructions come from a run under `valgrind --tool=callgrind` (instrumentation
switched on only around the measured requests: user-space instructions of every
thread, startup excluded); CPU time from a separate run of the release binary, as
the growth of its utime + stime over many requests. The addresses 127.0.0.2-.4 are
used as separate clients (loopback accepts all of 127/8).

Environment: SERVICE_BIN (default target/release/edge-auth-service),
COST_N (requests per kind under callgrind, default 200), COST_CPU_N (default 4000),
COST_ARGS (extra `serve` arguments, e.g. for a second listener), COST_KEEP (a
directory to keep each kind's callgrind profile in, for `callgrind_annotate`).
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE_BIN = os.environ.get("SERVICE_BIN", os.path.join(ROOT, "target/release/edge-auth-service"))
N = int(os.environ.get("COST_N", "200"))
CPU_N = int(os.environ.get("COST_CPU_N", "4000"))
EXTRA = os.environ.get("COST_ARGS", "").split()
ADMIN = "cost-admin-" + os.urandom(16).hex()
SERVICE = "cost-service-" + os.urandom(16).hex()
BURST = 1_000_000_000  # never limited unless made so below
LONG = "/admin/v1/keys/" + "a" * 16_000 + "/revoke"
HUGE = "/admin/v1/keys/" + "a" * 60_000 + "/revoke"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """One keep-alive HTTP/1.1 connection from a chosen loopback address."""

    def __init__(self, port, source="127.0.0.1"):
        self.port, self.source = port, source
        self.s = None

    def open(self):
        self.s = socket.create_connection(("127.0.0.1", self.port), timeout=120, source_address=(self.source, 0))
        self.buf = b""

    def request(self, method, path, headers=(), body=b""):
        if self.s is None:
            self.open()
        head = f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        try:
            self.s.sendall(head.encode() + b"\r\n" + body)
            return self._response()
        except OSError:
            self.close()
            return None

    def _response(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                self.close()
                return None
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        body, self.buf = self.buf[:n], self.buf[n:]
        if re.search(rb"(?i)\r\nconnection: *close", head):
            self.close()
        return status, body

    def close(self):
        if self.s:
            self.s.close()
        self.s = None


def kinds(key_hash):
    lookup = json.dumps({"key_hash": key_hash}).encode()
    svc = [("authorization", f"Bearer {SERVICE}"), ("content-type", "application/json")]
    wrong_svc = [("authorization", "Bearer not-the-service-token"), ("content-type", "application/json")]
    wrong = [("authorization", "Bearer not-the-admin-token")]
    # name: (source address, method, path, headers, body, expected status, new connection each time)
    return {
        "lookup": ("127.0.0.1", "POST", "/internal/v1/api-keys/lookup", svc, lookup, 200, False),
        "refused_401": ("127.0.0.3", "POST", LONG, wrong, b"", 401, False),
        "limited_429": ("127.0.0.2", "POST", LONG, wrong, b"", 429, False),
        "limited_429_short": ("127.0.0.2", "POST", "/admin/v1/tenants", wrong, b"", 429, False),
        "limited_svc_429": ("127.0.0.2", "POST", "/internal/v1/api-keys/lookup", wrong_svc, lookup, 429, False),
        "oversized_431": ("127.0.0.4", "POST", HUGE, wrong, b"", 431, True),
    }


def send(port, kind, n, conn=None, check=True):
    source, method, path, headers, body, expected, fresh = kind
    conn = conn or Conn(port, source)
    for _ in range(n):
        r = conn.request(method, path, headers, body)
        if fresh:
            conn.close()
        if check and r is not None and r[0] != expected:
            raise SystemExit(f"cost: {path[:40]} answered {r[0]}, expected {expected}: {r[1][:200]}")
    return conn


def start(argv_prefix, workdir, name, burst):
    port = free_port()
    db = os.path.join(workdir, f"{name}.db")
    env = dict(os.environ, EDGE_AUTH_ADMIN_TOKEN=ADMIN, EDGE_AUTH_SERVICE_TOKEN=SERVICE)
    env.pop("EDGE_AUTH_DATABASE_URL", None)
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    argv = argv_prefix + [SERVICE_BIN, "--db", db, "serve", "--listen", f"127.0.0.1:{port}", "--issuer", "https://c",
                          "--audience", "c", "--auth-failure-burst", str(burst), "--auth-failure-per-s", "0",
                          "--max-connections-per-client", "100000", *EXTRA]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 120
    while True:
        try:
            c = Conn(port)
            if c.request("GET", "/ready") is not None:
                c.close()
                break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            raise SystemExit(f"cost: the service did not start (log: {log.name})")
        time.sleep(0.2)
    admin = [("authorization", f"Bearer {ADMIN}"), ("content-type", "application/json")]
    c = Conn(port)
    c.request("POST", "/admin/v1/tenants", admin, json.dumps({"name": "cost"}).encode())
    _, body = c.request("POST", "/admin/v1/tenants/cost/keys", admin,
                        json.dumps({"subject": "svc", "scopes": ["a"]}).encode())
    c.close()
    key_hash = hashlib.sha256(json.loads(body)["api_key"].encode()).hexdigest()
    return proc, port, key_hash, log


def stop(proc, log):
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def measure_cpu(workdir, burst):
    proc, port, key_hash, log = start([], workdir, "cpu", burst)
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        ks = kinds(key_hash)
        send(port, ks["limited_429"], burst, check=False)  # 127.0.0.2 spends its budget
        for name, kind in ks.items():
            n = CPU_N if name != "refused_401" else min(CPU_N, burst // 2)
            conn = send(port, kind, 50)
            before, t0 = cpu_ticks(proc.pid), time.time()
            send(port, kind, n, conn)
            out[name] = (cpu_ticks(proc.pid) - before) / hz / n * 1e6
            conn.close()
    finally:
        stop(proc, log)
    return out


def measure_instructions(workdir, burst):
    out_file = os.path.join(workdir, "callgrind.out")
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}.%p"]
    proc, port, key_hash, log = start(prefix, workdir, "callgrind", burst)
    pid = proc.pid
    out = {}

    def ctl(*args):
        subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL)

    try:
        ks = kinds(key_hash)
        send(port, ks["limited_429"], burst, check=False)
        for name, kind in ks.items():
            n = N if name != "refused_401" else min(N, burst // 2)
            conn = send(port, kind, 10)
            ctl("-z")
            ctl("-i", "on")
            send(port, kind, n, conn)
            ctl("-i", "off")
            ctl("-d", name)
            conn.close()
            dumps = [f for f in os.listdir(workdir) if f.startswith(f"callgrind.out.{pid}.")]
            latest = max(dumps, key=lambda f: os.path.getmtime(os.path.join(workdir, f)))
            with open(os.path.join(workdir, latest)) as f:
                total = next(int(l.split()[1]) for l in f if l.startswith("totals:"))
            out[name] = total / n
            keep = os.environ.get("COST_KEEP")
            if keep:  # for callgrind_annotate
                shutil.copy(os.path.join(workdir, latest), os.path.join(keep, f"callgrind.{name}"))
            os.remove(os.path.join(workdir, latest))
    finally:
        stop(proc, log)
    return out


def measure():
    """(instructions, CPU microseconds) per request, by kind."""
    if not shutil.which("valgrind"):
        raise SystemExit("cost: valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="edge-auth-cost-") as workdir:
        # Under callgrind, 127.0.0.2 is limited after 300 failures and 127.0.0.3 never is
        # within its N measured ones; the CPU run uses a larger budget the same way.
        instr = measure_instructions(workdir, 300)
        cpu = measure_cpu(workdir, 5000)
    return instr, cpu


def main():
    instr, cpu = measure()
    base_i, base_c = instr["lookup"], cpu["lookup"]
    print("| Request | Instructions | vs lookup | CPU time | vs lookup |")
    print("|---|---:|---:|---:|---:|")
    for name in instr:
        print(f"| {name} | {instr[name]:,.0f} | {instr[name] / base_i:.2f} | {cpu[name]:.1f} us | "
              f"{cpu[name] / base_c:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
