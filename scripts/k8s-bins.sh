#!/usr/bin/env bash
# k8s-bins.sh: build the Kubernetes control-plane binaries the tests run
# (etcd, kube-apiserver, kubectl) from their Go modules, once per machine.
#
# The versions are pinned by test/k8senv/go.mod; the binaries are cached in
# .run/k8s/<hash of that module's go.sum>/, so a change of version rebuilds
# and an unchanged one costs nothing. Prints the cache directory.
# A cold build takes 10-15 minutes on two cores; progress goes to stderr.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/test/k8senv"
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
out="$root/.run/k8s/$key"
bins=(etcd kube-apiserver kubectl)

have=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || have=0; done
if [ "$have" = 1 ]; then echo "$out"; exit 0; fi

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
for b in "${bins[@]}"; do [ -x "$out/$b" ] || have=0; done

kver=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit} $1=="require" && $2=="k8s.io/kubernetes" {print $3; exit}' "$mod/go.mod")
[ -n "$kver" ] || { echo "k8s-bins: no k8s.io/kubernetes version in $mod/go.mod" >&2; exit 1; }
minor=$(echo "$kver" | cut -d. -f2)
ldf="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldf="$ldf -X $p.gitVersion=$kver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
build() { # name package
  [ -x "$out/$1" ] && return 0
  echo "k8s-bins: building $1 ($kver) into $out; the first build takes minutes" >&2
  local start=$SECONDS
  (cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldf" -o "$out/$1.tmp" "$2")
  mv "$out/$1.tmp" "$out/$1"
  echo "k8s-bins: $1 built in $((SECONDS - start)) s" >&2
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl
echo "$out"
