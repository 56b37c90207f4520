# clickhouse-lib.sh: what scripts/clickhouse.sh (one server) and
# scripts/clickhouse-cluster.sh (four servers and ZooKeeper) share. Sourced,
# not run.

# find_server prints the command that runs a ClickHouse server, if one is
# installed.
find_server() {
  for c in clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  if command -v clickhouse >/dev/null 2>&1; then echo "$(command -v clickhouse) server"; return 0; fi
  return 1
}

# apt_install PACKAGE... installs Debian packages, with sudo when not root.
apt_install() {
  echo "clickhouse: installing the Debian packages $*" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d keeps a package from starting a system service we do not want.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

# write_server_config DIR TCP_PORT HTTP_PORT USERS_XML MAX_CONNECTIONS
# UNCOMPRESSED_CACHE MARK_CACHE [EXTRA_XML] writes DIR/config.xml for a
# server on loopback with its data, logs and temporary files under DIR, in
# the <yandex> form every release from 18.16 on reads.
write_server_config() {
  local d=$1 tcp=$2 http=$3 users=$4 conns=$5 uncompressed=$6 mark=$7 extra=${8:-}
  [ -z "$extra" ] || extra="$extra"$'\n'
  mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/log" "$d/format_schemas"
  cat > "$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$d/log/server.log</log><errorlog>$d/log/error.log</errorlog><size>10M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp</tcp_port>
  <http_port>$http</http_port>
  <max_connections>$conns</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>$uncompressed</uncompressed_cache_size>
  <mark_cache_size>$mark</mark_cache_size>
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <format_schema_path>$d/format_schemas/</format_schema_path>
  <users_config>$users</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
$extra</yandex>
XML
}

# write_users_config FILE PROFILE_XML writes the users file: the default
# user, passwordless from loopback only, with the given default profile
# settings and no quota.
write_users_config() {
  cat > "$1" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default>$2</default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}
