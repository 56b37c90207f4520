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

find_server() {
  for c in clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  if command -v clickhouse >/dev/null 2>&1; then echo "$(command -v clickhouse) server"; return 0; fi
  return 1
}

install_server() {
  echo "clickhouse: no server found; installing the Debian package clickhouse-server" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d keeps the package from starting a system service we do not want.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clickhouse-server >&2
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

write_config() {
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/log" "$dir/format_schemas"
  cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog><size>10M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$port</tcp_port>
  <http_port>$http_port</http_port>
  <max_connections>512</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>1073741824</uncompressed_cache_size>
  <mark_cache_size>536870912</mark_cache_size>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
XML
  cat > "$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage><load_balancing>random</load_balancing></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}

start() {
  if running; then echo "clickhouse://127.0.0.1:$port/meshlens"; return 0; fi
  local server
  server=$(find_server) || { install_server; server=$(find_server); }
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
