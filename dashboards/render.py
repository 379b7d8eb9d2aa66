#!/usr/bin/env python3
"""`make dashboard-png`: the Grafana dashboard's panels, drawn from a real run.

Grafana cannot be installed here, so this does what it would do, on a small
scale: it starts the demo stack (envoy/demo.sh: the auth service, the demo
upstream and Envoy with the filter, as `make run` does), sends it a mix of
traffic for DASHBOARD_SECONDS (default 45), scrapes Envoy's /stats/prometheus
every second, evaluates every query of dashboards/edge-auth.json over those
samples, and draws each panel where the dashboard puts it (gridPos) into
docs/img/dashboard.png.

The traffic: a demo HS256 token used again and again (cache hits) and fresh
ones (misses); missing, tampered and wrong-audience tokens; the auth service's
own ES256 session tokens on /api with an allowed and a foreign Origin, and one
after logout (revoked); an API key on /partner (one lookup, then cache hits),
keys the service does not know, malformed keys and none; /health. A third into
the run the service's signing key is rotated and the load moves to a token
signed with the new key (the edge refetches the JWKS for the unknown kid); two
thirds into the run the auth service is stopped, so lookups fail, the breaker
opens and revocation polls fail, as they would in an outage.

The queries are evaluated by the PromQL subset below (what the dashboard
uses): selectors with label matchers, range selectors, rate() (the increase
between the first and last samples in the window over the time between them;
counter resets handled) and increase() (that rate times the window), sum/max/min/avg with optional by/without, + - * / between
vectors (matched on identical labels) and scalars, and comparisons as filters.
Grafana's $__rate_interval is DASHBOARD_RATE_INTERVAL (default 10s).

Environment: ENVOY (the binary; make passes the pinned one), DASHBOARD_SECONDS,
DASHBOARD_RATE_INTERVAL, DASHBOARD_OUT (default docs/img/dashboard.png).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import math
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "edge-auth.json"
ENVOY_PORT, ADMIN_PORT, SERVICE_PORT, UPSTREAM_PORT = 8080, 9901, 8090, 8081


# ---------------------------------------------------------------- PromQL subset

DURATION = re.compile(r"(\d+)(ms|s|m|h)")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(text: str) -> float:
    total, at = 0.0, 0
    for m in DURATION.finditer(text):
        if m.start() != at:
            break
        total, at = total + int(m.group(1)) * UNITS[m.group(2)], m.end()
    if at != len(text) or not text:
        raise ValueError(f"bad duration {text!r}")
    return total


TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<str>\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<range>\[[^\]]*\])|(?P<op>==|!=|>=|<=|=~|!~|[-+*/%(){},=<>]))"
)


def tokenize(expr: str) -> list[tuple[str, str]]:
    out, at = [], 0
    expr = expr.rstrip()
    while at < len(expr):
        m = TOKEN.match(expr, at)
        if not m or m.end() == at:
            raise ValueError(f"cannot read {expr[at:]!r} in {expr!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        at = m.end()
    return out


AGGREGATIONS = {"sum": sum, "max": max, "min": min, "avg": lambda xs: sum(xs) / len(xs)}
RANGE_FUNCTIONS = ("rate", "increase")
PRECEDENCE = {"==": 1, "!=": 1, ">": 1, "<": 1, ">=": 1, "<=": 1, "+": 2, "-": 2, "*": 3, "/": 3, "%": 3}


class Parser:
    """Parses the subset into nested tuples."""

    def __init__(self, expr: str):
        self.expr, self.tokens, self.at = expr, tokenize(expr), 0

    def peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise ValueError(f"expected {value or 'more'} in {self.expr!r}")
        self.at += 1
        return tok

    def parse(self):
        node = self.binary(0)
        if self.at != len(self.tokens):
            raise ValueError(f"unexpected {self.peek()[1]!r} in {self.expr!r}")
        return node

    def binary(self, min_prec):
        left = self.unary()
        while True:
            kind, op = self.peek()
            if kind != "op" or op not in PRECEDENCE or PRECEDENCE[op] < min_prec:
                return left
            self.take()
            right = self.binary(PRECEDENCE[op] + 1)
            left = ("bin", op, left, right)

    def labels(self):
        self.take("(")
        names = []
        while self.peek()[1] != ")":
            names.append(self.take()[1])
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return names

    def unary(self):
        kind, value = self.take()
        if kind == "num":
            return ("num", float(value))
        if value == "(":
            node = self.binary(0)
            self.take(")")
            return node
        if kind != "id":
            raise ValueError(f"unexpected {value!r} in {self.expr!r}")
        if value in AGGREGATIONS:
            grouping = None
            if self.peek()[1] in ("by", "without"):
                grouping = (self.take()[1], self.labels())
            self.take("(")
            inner = self.binary(0)
            self.take(")")
            if grouping is None and self.peek()[1] in ("by", "without"):
                grouping = (self.take()[1], self.labels())
            return ("agg", value, grouping, inner)
        if value in RANGE_FUNCTIONS:
            self.take("(")
            inner = self.unary()
            self.take(")")
            if inner[0] != "range":
                raise ValueError(f"{value}() needs a range selector in {self.expr!r}")
            return ("func", value, inner)
        if self.peek()[1] == "(":
            raise ValueError(f"function {value}() is not in the subset ({self.expr!r})")
        matchers = []
        if self.peek()[1] == "{":
            self.take("{")
            while self.peek()[1] != "}":
                label = self.take()[1]
                op = self.take()[1]
                text = json.loads(self.take()[1])
                matchers.append((label, op, text))
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
        node = ("sel", value, tuple(matchers))
        if self.peek()[0] == "range":
            return ("range", node, seconds(self.take()[1][1:-1]))
        return node


class Samples:
    """The scrapes: for every series (name, labels) the list of (t, value)."""

    def __init__(self):
        self.series: dict[tuple, list[tuple[float, float]]] = {}

    def add(self, t: float, text: str) -> None:
        for name, labels, value in parse_exposition(text):
            self.series.setdefault((name, labels), []).append((t, value))

    def select(self, name, matchers):
        for (n, labels), points in self.series.items():
            if n != name:
                continue
            d = dict(labels)
            ok = True
            for label, op, text in matchers:
                v = d.get(label, "")
                ok &= {"=": v == text, "!=": v != text, "=~": re.fullmatch(text, v) is not None,
                       "!~": re.fullmatch(text, v) is None}[op]
            if ok:
                yield labels, points


def parse_exposition(text: str):
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
        try:
            yield m.group(1), labels, float(m.group(3))
        except ValueError:
            continue


def evaluate(node, samples: Samples, t: float):
    """An instant vector {labels: value} or a float, at time t."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "sel":
        out = {}
        for labels, points in samples.select(node[1], node[2]):
            last = [v for (ts, v) in points if ts <= t]
            if last:
                out[labels] = last[-1]
        return out
    if kind == "func":
        _, fn, (_, sel, window) = node
        out = {}
        for labels, points in samples.select(sel[1], sel[2]):
            pts = [(ts, v) for (ts, v) in points if t - window < ts <= t]
            if len(pts) < 2:
                continue
            increase = 0.0
            for (_, a), (_, b) in zip(pts, pts[1:]):
                increase += b - a if b >= a else b  # a counter reset starts from zero
            elapsed = pts[-1][0] - pts[0][0]
            out[labels] = increase / elapsed if fn == "rate" else increase * window / elapsed
        return out
    if kind == "agg":
        _, fn, grouping, inner = node
        vec = evaluate(inner, samples, t)
        groups: dict[tuple, list[float]] = {}
        for labels, v in vec.items():
            if grouping is None:
                key = ()
            elif grouping[0] == "by":
                key = tuple((k, v2) for (k, v2) in labels if k in grouping[1])
            else:
                key = tuple((k, v2) for (k, v2) in labels if k not in grouping[1])
            groups.setdefault(key, []).append(v)
        return {k: AGGREGATIONS[fn](vs) for k, vs in groups.items()}
    if kind == "bin":
        _, op, a, b = node
        left, right = evaluate(a, samples, t), evaluate(b, samples, t)
        if op in ("==", "!=", ">", "<", ">=", "<="):
            test = lambda x, y: {"==": x == y, "!=": x != y, ">": x > y, "<": x < y, ">=": x >= y, "<=": x <= y}[op]
            if isinstance(left, dict) and not isinstance(right, dict):
                return {k: v for k, v in left.items() if test(v, right)}
            if isinstance(left, dict):
                return {k: v for k, v in left.items() if k in right and test(v, right[k])}
            raise ValueError("a scalar comparison needs bool, which the subset leaves out")

        def arith(x, y):
            if op == "+":
                return x + y
            if op == "-":
                return x - y
            if op == "*":
                return x * y
            if y == 0:
                return math.nan if x == 0 or op == "%" else math.copysign(math.inf, x)
            return x / y if op == "/" else math.fmod(x, y)

        if isinstance(left, dict) and isinstance(right, dict):
            return {k: arith(v, right[k]) for k, v in left.items() if k in right}
        if isinstance(left, dict):
            return {k: arith(v, right) for k, v in left.items()}
        if isinstance(right, dict):
            return {k: arith(left, v) for k, v in right.items()}
        return arith(left, right)
    raise ValueError(f"cannot evaluate {node!r}")


# ---------------------------------------------------------------- the demo stack and its traffic


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret: bytes, claims: dict) -> str:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def demo_claims(aud: str = "demo-api") -> dict:
    now = int(time.time())
    return {"iss": "https://demo.edge-auth.local", "aud": aud, "sub": "load", "iat": now, "exp": now + 600,
            "jti": secrets.token_hex(8)}


def request(port: int, method: str, path: str, headers: dict | None = None, body: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(cond, what: str, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while not cond():
        if time.time() > deadline:
            raise SystemExit(f"dashboard-png: {what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Stack:
    def __init__(self, envoy: str):
        busy = [p for p in (ENVOY_PORT, ADMIN_PORT, SERVICE_PORT, UPSTREAM_PORT) if port_open(p)]
        if busy:
            raise SystemExit(f"dashboard-png: ports {busy} are in use (is `make run` running?)")
        (ROOT / ".run").mkdir(exist_ok=True)
        self.log = open(ROOT / ".run" / "dashboard-png.log", "w")
        self.proc = subprocess.Popen([str(ROOT / "envoy" / "demo.sh"), envoy], cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.proc.poll() is None and port_open(ENVOY_PORT) and port_open(ADMIN_PORT), "the demo stack starting")
        wait_for(lambda: request(ADMIN_PORT, "GET", "/ready")[0] == 200, "Envoy ready")
        run = ROOT / ".run"
        self.admin_token = (run / "admin-token").read_text()
        self.hs_secret = (run / "demo-hs256-secret").read_text().encode()

    def service_pid(self) -> int | None:
        for pid in children(self.proc.pid):
            if "edge-auth-service" in command_of(pid):
                return pid
        return None

    def stop_service(self) -> None:
        pid = self.service_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # demo.sh stops its children
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def admin(stack: Stack, path: str, body: dict) -> dict:
    status, text = request(SERVICE_PORT, "POST", path, {"Authorization": f"Bearer {stack.admin_token}",
                                                       "content-type": "application/json"}, json.dumps(body))
    if status not in (200, 201):
        raise SystemExit(f"dashboard-png: {path} answered {status}: {text[:200]!r}")
    return json.loads(text)


def prepare(stack: Stack) -> dict:
    # A tenant of its own: .run/auth.db keeps what earlier `make run`s created.
    tenant = f"dashboard-{secrets.token_hex(4)}"
    admin(stack, "/admin/v1/tenants", {"name": tenant, "allowed_origins": ["https://app.acme.example"],
                                        "ip_allowlist": ["127.0.0.1"]})
    key = admin(stack, f"/admin/v1/tenants/{tenant}/keys", {"subject": "svc-web", "scopes": ["orders:read"]})["api_key"]
    sdk = {"x-api-key": key, "content-type": "application/json"}

    def session():
        status, text = request(ENVOY_PORT, "POST", "/v1/sessions", sdk, json.dumps({"subject": "user-123"}))
        if status != 201:
            raise SystemExit(f"dashboard-png: /v1/sessions answered {status}: {text[:200]!r}")
        return json.loads(text)

    live, gone = session(), session()
    request(ENVOY_PORT, "POST", "/v1/sessions/logout", sdk, json.dumps({"refresh_token": gone["refresh_token"]}))
    token = hs256(stack.hs_secret, demo_claims())
    return {"key": key, "access": live["access_token"], "revoked": gone["access_token"], "token": token,
            "session": session}


def rotate(stack: Stack, p: dict) -> None:
    """Rotates the service's signing key and moves the load to a session signed with the new
    one: the edge meets an unknown kid and fetches the JWKS again."""
    admin(stack, "/admin/v1/signing-keys/rotate", {})
    p["access"] = p["session"]()["access_token"]


def traffic(stack: Stack, p: dict):
    """(weight, function returning (path, headers)) pairs: the load's mix."""
    origin = "https://app.acme.example"
    bearer = lambda t: {"Authorization": f"Bearer {t}"}
    return [
        (30, lambda: ("/hello", bearer(p["token"]))),
        (6, lambda: ("/hello", bearer(hs256(stack.hs_secret, demo_claims())))),
        (8, lambda: ("/hello", {})),
        (3, lambda: ("/hello", bearer(p["token"][:-4] + "AAAA"))),
        (2, lambda: ("/hello", bearer(hs256(stack.hs_secret, demo_claims("another-api"))))),
        (15, lambda: ("/api/orders", {**bearer(p["access"]), "Origin": origin})),
        (3, lambda: ("/api/orders", {**bearer(p["access"]), "Origin": "https://evil.example"})),
        (2, lambda: ("/api/orders", {**bearer(p["revoked"]), "Origin": origin})),
        (20, lambda: ("/partner/orders", {"x-api-key": p["key"]})),
        (2, lambda: ("/partner/orders", {"x-api-key": "sk_" + secrets.token_hex(32)})),
        (2, lambda: ("/partner/orders", {"x-api-key": "sk_not-a-key"})),
        (2, lambda: ("/partner/orders", {})),
        (5, lambda: ("/health", {})),
    ]


def load(stack: Stack, mix, stop: threading.Event, counts: dict) -> None:
    weights = [w for w, _ in mix]
    conn = http.client.HTTPConnection("127.0.0.1", ENVOY_PORT, timeout=5)
    rng = random.Random()
    while not stop.is_set():
        path, headers = rng.choices(mix, weights)[0][1]()
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            counts[r.status] = counts.get(r.status, 0) + 1
            if r.getheader("connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", ENVOY_PORT, timeout=5)
        time.sleep(0.002)


# ---------------------------------------------------------------- drawing


def draw(dashboard: dict, samples: Samples, times: list[float], rate_interval: str, out: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_h = 0.42
    fig = plt.figure(figsize=(18, rows * unit_h + 0.9), dpi=90)
    fig.suptitle(f"{dashboard['title']}  ({note})", x=0.01, ha="left", fontsize=13, fontweight="bold")
    top = 1 - 0.9 / (rows * unit_h + 0.9)
    t0 = times[0]
    for p in panels:
        g = p["gridPos"]
        left, width = g["x"] / 24, g["w"] / 24
        y_top = top * (1 - g["y"] / rows)
        height = top * g["h"] / rows
        if p["type"] == "row":
            fig.text(left + 0.005, y_top - height / 2, p["title"], fontsize=11, fontweight="bold", va="center")
            continue
        ax = fig.add_axes([left + 0.035, y_top - height + 0.06 * height * 2.1, width - 0.045, height * 0.68])
        ax.set_title(p["title"], fontsize=10, loc="left")
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        drawn = 0
        for target in p["targets"]:
            expr = target["expr"].replace("$__rate_interval", rate_interval)
            node = Parser(expr).parse()
            series: dict[tuple, list[tuple[float, float]]] = {}
            for t in times:
                value = evaluate(node, samples, t)
                items = value.items() if isinstance(value, dict) else [((), value)]
                for labels, v in items:
                    series.setdefault(labels, []).append((t - t0, v))
            for labels, pts in series.items():
                if unit == "percentunit":
                    pts = [(x, v * 100) for x, v in pts]
                legend = target.get("legendFormat") or expr
                for k, v in labels:
                    legend = legend.replace("{{" + k + "}}", v)
                xs, ys = zip(*pts)
                ax.plot(xs, ys, linewidth=1.3, label=legend)
                drawn += 1
        ylabel = {"reqps": "req/s", "ops": "per s", "percentunit": "%", "short": ""}.get(unit, unit)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_xlim(0, times[-1] - t0)
        if unit == "percentunit":
            ax.set_ylim(0, 105)
        else:
            ax.set_ylim(bottom=0)
        if drawn:
            ax.legend(fontsize=6.5, ncol=3 if drawn > 6 else 2, loc="upper left", framealpha=0.7)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="grey")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"dashboard-png: wrote {out}")


def main() -> None:
    envoy = os.environ.get("ENVOY") or next(iter(sorted(ROOT.glob(".venv/lib/python3*/site-packages/envoy/_bin/envoy"))), None)
    if not envoy:
        raise SystemExit("dashboard-png: no Envoy (set ENVOY)")
    duration = float(os.environ.get("DASHBOARD_SECONDS", "45"))
    rate_interval = os.environ.get("DASHBOARD_RATE_INTERVAL", "10s")
    seconds(rate_interval)
    out = Path(os.environ.get("DASHBOARD_OUT", ROOT / "docs" / "img" / "dashboard.png"))
    dashboard = json.loads(DASHBOARD.read_text())
    for p in dashboard["panels"]:
        for target in p.get("targets", []):
            Parser(target["expr"].replace("$__rate_interval", rate_interval)).parse()  # fail before the run

    stack = Stack(envoy)
    try:
        params = prepare(stack)
        mix = traffic(stack, params)
        samples, times, counts = Samples(), [], {}
        stop = threading.Event()
        workers = [threading.Thread(target=load, args=(stack, mix, stop, counts), daemon=True) for _ in range(3)]
        for w in workers:
            w.start()
        start, outage_at = time.time(), time.time() + duration * 2 / 3
        print(f"dashboard-png: {duration:.0f} s of load; the signing key rotates after {duration / 3:.0f} s, "
              f"the auth service stops after {duration * 2 / 3:.0f} s")
        stopped, rotated, rotate_at = False, False, start + duration / 3
        while time.time() - start < duration:
            t = time.time()
            samples.add(t, request(ADMIN_PORT, "GET", "/stats/prometheus")[1].decode())
            times.append(t)
            if not rotated and t >= rotate_at:
                rotate(stack, params)
                rotated = True
            if not stopped and t >= outage_at:
                stack.stop_service()
                stopped = True
            time.sleep(max(0.0, 1 - (time.time() - t)))
        stop.set()
        for w in workers:
            w.join(timeout=10)
        total = sum(counts.values())
        print(f"dashboard-png: {total} requests ({total / duration:.0f}/s), by status {dict(sorted(counts.items()))}")
    finally:
        stack.close()
    note = f"{duration:.0f} s of demo-stack load; signing key rotated at {duration / 3:.0f} s, " \
           f"auth service stopped at {duration * 2 / 3:.0f} s; rate interval {rate_interval}; x: seconds"
    draw(dashboard, samples, times, rate_interval, out, note)


if __name__ == "__main__":
    main()
