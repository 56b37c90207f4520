package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// The --proxy-receiver-* flags: what they mean with --tls-cert (and
// --tls-client-ca), and errors naming the flag when they mean nothing.
func TestReceiverTLSFlagsResolve(t *testing.T) {
	for _, tc := range []struct {
		name              string
		args              []string
		serverTLS, client bool
		want              *ReceiverTLS
		err               string
	}{
		{name: "plaintext receivers: plaintext clusters", want: nil},
		{name: "TLS with defaults", serverTLS: true, want: &ReceiverTLS{}},
		{name: "mutual TLS: the workload certificate", serverTLS: true, client: true, want: &ReceiverTLS{ClientCert: true}},
		{name: "every flag", args: []string{"--proxy-receiver-ca", "/ca.pem", "--proxy-receiver-sni", "meshlens.example", "--proxy-receiver-cert", "/c.pem", "--proxy-receiver-key", "/k.pem"},
			serverTLS: true, client: true, want: &ReceiverTLS{CAFile: "/ca.pem", SNI: "meshlens.example", CertFile: "/c.pem", KeyFile: "/k.pem", ClientCert: true}},
		{name: "a CA without TLS", args: []string{"--proxy-receiver-ca", "/ca.pem"}, err: `--proxy-receiver-ca "/ca.pem": meshlens' receivers speak plaintext without --tls-cert`},
		{name: "a certificate without its key", args: []string{"--proxy-receiver-cert", "/c.pem"}, serverTLS: true, client: true, err: "--proxy-receiver-cert and --proxy-receiver-key go together"},
		{name: "a certificate nobody asks for", args: []string{"--proxy-receiver-cert", "/c.pem", "--proxy-receiver-key", "/k.pem"}, serverTLS: true, err: "without --tls-client-ca"},
		{name: "an IP as SNI", args: []string{"--proxy-receiver-sni", "10.0.0.1"}, serverTLS: true, err: `--proxy-receiver-sni "10.0.0.1": a server name, not an IP address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f ReceiverTLSFlags
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			f.RegisterFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.Resolve(tc.serverTLS, tc.client)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// Every option set by the caller survives the translator's defaults (the
// gateway credential dir once did not: --gateway-credential-dir was
// dropped).
func TestOptionsSurviveDefaults(t *testing.T) {
	var o Options
	v := reflect.ValueOf(&o).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("set-" + v.Type().Field(i).Name)
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Map:
			f.Set(reflect.MakeMap(f.Type()))
			f.SetMapIndex(reflect.ValueOf("set"), reflect.Zero(f.Type().Elem()))
		default:
			t.Fatalf("field %s of kind %s: extend this test", v.Type().Field(i).Name, f.Kind())
		}
	}
	if got := mergeDefaults(o); !reflect.DeepEqual(got, o) {
		t.Fatalf("mergeDefaults lost fields:\n got  %+v\n want %+v", got, o)
	}
}

// The TLS the meshlens_als cluster asks of Envoy, applied as Envoy applies
// it (trusted CA file, client certificate files, SNI, ALPN, SAN matchers,
// no other name check), reaches a grpc-go TLS server that requires client
// certificates, as meshlens' receivers are with --tls-cert and
// --tls-client-ca; a server name the certificate does not carry is
// refused. No Envoy runs here: this checks the settings fit a real
// receiver.
func TestReceiverTLSContextReachesATLSGRPCReceiver(t *testing.T) {
	pki := newTestPKI(t)
	server := pki.issue(t, "meshlens", "meshlens") // SANs localhost, 127.0.0.1
	proxy := pki.issue(t, "default", "api")
	pair, err := tls.LoadX509KeyPair(server.CertChain, server.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(pki.caCert)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert})))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := meshtest.Listen(t)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	snap := parseSnapshot(t, 1, `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: meshlens-als}]}]
`)
	for _, tc := range []struct {
		name, sni string
		ok        bool
	}{
		{"the receiver's IP address among its IP SANs", "", true},
		{"a server name among its DNS SANs", "localhost", true},
		{"a server name it does not carry", "meshlens.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.TelemetryALSAddress = lis.Addr().String()
			opts.TelemetryTLS = &ReceiverTLS{CAFile: pki.caPath, SNI: tc.sni, ClientCert: true}
			node := Node{ID: "sidecar~10.0.0.1~api.default~default.svc.cluster.local", Flavour: FlavourEnvoy, Namespace: "default",
				CertChainPath: proxy.CertChain, PrivateKeyPath: proxy.PrivateKey}
			res, err := Translate(Input{Config: snap}, node, opts)
			if err != nil {
				t.Fatal(err)
			}
			var cl *clusterv3.Cluster
			for _, c := range res.Clusters {
				if c.Name == alsClusterName {
					cl = c
				}
			}
			if cl == nil {
				t.Fatal("no meshlens_als cluster")
			}
			cfg := envoyUpstreamTLS(t, cl)
			sa := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			cc, err := grpc.NewClient(net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			if tc.ok && err != nil {
				t.Fatalf("the cluster's TLS does not reach the receiver: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("a certificate without the required SAN was accepted")
			}
		})
	}
}

// envoyUpstreamTLS is a cluster's UpstreamTlsContext as a Go TLS client
// config doing what Envoy does with it.
func envoyUpstreamTLS(t *testing.T, cl *clusterv3.Cluster) *tls.Config {
	t.Helper()
	up := &tlsv3.UpstreamTlsContext{}
	if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatalf("cluster %s: no UpstreamTlsContext: %v", cl.Name, err)
	}
	common := up.GetCommonTlsContext()
	vc := common.GetValidationContext()
	caPEM, err := os.ReadFile(vc.GetTrustedCa().GetFilename())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("trusted CA: no certificate")
	}
	cfg := &tls.Config{ServerName: up.GetSni(), NextProtos: common.GetAlpnProtocols(), InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	for _, c := range common.GetTlsCertificates() {
		pair, err := tls.LoadX509KeyPair(c.GetCertificateChain().GetFilename(), c.GetPrivateKey().GetFilename())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	// Envoy verifies the chain and the SAN matchers, not the server name.
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			return err
		}
		for _, m := range vc.GetMatchTypedSubjectAltNames() {
			var sans []string
			switch m.GetSanType() {
			case tlsv3.SubjectAltNameMatcher_DNS:
				sans = certs[0].DNSNames
			case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
				for _, ip := range certs[0].IPAddresses {
					sans = append(sans, ip.String())
				}
			}
			if slices.Contains(sans, m.GetMatcher().GetExact()) {
				return nil
			}
		}
		return fmt.Errorf("no SAN of %v matches %v", certs[0].DNSNames, vc.GetMatchTypedSubjectAltNames())
	}
	return cfg
}
