package xds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/meshlens/meshlens/controlplane/credentials"
)

// testCredentials makes a credentials snapshot of "NS/NAME KEY=FILE,..."
// lines, FILE in testdata/credentials.
func testCredentials(t testing.TB, lines []string) *credentials.Snapshot {
	t.Helper()
	secrets := map[credentials.Ref]*credentials.Secret{}
	for _, l := range lines {
		name, keys, _ := strings.Cut(l, " ")
		ns, n, ok := strings.Cut(name, "/")
		if !ok {
			t.Fatalf("credential %q: want NS/NAME KEY=FILE,...", l)
		}
		data := map[string][]byte{}
		for _, kv := range strings.Split(strings.TrimSpace(keys), ",") {
			k, f, _ := strings.Cut(kv, "=")
			b, err := os.ReadFile(filepath.Join("testdata", "credentials", f))
			if err != nil {
				t.Fatal(err)
			}
			data[k] = b
		}
		ref := credentials.Ref{Namespace: ns, Name: n}
		secrets[ref] = credentials.Parse(ref, "1", data)
	}
	return credentials.New(1, secrets)
}

func chainNames(ls []*listenerv3.Listener) []string {
	var out []string
	for _, l := range ls {
		for _, fc := range l.FilterChains {
			out = append(out, l.Name+"/"+fc.Name)
		}
	}
	return out
}

// A gateway proxy of another namespace than the Secrets' selected by the
// same Gateway gets no secret and no filter chain that would need one;
// one of the Secrets' namespace gets both.
func TestSDSSecretsOnlyForGatewayProxiesOfTheSecretsNamespace(t *testing.T) {
	src, err := os.ReadFile("testdata/gateway-sds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Config: parseSnapshot(t, 1, string(src)), Credentials: testCredentials(t, directives(string(src), "credential"))}
	labels := map[string]string{"istio": "ingressgateway", "gateway.networking.k8s.io/gateway-name": "edge"}
	tr := NewTranslator(DefaultOptions())
	own, err := tr.Translate(in, Node{ID: "own", Flavour: FlavourEnvoy, Gateway: true, Namespace: "istio-system", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	other, err := tr.Translate(in, Node{ID: "other", Flavour: FlavourEnvoy, Gateway: true, Namespace: "other", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range own.Secrets {
		names = append(names, s.Name)
	}
	want := "kubernetes-gateway://certs/edge-cert kubernetes://bookinfo-cert kubernetes://mtls-cert kubernetes://mtls-cert-cacert kubernetes://opaque-cert"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("istio-system proxy's secrets: %s, want %s", got, want)
	}
	if len(other.Secrets) != 0 {
		t.Errorf("a proxy of namespace other got %d secrets", len(other.Secrets))
	}
	if got := chainNames(other.Listeners); len(got) != 0 {
		t.Errorf("a proxy of namespace other got TLS filter chains %v", got)
	}
	// A node that names no namespace gets no Secret either.
	none, err := tr.Translate(in, Node{ID: "none", Flavour: FlavourEnvoy, Gateway: true, Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if len(none.Secrets) != 0 {
		t.Errorf("a proxy naming no namespace got %d secrets", len(none.Secrets))
	}
}
