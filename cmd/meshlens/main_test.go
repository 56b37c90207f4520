package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
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

// freeAddr is a loopback address nothing listens on yet.
func freeAddr(t testing.TB) string { return meshtest.FreeAddr(t) }

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
	c := &clickhouseServer{t: t, dir: t.TempDir(), port: clickHousePort(t)}
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

// clickHousePort is a native port for a test's ClickHouse whose HTTP port,
// 123 above it (as scripts/clickhouse.sh sets it), is free too. Both are
// below the kernel's ephemeral range (32768 and up on Linux), so no
// connection's local port can take either before the server binds them:
// with a free port from the kernel, the one 123 above was sometimes some
// connection's, and the server exited at start.
func clickHousePort(t testing.TB) string {
	t.Helper()
	free := func(port int) bool {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return false
		}
		ln.Close()
		return true
	}
	for range 200 {
		p := 20000 + rand.IntN(12000)
		if free(p) && free(p+123) {
			return strconv.Itoa(p)
		}
	}
	t.Fatal("no free pair of loopback ports (native, native+123) between 20000 and 32123 for ClickHouse")
	return ""
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

// meshlensProcess is `meshlens serve` running as a child process
// (meshtest.Serve), http its API's address.
type meshlensProcess struct {
	*meshtest.Serve
	http string
}

func startMeshlens(t testing.TB, args ...string) *meshlensProcess {
	t.Helper()
	return startMeshlensAt(t, freeAddr(t), args...)
}

// startMeshlensAt is startMeshlens with the HTTP address given, for replicas
// that must know each other's before they start.
func startMeshlensAt(t testing.TB, httpAddr string, args ...string) *meshlensProcess {
	t.Helper()
	s := meshtest.StartServeAt(t, binary, httpAddr, args...)
	return &meshlensProcess{Serve: s, http: s.HTTP}
}

// Stop sends SIGINT and expects a clean exit.
func (p *meshlensProcess) Stop(t testing.TB) {
	t.Helper()
	p.StopClean(t)
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
		{[]string{"--gateway-credentials", "vault"}, `--gateway-credentials "vault": want auto or files`},
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
