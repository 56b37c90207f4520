package kube

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// selfSigned is a PEM certificate for host and its key.
func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// gatewayStream is a raw ADS stream of an Envoy gateway proxy: it asks for
// every listener and for the named SDS secrets, ACKs everything, and keeps
// the last of each.
type gatewayStream struct {
	mu        sync.Mutex
	listeners []*listenerv3.Listener
	secrets   map[string]*tlsv3.Secret
	sdsSeen   int // SDS responses received
	err       error
}

func openGatewayStream(t *testing.T, addr, ns string, secretNames []string) *gatewayStream {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "LABELS": map[string]any{"istio": "ingressgateway"}})
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "router~10.9.0.1~ingress-1." + ns + "~" + ns + ".svc.cluster.local", Metadata: md}
	names := map[string][]string{resource.ListenerType: nil, resource.SecretType: secretNames}
	for _, typ := range []string{resource.ListenerType, resource.SecretType} {
		req := &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]}
		if typ == resource.ListenerType {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	g := &gatewayStream{secrets: map[string]*tlsv3.Secret{}}
	go func() {
		for {
			resp, err := stream.Recv()
			if err == nil {
				err = stream.Send(&discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: names[resp.GetTypeUrl()],
					VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
			}
			g.mu.Lock()
			if err != nil {
				g.err = err
				g.mu.Unlock()
				return
			}
			switch resp.GetTypeUrl() {
			case resource.ListenerType:
				g.listeners = nil
				for _, a := range resp.GetResources() {
					l := &listenerv3.Listener{}
					if err := a.UnmarshalTo(l); err == nil {
						g.listeners = append(g.listeners, l)
					}
				}
			case resource.SecretType:
				g.sdsSeen++
				clear(g.secrets)
				for _, a := range resp.GetResources() {
					s := &tlsv3.Secret{}
					if err := a.UnmarshalTo(s); err == nil {
						g.secrets[s.Name] = s
					}
				}
			}
			g.mu.Unlock()
		}
	}()
	return g
}

// certificate is the certificate chain of SDS secret name, nil if none.
func (g *gatewayStream) certificate(name string) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.secrets[name].GetTlsCertificate().GetCertificateChain().GetInlineBytes()
}

// hasListener reports whether the proxy has a listener of that name.
func (g *gatewayStream) hasListener(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.listeners {
		if l.Name == name {
			return true
		}
	}
	return false
}

// The credentialName of an Istio Gateway applied with kubectl, served as
// istiod serves it: the gateway proxy of the Secret's namespace gets the
// kubernetes.io/tls Secret created with kubectl over SDS and a listener
// whose TLS names it; replacing the Secret's certificate pushes the new
// one; a gateway proxy of another namespace selected by the same Gateway
// gets neither. Deleting the Secret takes the listener away, and the
// Gateway's status and a Warning event say which Secret is missing.
func TestGatewayCredentialFromSecretServedOverSDSAndRotated(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "ingress")
	other := c.Namespace(t, "other")
	cp := startControlPlane(t, c, cpOptions{})

	dir := t.TempDir()
	certA, keyA := selfSigned(t, "bookinfo.example.com")
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certA, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyA, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) {
		t.Helper()
		if out, err := c.Kubectl(ctx, args...); err != nil {
			t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	kubectl("create", "secret", "tls", "bookinfo-cert", "-n", ns, "--cert", filepath.Join(dir, "tls.crt"), "--key", filepath.Join(dir, "tls.key"))
	// The same Secret in the other namespace's proxy's view does not exist:
	// its proxy must get nothing even though the Gateway selects it.
	gw := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: %s}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: %[1]s}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http: [{route: [{destination: {host: productpage.%[1]s.svc.cluster.local, port: {number: 9080}}}]}]
`, ns)
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(gw), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl("apply", "-f", filepath.Join(dir, "gateway.yaml"))

	const sdsName = "kubernetes://bookinfo-cert"
	own := openGatewayStream(t, cp.xdsAddr, ns, []string{sdsName})
	stranger := openGatewayStream(t, cp.xdsAddr, other, []string{sdsName})
	meshtest.Eventually(t, 30*time.Second, "the gateway proxy gets the Secret's certificate over SDS and the 443 listener", func() error {
		if got := own.certificate(sdsName); !bytes.Equal(got, certA) {
			return fmt.Errorf("SDS %s holds %d bytes, not the Secret's certificate", sdsName, len(got))
		}
		if !own.hasListener("0.0.0.0_443") {
			return fmt.Errorf("no listener 0.0.0.0_443")
		}
		return nil
	})

	// Rotation: the Secret's certificate replaced, as cert-manager does.
	certB, keyB := selfSigned(t, "bookinfo.example.com")
	sec, err := c.Client.CoreV1().Secrets(ns).Get(ctx, "bookinfo-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey] = certB, keyB
	if _, err := c.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 30*time.Second, "the rotated certificate is pushed", func() error {
		if got := own.certificate(sdsName); !bytes.Equal(got, certB) {
			return fmt.Errorf("SDS %s does not hold the new certificate yet", sdsName)
		}
		return nil
	})

	// While the Secret is there, analysis finds nothing wrong.
	gwGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}
	gwStatus := func() string {
		u, err := c.Dynamic.Resource(gwGVR).Namespace(ns).Get(ctx, "bookinfo-gateway", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		b, _ := json.Marshal(u.Object["status"])
		return string(b)
	}
	const finding = `{"code":"` + config.CodeReferencedResourceNotFound + `","name":"ReferencedResourceNotFound"}`
	meshtest.Eventually(t, 30*time.Second, "the Gateway is accepted without findings", func() error {
		if s := gwStatus(); strings.Contains(s, "IST01") || !strings.Contains(s, `"status":"True"`) {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})

	// The proxy of the other namespace, selected by the same Gateway, got
	// neither the secret nor the listener needing it.
	stranger.mu.Lock()
	leaked, strangerErr := len(stranger.secrets), stranger.err
	stranger.mu.Unlock()
	if strangerErr != nil {
		t.Fatalf("the other namespace's stream failed: %v", strangerErr)
	}
	if leaked != 0 || stranger.certificate(sdsName) != nil {
		t.Fatalf("a gateway proxy of namespace %s got %d SDS secrets of namespace %s", other, leaked, ns)
	}
	if stranger.hasListener("0.0.0.0_443") {
		t.Fatalf("a gateway proxy of namespace %s got the 443 listener whose certificate it may not have", other)
	}

	// The Secret deleted: the listener goes, and the Gateway says why.
	if err := c.Client.CoreV1().Secrets(ns).Delete(ctx, "bookinfo-cert", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 30*time.Second, "the listener whose Secret is gone is withdrawn", func() error {
		if own.hasListener("0.0.0.0_443") {
			return fmt.Errorf("0.0.0.0_443 still served")
		}
		return nil
	})
	meshtest.Eventually(t, 30*time.Second, "the Gateway's status has the finding", func() error {
		if s := gwStatus(); !strings.Contains(s, finding) {
			return fmt.Errorf("status %s: want validationMessages with %s", s, finding)
		}
		return nil
	})
	want := "servers[0].tls.credentialName: secret " + ns + "/bookinfo-cert not found: this server (port 443) is not served"
	meshtest.Eventually(t, 30*time.Second, "a Warning event names the Secret", func() error {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "bookinfo-gateway" && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, want) {
				return nil
			}
		}
		return fmt.Errorf("%d events, none a warning on bookinfo-gateway saying %q", len(evs.Items), want)
	})
}

// A Gateway API listener whose certificate Secret analysis finds missing
// is reported as Gateway API controllers do: ResolvedRefs False,
// InvalidCertificateRef, not Programmed, with analysis' message; the
// Gateway's other listener stays programmed.
func TestGatewayAPIListenerWithAMissingSecretIsNotProgrammed(t *testing.T) {
	https := gatewayv1.HTTPSProtocolType
	spec := &gatewayv1.GatewaySpec{GatewayClassName: "meshlens", Listeners: []gatewayv1.Listener{
		{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType},
		{Name: "https", Port: 443, Protocol: https, TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "edge-cert"}}}},
	}}
	sn := &config.Snapshot{Objects: []*config.Object{
		{Kind: config.KindGatewayClass, Meta: config.Meta{Namespace: config.DefaultNamespace, Name: "meshlens"}, Spec: &gatewayv1.GatewayClassSpec{ControllerName: ControllerName}},
		{Kind: config.KindKubernetesGateway, Meta: config.Meta{Namespace: "web", Name: "edge"}, Spec: spec},
	}}
	slices.SortFunc(sn.Objects, func(a, b *config.Object) int { return strings.Compare(a.Key(), b.Key()) })
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"gatewayClassName": "meshlens"}}}
	u.SetNamespace("web")
	u.SetName("edge")
	warnings := config.Warnings{{Code: config.CodeReferencedResourceNotFound, Object: "Gateway.gateway.networking.k8s.io/web/edge",
		Field: "listeners[1].tls.certificateRefs[0]", Message: `listener "https": secret web/edge-cert not found: meshlens serves nothing on it`}}
	st, ok := gatewayStatus(u, sn, nil, warnings, "2026-01-01T00:00:00Z")
	if !ok {
		t.Fatal("no status for a Gateway of meshlens' class")
	}
	b, _ := json.Marshal(st["listeners"])
	var listeners []struct {
		Name       string
		Conditions []struct{ Type, Status, Reason, Message string }
	}
	if err := json.Unmarshal(b, &listeners); err != nil || len(listeners) != 2 {
		t.Fatalf("listeners %s: %v", b, err)
	}
	got := map[string]string{}
	for _, l := range listeners {
		for _, c := range l.Conditions {
			got[l.Name+"/"+c.Type] = c.Status + " " + c.Reason + " " + c.Message
		}
	}
	if s := got["https/ResolvedRefs"]; !strings.HasPrefix(s, "False InvalidCertificateRef ") || !strings.Contains(s, "secret web/edge-cert not found") {
		t.Errorf("https ResolvedRefs: %s", s)
	}
	if s := got["https/Programmed"]; !strings.HasPrefix(s, "False ") {
		t.Errorf("https Programmed: %s", s)
	}
	if s := got["http/Programmed"]; !strings.HasPrefix(s, "True ") {
		t.Errorf("http Programmed: %s", s)
	}
}

// With RBAC that forbids Secrets, analysis of a Gateway's credentialName
// says that meshlens may not read them and how to fix it, rather than that
// the Secret does not exist.
func TestGatewayCredentialAnalysisNamesForbiddenSecrets(t *testing.T) {
	c := kubetest.Shared(t)
	limited, err := kubernetes.NewForConfig(c.RESTConfig(kubetest.LimitedToken))
	if err != nil {
		t.Fatal(err)
	}
	logger := meshtest.Logger(t)
	health, err := NewHealth(limited, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := NewCredentials(limited, health, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Background(t, creds.Run)
	ref := config.GatewayCredentialRef{GatewayNamespace: "web", Name: "edge-cert"}
	meshtest.Eventually(t, 60*time.Second, "analysis names the forbidden Secrets", func() error {
		code, msg, ok := creds.GatewayCredential(nil, ref)
		if !ok || code != config.CodeReferencedResourceNotFound || !strings.Contains(msg, "RBAC forbids listing secrets") || !strings.Contains(msg, "--gateway-credentials files") {
			return fmt.Errorf("%v %s %q", ok, code, msg)
		}
		return nil
	})
}
