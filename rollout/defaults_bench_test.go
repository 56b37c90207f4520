package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// BenchmarkRollbackWithServeDefaults measures what a user of `meshlens
// serve` sees when a canary breaks: the live graph's default buckets (10 s
// finest), the engine's default tick, and a Rollout with no analysis
// settings (interval 5s, window 30s, minSamples 50, failureLimit 2). The
// e2e tests judge every 200 ms on 1 s buckets; this is the production path.
// It prints the time from the first bad response to clients seeing only
// stable, beside the same figure for the tests' settings as the reference.
func BenchmarkRollbackWithServeDefaults(b *testing.B) {
	measure := func(r *rig, analysis string) time.Duration {
		r.startEngine()
		l := r.startLoad(r.client(), 4, 5*time.Millisecond)
		defer l.Stop()
		r.apply(fmt.Sprintf(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: echo, namespace: default}
spec:
  service: echo
  stable: stable
  candidate: canary
  strategy: {canary: {steps: [50, 100], minDuration: 1h}}
%s`, analysis))
		r.waitState("echo", Progressing, 10*time.Second)
		time.Sleep(2 * time.Second) // both versions serve before the break
		_, took := r.breakCandidate(l, "echo")
		return took
	}
	var prod, tests time.Duration
	for range b.N {
		prod += measure(newRigWith(b, graph.Config{}, 0), "")
		tests += measure(newRig(b), "  analysis: {interval: 200ms, window: 3s, minSamples: 30}\n")
	}
	prod /= time.Duration(b.N)
	tests /= time.Duration(b.N)
	b.ReportMetric(prod.Seconds(), "s-to-rollback")
	fmt.Printf("first bad response → only stable: %v with serve's defaults; %v with the tests' 200ms judge on 1s buckets (reference); ratio %.1f; target < 10s\n",
		prod.Round(time.Millisecond), tests.Round(time.Millisecond), prod.Seconds()/tests.Seconds())
}
