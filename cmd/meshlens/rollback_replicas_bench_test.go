package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

// BenchmarkRollbackReplicas times a failing canary's rollback with one
// meshlens and with three replicas (--leader-elect, --peers, the istio
// provider on the test API server), in the same run: from the first failing
// candidate span sent (half of them answer 500) until the rollout's
// status.engine says rolled back. Traffic is spread over the replicas, so
// the leader judges on the merged numbers. Serve's default 10 s graph
// buckets and the tick are the same in both; the figures and their ratio
// are printed, never asserted.
func BenchmarkRollbackReplicas(b *testing.B) {
	c := kubetest.Shared(b)
	const runs = 2
	took := map[int][]time.Duration{}
	b.ResetTimer()
	for _, n := range []int{1, 3} {
		for range runs {
			took[n] = append(took[n], rollbackOnce(b, c, n))
		}
	}
	b.StopTimer()
	mean := func(ds []time.Duration) float64 {
		var s time.Duration
		for _, d := range ds {
			s += d
		}
		return (s / time.Duration(len(ds))).Seconds()
	}
	b.ReportMetric(mean(took[1]), "replicas1-rollback-s")
	b.ReportMetric(mean(took[3]), "replicas3-rollback-s")
	b.ReportMetric(mean(took[3])/mean(took[1]), "replicas3/1")
	b.Logf("failing canary rolled back (mean of %d): one meshlens %.2f s %v; three replicas %.2f s %v; ratio %.2f",
		runs, mean(took[1]), took[1], mean(took[3]), took[3], mean(took[3])/mean(took[1]))
}

func rollbackOnce(b *testing.B, c *kubetest.Cluster, n int) time.Duration {
	b.StopTimer()
	defer b.StartTimer()
	ctx := context.Background()
	ns := c.Namespace(b, fmt.Sprintf("rollback%d", n))
	rolloutGVR := schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: "rollouts"}
	reviewsRoutes(b, c, ns)
	rs := startReplicas(b, n, "--kubeconfig", c.Kubeconfig, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
		"--traffic-provider", "istio", "--leader-elect", "--leader-elect-lease", ns+"/meshlens",
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms")
	defer func() {
		for _, p := range rs.procs {
			p.Stop(b)
		}
		_ = c.Dynamic.Resource(rolloutGVR).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}()
	rs.leader(b, 60*time.Second)
	errEvery := new(atomic.Int32)
	stop := rs.load(ns, errEvery)
	defer stop()
	if err := c.Apply(ctx, ns, []byte(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  service: reviews
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [50, 100], minDuration: 1h}}
  analysis: {interval: 2s, window: 30s, minSamples: 20, maxErrorRate: 0.05, failureLimit: 2}
`)); err != nil {
		b.Fatal(err)
	}
	state := func() (rollout.Status, error) {
		u, err := c.Dynamic.Resource(rolloutGVR).Namespace(ns).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			return rollout.Status{}, err
		}
		m, ok, _ := unstructured.NestedMap(u.Object, "status", "engine")
		if !ok {
			return rollout.Status{}, fmt.Errorf("no status.engine")
		}
		js, _ := json.Marshal(m)
		var st rollout.Status
		return st, json.Unmarshal(js, &st)
	}
	meshtest.Eventually(b, 60*time.Second, "the canary progresses with its routes written", func() error {
		st, err := state()
		if err == nil && (st.State != rollout.Progressing || st.Applied == nil || st.Applied.Candidate != 50) {
			err = fmt.Errorf("state %s applied %+v", st.State, st.Applied)
		}
		return err
	})
	start := time.Now()
	errEvery.Store(2)
	meshtest.Eventually(b, 120*time.Second, "the failing canary is rolled back", func() error {
		st, err := state()
		if err == nil && st.State != rollout.RolledBack {
			err = fmt.Errorf("state %s: %s", st.State, st.Message)
		}
		return err
	})
	return time.Since(start)
}
