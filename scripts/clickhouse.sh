#!/usr/bin/env bash
# clickhouse.sh: install (if missing) and run a ClickHouse server owned by this checkout.
#
#   scripts/clickhouse.sh start   # idempotent; prints the DSN
#   scripts/clickhouse.sh stop
#   scripts/clickhouse.sh dsn
#
# The server listens on loopback only, keeps its data under .run/clickhouse and
# never touches a system-wide installation. CLICKHOUSE_PORT overrides the native
# port (the HTTP port is 123 above it) and CLICKHOUSE_DIR the data directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="${CLICKHOUSE_DIR:-$root/.run/clickhouse}"
port="${CLICKHOUSE_PORT:-19000}"
http_port=$((port + 123)) # clear of meshlens' defaults (4317, 4318, 19001, 15010)
pidfile="$dir/clickhouse.pid"
# shellcheck source=scripts/clickhouse-lib.sh
. "$root/scripts/clickhouse-lib.sh"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

write_config() {
  write_server_config "$dir" "$port" "$http_port" "$dir/users.xml" 512 1073741824 536870912
  write_users_config "$dir/users.xml" "<max_memory_usage>4000000000</max_memory_usage><load_balancing>random</load_balancing>"
}

start() {
  if running; then echo "clickhouse://127.0.0.1:$port/meshlens"; return 0; fi
  local server
  server=$(find_server) || { apt_install clickhouse-server; server=$(find_server); }
  write_config
  # shellcheck disable=SC2086
  nohup $server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if ! running; then
      echo "clickhouse: the server exited at start; see $dir/log/" >&2
      tail -20 "$dir/log/stdout.log" "$dir/log/error.log" >&2 2>/dev/null || true
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "clickhouse: ready on 127.0.0.1:$port (data in $dir)" >&2
      echo "clickhouse://127.0.0.1:$port/meshlens"
      return 0
    fi
    sleep 0.5
  done
  echo "clickhouse: did not start within 60s; see $dir/log/" >&2
  tail -20 "$dir/log/stdout.log" "$dir/log/error.log" >&2 2>/dev/null || true
  return 1
}

stop() {
  running || return 0
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  dsn) echo "clickhouse://127.0.0.1:$port/meshlens" ;;
  *) echo "usage: $0 start|stop|dsn" >&2; exit 2 ;;
esac
