#!/usr/bin/env bash
# deps.sh: install everything meshlens' tests and `make run` use, on a fresh
# Debian machine. Idempotent: it installs only what is missing.
#
#   scripts/deps.sh run    # what `make run` needs: ClickHouse, npm packages
#   scripts/deps.sh test   # plus Prometheus, Alertmanager, Chromium, ZooKeeper (the ClickHouse
#                          # cluster tests), telemetrygen
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mode="${1:-test}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Debian packages: ClickHouse always; the test peers only for tests (zip: the Grafana plugin's package).
want=(clickhouse-server)
if [ "$mode" = test ]; then
  want+=(prometheus prometheus-alertmanager chromium iproute2 zookeeper zip)
fi
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# telemetrygen, the collector-contrib load generator, pinned to a release the
# Go module proxy serves.
if [ "$mode" = test ] && [ ! -x "$root/.run/bin/telemetrygen" ]; then
  echo "deps: installing telemetrygen into .run/bin" >&2
  GOBIN="$root/.run/bin" go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0
fi

# The UI's npm packages (Vite, TypeScript, the graph library, playwright-core),
# and for tests the Grafana plugin's (@grafana/data, @grafana/ui, @grafana/runtime, Vitest).
npm_dirs=(ui/web)
[ "$mode" = test ] && npm_dirs+=(ui/grafana)
for d in "${npm_dirs[@]}"; do
  if [ -f "$root/$d/package-lock.json" ] && command -v npm >/dev/null 2>&1; then
    if [ ! -d "$root/$d/node_modules" ] || [ "$root/$d/package-lock.json" -nt "$root/$d/node_modules/.package-lock.json" ]; then
      echo "deps: installing the npm packages of $d" >&2
      (cd "$root/$d" && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
  fi
done
