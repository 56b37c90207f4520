package xds

import (
	"os"
	"slices"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Istio's Bookinfo starts with samples/bookinfo/networking/bookinfo-gateway.yaml
// (a Gateway and a VirtualService bound to it). Applied as one batch with
// Bookinfo's productpage, it is valid, and Istio's ingress gateway proxy
// (labels istio=ingressgateway) gets a listener on 8080 whose routes send
// Bookinfo's paths to productpage:9080, while sidecars get none of it.
func TestBookinfoGatewayFileIsServedToTheIngressGateway(t *testing.T) {
	file, err := os.ReadFile("../config/testdata/conformance/bookinfo/bookinfo-gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{})...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kinds.Parse(append(file, []byte(`
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.7}]
`)...))
	if err != nil {
		t.Fatalf("bookinfo-gateway.yaml refused: %v", err)
	}
	ws, err := kinds.Validate(nil, objs)
	if err != nil {
		t.Fatalf("bookinfo-gateway.yaml refused: %v", err)
	}
	if len(ws) > 0 {
		t.Errorf("unexpected findings: %v", ws)
	}
	snap := parseSnapshot(t, 1, string(file)+"\n---\n"+`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.7}]
`)
	gw := Node{ID: "router~10.0.9.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local", Flavour: FlavourEnvoy, Gateway: true,
		Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}}
	res, err := Translate(Input{Config: snap}, gw, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 1 || res.Listeners[0].Name != "0.0.0.0_8080" {
		t.Fatalf("gateway listeners %v, want 0.0.0.0_8080", names(res.Listeners))
	}
	var rc *routev3.RouteConfiguration
	for _, r := range res.Routes {
		if r.Name == "http.8080" {
			rc = r
		}
	}
	if rc == nil || len(rc.VirtualHosts) != 1 || !slices.Equal(rc.VirtualHosts[0].Domains, []string{"*"}) {
		t.Fatalf("route configuration http.8080: %v", rc)
	}
	want := map[string]bool{"/productpage": true, "/static": true, "/login": true, "/logout": true, "/api/v1/products": true}
	for _, r := range rc.VirtualHosts[0].Routes {
		p := r.GetMatch().GetPath() + r.GetMatch().GetPrefix()
		if !want[p] {
			t.Errorf("unexpected route %q", p)
		}
		delete(want, p)
		if c := r.GetRoute().GetCluster(); c != "outbound|9080||productpage.default.svc.cluster.local" {
			t.Errorf("route %q goes to %q", p, c)
		}
	}
	if len(want) > 0 {
		t.Errorf("routes missing: %v", want)
	}
	side, err := Translate(Input{Config: snap}, Node{ID: "sidecar", Flavour: FlavourEnvoy, Namespace: "default"}, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range side.Routes {
		for _, vh := range r.VirtualHosts {
			if slices.Contains(vh.Domains, "*") && vh.Name != "allow_any" && vh.Name != "block_all" {
				t.Errorf("a sidecar got the gateway's virtual host %s", vh.Name)
			}
		}
	}
}

func names[T interface{ GetName() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.GetName())
	}
	return out
}
