package kube

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRESTConfigFollowsTheKubeconfigFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kubeconfig")
	body := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for _, tc := range []struct {
		name, flag, env string
		wantHost        string
		wantOff         bool
		wantErr         bool
	}{
		{name: "none turns it off even with KUBECONFIG", flag: "none", env: file, wantOff: true},
		{name: "a path", flag: file, wantHost: "https://127.0.0.1:6443"},
		{name: "KUBECONFIG when the flag is unset", env: file, wantHost: "https://127.0.0.1:6443"},
		{name: "off outside a pod without KUBECONFIG", wantOff: true},
		{name: "a missing file is an error naming it", flag: filepath.Join(dir, "missing"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tc.env)
			cfg, err := RESTConfig(tc.flag)
			switch {
			case tc.wantOff:
				if !errors.Is(err, ErrDisabled) {
					t.Fatalf("err = %v, want ErrDisabled", err)
				}
			case tc.wantErr:
				if err == nil || errors.Is(err, ErrDisabled) {
					t.Fatalf("err = %v, want an error", err)
				}
			default:
				if err != nil || cfg.Host != tc.wantHost {
					t.Fatalf("RESTConfig(%q) = %v, %v; want host %s", tc.flag, cfg, err, tc.wantHost)
				}
			}
		})
	}
}
