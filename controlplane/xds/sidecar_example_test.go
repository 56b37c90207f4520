package xds

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
)

// examples/istio/sidecar.yaml's productpage Sidecar, applied as written
// with the Bookinfo services and workloads of examples/, scopes
// productpage's Envoy sidecar port by port: route 9080 has details' and
// reviews' virtual hosts and not ratings' or productpage's (which only the
// catch-all names); unknown destinations go to the egress gateway's
// cluster (egressProxy), not PassthroughCluster; and its inbound cluster
// has the Sidecar's inboundConnectionPool.
func TestSidecarExampleScopesProductpagePortByPort(t *testing.T) {
	var src []string
	for _, f := range []string{"serviceentry.yaml", "workloadentry.yaml", "sidecar.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "istio", f))
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, string(b))
	}
	snap := parseSnapshot(t, 1, strings.Join(src, "\n---\n"))
	node := Node{ID: "sidecar~10.10.0.10~productpage-v1.bookinfo~bookinfo.svc.cluster.local", Flavour: FlavourEnvoy, Namespace: "bookinfo",
		Labels: map[string]string{"app": "productpage", "version": "v1"}, IPs: []string{"10.10.0.10"}}
	out, err := Translate(Input{Config: snap}, node, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var vhosts []string
	for _, rc := range out.Routes {
		if rc.Name == "9080" {
			for _, vh := range rc.VirtualHosts {
				vhosts = append(vhosts, vh.Name)
			}
		}
	}
	want := []string{"details.bookinfo.svc.cluster.local:9080", "reviews.bookinfo.svc.cluster.local:9080", "allow_any"}
	if !slices.Equal(vhosts, want) {
		t.Errorf("route 9080's virtual hosts %v, want %v", vhosts, want)
	}
	const egress = "outbound|443||istio-egressgateway.istio-system.svc.cluster.local"
	fallback := ""
	for _, l := range out.Listeners {
		if l.Name != virtualOutbound {
			continue
		}
		var tp tcpproxy.TcpProxy
		if err := proto.Unmarshal(l.FilterChains[0].Filters[0].GetTypedConfig().GetValue(), &tp); err != nil {
			t.Fatal(err)
		}
		fallback = tp.GetCluster()
	}
	if fallback != egress {
		t.Errorf("virtualOutbound sends unknown destinations to %q, want the egress proxy's %q", fallback, egress)
	}
	found := false
	for _, c := range out.Clusters {
		if c.Name != inboundClusterName(9080) {
			continue
		}
		found = true
		th := c.GetCircuitBreakers().GetThresholds()
		if len(th) != 1 || th[0].GetMaxConnections().GetValue() != 100 || th[0].GetMaxRequests().GetValue() != 200 || c.GetConnectTimeout().AsDuration().String() != "2s" {
			t.Errorf("inbound cluster %s: circuit breakers %v, connect timeout %v; want 100 connections, 200 requests, 2s", c.Name, th, c.GetConnectTimeout().AsDuration())
		}
	}
	if !found {
		t.Errorf("no inbound cluster %s", inboundClusterName(9080))
	}
}
