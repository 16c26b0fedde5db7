#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the sweep tests (tests/test_sweep_postgres.py).
#
#   source .ci/postgres.sh start [ENV_FILE]   start it and export FASTNN_TEST_POSTGRES_URL here
#   .ci/postgres.sh start [ENV_FILE]          start it; the exports are written to ENV_FILE
#   .ci/postgres.sh stop [ENV_FILE]           stop it and delete its data
#
# ENV_FILE (default .ci-cache/postgres.env) holds `export FASTNN_TEST_POSTGRES_URL=...` and the
# server's folder. The server listens on 127.0.0.1 only, on a free port, with a random password;
# its data, socket and log live in a fresh /tmp/fastnn-postgres.* folder. The PostgreSQL server
# binaries are used where installed (Debian's /usr/lib/postgresql/*/bin, or pg_ctl on PATH);
# without them `start` exits 3 (it never installs packages: .ci/run does). As root the server runs
# as the `postgres` user, since PostgreSQL refuses to run as root.

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then  # sourced: run as a script, then read its exports
  bash "${BASH_SOURCE[0]}" "$@" || return $?
  if [[ "${1:-start}" == start ]]; then
    # shellcheck disable=SC1090
    source "${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.ci-cache/postgres.env}"
  fi
  return 0
fi

set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMMAND=${1:-start}
ENV_FILE=${2:-$ROOT/.ci-cache/postgres.env}

server_bin() {  # the newest PostgreSQL server's bin folder, or nothing
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [[ -z "$dir" ]] && command -v pg_ctl >/dev/null; then
    dir=$(dirname "$(command -v pg_ctl)")
  fi
  [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && echo "$dir"
}

as_server_user() {  # run a server command as `postgres` when we are root
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local bin base password port url
  bin=$(server_bin) || true
  if [[ -z "$bin" ]]; then  # installing system packages is .ci/run's job, never this script's
    echo "postgres.sh: no PostgreSQL server binaries found; install the postgresql package" >&2
    exit 3
  fi
  base=$(mktemp -d /tmp/fastnn-postgres.XXXXXX)
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$password" >"$base/pwfile"
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres:postgres "$base"
  fi
  as_server_user "$bin/initdb" -D "$base/data" -U fastnn --pwfile="$base/pwfile" \
    --auth=scram-sha-256 -E UTF8 >"$base/initdb.log" 2>&1 \
    || { cat "$base/initdb.log" >&2; exit 1; }
  rm -f "$base/pwfile"
  for attempt in 1 2 3; do  # a free port can be taken before the server binds it: try another
    port=$(free_port)
    if as_server_user "$bin/pg_ctl" -D "$base/data" -l "$base/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $base" start >/dev/null; then
      break
    fi
    [[ $attempt -eq 3 ]] && { cat "$base/server.log" >&2; exit 1; }
  done
  PGPASSWORD=$password "$bin/createdb" -h 127.0.0.1 -p "$port" -U fastnn fastnn_test
  url="postgresql://fastnn:$password@127.0.0.1:$port/fastnn_test"
  mkdir -p "$(dirname "$ENV_FILE")"
  cat >"$ENV_FILE" <<EOF
export FASTNN_TEST_POSTGRES_URL='$url'
export FASTNN_TEST_POSTGRES_DIR='$base'
export FASTNN_TEST_POSTGRES_BIN='$bin'
EOF
  echo "PostgreSQL on 127.0.0.1:$port (data in $base); exports in $ENV_FILE"
}

stop() {
  if [[ ! -f "$ENV_FILE" ]]; then
    echo "postgres.sh: $ENV_FILE not found: no server to stop" >&2
    return 0
  fi
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  as_server_user "$FASTNN_TEST_POSTGRES_BIN/pg_ctl" -D "$FASTNN_TEST_POSTGRES_DIR/data" -m fast -w \
    stop >/dev/null || true
  rm -rf "$FASTNN_TEST_POSTGRES_DIR" "$ENV_FILE"
}

case "$COMMAND" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [ENV_FILE]" >&2; exit 2 ;;
esac
