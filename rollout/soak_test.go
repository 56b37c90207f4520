package rollout

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// BenchmarkSoakHealthyCanaries cycles canary rollouts end to end (real xDS
// clients, live graph, judge, config store) between two equally healthy
// versions with the same background noise — jittered latency and 0.5%
// random errors on both — for MESHLENS_SOAK_DURATION (default 30s; the
// issue's soak is 30m). Every rollback is a false rollback; it prints the
// count.
func BenchmarkSoakHealthyCanaries(b *testing.B) {
	d := 30 * time.Second
	if v := os.Getenv("MESHLENS_SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			b.Fatalf("MESHLENS_SOAK_DURATION: %v", err)
		}
	}
	r := newRig(b)
	r.startEngine()
	for _, be := range []*meshtest.Backend{r.v1, r.v2} {
		be.Delay.Store(int64(500 * time.Microsecond))
		be.Jitter.Store(int64(2 * time.Millisecond))
		be.ErrPerK.Store(5)
	}
	r.startLoad(r.client(), 6, 2*time.Millisecond)
	b.ResetTimer()
	cycles, promoted, falseRollbacks := 0, 0, 0
	subsets := [2]string{"stable", "canary"}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		stable, cand := subsets[cycles%2], subsets[(cycles+1)%2]
		r.apply(fmt.Sprintf(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: echo, namespace: default}
spec:
  service: echo
  stable: %s
  candidate: %s
  strategy: {canary: {steps: [25, 50, 100], minDuration: 400ms, minRequests: 30}}
  analysis: {interval: 200ms, window: 3s, minSamples: 30}
`, stable, cand))
		cycles++
		end := time.Now().Add(60 * time.Second)
		for {
			st := r.status("echo")
			if st.SpecHash != "" && st.Candidate == cand && st.State.Terminal() {
				if st.State == Succeeded {
					promoted++
				} else {
					falseRollbacks++
					// The rollout keeps its name across cycles, so its history
					// is long: print the reasons of the rollback's own verdicts,
					// which go test would otherwise truncate away.
					fmt.Printf("cycle %d: false rollback: %s\n%s", cycles, st.Message, lastEntries(historyText(st), 12))
				}
				break
			}
			if time.Now().After(end) {
				b.Fatalf("cycle %d did not finish: %s step %d", cycles, st.State, st.Step)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cycles), "cycles")
	b.ReportMetric(float64(falseRollbacks), "false-rollbacks")
	fmt.Printf("soak %v: %d healthy canaries cycled, %d promoted, %d false rollbacks\n", d, cycles, promoted, falseRollbacks)
}

// lastEntries keeps the last n lines of a history text.
func lastEntries(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
