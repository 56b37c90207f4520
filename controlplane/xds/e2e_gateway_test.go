package xds

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/internal/meshtest"
)

const ingressGatewayYAML = `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
`

// VirtualServices bind as Istio binds them: one bound only to a Gateway
// does not route proxyless clients (the mesh), even when it sorts first
// for the host; in one bound to both, a match naming only the gateway does
// not apply in the mesh, and one naming "mesh" does.
func TestVirtualServiceGatewaysBindOnlyWhereNamed(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	base := serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2") + ingressGatewayYAML
	m.apply(base + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-at-gateway, namespace: default}
spec:
  hosts: [echo]
  gateways: [ingress]
  http:
  - route: [{destination: {host: echo, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-in-mesh, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo, subset: v1}}]
`)
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 40, 4); got["v1"] != 40 {
		t.Fatalf("the gateway-only VirtualService routed mesh clients: want all 40 RPCs on v1, got %v", got)
	}

	m.apply(base + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-at-gateway, namespace: default}
spec:
  hosts: [echo]
  gateways: [mesh, default/ingress]
  http:
  - match:
    - headers: {x-route: {exact: gateway}}
      gateways: [ingress]
    route: [{destination: {host: echo, subset: v2}}]
  - match:
    - headers: {x-route: {exact: mesh}}
      gateways: [mesh]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
`)
	meshtest.Eventually(t, 10*time.Second, "the mesh-bound VirtualService routes x-route: mesh to v2", func() error {
		if got := distribution(t, c, 20, 2, "x-route", "mesh"); got["v2"] != 20 {
			return fmt.Errorf("want 20 RPCs on v2, got %v", got)
		}
		return nil
	})
	if got := distribution(t, c, 20, 2, "x-route", "gateway"); got["v1"] != 20 {
		t.Fatalf("a match bound to the gateway only applied in the mesh: want 20 RPCs on v1, got %v", got)
	}
}

// A node is a gateway when Istio's node ID says "router" or its metadata
// says MESHLENS_FLAVOUR=gateway; gateway and sidecar nodes are different
// classes even with the same labels.
func TestNodeFromProtoRecognisesGateways(t *testing.T) {
	md, err := structpb.NewStruct(map[string]any{MetaFlavour: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		node    *corev3.Node
		gateway bool
	}{
		{"Istio router node", &corev3.Node{Id: "router~10.0.0.9~istio-ingressgateway-5d9.istio-system~istio-system.svc.cluster.local"}, true},
		{"Istio sidecar node", &corev3.Node{Id: "sidecar~10.0.0.8~reviews-v1-7f9.default~default.svc.cluster.local"}, false},
		{"metadata flavour gateway", &corev3.Node{Id: "edge-1", Metadata: md}, true},
		{"grpc client named router", &corev3.Node{Id: "router~x", UserAgentName: "gRPC Go"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NodeFromProto(tc.node)
			if n.Gateway != tc.gateway {
				t.Fatalf("Gateway = %v, want %v (node %+v)", n.Gateway, tc.gateway, n)
			}
			sidecar := n
			sidecar.Gateway = !n.Gateway
			if classKey(n) == classKey(sidecar) {
				t.Fatalf("gateway and sidecar nodes share the class %q", classKey(n))
			}
		})
	}
}

// Over ADS, a gateway node gets the listeners of the Gateways that select
// its labels, and a sidecar with the same labels its sidecar listeners.
func TestGatewayNodeGetsItsGatewaysListeners(t *testing.T) {
	m := newTestMesh(t)
	m.apply(serviceYAML(echoHost, meshtest.NewBackend("v1", "v1", 7001)) + ingressGatewayYAML + `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress, namespace: default}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-ingress, namespace: default}
spec:
  hosts: ["*"]
  gateways: [ingress]
  http:
  - route: [{destination: {host: echo}}]
`)
	cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	labels, err := structpb.NewStruct(map[string]any{MetaLabels: map[string]any{"istio": "ingressgateway"}, MetaNamespace: "istio-system"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		node *corev3.Node
		want []string
	}{
		{"ingress gateway", &corev3.Node{Id: "router~10.0.0.9~ingress-1.istio-system~istio-system.svc.cluster.local", UserAgentName: "envoy", Metadata: labels}, []string{"0.0.0.0_8080"}},
		{"sidecar with the same labels", &corev3.Node{Id: "sidecar~10.0.0.8~app-1.default~default.svc.cluster.local", UserAgentName: "envoy", Metadata: labels}, []string{"0.0.0.0_9000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := newADSClientAs(ctx, cc, tc.node, map[string][]string{resource.ListenerType: nil})
			if err != nil {
				t.Fatal(err)
			}
			go a.run()
			meshtest.Eventually(t, 20*time.Second, "listeners arrive", func() error {
				if got := a.resourceNames(resource.ListenerType); !slices.Equal(got, tc.want) {
					return fmt.Errorf("got listeners %v, want %v", got, tc.want)
				}
				return nil
			})
		})
	}
}
