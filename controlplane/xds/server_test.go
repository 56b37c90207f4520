package xds

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/labstack/echo/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlens/meshlens/internal/meshtest"
)

func TestNACKedResourceShowsInProxies(t *testing.T) {
	m := newTestMesh(t)
	b := meshtest.StartBackend(t, "v1", "v1")
	good := serviceYAML(echoHost, b) + subsetsYAML("")
	m.apply(good)
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 5, 1); got["v1"] != 5 {
		t.Fatalf("baseline: %v", got)
	}
	// Two WorkloadEntries for one address:port are valid Istio config and
	// valid Envoy EDS, but grpc-go rejects duplicate endpoints.
	twin := meshtest.NewBackend("v1-twin", "v1", b.Port)
	m.apply(serviceYAML(echoHost, b, twin) + subsetsYAML(""))
	nackedVersion := fmt.Sprintf("%d.%d", m.version, m.srv.push)
	meshtest.Eventually(t, 10*time.Second, "the NACK is recorded", func() error {
		ps := m.srv.Proxies()
		if len(ps) != 1 {
			return fmt.Errorf("want one proxy, got %d", len(ps))
		}
		n := ps[0].LastNack
		if n == nil {
			return fmt.Errorf("no NACK recorded: %+v", ps[0])
		}
		if n.TypeURL != resource.EndpointType || n.Version != nackedVersion || !strings.Contains(n.Message, "duplicate") {
			return fmt.Errorf("unexpected NACK %+v (want version %s)", n, nackedVersion)
		}
		if ps[0].InSync {
			return fmt.Errorf("a proxy that rejected the push is not in sync")
		}
		return nil
	})
	if v := metricValue(t, m, "meshlens_xds_nacks_total", "eds"); v < 1 {
		t.Fatalf("nack counter %v", v)
	}
	// Fixing the config brings the proxy back in sync.
	m.apply(good)
	meshtest.Eventually(t, 10*time.Second, "back in sync", func() error {
		if ps := m.srv.Proxies(); len(ps) != 1 || !ps[0].InSync {
			return fmt.Errorf("%+v", ps)
		}
		return nil
	})
}

func TestProxiesAPIServesConnectedNodes(t *testing.T) {
	m := newTestMesh(t)
	b := meshtest.StartBackend(t, "v1", "v1")
	m.apply(serviceYAML(echoHost, b))
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 3, 1); got["v1"] != 3 {
		t.Fatalf("baseline: %v", got)
	}
	e := echo.New()
	m.srv.RegisterRoutes(e.Group("/api/v1"))
	ts := httptest.NewServer(e)
	defer ts.Close()

	meshtest.Eventually(t, 20*time.Second, "the proxy is listed in sync", func() error {
		resp, err := http.Get(ts.URL + "/api/v1/proxies")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var ps []ProxyStatus
		if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
			return err
		}
		if len(ps) != 1 || ps[0].Flavour != FlavourGRPC || !ps[0].InSync || ps[0].LastAckedVersion == "" || ps[0].ConnectedAt.IsZero() {
			return fmt.Errorf("unexpected proxies %+v", ps)
		}
		return nil
	})
	if v := metricValue(t, m, "meshlens_xds_connected_proxies", ""); v != 1 {
		t.Fatalf("connected gauge = %v, want 1", v)
	}
	if v := metricValue(t, m, "meshlens_xds_pushes_total", "rds"); v < 1 {
		t.Fatalf("pushes_total{type=rds} = %v", v)
	}
}

// TestStuckStreamDoesNotDelayOthers opens an ADS stream that never reads
// and pushes large snapshots until its HTTP/2 window is exhausted; a
// reading client must still receive every push.
func TestStuckStreamDoesNotDelayOthers(t *testing.T) {
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func() *grpc.ClientConn {
		cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	// Many services make each cluster push tens of kilobytes.
	bigConfig := func(port int) string {
		var b strings.Builder
		for i := range 300 {
			fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: svc%d, namespace: default}\nspec:\n  hosts: [svc%d.default.svc.cluster.local]\n  ports: [{number: %d, name: grpc, protocol: GRPC}]\n  endpoints: [{address: 10.0.%d.%d}]\n", i, i, port, i/250, i%250+1)
		}
		return b.String()
	}
	m.apply(bigConfig(1000))
	wildcard := map[string][]string{resource.ClusterType: nil}
	if _, err := newADSClient(ctx, dial(), "stuck", wildcard); err != nil { // never run: never reads
		t.Fatal(err)
	}
	reader, err := newADSClient(ctx, dial(), "reader", wildcard)
	if err != nil {
		t.Fatal(err)
	}
	go reader.run()
	for i := range 30 {
		m.apply(bigConfig(2000 + i))
		v := fmt.Sprintf("%d.%d", m.version, m.srv.push)
		if err := reader.waitAcked(ctx, resource.ClusterType, v); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	for _, p := range m.srv.Proxies() {
		if p.ID == "stuck" && p.InSync {
			t.Fatal("the stuck stream cannot have ACKed")
		}
	}
}

// metricValue reads a counter or gauge from the mesh's registry; label, if
// set, is the value of its only label.
func metricValue(t *testing.T, m *testMesh, name, label string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if label != "" && (len(mt.GetLabel()) != 1 || mt.GetLabel()[0].GetValue() != label) {
				continue
			}
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	return 0
}

// resourceName decodes the name of a listener in a discovery response.
func resourceName(a *anypb.Any) string {
	var l listenerv3.Listener
	if err := a.UnmarshalTo(&l); err != nil {
		return "?" + a.GetTypeUrl()
	}
	return l.GetName()
}

func TestNodeFlavourSelectsResourceShape(t *testing.T) {
	m := newTestMesh(t)
	m.apply(serviceYAML(echoHost, meshtest.NewBackend("v1", "v1", 7001)))
	cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		node *corev3.Node
		want []string
	}{
		{"envoy user agent gets sidecar listeners", &corev3.Node{Id: "sidecar", UserAgentName: "envoy"}, []string{"0.0.0.0_9000"}},
		{"grpc user agent gets API and server listeners", &corev3.Node{Id: "proxyless", UserAgentName: "gRPC Go"},
			[]string{echoTarget, fmt.Sprintf(ServerListenerTemplate, "127.0.0.1:7001")}},
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

func TestTranslationErrorKeepsPreviousResources(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	base := serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2")
	m.apply(base + vsWeightsYAML(100, 0))
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 10, 1); got["v1"] != 10 {
		t.Fatalf("baseline: %v", got)
	}
	m.version++
	bad := parseSnapshot(t, m.version, base+vsYAML(`  - fault: {delay: {exponentialDelay: 1s}}
    route: [{destination: {host: echo, subset: v2}}]
`))
	if err := m.srv.Update(bad); err == nil || !strings.Contains(err.Error(), "exponentialDelay") && !strings.Contains(err.Error(), "fixedDelay") {
		t.Fatalf("want a translation error naming the field, got %v", err)
	}
	if got := distribution(t, c, 10, 1); got["v1"] != 10 {
		t.Fatalf("the client must keep the previous routes: %v", got)
	}
	if v := metricValue(t, m, "meshlens_xds_translate_errors_total", ""); v < 1 {
		t.Fatalf("translate_errors_total = %v", v)
	}
}
