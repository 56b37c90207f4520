package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// ensureNamespaces creates namespaces the examples name as written
// (bookinfo, istio-system), keeping those another test of the shared
// cluster made.
func ensureNamespaces(t *testing.T, c *kubetest.Cluster, names ...string) {
	t.Helper()
	for _, n := range names {
		_, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// adsFetch asks meshlens' xDS server, as an Envoy sidecar of namespace ns
// with labels, for the resources of one type, and returns them as JSON.
func adsFetch(xdsAddr, ns string, labels map[string]any, typeURL string) ([]string, error) {
	cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "LABELS": labels})
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("sidecar~10.9.9.9~%s.%s~%s.svc.cluster.local", labels["app"], ns, ns)
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: typeURL, Node: &corev3.Node{Id: id, Metadata: md}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, err
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return out, nil
}

// outboundHCM returns the HTTP connection manager of the outbound listener
// 0.0.0.0_PORT among listeners (JSON).
func outboundHCM(listeners []string, port int) (*hcm.HttpConnectionManager, error) {
	for _, js := range listeners {
		var l listenerv3.Listener
		if err := protojson.Unmarshal([]byte(js), &l); err != nil {
			return nil, err
		}
		if l.GetName() != fmt.Sprintf("0.0.0.0_%d", port) {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				m := &hcm.HttpConnectionManager{}
				if f.GetTypedConfig().MessageIs(m) {
					if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
						return nil, err
					}
					return m, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("no listener 0.0.0.0_%d with an HTTP connection manager among %d", port, len(listeners))
}

// The user: Istio's Telemetry applied with kubectl turns meshlens'
// ALS and OTLP tracing on for part of the mesh, and the Envoy sidecars there
// get the access loggers, tracer and receiver clusters over xDS, while an
// invalid Telemetry is refused with a status condition.
func TestKubectlAppliedTelemetryConfiguresSidecarsAccessLogsAndTracing(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "bookinfo", "istio-system")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "telemetry-echo", Namespace: "bookinfo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "telemetry-echo"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}}}
	if _, err := c.Client.CoreV1().Services("bookinfo").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	data := t.TempDir()
	xdsAddr, alsAddr := freeAddr(t), freeAddr(t)
	p := startMeshlens(t, "--kubeconfig", deployIdentity(t, c), "--data-dir", data, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
		"--xds", xdsAddr, "--als", alsAddr, "--proxy-otlp-address", "meshlens.meshlens-system.svc.cluster.local:4317")
	token := readToken(t, data)

	example := filepath.Join(repoRoot(t), "examples/istio/telemetry.yaml")
	if out, err := c.Kubectl(ctx, "apply", "-f", example); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = c.Kubectl(context.Background(), "delete", "-f", example, "--ignore-not-found") })
	meshtest.Eventually(t, 30*time.Second, "the Telemetries in GET /api/v1/config, from Kubernetes", func() error {
		code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/config", token, "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		for _, key := range []string{"Telemetry/istio-system/mesh-default", "Telemetry/bookinfo/namespace-default", "Telemetry/bookinfo/reviews-debug"} {
			if !strings.Contains(body, `"`+key+`":"kube:`+key+`"`) {
				return fmt.Errorf("%s not listed with source kube: %.600s", key, body)
			}
		}
		return nil
	})

	// reviews' sidecar: its namespace's ALS on the client side, and its own
	// Telemetry's 100% sampling with the user header as a tag.
	type side struct {
		labels   map[string]any
		sampling float64
		tag      string
	}
	for name, s := range map[string]side{
		"reviews":     {map[string]any{"app": "reviews", "version": "v1"}, 100, `"tag":"user","requestHeader":{"name":"end-user","defaultValue":"anonymous"}`},
		"productpage": {map[string]any{"app": "productpage", "version": "v1"}, 10, `"tag":"cluster","literal":{"value":"bookinfo-east"}`},
	} {
		meshtest.Eventually(t, 30*time.Second, name+"'s sidecar gets the ALS logger and the tracer", func() error {
			ls, err := adsFetch(xdsAddr, "bookinfo", s.labels, resource.ListenerType)
			if err != nil {
				return err
			}
			m, err := outboundHCM(ls, 9080)
			if err != nil {
				return err
			}
			if len(m.GetAccessLog()) != 1 || m.GetAccessLog()[0].GetName() != "envoy.access_loggers.http_grpc" {
				return fmt.Errorf("access loggers %v, want meshlens' ALS (http_grpc)", m.GetAccessLog())
			}
			tr := m.GetTracing()
			if tr.GetRandomSampling().GetValue() != s.sampling || tr.GetProvider().GetName() != "envoy.tracers.opentelemetry" {
				return fmt.Errorf("tracing %v, want the OpenTelemetry tracer sampling %v%%", tr, s.sampling)
			}
			if b, _ := protojson.Marshal(tr); !strings.Contains(strings.ReplaceAll(string(b), " ", ""), s.tag) {
				return fmt.Errorf("tracing %s, want the tag %s", b, s.tag)
			}
			return nil
		})
	}
	// The receivers' clusters: ALS at --als (an IP: STATIC), OTLP at
	// --proxy-otlp-address (a name: STRICT_DNS).
	cs, err := adsFetch(xdsAddr, "bookinfo", map[string]any{"app": "reviews"}, resource.ClusterType)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"meshlens_als": alsAddr, "meshlens_otlp": "meshlens.meshlens-system.svc.cluster.local:4317"}
	for _, js := range cs {
		var cl clusterv3.Cluster
		if err := protojson.Unmarshal([]byte(js), &cl); err != nil {
			t.Fatal(err)
		}
		addr, ok := want[cl.GetName()]
		if !ok {
			continue
		}
		sa := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()); got != addr {
			t.Errorf("cluster %s sends to %s, want %s", cl.GetName(), got, addr)
		}
		delete(want, cl.GetName())
	}
	if len(want) > 0 {
		t.Errorf("clusters missing: %v", want)
	}

	// An invalid Telemetry (its filter is no CEL expression; the CRD's
	// schema cannot tell) is refused alone, with Accepted=False naming the
	// field.
	bad := `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: bad-filter, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  accessLogging:
  - providers: [{name: meshlens-als}]
    filter: {expression: "response.code >= "}
`
	if err := c.Apply(ctx, "bookinfo", []byte(bad)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.Kubectl(context.Background(), "delete", "telemetry", "bad-filter", "-n", "bookinfo", "--ignore-not-found")
	})
	gvr := schema.GroupVersionResource{Group: "telemetry.istio.io", Version: "v1", Resource: "telemetries"}
	meshtest.Eventually(t, 30*time.Second, "the invalid Telemetry has Accepted=False", func() error {
		u, err := c.Dynamic.Resource(gvr).Namespace("bookinfo").Get(ctx, "bad-filter", metav1.GetOptions{})
		if err != nil {
			return err
		}
		b, _ := json.Marshal(u.Object["status"])
		if !strings.Contains(string(b), `"status":"False"`) || !strings.Contains(string(b), "accessLogging[0].filter.expression") {
			return fmt.Errorf("status %s", b)
		}
		return nil
	})
}
