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
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/meshlens/meshlens/internal/meshtest"
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
	s, err := NewServer(ctx, meshtest.Logger(t), reg, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	lis := meshtest.Listen(t)
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
	return meshtest.XDSClient(m.t, m.bootstrap(id, certs), target, creds)
}

func xdsClientCreds(t *testing.T) credentials.TransportCredentials {
	c, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startXDSBackend starts a grpc-go xDS server, which takes its listener
// (mTLS, RBAC) from meshlens. It returns before the server is serving; the
// port is known so the config can name it.
func (m *testMesh) startXDSBackend(name, version string, certs *CertFiles) (*meshtest.Backend, <-chan struct{}) {
	m.t.Helper()
	lis := meshtest.Listen(m.t)
	b := meshtest.NewBackend(name, version, lis.Addr().(*net.TCPAddr).Port)
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
	b.Register(s)
	go s.Serve(lis)
	m.t.Cleanup(s.Stop)
	return b, serving
}

// serviceYAML is a ServiceEntry "host" on gRPC port 9000 whose endpoints are
// WorkloadEntries for the backends (label version = backend version).
func serviceYAML(host string, backends ...*meshtest.Backend) string {
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
`, app, be.Name, be.Port, app, be.Version, be.Name)
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
