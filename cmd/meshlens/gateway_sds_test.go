package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlens/meshlens/internal/kubetest"
)

// gatewaySecret opens an ADS stream over mutual TLS as a gateway proxy of
// namespace ns (its client certificate certFile), asks for the listeners
// and the SDS secret name, ACKs each response, and returns the secret's
// certificate chain once a response carries it, or the stream's error.
func gatewaySecret(ctx context.Context, t *testing.T, ca *testCA, addr, certFile, keyFile, ns, name string) ([]byte, error) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.clientTLS(certFile, keyFile))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "LABELS": map[string]any{"istio": "ingressgateway"}})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]string{resource.ListenerType: nil, resource.SecretType: {name}}
	node := &corev3.Node{Id: "router~10.9.0.7~ingress-1." + ns + "~" + ns + ".svc.cluster.local", Metadata: md}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType}); err != nil {
		return nil, err
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: names[resource.SecretType]}); err != nil {
		return nil, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if resp.GetTypeUrl() == resource.SecretType {
			for _, a := range resp.GetResources() {
				s := &tlsv3.Secret{}
				if a.UnmarshalTo(s) == nil && s.Name == name {
					return s.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), nil
				}
			}
		}
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: names[resp.GetTypeUrl()],
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			return nil, err
		}
	}
}

// meshlens serve in a cluster, with the rights deploy/ gives it and mutual
// TLS on xDS: a Gateway's credentialName is the kubernetes.io/tls Secret of
// the gateway proxy's namespace, served over SDS to a gateway proxy whose
// client certificate is of that namespace; a proxy whose certificate is of
// another namespace cannot claim this one (refused), and claiming its own
// it gets no secret.
func TestServeServesAGatewaysSecretOverSDSToItsNamespaceOnly(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "edge")
	other := c.Namespace(t, "intruder")

	dir := t.TempDir()
	ca := newTestCA(t, dir)
	srvCert, srvKey := ca.issue("server", "meshlens", "")
	gwCert, gwKey := ca.issue("gateway", "gateway", "spiffe://cluster.local/ns/"+ns+"/sa/ingress")
	posCert, posKey := ca.issue("poser", "poser", "spiffe://cluster.local/ns/"+other+"/sa/ingress")
	secretCert, secretKey := ca.issue("bookinfo", "bookinfo.example.com", "")
	crt, err := os.ReadFile(secretCert)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(secretKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bookinfo-cert", Namespace: ns},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gw := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(gw, fmt.Appendf(nil, `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: %s}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
`, ns), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "apply", "-f", gw); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	xdsAddr := freeAddr(t)
	startMeshlens(t, "--kubeconfig", deployIdentity(t, c), "--data-dir", t.TempDir(), "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
		"--xds", xdsAddr, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-client-ca", ca.file)

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	got, err := gatewaySecret(wctx, t, ca, xdsAddr, gwCert, gwKey, ns, "kubernetes://bookinfo-cert")
	if err != nil || !bytes.Equal(got, crt) {
		t.Fatalf("the gateway proxy of %s: secret %d bytes, %v; want the Secret's certificate", ns, len(got), err)
	}

	// A certificate of another namespace claiming this one is refused.
	_, err = gatewaySecret(wctx, t, ca, xdsAddr, posCert, posKey, ns, "kubernetes://bookinfo-cert")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a proxy of %s claiming %s: %v, want PermissionDenied", other, ns, err)
	}
	// Claiming its own namespace, it is served, but never the secret.
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	got, err = gatewaySecret(short, t, ca, xdsAddr, posCert, posKey, other, "kubernetes://bookinfo-cert")
	if got != nil || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a proxy of %s: secret %d bytes, %v; want none until the deadline", other, len(got), err)
	}
}
