#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL 15 server, and stops the server when
# the command ends, whatever its outcome (Ctrl-C included).
#
#   tools/with-test-postgres.sh cargo test -p edge-auth-service
#
# The server runs from a fresh temporary directory (initdb), as the `postgres`
# user when run as root (PostgreSQL refuses root), listening on a Unix socket in
# that directory only (no TCP port, so nothing to collide with). The command finds
# it through EDGE_AUTH_TEST_PG_URL; EDGE_AUTH_TEST_PG_REQUIRED=1 makes the tests
# fail rather than skip if it is missing. If EDGE_AUTH_TEST_PG_URL is already set,
# the command runs against that server instead.
#
# The binaries: /usr/lib/postgresql/15/bin, else `pg_config --bindir`; Debian's
# postgresql-15 is installed with apt-get when neither has them (root only).
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
if [ -n "${EDGE_AUTH_TEST_PG_URL:-}" ]; then
  export EDGE_AUTH_TEST_PG_REQUIRED=1
  exec "$@"
fi

find_bindir() {
  for d in /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null || true)"; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

bindir=$(find_bindir || true)
if [ -z "$bindir" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "postgres: no PostgreSQL 15 server binaries found; install Debian's postgresql-15 (as root)" >&2
    exit 1
  fi
  echo "postgres: apt-get install -y postgresql-15"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 >/dev/null; }
  bindir=$(find_bindir) || { echo "postgres: postgresql-15 installed but initdb/pg_ctl not found" >&2; exit 1; }
fi

as_server=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
  if command -v runuser >/dev/null 2>&1; then
    as_server=(runuser -u postgres --)
  else
    as_server=(su -s /bin/sh postgres -c '"$0" "$@"')
  fi
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/edge-auth-pg.XXXXXX")
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
fi
chmod 0755 "$dir"
port=5432

stop() {
  "${as_server[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

if ! "${as_server[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
    >"$dir/initdb.log" 2>&1; then
  echo "postgres: initdb failed:" >&2
  cat "$dir/initdb.log" >&2
  exit 1
fi
# Throw-away data: no fsync. Room for every test's pools at once.
if ! "${as_server[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c port=$port -c max_connections=400 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null; then
  echo "postgres: the server did not start:" >&2
  cat "$dir/server.log" >&2 || true
  exit 1
fi
echo "postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on $dir/.s.PGSQL.$port"

export EDGE_AUTH_TEST_PG_URL="postgresql://postgres@localhost/postgres?host=$dir&port=$port"
export EDGE_AUTH_TEST_PG_REQUIRED=1
"$@"
