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
  if ! (cd "$mod" && go test -run '^$' -fuzz "^${name}\$" -fuzztime "$budget" "$pkg"); then
    failed+=("$dir $name")
  fi
done
echo "fuzz: ${#targets[@]} targets, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "  FAILED: $f"; done
[ "${#failed[@]}" -eq 0 ]
