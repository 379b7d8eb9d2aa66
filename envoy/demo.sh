#!/usr/bin/env bash
# The `make run` stack: the reference auth service (127.0.0.1:8090), the demo
# upstream (127.0.0.1:8081) and Envoy with the edge-auth filter (127.0.0.1:8080,
# admin 127.0.0.1:9901), as envoy/envoy.yaml wires them.
#
# Secrets are generated for each run and passed through the environment only;
# copies for `make token` and the walkthrough live in .run/ (mode 600,
# git-ignored) and are removed when the stack stops.
#
# Usage: envoy/demo.sh ENVOY_BINARY   (make run passes the pinned one)
#
#        envoy/demo.sh egress CLIENT_ID  (walkthrough step 8, while the stack runs)
# starts a second Envoy, envoy/egress-demo.yaml with CLIENT_ID in it, in the
# background: the same binary, log in .run/egress.log, stopped with the stack.
# The client's secret comes only from EDGE_AUTH_EGRESS_CLIENT_SECRET in this
# script's environment, which Envoy inherits; it is never printed or written.
# It returns once that Envoy's filter holds a token. EDGE_AUTH_WASM and
# EDGE_AUTH_DEMO_{EDGE,SERVICE,EGRESS,EGRESS_ADMIN}_PORT move it (for tests).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run="$root/.run"
cd "$root"

if [ "${1:-}" = egress ]; then
  client_id=${2:?usage: envoy/demo.sh egress CLIENT_ID}
  [[ $client_id =~ ^mc_[A-Za-z0-9]{1,64}$ ]] || { echo "egress: not a client id: $client_id" >&2; exit 2; }
  [ -n "${EDGE_AUTH_EGRESS_CLIENT_SECRET:-}" ] \
    || { echo "egress: set EDGE_AUTH_EGRESS_CLIENT_SECRET to the client's secret" >&2; exit 2; }
  [ -r "$run/envoy-bin" ] || { echo "egress: start 'make run' first" >&2; exit 1; }
  if [ -r "$run/egress.pid" ] && kill -0 "$(cat "$run/egress.pid")" 2>/dev/null; then
    echo "egress: already running (pid $(cat "$run/egress.pid"))" >&2; exit 1
  fi
  edge_port=${EDGE_AUTH_DEMO_EDGE_PORT:-8080}
  service_port=${EDGE_AUTH_DEMO_SERVICE_PORT:-8090}
  egress_port=${EDGE_AUTH_DEMO_EGRESS_PORT:-10001}
  admin_port=${EDGE_AUTH_DEMO_EGRESS_ADMIN_PORT:-9902}
  wasm=${EDGE_AUTH_WASM:-$root/target/wasm32-wasip1/release/edge_auth.wasm}
  sed -e "s/\"CLIENT_ID_OF_STEP_6\"/\"$client_id\"/" \
    -e "s/port_value: 8080\b/port_value: $edge_port/; s/port_value: 8090\b/port_value: $service_port/" \
    -e "s/port_value: 10001\b/port_value: $egress_port/; s/port_value: 9902\b/port_value: $admin_port/" \
    -e "s|127.0.0.1:8090|127.0.0.1:$service_port|; s|filename: target/.*|filename: $wasm|" \
    envoy/egress-demo.yaml > "$run/egress.yaml"
  "$(cat "$run/envoy-bin")" -c "$run/egress.yaml" --concurrency 2 --disable-hot-restart \
    </dev/null >"$run/egress.log" 2>&1 &
  pid=$!
  echo "$pid" > "$run/egress.pid"
  egress_stat() { curl -s "127.0.0.1:$admin_port/stats?filter=edge_auth.egress.$1\$" | sed -n 's/.*: //p'; }
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "egress: Envoy stopped, see .run/egress.log" >&2; exit 1; }
    if [ "$(egress_stat token_fetch_ok)" = 1 ]; then
      echo "egress: Envoy (pid $pid) on 127.0.0.1:$egress_port, admin 127.0.0.1:$admin_port, holds a token for $client_id"
      exit 0
    fi
    [ "$(egress_stat token_rejected)" = 1 ] && { echo "egress: the service rejected the client's credentials" >&2; exit 1; }
    sleep 0.1
  done
  echo "egress: no token after 10 s, see .run/egress.log" >&2
  exit 1
fi

envoy_bin=${1:?usage: envoy/demo.sh ENVOY_BINARY}

random_hex() { openssl rand -hex 32 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(32))'; }

export EDGE_AUTH_DEMO_HS256_SECRET="${EDGE_AUTH_DEMO_HS256_SECRET:-$(random_hex)}"
export EDGE_AUTH_ADMIN_TOKEN="${EDGE_AUTH_ADMIN_TOKEN:-$(random_hex)}"
export EDGE_AUTH_SERVICE_TOKEN="${EDGE_AUTH_SERVICE_TOKEN:-$(random_hex)}"
# shared by the service (it tags the keys it mints) and the edge (it refuses an
# invented key without a lookup): api_keys.key_tags in envoy/envoy.yaml
export EDGE_AUTH_KEY_TAG_SECRET="${EDGE_AUTH_KEY_TAG_SECRET:-$(random_hex)}"

mkdir -p "$run"
(
  umask 077
  printf '%s' "$EDGE_AUTH_DEMO_HS256_SECRET" > "$run/demo-hs256-secret"
  printf '%s' "$EDGE_AUTH_ADMIN_TOKEN" > "$run/admin-token"
)
# for `envoy/demo.sh egress` (step 8)
printf '%s' "$envoy_bin" > "$run/envoy-bin"
rm -f "$run/egress.pid"

pids=()
cleanup() {
  [ -r "$run/egress.pid" ] && pids+=("$(cat "$run/egress.pid")")
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$run/demo-hs256-secret" "$run/admin-token" "$run/envoy-bin" "$run/egress.pid"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_port() { # name port pid
  for _ in $(seq 1 100); do
    kill -0 "$3" 2>/dev/null || { echo "run: $1 did not start (is port $2 in use?)" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run: $1 is not listening on $2" >&2
  exit 1
}

echo "run: auth service on 127.0.0.1:8090 (database .run/auth.db)"
"$root/target/debug/edge-auth-service" serve --db "$run/auth.db" --listen 127.0.0.1:8090 \
  --issuer http://127.0.0.1:8090 --audience edge-auth-demo &
pids+=($!)
wait_for_port "the auth service" 8090 "${pids[-1]}"

echo "run: demo upstream on 127.0.0.1:8081"
"$root/target/debug/demo-upstream" --port 8081 &
pids+=($!)
wait_for_port "the demo upstream" 8081 "${pids[-1]}"

cat <<'EOF'

In another terminal, from this directory:

  # 1. A tenant and an API key for its backend (admin API; the raw key is shown once)
  ADMIN="Authorization: Bearer $(cat .run/admin-token)"
  curl -s -X POST localhost:8090/admin/v1/tenants -H "$ADMIN" -H 'content-type: application/json' \
    -d '{"name":"acme","allowed_origins":["https://app.acme.example"],"ip_allowlist":["127.0.0.1"]}'
  KEY=$(curl -s -X POST localhost:8090/admin/v1/tenants/acme/keys -H "$ADMIN" \
    -H 'content-type: application/json' -d '{"subject":"svc-web","scopes":["orders:read"]}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')

  # 2. The backend asks for a session for its user, through the edge (SDK route: allowed IPs only)
  SESSION=$(curl -s -X POST localhost:8080/v1/sessions -H "x-api-key: $KEY" \
    -H 'content-type: application/json' -d '{"subject":"user-123"}')
  ACCESS=$(echo "$SESSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  REFRESH=$(echo "$SESSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')

  # 3. The user's browser calls a user route: the edge checks the token against the
  #    service's JWKS, the Origin and the scope, and forwards x-auth-* identity headers
  curl -s localhost:8080/api/orders -H "Authorization: Bearer $ACCESS" -H 'Origin: https://app.acme.example'
  curl -i localhost:8080/api/orders -H "Authorization: Bearer $ACCESS" -H 'Origin: https://evil.example'

  # 4. Log out: the session is revoked. Its refresh token is refused (401 invalid_grant), and
  #    within one revocation poll (2 s here) the edge refuses its access token too (401)
  curl -s -X POST localhost:8080/v1/sessions/logout -H "x-api-key: $KEY" \
    -H 'content-type: application/json' -d "{\"refresh_token\":\"$REFRESH\"}"
  curl -i -X POST localhost:8080/v1/sessions/refresh -H "x-api-key: $KEY" \
    -H 'content-type: application/json' -d "{\"refresh_token\":\"$REFRESH\"}"
  sleep 3; curl -i localhost:8080/api/orders -H "Authorization: Bearer $ACCESS" -H 'Origin: https://app.acme.example'

  # 5. Server-to-server: the backend calls a partner route with its API key. The edge looks the
  #    key up once (its SHA-256 only), caches the answer, applies the tenant's IP allowlist and
  #    the key's scopes, and forwards x-edge-auth-* identity headers instead of the key
  curl -s localhost:8080/partner/orders -H "x-api-key: $KEY"
  # an invented key: 401 "the API key was not issued by this service", without a lookup
  curl -i localhost:8080/partner/orders -H "x-api-key: sk_$(printf '0%.0s' $(seq 64))"

  # 6. A machine client (a scheduled job of acme) gets a token of its own from the service
  #    with the client-credentials grant (its secret is shown once), and calls a route as
  #    itself: the upstream sees x-auth-subject: mc_... (the client id). Disabling the client
  #    ends its tokens at the edge within one revocation poll (401 "the token has been revoked")
  CLIENT=$(curl -s -X POST localhost:8090/admin/v1/tenants/acme/clients -H "$ADMIN" \
    -H 'content-type: application/json' -d '{"audiences":["edge-auth-demo"],"scopes":["orders:read"]}')
  CLIENT_ID=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
  CLIENT_SECRET=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
  MACHINE=$(curl -s -X POST localhost:8090/oauth/token -u "$CLIENT_ID:$CLIENT_SECRET" \
    -d grant_type=client_credentials | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s localhost:8080/hello -H "Authorization: Bearer $MACHINE"
  curl -s -X POST localhost:8090/admin/v1/clients/$CLIENT_ID/disable -H "$ADMIN"
  sleep 3; curl -i localhost:8080/hello -H "Authorization: Bearer $MACHINE"

  # 7. Machines and users apart. Enable the client again: its old token stays revoked (401),
  #    a new one passes the machine-only /internal/* (x-edge-auth-method: client) and gets
  #    403 caller_not_allowed on the user-only /api/*
  curl -s -X POST localhost:8090/admin/v1/clients/$CLIENT_ID/enable -H "$ADMIN"
  curl -i localhost:8080/internal/jobs -H "Authorization: Bearer $MACHINE"
  MACHINE=$(curl -s -X POST localhost:8090/oauth/token -u "$CLIENT_ID:$CLIENT_SECRET" \
    -d grant_type=client_credentials | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s localhost:8080/internal/jobs -H "Authorization: Bearer $MACHINE"
  curl -i localhost:8080/api/orders -H "Authorization: Bearer $MACHINE" -H 'Origin: https://app.acme.example'

  # 8. Egress: the job sends plain requests, and an Envoy on its way out adds its token.
  #    This starts a second Envoy (envoy/egress-demo.yaml; 127.0.0.1:10001, admin 9902)
  #    whose edge-auth filter fetches a token for the client of step 6 from the service's
  #    /oauth/token (the secret only in that Envoy's environment) and adds it to requests
  #    for /internal/*, which go on to the edge above: 200, x-edge-auth-method: client.
  #    The same request sent to the edge directly: 401. egress.token_fetch_ok: 1,
  #    one token for the whole Envoy (both workers), and egress.injected: 1
  EDGE_AUTH_EGRESS_CLIENT_SECRET="$CLIENT_SECRET" envoy/demo.sh egress "$CLIENT_ID"
  curl -i localhost:10001/internal/jobs
  curl -i localhost:8080/internal/jobs
  curl -s localhost:9902/stats | grep edge_auth.egress

  # A demo HS256 token, for the plain JWT walkthrough in README.md
  TOKEN=$(make -s token)
  curl -s localhost:8080/hello -H "Authorization: Bearer $TOKEN"

  curl -s localhost:9901/stats | grep edge_auth
EOF
echo
echo "run: $envoy_bin -c envoy/envoy.yaml --concurrency 2 (Ctrl-C stops everything)"
"$envoy_bin" -c envoy/envoy.yaml --concurrency 2 &
pids+=($!)
wait "${pids[-1]}"
