//go:build tools

// Package k8senv pins the Kubernetes control-plane binaries the tests run:
// kube-apiserver, etcd and kubectl, built from their Go modules by
// scripts/k8s-bins.sh. It lives in its own module so that meshlens' go.mod
// never depends on k8s.io/kubernetes.
package k8senv

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
