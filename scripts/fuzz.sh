#!/usr/bin/env bash
# fuzz.sh: run every fuzz target of the repository (each `func Fuzz...` in a
# tracked _test.go file, found by grep, so a new target is run without being
# listed anywhere) for a budget each, and name the ones that failed.
#
#   scripts/fuzz.sh [BUDGET]   # BUDGET per target, as go test -fuzztime takes it (default 30s)
#   FUZZ_MATCH=spool scripts/fuzz.sh 10s   # only targets whose "dir name" matches the regexp
#
# `make fuzz` runs it with FUZZTIME (30s), `make test` with FUZZTIME_SHORT (3s).
# A failing input is saved by go test under the package's testdata/fuzz/ and
# is then run by every plain `go test` as a regression case.
set -uo pipefail

budget="${1:-30s}"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# "dir target" for every fuzz target, from the sources.
mapfile -t targets < <(git ls-files '*_test.go' | xargs grep -H -E '^func Fuzz[A-Za-z0-9_]*\(' |
  sed -E 's|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|; s|^[^/ ]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|. \1|' | sort -u)
if [ -n "${FUZZ_MATCH:-}" ]; then
  mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -E -- "$FUZZ_MATCH")
fi
if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi

failed=()
for t in "${targets[@]}"; do
  dir=${t% *}
  name=${t#* }
  # The package's module: the nearest go.mod above it (ui/grafana has its own).
  mod=$dir
  while [ ! -f "$mod/go.mod" ] && [ "$mod" != "." ]; do mod=$(dirname "$mod"); done
  if [ "$mod" = "$dir" ]; then pkg=.; elif [ "$mod" = . ]; then pkg="./$dir"; else pkg="./${dir#"$mod"/}"; fi
  echo "== fuzz $dir $name ($budget)"
  # Go 1.26's fuzz coordinator can end a run at the -fuzztime deadline with a
  # bare "context deadline exceeded" and no failing input (golang/go#75804,
  # fixed in Go 1.27), most often on a busy machine. Such a run is tried
  # once more; a run that found something says "Failing input written".
  for attempt in 1 2; do
    out=$(cd "$mod" && go test -run '^$' -fuzz "^${name}\$" -fuzztime "$budget" "$pkg" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    if [ "$rc" -ne 0 ] && [ "$attempt" -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" &&
      ! grep -q -E 'Failing input written|panic:' <<<"$out"; then
      echo "fuzz: $name stopped at its deadline without a failing input (golang/go#75804): again"
      continue
    fi
    break
  done
  if [ "$rc" -ne 0 ]; then
    failed+=("$dir $name")
  fi
done
echo "fuzz: ${#targets[@]} targets, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "  FAILED: $f"; done
[ "${#failed[@]}" -eq 0 ]
