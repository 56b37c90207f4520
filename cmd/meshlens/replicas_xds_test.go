package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// subsetWeights are the weights of service's subsets v1 and v2 (port 9080)
// in the routes an Envoy sidecar of ns gets from the xDS server at xdsAddr
// ("v1" -> 80).
func subsetWeights(xdsAddr, ns, service string) (map[string]uint32, error) {
	routes, err := adsFetch(xdsAddr, ns, map[string]any{"app": "productpage"}, resource.RouteType)
	if err != nil {
		return nil, err
	}
	host := service + "." + ns + ".svc.cluster.local"
	out := map[string]uint32{}
	for _, js := range routes {
		var rc routev3.RouteConfiguration
		if err := protojson.Unmarshal([]byte(js), &rc); err != nil {
			return nil, err
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
					for _, subset := range []string{"v1", "v2"} {
						if wc.GetName() == "outbound|9080|"+subset+"|"+host {
							out[subset] = wc.GetWeight().GetValue()
						}
					}
				}
			}
		}
	}
	return out, nil
}

// With the meshlens traffic provider and two replicas under --leader-elect,
// a Rollout's weights, written by the leader into its own config, reach the
// proxies connected to the follower's xDS server too: the follower writes
// the weights of the state the leader mirrors to the Rollout's status into
// its own config. Both replicas read the same config dir (echo's
// ServiceEntry, WorkloadEntries of two loopback backends, subsets) and the
// Rollout from the API server. At the canary's first step (10%) an
// Envoy-style ADS client gets routes echo v1 90 / v2 10 from either
// replica, and a proxyless grpc-go xDS client of the follower sends about
// a tenth of its calls to v2 (without the rollout's routes they split
// evenly between the two endpoints).
func TestMeshlensProviderRolloutWeightsReachProxiesOfAFollower(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "replicas-xds")
	rolloutGVR := schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: "rollouts"}
	t.Cleanup(func() {
		_ = c.Dynamic.Resource(rolloutGVR).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	})
	v1, v2 := meshtest.StartBackend(t, "v1", "v1").Port, meshtest.StartBackend(t, "v2", "v2").Port
	configDir := t.TempDir()
	mesh := strings.ReplaceAll(fmt.Sprintf(echoConfig, v1, v2), "shop", ns)
	if err := os.WriteFile(filepath.Join(configDir, "echo.yaml"), []byte(mesh), 0o600); err != nil {
		t.Fatal(err)
	}
	xdsAddrs := []string{freeAddr(t), freeAddr(t)}
	rs := startReplicasWith(t, 2, func(i int) []string {
		return []string{"--kubeconfig", c.Kubeconfig, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
			"--config-dir", configDir, "--xds", xdsAddrs[i], "--traffic-provider", "meshlens", "--leader-elect", "--leader-elect-lease", ns + "/meshlens",
			"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}
	})
	leader := rs.leader(t, 60*time.Second)
	follower := 1 - leader

	if err := c.Apply(ctx, ns, []byte(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: echo}
spec:
  service: echo
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [10, 100], minDuration: 1h, minRequests: 1000000}}
`)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name string
		i    int
	}{{"leader", leader}, {"follower", follower}} {
		meshtest.Eventually(t, 30*time.Second, "the "+r.name+"'s xDS routes echo v1 90, v2 10", func() error {
			w, err := subsetWeights(xdsAddrs[r.i], ns, "echo")
			if err != nil {
				return err
			}
			if w["v1"] != 90 || w["v2"] != 10 {
				return fmt.Errorf("weights %v", w)
			}
			return nil
		})
	}

	boot, err := xds.GRPCBootstrap{ServerAddr: xdsAddrs[follower], NodeID: "sidecar~127.0.0.1~client." + ns + "~" + ns + ".svc.cluster.local",
		Cluster: "client", Metadata: map[string]string{"NAMESPACE": ns}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	client := meshtest.XDSClient(t, boot, "echo."+ns+".svc.cluster.local:9080", nil)
	got := map[string]int{}
	for range 200 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := client.UnaryCall(cctx, &testpb.SimpleRequest{})
		cancel()
		if err != nil {
			got["error: "+err.Error()]++
			continue
		}
		got[resp.GetHostname()]++
	}
	// 10% of 200: 20 expected, 5 standard deviations below 50 (an even split).
	if got["v1"]+got["v2"] != 200 || got["v2"] < 3 || got["v2"] > 45 {
		t.Errorf("calls through the follower went %v, want about 180 to v1 and 20 to v2", got)
	}
}
