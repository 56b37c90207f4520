package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// reviewsWeights are the weights of the reviews subsets in the routes an
// Envoy sidecar of ns gets from the xDS server at xdsAddr ("v1" -> 80).
func reviewsWeights(xdsAddr, ns string) (map[string]uint32, error) {
	routes, err := adsFetch(xdsAddr, ns, map[string]any{"app": "productpage"}, resource.RouteType)
	if err != nil {
		return nil, err
	}
	host := "reviews." + ns + ".svc.cluster.local"
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
// its own config. An Envoy-style ADS client (grpc-go) of the follower gets
// routes with reviews v1 80 / v2 20 at the canary's first step.
func TestMeshlensProviderRolloutWeightsReachProxiesOfAFollower(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "replicas-xds")
	rolloutGVR := schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: "rollouts"}
	t.Cleanup(func() {
		_ = c.Dynamic.Resource(rolloutGVR).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}}}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Subsets only: the rollout's VirtualService is meshlens' own.
	if err := c.Apply(ctx, ns, []byte(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
`)); err != nil {
		t.Fatal(err)
	}
	xdsAddrs := []string{freeAddr(t), freeAddr(t)}
	rs := startReplicasWith(t, 2, func(i int) []string {
		return []string{"--kubeconfig", c.Kubeconfig, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
			"--xds", xdsAddrs[i], "--traffic-provider", "meshlens", "--leader-elect", "--leader-elect-lease", ns + "/meshlens",
			"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}
	})
	leader := rs.leader(t, 60*time.Second)
	follower := 1 - leader

	if err := c.Apply(ctx, ns, []byte(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  service: reviews
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [20, 100], minDuration: 1h, minRequests: 1000000}}
`)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name string
		i    int
	}{{"leader", leader}, {"follower", follower}} {
		meshtest.Eventually(t, 30*time.Second, "the "+r.name+"'s xDS routes reviews v1 80, v2 20", func() error {
			w, err := reviewsWeights(xdsAddrs[r.i], ns)
			if err != nil {
				return err
			}
			if w["v1"] != 80 || w["v2"] != 20 {
				return fmt.Errorf("weights %v", w)
			}
			return nil
		})
	}
}
