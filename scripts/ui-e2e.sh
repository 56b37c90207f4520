#!/usr/bin/env bash
# ui-e2e.sh: the browser tests, against the real thing. Starts `meshlens serve`
# and `meshlens demo` (with reviews v3 failing, for the rollback test) on
# loopback ports of their own, runs the Playwright tests in Debian's Chromium,
# and stops both; then the tests that need the fixture server (a slow
# backend). Screenshots land in ui/web/screenshots/ (git-ignored).
#
# Needs: bin/meshlens built with the UI (make build), ClickHouse (DSN base in
# MESHLENS_TEST_CLICKHOUSE), the UI's npm packages.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
base="${MESHLENS_TEST_CLICKHOUSE:-clickhouse://127.0.0.1:19000/}"
dsn="${base%/}/meshlens_e2e_$$"
data=$(mktemp -d)
http=127.0.0.1:18480
log="$root/ui/web/screenshots"
mkdir -p "$log"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT

bin/meshlens serve --http "$http" --data-dir "$data" --clickhouse "$dsn" \
  --otlp-grpc 127.0.0.1:14417 --otlp-http 127.0.0.1:14418 --als 127.0.0.1:19401 --xds 127.0.0.1:15410 \
  2>"$log/serve.log" &
pids+=($!)
for _ in $(seq 1 120); do
  curl -fsS "http://$http/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://$http/readyz" >/dev/null || { echo "meshlens serve did not start; see $log/serve.log" >&2; exit 1; }

bin/meshlens demo --server "http://$http" --token-file "$data/operator.token" --otlp 127.0.0.1:14417 \
  --xds 127.0.0.1:15410 --control 127.0.0.1:18490 --base-port 19481 --rate 30 --namespace default \
  --fail reviews:v3=0.6 >"$log/demo.log" 2>&1 &
pids+=($!)

cd ui/web
MESHLENS_URL="http://$http" MESHLENS_TOKEN="$(cat "$data/operator.token")" MESHLENS_E2E_NAMESPACE=default MESHLENS_OTLP_HTTP=127.0.0.1:14418 npm run e2e --silent

# What needs a backend slower than any real one (the fixture server, which
# delays every API call), a graph cut by the server's caps or a mesh without
# traffic, or issue 15's 5,000-node graph: the fixture server.
env -u MESHLENS_URL node --test --test-concurrency=1 e2e/slow.test.mjs e2e/fixture.test.mjs e2e/scale.test.mjs
