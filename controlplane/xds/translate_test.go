package xds

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/controlplane/credentials"
	"github.com/meshlens/meshlens/controlplane/jwks"
	"github.com/meshlens/meshlens/controlplane/meshconfig"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestTranslateGolden translates every testdata/*.yaml for a proxyless gRPC
// node and an Envoy node and compares with testdata/<name>.<flavour>.golden.json.
// A file with a "# gateway-labels: k=v,..." line is also translated for an
// Envoy gateway node with those labels: testdata/<name>.gateway.golden.json.
// "# node-labels: k=v,..." labels the sidecar nodes; "# telemetry-addresses:
// ALS,OTLP" sets where proxies reach meshlens' receivers; "# telemetry-tls:
// ca=FILE,sni=NAME,client" makes them TLS (ReceiverTLS; each part optional);
// each "# jwks: ISSUER | URI | KEYS | ERROR" is a key set meshlens fetched
// (or failed to: KEYS empty) for a RequestAuthentication issuer; "#
// mesh-config: FILE" (relative to the package) gives the MeshConfig's
// extension providers; each "# credential: NS/NAME KEY=FILE,..." is a
// cluster Secret (files of testdata/credentials), and with any, the
// translation serves credentialName over SDS.
// Translate itself runs ValidateAll on every resource.
func TestTranslateGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := strings.TrimSuffix(filepath.Base(f), ".yaml")
		variants := []string{string(FlavourGRPC), string(FlavourEnvoy)}
		gwLabels := directive(string(src), "gateway-labels")
		if gwLabels != "" {
			variants = append(variants, "gateway")
		}
		for _, variant := range variants {
			t.Run(base+"/"+variant, func(t *testing.T) {
				snap := parseSnapshot(t, 1, string(src))
				node := Node{ID: "test", Flavour: Flavour(variant), Namespace: "default"}
				if ips := directive(string(src), "node-ips"); ips != "" {
					node.IPs = strings.Split(ips, ",")
				}
				if ls := directive(string(src), "node-labels"); ls != "" {
					node.Labels = map[string]string{}
					for _, kv := range strings.Split(ls, ",") {
						k, v, _ := strings.Cut(kv, "=")
						node.Labels[k] = v
					}
				}
				opts := DefaultOptions()
				if addrs := directive(string(src), "telemetry-addresses"); addrs != "" {
					opts.TelemetryALSAddress, opts.TelemetryOTLPAddress, _ = strings.Cut(addrs, ",")
				}
				if mc := directive(string(src), "mesh-config"); mc != "" {
					providers, _, err := meshconfig.Flags{Path: mc}.Load()
					if err != nil {
						t.Fatal(err)
					}
					opts.ExtensionProviders = providers
				}
				if rt := directive(string(src), "telemetry-tls"); rt != "" {
					opts.TelemetryTLS = &ReceiverTLS{}
					for _, part := range strings.Split(rt, ",") {
						k, v, _ := strings.Cut(part, "=")
						switch k {
						case "ca":
							opts.TelemetryTLS.CAFile = v
						case "sni":
							opts.TelemetryTLS.SNI = v
						case "client":
							opts.TelemetryTLS.ClientCert = true
						}
					}
				}
				if variant == "gateway" {
					node = Node{ID: "router~10.0.9.1~ingress.istio-system~istio-system.svc.cluster.local", Flavour: FlavourEnvoy, Gateway: true, Namespace: "istio-system", Labels: map[string]string{}}
					for _, kv := range strings.Split(gwLabels, ",") {
						k, v, _ := strings.Cut(kv, "=")
						node.Labels[k] = v
					}
				}
				in := Input{Config: snap}
				if fetched := directives(string(src), "jwks"); len(fetched) > 0 {
					results := map[jwks.Source]jwks.Result{}
					for _, d := range fetched {
						parts := strings.Split(d, "|")
						if len(parts) != 4 {
							t.Fatalf("bad jwks directive %q: want ISSUER | URI | KEYS | ERROR", d)
						}
						for i := range parts {
							parts[i] = strings.TrimSpace(parts[i])
						}
						results[jwks.Source{Issuer: parts[0], URI: parts[1]}] = jwks.Result{JWKS: parts[2], Err: parts[3]}
					}
					in.JWKS = jwks.NewKeys(results)
				}
				if cs := directives(string(src), "credential"); len(cs) > 0 {
					in.Credentials = testCredentials(t, cs)
				}
				res, err := Translate(in, node, opts)
				if err != nil {
					t.Fatalf("Translate: %v", err)
				}
				got := resourcesJSON(t, res)
				golden := filepath.Join("testdata", base+"."+variant+".golden.json")
				if *update {
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the translation; run `go test -run TestTranslateGolden -update` and review the diff.\n%s", golden, firstDiff(string(want), string(got)))
				}
			})
		}
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n- " + w + "\n+ " + g
		}
	}
	return ""
}

// FuzzTranslate feeds arbitrary Istio YAML through translation for both
// flavours: it must never panic, and whatever it returns has passed
// ValidateAll (Translate checks that itself).
func FuzzTranslate(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	f.Add("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [x], http: [{route: [{destination: {host: x}, weight: -5}]}]}\n")
	// Gateway API filters without the field their type names, parentRefs
	// and backends of every kind: validation refuses them, translation
	// must still not panic.
	f.Add(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: x}
spec:
  parentRefs: [{name: gw}, {group: "", kind: Service, name: x}, {group: networking.istio.io, kind: ServiceEntry, name: x}]
  rules:
  - filters: [{type: RequestMirror}, {type: RequestHeaderModifier}, {type: ResponseHeaderModifier}, {type: URLRewrite}, {type: CORS}]
    backendRefs: [{name: x, filters: [{type: RequestHeaderModifier}]}, {group: networking.istio.io, kind: Hostname, name: a.example.com}]
  - filters: [{type: RequestRedirect}]
    timeouts: {request: nonsense}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  listeners: [{name: a, port: 443, protocol: HTTPS}, {name: b, port: 80, protocol: HTTP}, {name: c, port: 1, protocol: TLS, tls: {mode: Passthrough}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: x}
spec:
  parentRefs: [{group: "", kind: Service, name: x, port: 9000}]
  rules: [{matches: [{method: {type: RegularExpression, service: "(("}}], filters: [{type: RequestMirror}]}]
`)
	// Gateway proxies, credentialName from files and from Secrets (any
	// Gateway's server may name them, of any namespace).
	sds, err := os.ReadFile("testdata/gateway-sds.yaml")
	if err != nil {
		f.Fatal(err)
	}
	creds := testCredentials(f, directives(string(sds), "credential"))
	gateway := Node{ID: "fuzz-gw", Flavour: FlavourEnvoy, Gateway: true, Namespace: "istio-system",
		Labels: map[string]string{"istio": "ingressgateway", "gateway.networking.k8s.io/gateway-name": "edge"}}
	f.Fuzz(func(t *testing.T, src string) {
		snap, err := decodeSnapshot(1, src)
		if err != nil {
			return
		}
		for _, fl := range []Flavour{FlavourGRPC, FlavourEnvoy} {
			_, _ = Translate(Input{Config: snap}, Node{ID: "fuzz", Flavour: fl, Namespace: "default", IPs: []string{"10.1.0.1"}}, DefaultOptions())
		}
		for _, c := range []*credentials.Snapshot{nil, creds} {
			res, err := Translate(Input{Config: snap, Credentials: c}, gateway, DefaultOptions())
			if err == nil && c == nil && len(res.Secrets) > 0 {
				t.Fatalf("%d SDS secrets without a cluster's credentials", len(res.Secrets))
			}
		}
	})
}

func TestTranslateHonoursDomainSuffix(t *testing.T) {
	snap := parseSnapshot(t, 1, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: prod}
spec:
  hosts: [a]
  ports: [{number: 80, name: http, protocol: HTTP}]
`)
	res, err := Translate(Input{Config: snap}, Node{ID: "n", Flavour: FlavourGRPC}, Options{DomainSuffix: "example.internal"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 1 || res.Listeners[0].Name != "a.prod.svc.example.internal:80" {
		t.Fatalf("listeners %v", res.Listeners)
	}
}
