package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// testCA is a certificate authority the test makes with crypto/x509.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string // PEM
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meshlens test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: dir, cert: cert, key: key, pool: x509.NewCertPool(), file: filepath.Join(dir, "ca.pem")}
	ca.pool.AddCert(cert)
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	// Written beside and renamed, as Kubernetes swaps a Secret's files.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var serial int64 = 100

// issue writes NAME.pem and NAME-key.pem: a certificate for the server
// (loopback SANs) or a client (the SPIFFE URI given).
func (ca *testCA) issue(name, cn, spiffe string) (certFile, keyFile string) {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	if spiffe == "" {
		tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}
	} else {
		u, _ := url.Parse(spiffe)
		tmpl.URIs = []*url.URL{u}
	}
	return ca.sign(name, tmpl)
}

// sign completes tmpl (serial, a day's validity, server and client use),
// signs it with a new key and writes NAME.pem and NAME-key.pem.
func (ca *testCA) sign(name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	writePEM(t, certFile, "CERTIFICATE", der)
	return certFile, keyFile
}

func (ca *testCA) clientTLS(certFile, keyFile string) *tls.Config {
	cfg := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			ca.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestTLSAndMutualTLSOnEveryListenerWithRotation runs meshlens serve with
// --tls-cert, --tls-key and --tls-client-ca, certificates made here, and
// talks to each listener as its real clients do: curl to the HTTP API
// (without a client certificate: only the probes' paths answer), the OTel
// SDK's OTLP gRPC and HTTP exporters, an Envoy-style ALS stream, a grpc-go
// xDS client with TLS bootstrap credentials whose SPIFFE identity matches
// its namespace, and a raw ADS stream posing as another namespace, which is
// refused. Then the server certificate is rotated on disk and served
// without a restart.
func TestTLSAndMutualTLSOnEveryListenerWithRotation(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	srvCert, srvKey := ca.issue("server", "meshlens", "")
	webCert, webKey := ca.issue("web", "web", "spiffe://cluster.local/ns/shop/sa/web")
	posCert, posKey := ca.issue("poser", "poser", "spiffe://cluster.local/ns/team-b/sa/default")

	v1 := meshtest.StartBackend(t, "v1", "v1").Port
	configDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(configDir, "echo.yaml"), []byte(fmt.Sprintf(echoConfig, v1, v1)+"---\n"+routeTo(100, 0)), 0o600); err != nil {
		t.Fatal(err)
	}
	otlpGRPC, otlpHTTP, als, xdsAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", "clickhouse://127.0.0.1:1/none", "--clickhouse-wait", "0s", "--data-dir", t.TempDir(),
		"--config-dir", configDir, "--otlp-grpc", otlpGRPC, "--otlp-http", otlpHTTP, "--als", als, "--xds", xdsAddr,
		"--tls-cert", srvCert, "--tls-key", srvKey, "--tls-client-ca", ca.file, "--tls-reload-interval", "200ms")
	base := "https://" + ml.http

	// HTTP API and UI, with curl.
	if out, err := curl(t, "--cacert", ca.file, base+"/readyz"); err != nil || !strings.HasPrefix(out, "ready") {
		t.Errorf("curl /readyz without a client certificate (as Kubernetes probes): %v %q", err, out)
	}
	if out, _ := curl(t, "--cacert", ca.file, "-w", " %{http_code}", base+"/metrics"); !strings.Contains(out, "client certificate") || !strings.HasSuffix(out, " 401") {
		t.Errorf("curl /metrics without a client certificate: %q, want 401 naming the client certificate", out)
	}
	if out, err := curl(t, "--cacert", ca.file, "--cert", webCert, "--key", webKey, base+"/metrics"); err != nil || !strings.Contains(out, "meshlens_xds_connected_proxies") {
		t.Errorf("curl /metrics with a client certificate: %v %.200q", err, out)
	}
	if out, err := curl(t, base+"/healthz"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("curl not trusting the CA: %v %q, want a certificate error", err, out)
	}
	if out, err := curl(t, "http://"+ml.http+"/healthz"); err == nil && !strings.Contains(out, "HTTPS") {
		t.Errorf("plain HTTP to the TLS port answered %q", out)
	}

	// OTLP through the OTel SDK's exporters, gRPC and HTTP.
	ctx := context.Background()
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(otlpGRPC),
		otlptracegrpc.WithTLSCredentials(credentials.NewTLS(ca.clientTLS(webCert, webKey))))
	if err != nil {
		t.Fatal(err)
	}
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(otlpHTTP), otlptracehttp.WithTLSClientConfig(ca.clientTLS(webCert, webKey)))
	if err != nil {
		t.Fatal(err)
	}
	for _, exp := range []sdktrace.SpanExporter{grpcExp, httpExp} {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		_, sp := tp.Tracer("tls").Start(ctx, "GET /")
		sp.End()
		if err := tp.Shutdown(ctx); err != nil {
			t.Errorf("OTLP export over mutual TLS: %v", err)
		}
	}
	nc, err := grpc.NewClient(otlpGRPC, grpc.WithTransportCredentials(credentials.NewTLS(ca.clientTLS("", ""))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// In TLS 1.3 the client finishes its handshake before the server has
	// checked the (missing) certificate, so the refusal reaches the client
	// either as the server's alert or as the closed connection it then
	// writes to. Either way nothing is accepted: the count below stays 2.
	if _, err := ptraceotlp.NewGRPCClient(nc).Export(ctx, ptraceotlp.NewExportRequestFromTraces(bigSpans(0))); !refusedInHandshake(err) {
		t.Errorf("OTLP/gRPC export without a client certificate: %v, want refused in the handshake", err)
	}
	out, _ := curl(t, "--cacert", ca.file, "--cert", webCert, "--key", webKey, base+"/metrics")
	if !strings.Contains(out, `meshlens_ingest_received_total{signal="traces"} 2`) {
		t.Errorf("traces received over TLS: want 2 in\n%s", grepLines(out, "meshlens_ingest_received_total"))
	}

	// ALS, as Envoy streams it.
	ac, err := grpc.NewClient(als, grpc.WithTransportCredentials(credentials.NewTLS(ca.clientTLS(webCert, webKey))))
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	stream, err := alsv3.NewAccessLogServiceClient(ac).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&alsv3.StreamAccessLogsMessage{Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "sidecar~10.0.0.1~a.shop~shop.svc.cluster.local"}, LogName: "als"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Errorf("ALS stream over mutual TLS: %v", err)
	}

	// xDS: a grpc-go client with TLS bootstrap credentials, its identity
	// matching its claims, routes to the backend.
	boot, err := xds.GRPCBootstrap{ServerAddr: xdsAddr, NodeID: "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local", Cluster: "web",
		Metadata:  map[string]string{"NAMESPACE": "shop", "SERVICE_ACCOUNT": "web"},
		ServerTLS: &xds.CertFiles{RootCA: ca.file, CertChain: webCert, PrivateKey: webKey}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	client := meshtest.XDSClient(t, boot, "echo.shop.svc.cluster.local:9080", nil)
	meshtest.Eventually(t, 30*time.Second, "calls through xDS over mutual TLS", func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := client.UnaryCall(cctx, &testpb.SimpleRequest{})
		if err != nil {
			return err
		}
		if resp.GetHostname() != "v1" {
			return fmt.Errorf("answered by %q", resp.GetHostname())
		}
		return nil
	})

	// Posing as namespace shop with team-b's certificate; and the right
	// namespace with another service account.
	for _, tc := range []struct {
		cert, key, ns, sa, want string
	}{
		{posCert, posKey, "shop", "", `claims namespace shop, but its certificate is spiffe://cluster.local/ns/team-b/sa/default`},
		{webCert, webKey, "shop", "admin", `claims namespace shop, service account admin, but its certificate is spiffe://cluster.local/ns/shop/sa/web`},
	} {
		xc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(ca.clientTLS(tc.cert, tc.key))))
		if err != nil {
			t.Fatal(err)
		}
		xs, err := discovery.NewAggregatedDiscoveryServiceClient(xc).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": tc.ns, "SERVICE_ACCOUNT": tc.sa, "GENERATOR": "grpc"})
		_ = xs.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: &corev3.Node{Id: "poser", Metadata: md}})
		_, err = xs.Recv()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("xDS node claiming %s/%s: %v, want PermissionDenied: %s", tc.ns, tc.sa, err, tc.want)
		}
		xc.Close()
	}
	if n := metricIn(out2(t, ca, webCert, webKey, base), "meshlens_xds_identity_refused_total"); n != "2" {
		t.Errorf("meshlens_xds_identity_refused_total = %s, want 2", n)
	}

	// The server certificate is rotated on disk: new connections get it.
	ca.issue("server", "meshlens-rotated", "")
	meshtest.Eventually(t, 30*time.Second, "the rotated certificate is served", func() error {
		for _, addr := range []string{ml.http, otlpGRPC, als, xdsAddr} {
			conn, err := tls.Dial("tcp", addr, ca.clientTLS(webCert, webKey))
			if err != nil {
				return err
			}
			cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
			conn.Close()
			if cn != "meshlens-rotated" {
				return fmt.Errorf("%s serves %q", addr, cn)
			}
		}
		return nil
	})
}

func out2(t *testing.T, ca *testCA, cert, key, base string) string {
	out, _ := curl(t, "--cacert", ca.file, "--cert", cert, "--key", key, base+"/metrics")
	return out
}

func metricIn(metrics, series string) string {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// refusedInHandshake reports whether a gRPC call failed because the server
// closed the TLS connection during or right after the handshake.
func refusedInHandshake(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	for _, m := range []string{"certificate required", "broken pipe", "connection reset", "EOF"} {
		if strings.Contains(err.Error(), m) {
			return true
		}
	}
	return false
}
