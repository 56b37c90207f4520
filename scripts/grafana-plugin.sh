#!/usr/bin/env bash
# grafana-plugin.sh: build the meshlens Grafana datasource plugin (unsigned):
# the frontend (ui/grafana/src → dist/module.js), the backend for linux/amd64
# and linux/arm64 (dist/gpx_meshlens_linux_*), and the zip users install,
# bin/meshlens-datasource-VERSION.zip (one folder, meshlens-datasource/).
# Prints the zip's path.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in npm go zip; do
  command -v "$tool" >/dev/null || { echo "grafana-plugin: $tool is missing (zip: apt-get install zip; make test installs it with scripts/deps.sh)" >&2; exit 1; }
done
dir="$root/ui/grafana"
cd "$dir"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "grafana-plugin: installing npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
rm -rf dist
npm run build --silent >&2

for arch in amd64 arm64; do
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "-s -w" -o "dist/gpx_meshlens_linux_$arch" ./pkg
done

version=$(node -p "require('./package.json').version")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/meshlens-datasource" "$root/bin"
cp -a dist/. "$stage/meshlens-datasource/"
rm -f "$stage"/meshlens-datasource/*.map
zip="$root/bin/meshlens-datasource-$version.zip"
rm -f "$zip"
(cd "$stage" && zip -qr "$zip" meshlens-datasource)
echo "$zip"
