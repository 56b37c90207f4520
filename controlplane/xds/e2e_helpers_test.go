package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

// testMesh is a running meshlens xDS server plus the backends and clients a
// test starts against it, all on 127.0.0.1.
type testMesh struct {
	t       testing.TB
	srv     *Server
	reg     *prometheus.Registry
	addr    string
	version uint64
	ids     atomic.Int64
}

func newTestMesh(t testing.TB) *testMesh {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := NewServer(ctx, logger, reg, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.ServeListener(ctx, lis); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &testMesh{t: t, srv: s, reg: reg, addr: lis.Addr().String()}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// apply pushes a YAML config as the next snapshot version.
func (m *testMesh) apply(yaml string) {
	m.t.Helper()
	m.version++
	if err := m.srv.Update(parseSnapshot(m.t, m.version, yaml)); err != nil {
		m.t.Fatalf("Update: %v", err)
	}
}

func (m *testMesh) bootstrap(nodeID string, certs *CertFiles) []byte {
	m.t.Helper()
	bs, err := GRPCBootstrap{ServerAddr: m.addr, NodeID: nodeID, Metadata: map[string]string{MetaNamespace: "default"}, Certs: certs}.JSON()
	if err != nil {
		m.t.Fatal(err)
	}
	return bs
}

// client dials xds:///target as its own xDS node. creds nil means plaintext
// that ignores xDS security; use xdsClientCreds for mesh mTLS.
func (m *testMesh) client(target string, creds credentials.TransportCredentials, certs *CertFiles) testgrpc.TestServiceClient {
	m.t.Helper()
	id := fmt.Sprintf("client-%d", m.ids.Add(1))
	rb, err := xds.NewXDSResolverWithConfigForTesting(m.bootstrap(id, certs))
	if err != nil {
		m.t.Fatal(err)
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(creds))
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

func xdsClientCreds(t *testing.T) credentials.TransportCredentials {
	c, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// backend is a TestService server whose behaviour a test can change.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	name    string
	version string
	port    int

	calls     atomic.Int64
	failCode  atomic.Int32 // non-zero: every call fails with this code
	flakyMod  atomic.Int64 // >1: only every n-th call succeeds
	delay     atomic.Int64 // nanoseconds per call
	inflight  atomic.Int64
	maxFlight atomic.Int64
	release   chan struct{} // if set, calls wait for it (or ctx)
	lastAuth  atomic.Value  // string: the last caller's transport security
}

// recordPeer remembers how the caller connected: "tls:<first URI SAN>" or
// the credentials' auth type.
func (b *backend) recordPeer(ctx context.Context) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		b.lastAuth.Store("none")
		return
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		id := ""
		if cs := ti.State.PeerCertificates; len(cs) > 0 && len(cs[0].URIs) > 0 {
			id = cs[0].URIs[0].String()
		}
		b.lastAuth.Store("tls:" + id)
		return
	}
	b.lastAuth.Store(p.AuthInfo.AuthType())
}

func (b *backend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	n := b.calls.Add(1)
	b.recordPeer(ctx)
	cur := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for {
		old := b.maxFlight.Load()
		if cur <= old || b.maxFlight.CompareAndSwap(old, cur) {
			break
		}
	}
	if d := time.Duration(b.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.release != nil {
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c := codes.Code(b.failCode.Load()); c != codes.OK {
		return nil, status.Errorf(c, "%s fails on purpose", b.name)
	}
	if mod := b.flakyMod.Load(); mod > 1 && n%mod != 0 {
		return nil, status.Errorf(codes.Unavailable, "%s is flaky (call %d)", b.name, n)
	}
	return &testgrpc.SimpleResponse{Hostname: b.name}, nil
}

func (b *backend) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	b.calls.Add(1)
	return &testgrpc.Empty{}, nil
}

// startBackend starts a plain gRPC server (no xDS on the server side).
func startBackend(t *testing.T, name, version string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, version: version, port: lis.Addr().(*net.TCPAddr).Port}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, b)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// startXDSBackend starts a grpc-go xDS server, which takes its listener
// (mTLS, RBAC) from meshlens. It returns before the server is serving; the
// port is known so the config can name it.
func (m *testMesh) startXDSBackend(name, version string, certs *CertFiles) (*backend, <-chan struct{}) {
	m.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.t.Fatal(err)
	}
	b := &backend{name: name, version: version, port: lis.Addr().(*net.TCPAddr).Port}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		m.t.Fatal(err)
	}
	serving := make(chan struct{})
	var once sync.Once
	id := fmt.Sprintf("server-%s-%d", name, m.ids.Add(1))
	s, err := xds.NewGRPCServer(grpc.Creds(creds),
		xds.BootstrapContentsForTesting(m.bootstrap(id, certs)),
		xds.ServingModeCallback(func(_ net.Addr, a xds.ServingModeChangeArgs) {
			if a.Mode == connectivity.ServingModeServing {
				once.Do(func() { close(serving) })
			}
		}))
	if err != nil {
		m.t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(s, b)
	go s.Serve(lis)
	m.t.Cleanup(s.Stop)
	return b, serving
}

// serviceYAML is a ServiceEntry "host" on gRPC port 9000 whose endpoints are
// WorkloadEntries for the backends (label version = backend version).
func serviceYAML(host string, backends ...*backend) string {
	var b strings.Builder
	app := strings.SplitN(host, ".", 2)[0]
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: default}
spec:
  hosts: [%[2]s]
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: %[1]s}}
`, app, host)
	for _, be := range backends {
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %s-%s, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: %s, version: %s}, serviceAccount: %s}
`, app, be.name, be.port, app, be.version, be.name)
	}
	return b.String()
}

const echoHost = "echo.default.svc.cluster.local"
const echoTarget = echoHost + ":9000"

// subsetsYAML is a DestinationRule with a subset per version, plus extra
// top-level trafficPolicy YAML (indented by the caller, may be empty).
func subsetsYAML(policy string, versions ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo, namespace: default}\nspec:\n  host: echo\n")
	if policy != "" {
		b.WriteString("  trafficPolicy:\n" + policy)
	}
	b.WriteString("  subsets:\n")
	for _, v := range versions {
		fmt.Fprintf(&b, "  - {name: %s, labels: {version: %s}}\n", v, v)
	}
	return b.String()
}

// call makes one RPC and returns the serving backend's name.
func call(ctx context.Context, c testgrpc.TestServiceClient, md ...string) (string, error) {
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	r, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return "", err
	}
	return r.GetHostname(), nil
}

// distribution makes n RPCs (conc at a time) and counts them by backend;
// failures are counted under their status code.
func distribution(t *testing.T, c testgrpc.TestServiceClient, n, conc int, md ...string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	out := map[string]int{}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				h, err := call(ctx, c, md...)
				if err != nil {
					h = status.Code(err).String()
				}
				mu.Lock()
				out[h]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// eventually retries check until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testPKI is a CA and workload certificates with SPIFFE URI SANs.
type testPKI struct {
	dir    string
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
	caPath string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meshlens test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), caKey: key, caCert: cert}
	p.caPath = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caPath, "CERTIFICATE", der)
	return p
}

var serial atomic.Int64

// issue makes a workload certificate for spiffe://cluster.local/ns/<ns>/sa/<sa>.
func (p *testPKI) issue(t *testing.T, ns, sa string) *CertFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := url.Parse(fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)), Subject: pkix.Name{CommonName: sa},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		URIs: []*url.URL{id}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(p.dir, ns+"-"+sa)
	writePEM(t, base+".pem", "CERTIFICATE", der)
	writePEM(t, base+".key", "EC PRIVATE KEY", kder)
	return &CertFiles{CertChain: base + ".pem", PrivateKey: base + ".key", RootCA: p.caPath}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
