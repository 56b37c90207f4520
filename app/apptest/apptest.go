// Package apptest runs a whole meshlens (package app, as `meshlens serve`
// builds it) inside a test: every listener on a free loopback port, a
// ClickHouse database of the test's own, a data dir under t.TempDir, and
// Kubernetes off unless the arguments say otherwise.
package apptest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store/storetest"
)

// Server is a running meshlens.
type Server struct {
	// URL is the base URL of the HTTP API and UI.
	URL string
	// Config is what the server was built from: its listen addresses and
	// data dir.
	Config app.Config
	// App is the server itself.
	App *app.App

	log *meshtest.LogBuffer
}

// Start builds meshlens from the flags of `meshlens serve` in args (over
// free loopback ports, a fresh ClickHouse database, a temporary data dir
// and --kubeconfig none), runs it, and waits until /readyz answers 200. It
// stops when the test ends; its log is printed if the test failed.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	base := []string{"--http", meshtest.FreeAddr(t), "--xds", meshtest.FreeAddr(t), "--otlp-grpc", meshtest.FreeAddr(t), "--otlp-http", meshtest.FreeAddr(t),
		"--als", meshtest.FreeAddr(t), "--data-dir", t.TempDir(), "--clickhouse", storetest.DSN(t), "--kubeconfig", "none"}
	log := &meshtest.LogBuffer{}
	cfg, err := app.LoadConfig(append(base, args...), log)
	if err != nil {
		t.Fatalf("meshlens serve %s: %v\n%s", strings.Join(args, " "), err, log)
	}
	logger, err := app.NewLogger(log, "debug")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatalf("build meshlens: %v\n%s", err, log)
	}
	s := &Server{URL: "http://" + cfg.HTTP, Config: cfg, App: a, log: log}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("meshlens stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("meshlens did not stop within 30s")
		}
		a.Close()
		if t.Failed() {
			t.Logf("meshlens log:\n%s", log)
		}
	})
	if err := s.waitReady(done); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	return s
}

// waitReady polls /readyz until it answers 200, Run fails, or a minute
// passes.
func (s *Server) waitReady(done <-chan error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("meshlens stopped (%v) before it was ready", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("meshlens was not ready within a minute (last: %v)", err)
		}
	}
}

// Token is the operator token meshlens generated in its data dir (empty
// with --tokens).
func (s *Server) Token(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.Config.DataDir, auth.TokenFile))
	if err != nil {
		t.Fatalf("operator token: %v", err)
	}
	return strings.TrimSpace(string(data))
}

// Log is what meshlens logged so far.
func (s *Server) Log() string { return s.log.String() }
