package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/kubetest"
)

// binary is bin/meshlens built once for the tests that run it as users do.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshlens-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "meshlens")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build meshlens: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	kubetest.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// clickhouseServer is a ClickHouse of the test's own, started by the same
// script `make` uses, so that the test may stop and start it.
type clickhouseServer struct {
	t         testing.TB
	dir, port string
}

func startClickHouse(t testing.TB) *clickhouseServer {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	c := &clickhouseServer{t: t, dir: t.TempDir(), port: port}
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

func (c *clickhouseServer) script(verb string) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(c.t), "scripts", "clickhouse.sh"), verb)
	cmd.Env = append(os.Environ(), "CLICKHOUSE_DIR="+c.dir, "CLICKHOUSE_PORT="+c.port)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("clickhouse.sh %s: %v\n%s", verb, err, out)
	}
}

func (c *clickhouseServer) Start()      { c.script("start") }
func (c *clickhouseServer) Stop()       { c.script("stop") }
func (c *clickhouseServer) DSN() string { return "clickhouse://127.0.0.1:" + c.port + "/meshlens" }

// meshlensProcess is `meshlens serve` running as a child process.
type meshlensProcess struct {
	cmd  *exec.Cmd
	http string
	done chan error
	mu   sync.Mutex
	log  strings.Builder
}

func startMeshlens(t testing.TB, args ...string) *meshlensProcess {
	t.Helper()
	return startMeshlensAt(t, freeAddr(t), args...)
}

// startMeshlensAt is startMeshlens with the HTTP address given, for replicas
// that must know each other's before they start.
func startMeshlensAt(t testing.TB, httpAddr string, args ...string) *meshlensProcess {
	t.Helper()
	p := &meshlensProcess{http: httpAddr, done: make(chan error, 1)}
	// Every listener on a free port, unless the test says otherwise.
	base := []string{"serve", "--http", p.http, "--xds", freeAddr(t), "--otlp-grpc", freeAddr(t), "--otlp-http", freeAddr(t), "--als", freeAddr(t)}
	p.cmd = exec.Command(binary, append(base, args...)...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.Running() {
			p.Stop(t)
		}
		if t.Failed() {
			t.Logf("meshlens log:\n%s", p.Log())
		}
	})
	// With TLS, readiness is asked as Kubernetes asks it: over TLS, not
	// verifying the server, with no client certificate.
	readyURL, client := "http://"+p.http+"/readyz", http.DefaultClient
	if slices.Contains(args, "--tls-cert") {
		readyURL = "https://" + p.http + "/readyz"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if !p.Running() || time.Now().After(deadline) {
			t.Fatalf("meshlens serve did not become ready:\n%s", p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *meshlensProcess) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Running reports whether the process has not exited.
func (p *meshlensProcess) Running() bool {
	return p.cmd.ProcessState == nil && len(p.done) == 0
}

// Stop sends SIGTERM and expects a clean exit.
func (p *meshlensProcess) Stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("meshlens exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("meshlens did not stop within 30s of SIGTERM")
	}
}

// metric reads one sample of meshlens' /metrics.
func (p *meshlensProcess) metric(t testing.TB, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			var v float64
			fmt.Sscanf(strings.TrimPrefix(line, series+" "), "%g", &v)
			return v
		}
	}
	return 0
}

func TestUnknownCommandPrintsUsage(t *testing.T) {
	out, err := exec.CommandContext(context.Background(), binary, "frobnicate").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown command") || !strings.Contains(string(out), "serve") {
		t.Fatalf("meshlens frobnicate: %v\n%s", err, out)
	}
}

func TestServeRejectsBadFlagsNamingThem(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--http", "nonsense"}, "--http"},
		{[]string{"--otlp-grpc", "nope"}, "--otlp-grpc"},
		{[]string{"--clickhouse", "mysql://x"}, "--clickhouse"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--inbound-access-logs", "some"}, `--inbound-access-logs "some": want "outside-mesh" or "all"`},
		{[]string{"--traffic-provider", "linkerd"}, `--traffic-provider "linkerd": want one of meshlens, istio, gatewayAPI`},
		{[]string{"--traffic-provider", "istio", "--kubeconfig", "none", "--clickhouse-wait", "1ms"}, "--traffic-provider istio writes routes to the Kubernetes API: it needs the cluster"},
		{[]string{"--peers", "replica-a,replica-b:8080"}, `--peers "replica-a,replica-b:8080": want a comma-separated list of host:port`},
		{[]string{"--peers-service", "meshlens-peers"}, `--peers-service "meshlens-peers": want NAMESPACE/NAME`},
		{[]string{"--peer-timeout", "0s"}, "--peer-timeout 0s: want a positive duration"},
		{[]string{"--peer-ca", "ca.pem"}, "--peer-ca"},
		{[]string{"--leader-elect", "--follower"}, "--follower is for replicas outside Kubernetes"},
		{[]string{"--leader-elect", "--leader-elect-lease-duration", "5s"}, "--leader-elect-lease-duration 5s must be longer than --leader-elect-renew-deadline 10s"},
		{[]string{"--leader-elect", "--kubeconfig", "none", "--clickhouse-wait", "1ms"}, "--leader-elect holds a Lease in Kubernetes: it needs the cluster"},
		{[]string{"--peers-service", "ns/meshlens-peers", "--kubeconfig", "none", "--clickhouse-wait", "1ms"}, "--peers-service reads the Service's endpoints from Kubernetes: it needs the cluster"},
	} {
		cmd := exec.Command(binary, append([]string{"serve", "--data-dir", t.TempDir()}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("serve %v: %v\n%s", tc.args, err, out)
		}
	}
}

func TestServeReadsItsSettingsFromAConfigFile(t *testing.T) {
	otlp := freeAddr(t)
	file := filepath.Join(t.TempDir(), "meshlens.yaml")
	body := "otlp-grpc: " + otlp + "\nclickhouse-wait: 1s\nqueue-max-bytes: 2097152\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// The flag --otlp-grpc given by startMeshlens is overridden below by the
	// file only where the flag is absent, so name the file last and drop the
	// flag: flags win over the file.
	p := startMeshlens(t, "--config", file, "--otlp-grpc", otlp, "--data-dir", t.TempDir(), "--clickhouse", "clickhouse://127.0.0.1:1/x")
	conn, err := net.DialTimeout("tcp", otlp, 5*time.Second)
	if err != nil {
		t.Fatalf("OTLP/gRPC from the config file is not listening on %s: %v\n%s", otlp, err, p.Log())
	}
	conn.Close()

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("otlp-grcp: 127.0.0.1:1\n"), 0o600)
	out, err := exec.Command(binary, "serve", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "otlp-grcp") {
		t.Fatalf("a misspelt key was accepted: %v\n%s", err, out)
	}
}
