#!/usr/bin/env python3
"""`make bench-service`: the auth service's lookups alone and under an
unauthenticated flood, on SQLite and on PostgreSQL, side by side in one run.

For each engine, release `edge-auth-service`s are started (every thread pinned to CPU 0),
each with a tenant and a key, in two deployments:

* single: one listener for everything (the default);
* split: the edges' API on a listener of its own (`--edge-listen`), served by its own
  threads; the public listener's threads at nice +10 (the default `--public-nice`).

Each round runs, for each deployment, each flood right after a run alone (the pairs in a
shuffled order):

* alone: `wrk -t1 -c16` POSTs the edge's lookup of that key for BENCH_DURATION s (to
  the edge listener when there is one), from 127.0.0.1;
* flood_60k: the same, while the flood generator (`edge-auth-flood`, tools/flood: one
  thread, 16 connections, each sending its next request as soon as it has an answer,
  opening a new connection as soon as one is closed) sends POSTs with a wrong admin token
  to `/admin/v1/keys/<60,000 characters>/revoke` on the public listener, from an address
  of its own
  (the flood of issue 12; over the head limit, refused by the HTTP layer with `431`);
* flood_auth: the same with a 16,000-character path, under the head limit: every
  request reaches the service, and is refused (401, then 429 once the address is
  limited);
* flood_auth_1k: flood_auth paced at about 1,000 requests a second;
* flood_conns: flood_auth on 300 connections, more than the 256 a client may hold:
  the service must close the rest at accept, as fast as they come;
* flood_service: POSTs with a wrong service token to the lookup route itself, on the
  listener the lookups use: a flood aimed at the edges' own API.

The lookups' wrk and the flood generator are both pinned to CPU 1, one thread each, so
that neither starves the other; PostgreSQL is pinned to CPU 0 with the service. The flood
comes from an address of its own (a new one for each run, 127.2.0.1, 127.2.0.2, ...), as
it would in a deployment: that is the address the service limits, never the edges'. The report gives, per engine and
deployment, the median over rounds of lookups/s and p99 alone and under each flood,
their ratio to the run alone just before, what the flood achieved (requests sent,
answered and connections closed unanswered, per second), the busy share of each CPU,
and what the floods made the service write (audit rows, database size, log lines).
Then what one request of each kind costs (bench/service_cost.py: callgrind, CPU time).
Nothing is asserted: timings on a shared machine are a report, not a test.

Environment: BENCH_DURATION (s, default 4), BENCH_ROUNDS (default 3),
EDGE_AUTH_TEST_PG_URL (a PostgreSQL server; tools/with-test-postgres.sh sets it),
BENCH_PG_CPU (the CPU the test PostgreSQL server is pinned to, default 0 with the service,
so that the floods' client on CPU 1 does not take the database's CPU; empty: unpinned),
SERVICE_BIN (default target/release/edge-auth-service), BENCH_COST (0 to leave out the
cost table); for a partial run, BENCH_ENGINES (`sqlite postgres`) and BENCH_DEPLOYMENTS
(`single split`), FLOOD_BIN (default target/release/edge-auth-flood), FLOOD_SOURCES
(the first two bytes of the floods' addresses, default 127.2).
"""

import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
SERVICE_BIN = os.environ.get("SERVICE_BIN", os.path.join(ROOT, "target/release/edge-auth-service"))
DURATION = int(os.environ.get("BENCH_DURATION", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ADMIN = "bench-admin-" + os.urandom(16).hex()
SERVICE = "bench-service-" + os.urandom(16).hex()
# mode: (path, pause between a connection's requests in ms, bearer token, listener, connections)
FLOODS = {
    "flood_60k": ("/admin/v1/keys/" + "a" * 60_000 + "/revoke", None, None, "public", 16),
    "flood_auth": ("/admin/v1/keys/" + "a" * 16_000 + "/revoke", None, None, "public", 16),
    "flood_auth_1k": ("/admin/v1/keys/" + "a" * 16_000 + "/revoke", "16", None, "public", 16),
    "flood_conns": ("/admin/v1/keys/" + "a" * 16_000 + "/revoke", None, None, "public", 300),
    "flood_service": ("/internal/v1/api-keys/lookup", None, "not-the-service-token", "edge", 16),
}
# deployment: (extra `serve` arguments, or None for one listener; its modes)
DEPLOYMENTS = {
    "single": (None, ["alone", "flood_60k", "flood_auth", "flood_auth_1k"]),
    "split": (["--public-nice", "10"], ["alone", "flood_60k", "flood_auth", "flood_conns", "flood_service"]),
}
RESULTS = os.path.join(BENCH, "results", "service-latest.md")
FLOOD_BIN = os.environ.get("FLOOD_BIN", os.path.join(ROOT, "target/release/edge-auth-flood"))
# The flood's own client addresses, a new one for each run (so that no run starts with
# its address already limited, or holding connections, from the run before): the
# lookups come from 127.0.0.1, as the edges do from theirs; the flood's address is the
# one the service limits. Loopback answers all of 127/8.
FLOOD_SOURCES = os.environ.get("FLOOD_SOURCES", "127.2")
_floods_started = [0]


def next_flood_source():
    n = _floods_started[0]
    _floods_started[0] += 1
    return f"{FLOOD_SOURCES}.{n // 250}.{n % 250 + 1}"


def process_ticks(pids):
    """utime + stime of these processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def postgres_pids():
    if not PG_POSTMASTER:
        return []
    children = subprocess.run(["pgrep", "-P", PG_POSTMASTER], capture_output=True, text=True).stdout.split()
    return [PG_POSTMASTER, *children]
# The CPU the PostgreSQL server is pinned to ("" to leave it unpinned): by default the
# service's, so that the floods' client, on the other CPU, does not take the database
# server's CPU (it would not be on the database's machine in a deployment).
PG_CPU = os.environ.get("BENCH_PG_CPU", "0")
PG_PINNED = False
PG_POSTMASTER = None


def pin_postgres(cpu):
    """Pins the test PostgreSQL server (tools/with-test-postgres.sh: its socket directory
    holds data/postmaster.pid) and the backends it starts to `cpu`. Returns whether it did."""
    query = urllib.parse.urlparse(os.environ["EDGE_AUTH_TEST_PG_URL"]).query
    host = urllib.parse.parse_qs(query).get("host", [""])[0]
    global PG_POSTMASTER
    try:
        with open(os.path.join(host, "data", "postmaster.pid")) as f:
            postmaster = f.readline().strip()
    except OSError:
        return False
    PG_POSTMASTER = postmaster
    children = subprocess.run(["pgrep", "-P", postmaster], capture_output=True, text=True).stdout.split()
    for pid in [postmaster, *children]:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), pid], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu, argv):
    return (["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []) + argv


def call(port, method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


class Service:
    def __init__(self, engine, workdir, split=None, name=None):
        self.engine = engine
        self.port = free_port()
        self.edge_port = free_port() if split is not None else None
        name = name or engine
        env = dict(os.environ, EDGE_AUTH_ADMIN_TOKEN=ADMIN, EDGE_AUTH_SERVICE_TOKEN=SERVICE)
        env.pop("EDGE_AUTH_DB", None)
        env.pop("EDGE_AUTH_DATABASE_URL", None)
        argv = [SERVICE_BIN]
        self.db_file = None
        if engine == "sqlite":
            self.db_file = os.path.join(workdir, f"{name}.db")
            argv += ["--db", self.db_file]
        else:
            env["EDGE_AUTH_DATABASE_URL"] = os.environ["EDGE_AUTH_TEST_PG_URL"]
            env["EDGE_AUTH_DATABASE_SCHEMA"] = "bench_" + os.urandom(4).hex()
        argv += ["serve", "--listen", f"127.0.0.1:{self.port}", "--issuer", "https://bench", "--audience", "bench"]
        if split is not None:
            argv += ["--edge-listen", f"127.0.0.1:{self.edge_port}", *split]
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.proc = subprocess.Popen(pinned(0, argv), env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"bench: the {engine} service did not start (log: {self.log.name})")
                time.sleep(0.1)
        call(self.port, "POST", "/admin/v1/tenants", ADMIN, {"name": "bench"})
        key = call(self.port, "POST", "/admin/v1/tenants/bench/keys", ADMIN, {"subject": "svc", "scopes": ["a"]})
        self.key_hash = hashlib.sha256(key["api_key"].encode()).hexdigest()
        answer = call(self.edge(), "POST", "/internal/v1/api-keys/lookup", SERVICE, {"key_hash": self.key_hash})
        assert answer["status"] == "valid", answer

    def edge(self):
        """The port the edges use: the edge listener's, if there is one."""
        return self.edge_port or self.port

    def log_lines(self):
        """Log lines so far, besides the lookups' own (one `request` line each, status 200)."""
        self.log.flush()
        n = 0
        with open(self.log.name) as f:
            for line in f:
                try:
                    v = json.loads(line)
                except ValueError:
                    n += 1
                    continue
                n += not (v.get("message") == "request" and v.get("status") == 200)
        return n

    def audit_failure_rows(self):
        events = call(self.port, "GET", "/admin/v1/audit?limit=1000", ADMIN)["events"]
        rows = [e for e in events if e["action"] in ("admin.auth", "service.auth") and e["outcome"] == "failure"]
        return len(rows), sum(e["detail"]["count"] for e in rows)

    def db_bytes(self):
        if not self.db_file:
            return None
        return sum(os.path.getsize(p) for p in (self.db_file, self.db_file + "-wal") if os.path.exists(p))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def wrk(script, url, seconds, result, extra_env, conns=16):
    env = dict(os.environ, BENCH_RESULT=result, **extra_env)
    argv = pinned(1, ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", os.path.join(BENCH, script), url])
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read(result):
    with open(result) as f:
        return json.load(f)


def cpu_ticks():
    """Per-CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v[:8]]
                out[name] = (sum(v) - v[3] - v[4], sum(v))  # idle and iowait are not busy
    return out


def busy_since(before):
    now = cpu_ticks()
    return {c: (now[c][0] - before[c][0]) / max(1, now[c][1] - before[c][1]) for c in now if c in before}


def flood_process(port, mode):
    """The flood of `mode` against `port`, from a new address, pinned to CPU 1."""
    path, pause, token, _, connections = FLOODS[mode]
    argv = [FLOOD_BIN, "--target", f"127.0.0.1:{port}", "--source", next_flood_source(), "--connections", str(connections),
            "--seconds", str(DURATION + 2), "--path", path, "--token", token or "not-the-admin-token"]
    if pause:
        argv += ["--pause-ms", pause]
    return subprocess.Popen(pinned(1, argv), stdout=subprocess.PIPE, text=True)


def run(svc, mode, workdir):
    lookup_env = {"SERVICE_TOKEN": SERVICE, "KEY_HASH": svc.key_hash}
    lookups = os.path.join(workdir, "lookups.json")
    flood = None
    if mode in FLOODS:
        target = FLOODS[mode][3]
        flood = flood_process(svc.edge() if target == "edge" else svc.port, mode)
        time.sleep(1)  # the flood is under way (and its address limited) before the measurement starts
    url = f"http://127.0.0.1:{svc.edge()}/internal/v1/api-keys/lookup"
    before = cpu_ticks()
    pg = postgres_pids() if svc.engine == "postgres" else []
    ticks = (process_ticks([svc.proc.pid]), process_ticks(pg), process_ticks([flood.pid] if flood else []))
    started = time.time()
    lookup_wrk = wrk("service_lookup.lua", url, DURATION, lookups, lookup_env)
    lookup_wrk.wait()
    # (the lookups' wrk is gone by now: its CPU time is read from its exit, below)
    elapsed = time.time() - started
    busy = busy_since(before)
    hz = os.sysconf("SC_CLK_TCK")
    share = lambda now, then: (now - then) / hz / elapsed
    out_cpu = {"svc_cpu": share(process_ticks([svc.proc.pid]), ticks[0]),
               "pg_cpu": share(process_ticks(pg), ticks[1]),
               "flood_cpu": share(process_ticks([flood.pid] if flood else []), ticks[2])}
    out = read(lookups)
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    out["cpu0"], out["cpu1"] = busy.get("cpu0", 0.0), busy.get("cpu1", 0.0)
    out.update(out_cpu)
    out["flood_rps"] = out["flood_sent"] = out["flood_closed"] = 0.0
    if flood:
        f = json.loads(flood.communicate()[0])
        seconds = f["duration_us"] / 1e6
        out["flood_rps"] = f["answers"] / seconds
        out["flood_sent"] = f["sent"] / seconds
        out["flood_closed"] = f["closed"] / seconds
        out["flood_statuses"] = f["statuses"]
    return out


def main():
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is not installed (make bench-service installs it)")
    engines = ["sqlite"] + (["postgres"] if os.environ.get("EDGE_AUTH_TEST_PG_URL") else [])
    if "postgres" not in engines:
        print("bench: EDGE_AUTH_TEST_PG_URL is not set: PostgreSQL is left out (make bench-service sets it)")
    engines = [e for e in engines if e in os.environ.get("BENCH_ENGINES", "sqlite postgres").split()]
    global PG_PINNED
    if "postgres" in engines and PG_CPU and shutil.which("taskset") and os.cpu_count() > 1:
        PG_PINNED = pin_postgres(PG_CPU)
        print(f"bench: PostgreSQL {'pinned to CPU ' + PG_CPU if PG_PINNED else 'not pinned (no postmaster.pid found)'}")
    for name in set(DEPLOYMENTS) - set(os.environ.get("BENCH_DEPLOYMENTS", " ".join(DEPLOYMENTS)).split()):
        del DEPLOYMENTS[name]
    rng = random.Random(12)
    results = {}
    with tempfile.TemporaryDirectory(prefix="edge-auth-bench-") as workdir:
        for engine in engines:
            services = {}
            try:
                for name, (split, _) in DEPLOYMENTS.items():
                    services[name] = Service(engine, workdir, split, f"{engine}-{name}")
                for name, svc in services.items():
                    # Warm-up: connections, statement caches, the page cache.
                    wrk("service_lookup.lua", f"http://127.0.0.1:{svc.edge()}/internal/v1/api-keys/lookup", 1,
                        os.path.join(workdir, "warm.json"),
                        {"SERVICE_TOKEN": SERVICE, "KEY_HASH": svc.key_hash}).wait()
                before = {name: (svc.db_bytes(), svc.log_lines()) for name, svc in services.items()}
                runs = {(d, m): [] for d, (_, modes) in DEPLOYMENTS.items() for m in modes}
                for r in range(ROUNDS):
                    # Each flood run comes right after a run alone on the same service: the
                    # pair's ratio is what the flood cost, with the machine's other load
                    # (which drifts over minutes) about the same in both.
                    order = [(d, m) for (d, m) in runs if m != "alone"]
                    rng.shuffle(order)
                    for deployment, mode in order:
                        svc = services[deployment]
                        alone = run(svc, "alone", workdir)
                        res = run(svc, mode, workdir)
                        res["kept"] = res["rps"] / alone["rps"]
                        runs[(deployment, "alone")].append(alone)
                        runs[(deployment, mode)].append(res)
                        print(f"bench: {engine} round {r + 1} {deployment} {mode}: {res['rps']:.0f} lookups/s "
                              f"({res['kept']:.0%} of {alone['rps']:.0f} alone just before), "
                              f"p99 {res['p99_us'] / 1000:.2f} ms, flood {res['flood_sent']:.0f} sent/s "
                              f"{res['flood_rps']:.0f} answered/s {res['flood_closed']:.0f} closed/s "
                              f"{res.get('flood_statuses', {})}, service CPU {res['svc_cpu']:.0%} "
                              f"(alone {alone['svc_cpu']:.0%}), postgres {res['pg_cpu']:.0%} "
                              f"(alone {alone['pg_cpu']:.0%}), flood generator {res['flood_cpu']:.0%}, "
                              f"CPU0 {res['cpu0']:.0%} CPU1 {res['cpu1']:.0%}", flush=True)
                time.sleep(1.5)  # the last window's lines are logged
                wrote = {}
                for name, svc in services.items():
                    rows, failures = svc.audit_failure_rows()
                    size, lines = before[name]
                    after = svc.db_bytes()
                    wrote[name] = (rows, failures, None if size is None else after - size, svc.log_lines() - lines)
                results[engine] = (runs, wrote)
            finally:
                for svc in services.values():
                    svc.stop()
    costs = None
    if os.environ.get("BENCH_COST", "1") != "0":
        import service_cost
        costs = service_cost.measure()
    report(results, costs)


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def report(results, costs):
    lines = [
        "# Auth service: lookups alone and under an unauthenticated flood",
        "",
        f"`make bench-service`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {ROUNDS} rounds x {DURATION} s, "
        "medians; in each round every flood run comes right after a run alone on the same service, the pairs in a "
        "shuffled order. Service (release) pinned to CPU 0, all its threads; lookups: `wrk -t1 -c16` from "
        f"127.0.0.1; flood: `edge-auth-flood` (tools/flood; one thread) from an address of its own, a new one "
        f"for each run ({FLOOD_SOURCES}.0.1, {FLOOD_SOURCES}.0.2, ...); both on CPU 1. "
        f"PostgreSQL 15 (throw-away server, fsync off) {'pinned to CPU ' + PG_CPU + ' with the service' if PG_PINNED else 'unpinned'}. "
        "The machine is shared with other work: compare ratios within a pair, not across runs.",
        "",
        "Deployments: `single`, one listener for everything (the default); `split`, the edges' API on a "
        "listener of its own (`--edge-listen`) with its own threads, the public listener's threads at nice +10 "
        "(the default `--public-nice`); the lookups go to the edge listener when there is one. Floods, each "
        "connection sending its next request as soon as it has an answer and opening a new connection as soon "
        "as one is closed: `flood_60k`, a wrong admin token on `/admin/v1/keys/<60,000 characters>/revoke` (over "
        "the 32 KiB head limit: `431` from the HTTP layer, connection closed; counted against the address); "
        "`flood_auth`, the same with 16,000 characters (`401` until the address is limited, then `429`); "
        "`flood_auth_1k`, `flood_auth` paced at about 1,000 a second; `flood_conns`, `flood_auth` on 300 "
        "connections (more than the 256 an address may hold); these go to the public listener, 16 connections "
        "unless said. `flood_service`, a wrong service token on the lookup route itself, on the listener the "
        "lookups use.",
        "",
        "| Engine | Deployment | Mode | Lookups/s | p99 | Kept | Flood sent/s | Flood answered/s "
        "| Flood closed unanswered/s | Service CPU | PostgreSQL CPU | Flood generator CPU | CPU 0 busy | CPU 1 busy |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tail = []
    for engine, (runs, wrote) in results.items():
        for deployment, (_, modes) in DEPLOYMENTS.items():
            for mode in modes:
                r = runs[(deployment, mode)]
                flood = mode in FLOODS
                cell = lambda key: f"{median(r, key):,.0f}" if flood else ""
                kept = f"{median(r, 'kept'):.0%}" if flood else ""
                lines.append(
                    f"| {engine} | {deployment} | {mode} | {median(r, 'rps'):,.0f} | {median(r, 'p99_us') / 1000:.2f} ms | "
                    f"{kept} | {cell('flood_sent')} | {cell('flood_rps')} | {cell('flood_closed')} | "
                    f"{median(r, 'svc_cpu'):.0%} | {median(r, 'pg_cpu'):.0%} | "
                    f"{median(r, 'flood_cpu'):.0%} | {median(r, 'cpu0'):.0%} | {median(r, 'cpu1'):.0%} |"
                )
        for deployment, (rows, failures, growth, log_lines) in wrote.items():
            modes = DEPLOYMENTS[deployment][1]
            errors = sum(r["errors"] + r["non2xx"] for mode in modes for r in runs[(deployment, mode)])
            floods = sum(r["flood_sent"] * DURATION for mode in modes if mode in FLOODS
                         for r in runs[(deployment, mode)])
            size = "" if growth is None else f"; the database file grew by {growth / 1024:.0f} KiB"
            tail.append(
                f"- {engine} {deployment}: the floods (about {floods:,.0f} requests sent in the measured seconds) "
                f"wrote {rows} audit rows for {failures:,} failed authentications{size}, and {log_lines:,} log lines "
                f"besides the lookups' own; {errors} lookups failed or were not answered 200."
            )
    lines += [
        "",
        *tail,
        "",
        "Kept: the median over rounds of lookups/s under a flood over lookups/s alone in the run just before it "
        "(the issue's target: 80 % or more); `alone` gives the median of all those runs alone. CPU busy: the "
        "share of each CPU not idle during the lookups' run (CPU 0: the service and PostgreSQL; CPU 1: both load "
        "generators, and the loopback's packet work of what they send; both: whatever else the shared machine "
        "runs). Service, PostgreSQL and flood generator CPU: their processes' CPU time (user and system, all "
        "threads) over the run, as a share of one CPU. Flood sent/s counts every request the "
        "flood wrote, answered or not; closed unanswered/s, the connections the service closed or reset before "
        "answering. A flood from one address is limited once it has failed `--auth-failure-burst` times (100): "
        "on the public listener of `split`, its connections are then held unread until the header timeout and "
        "reset, so a closed-loop flood sends little; in `single` (and on the edges' listener) every request is "
        "still read and answered `429` from a prebuilt answer, so that a valid token from that address passes, "
        "and the flood shares the service's core with the lookups. Not stopped by the service on its own: a "
        "storm of new connections beyond the 256 an address may hold (`flood_conns`: each is accepted and reset, "
        "at the public threads' lower priority), a flood of the edges' own listener (`flood_service`: read and "
        "answered at the lookups' priority; that listener belongs on a network only the edges reach), and a "
        "flood from many addresses each under its limit (not measured here).",
        "",
    ]
    if costs:
        lines += costs_table(costs)
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write(text)
    print()
    print(text)
    print(f"bench: written to {os.path.relpath(RESULTS, ROOT)}")


def costs_table(costs):
    instr, cpu = costs
    base_i, base_c = instr["lookup"], cpu["lookup"]
    out = [
        "## What one request costs",
        "",
        "`bench/service_cost.py` (also `make bench-service-cost`), SQLite, one listener: one request at a time "
        "over a keep-alive connection (a new connection each for `oversized_431`). Instructions: callgrind, "
        "every thread of the service, instrumented only around the measured requests. CPU time: the release "
        "binary's utime + stime over many requests (noisy on a shared machine). The kinds are described in "
        "the script.",
        "",
        "| Request | Instructions | vs lookup | CPU time | vs lookup |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in instr:
        out.append(f"| {name} | {instr[name]:,.0f} | {instr[name] / base_i:.2f} | {cpu[name]:.1f} us | "
                   f"{cpu[name] / base_c:.2f} |")
    return out + [""]


if __name__ == "__main__":
    sys.exit(main())
