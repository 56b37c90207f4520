#!/usr/bin/env bash
# run.sh: start meshlens serve and the demo mesh against the checkout's
# ClickHouse, print where to look, and stop everything on Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
http="${HTTP:-127.0.0.1:8080}"
data="${DATA_DIR:-.run/data}"
dsn=$(scripts/clickhouse.sh dsn)
mkdir -p "$data" .run/log

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "meshlens: stopping..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/clickhouse.sh stop
  echo "meshlens: stopped."
}
trap cleanup INT TERM EXIT

bin/meshlens serve --http "$http" --data-dir "$data" --clickhouse "$dsn" 2> >(tee .run/log/serve.log >&2) &
pids+=($!)

for _ in $(seq 1 120); do
  curl -fsS "http://$http/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "meshlens serve exited; see .run/log/serve.log" >&2; exit 1; }
  sleep 0.5
done

if bin/meshlens demo -h >/dev/null 2>&1; then
  bin/meshlens demo --server "http://$http" --token-file "$data/operator.token" >.run/log/demo.log 2>&1 &
  pids+=($!)
  demo="the demo mesh (bookinfo) is running; its log is .run/log/demo.log"
else
  demo="(this build has no demo mesh)"
fi

cat <<MSG

  meshlens is up:   http://$http/
  operator token:   $data/operator.token  (paste it into the UI's login to steer)
  $demo
  metrics:          http://$http/metrics

  Press Ctrl-C to stop everything.

MSG
wait "${pids[0]}"
