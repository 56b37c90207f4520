#!/usr/bin/env bash
# clickhouse-cluster.sh: run a ClickHouse cluster owned by this checkout, on
# loopback: ZooKeeper and four ClickHouse servers, 2 shards x 2 replicas, as
# the cluster named "meshlens". It is what the cluster tests use, and what
# `meshlens serve --clickhouse-cluster meshlens` expects.
#
#   scripts/clickhouse-cluster.sh start        # idempotent: starts what is not running; prints the DSN
#   scripts/clickhouse-cluster.sh stop         # stops everything
#   scripts/clickhouse-cluster.sh status       # what runs, and the shard/replica each server is
#   scripts/clickhouse-cluster.sh dsn          # clickhouse://every node/meshlens
#   scripts/clickhouse-cluster.sh kill NAME    # SIGKILL one process (ch1..ch4, zookeeper); `start` brings it back
#
# Everything runs as you, with config, data and logs under
# .run/clickhouse-cluster (CLICKHOUSE_CLUSTER_DIR). Ports start at
# CLICKHOUSE_CLUSTER_PORT (default 19200): native ports BASE..BASE+3, HTTP
# BASE+10.., interserver (replication) BASE+20.., ZooKeeper BASE+80.
# ZooKeeper is the Debian package's jar run as a plain process, not its service.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="${CLICKHOUSE_CLUSTER_DIR:-$root/.run/clickhouse-cluster}"
base="${CLICKHOUSE_CLUSTER_PORT:-19200}"
cluster=meshlens
zk_port=$((base + 80))
nodes=(ch1 ch2 ch3 ch4)
# shellcheck source=scripts/clickhouse-lib.sh
. "$root/scripts/clickhouse-lib.sh"

# node_index NAME -> 0..3; shard and replica of each node.
node_index() { echo $((${1#ch} - 1)); }
shard_of() { echo $(($1 / 2 + 1)); }
replica_of() { echo $(($1 % 2 + 1)); }
tcp_port() { echo $((base + $1)); }

zk_jar=/usr/share/java/zookeeper.jar

pidfile() { echo "$dir/$1/pid"; }
running() { local p; p=$(pidfile "$1"); [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The cluster as every server sees it: remote_servers, ZooKeeper, distributed DDL.
cluster_xml() {
  local s r i
  echo "  <remote_servers><$cluster>"
  for s in 1 2; do
    # internal_replication: a Distributed insert writes one replica of the
    # shard, and ReplicatedMergeTree copies it to the other.
    echo "    <shard><internal_replication>true</internal_replication>"
    for r in 1 2; do
      i=$(((s - 1) * 2 + r - 1))
      echo "      <replica><host>127.0.0.1</host><port>$(tcp_port $i)</port></replica>"
    done
    echo "    </shard>"
  done
  echo "  </$cluster></remote_servers>"
  cat <<XML
  <zookeeper>
    <node><host>127.0.0.1</host><port>$zk_port</port></node>
    <session_timeout_ms>6000</session_timeout_ms>
    <operation_timeout_ms>3000</operation_timeout_ms>
  </zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
XML
}

write_node_config() {
  local name=$1 i extra; i=$(node_index "$1")
  extra="  <interserver_http_port>$((base + 20 + i))</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <macros><shard>$(shard_of "$i")</shard><replica>s$(shard_of "$i")r$(replica_of "$i")</replica></macros>
$(cluster_xml)"
  write_server_config "$dir/$name" "$(tcp_port "$i")" $((base + 10 + i)) "$dir/users.xml" 256 0 134217728 "$extra"
}

write_shared_config() {
  mkdir -p "$dir/zookeeper/data" "$dir/zookeeper/log"
  # load_balancing in_order: the first live replica of a shard serves reads and
  # writes, so what meshlens writes it reads back at once. A small background
  # pool: four servers share this machine.
  write_users_config "$dir/users.xml" "<max_memory_usage>2000000000</max_memory_usage><load_balancing>in_order</load_balancing><background_pool_size>4</background_pool_size><background_schedule_pool_size>4</background_schedule_pool_size>"
  cat > "$dir/zookeeper/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/zookeeper/data
clientPort=$zk_port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat
autopurge.purgeInterval=1
CFG
}

# wait_up NAME PORT: until the port answers, or fail showing the logs.
wait_up() {
  local name=$1 port=$2
  for _ in $(seq 1 120); do
    if ! running "$name"; then
      echo "clickhouse-cluster: $name exited at start; see $dir/$name/log/" >&2
      tail -20 "$dir/$name"/log/*.log >&2 2>/dev/null || true
      return 1
    fi
    if port_open "$port"; then return 0; fi
    sleep 0.5
  done
  echo "clickhouse-cluster: $name did not start within 60s; see $dir/$name/log/" >&2
  tail -20 "$dir/$name"/log/*.log >&2 2>/dev/null || true
  return 1
}

start_zookeeper() {
  running zookeeper && return 0
  [ -f "$zk_jar" ] || apt_install zookeeper
  # slf4j-simple (a dependency of the package) gives the server a log.
  local cp="$zk_jar"
  [ -f /usr/share/java/slf4j-simple.jar ] && cp="$cp:/usr/share/java/slf4j-simple.jar"
  nohup java -Xms64m -Xmx256m -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -Dzookeeper.admin.enableServer=false -cp "$cp" org.apache.zookeeper.server.ZooKeeperServerMain \
    "$dir/zookeeper/zoo.cfg" >"$dir/zookeeper/log/zookeeper.log" 2>&1 9>&- &
  echo $! > "$(pidfile zookeeper)"
}

start_node() {
  local name=$1 server
  running "$name" && return 0
  server=$(find_server) || { apt_install clickhouse-server; server=$(find_server); }
  write_node_config "$name"
  # shellcheck disable=SC2086
  nohup $server --config-file="$dir/$name/config.xml" >"$dir/$name/log/stdout.log" 2>&1 9>&- &
  echo $! > "$(pidfile "$name")"
}

dsn() {
  local hosts=() i
  for i in 0 1 2 3; do hosts+=("127.0.0.1:$(tcp_port $i)"); done
  echo "clickhouse://$(IFS=,; echo "${hosts[*]}")/meshlens"
}

start() {
  mkdir -p "$dir"
  # One start at a time: tests in several packages may call it at once.
  exec 9>"$dir/start.lock"
  flock 9
  write_shared_config
  start_zookeeper
  wait_up zookeeper "$zk_port"
  local n
  for n in "${nodes[@]}"; do start_node "$n"; done
  for n in "${nodes[@]}"; do wait_up "$n" "$(tcp_port "$(node_index "$n")")"; done
  echo "clickhouse-cluster: ready: cluster $cluster, 2 shards x 2 replicas on 127.0.0.1:$base-$((base + 3)), ZooKeeper on $zk_port (data in $dir)" >&2
  dsn
}

stop_one() {
  local name=$1 pid
  running "$name" || { rm -f "$(pidfile "$name")"; return 0; }
  pid=$(cat "$(pidfile "$name")")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$(pidfile "$name")"; return 0; }; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$(pidfile "$name")"
}

stop() {
  local n
  for n in "${nodes[@]}"; do stop_one "$n" & done
  wait
  stop_one zookeeper
}

kill_one() {
  local name=$1
  case "$name" in ch[1-4]|zookeeper) ;; *) echo "kill: want ch1..ch4 or zookeeper, not $name" >&2; exit 2 ;; esac
  running "$name" || return 0
  kill -9 "$(cat "$(pidfile "$name")")"
  rm -f "$(pidfile "$name")"
}

status() {
  local n i state rc=0
  for n in zookeeper "${nodes[@]}"; do
    if running "$n"; then state="running (pid $(cat "$(pidfile "$n")"))"; else state=stopped; rc=3; fi
    if [ "$n" = zookeeper ]; then
      echo "zookeeper  127.0.0.1:$zk_port  $state"
    else
      i=$(node_index "$n")
      echo "$n        127.0.0.1:$(tcp_port "$i")  shard $(shard_of "$i") replica $(replica_of "$i")  $state"
    fi
  done
  return $rc
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  dsn) dsn ;;
  kill) kill_one "${2:?kill: which process (ch1..ch4, zookeeper)}" ;;
  *) echo "usage: $0 start|stop|status|dsn|kill NAME" >&2; exit 2 ;;
esac
