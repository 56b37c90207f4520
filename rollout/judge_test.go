package rollout

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/graph"
)

func samples(r *rand.Rand, n int, base, jitter float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = base + r.Float64()*jitter
	}
	return out
}

func TestJudgeVerdicts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	stable := graph.VersionStats{Requests: 1000, Errors: 5, ErrorRate: 0.005, P99Ms: 10, SamplesMs: samples(r, 500, 5, 5)}
	maxP99 := 50.0
	for _, tc := range []struct {
		name   string
		a      Analysis
		cand   graph.VersionStats
		want   Result
		reason string
	}{
		{"healthy candidate passes", Analysis{},
			graph.VersionStats{Requests: 500, Errors: 2, ErrorRate: 0.004, P99Ms: 10, SamplesMs: samples(r, 500, 5, 5)}, Pass, "within limits"},
		{"few requests is inconclusive even if all fail", Analysis{},
			graph.VersionStats{Requests: 20, Errors: 20, ErrorRate: 1}, Inconclusive, "fewer than"},
		{"error rate over the maximum fails", Analysis{},
			graph.VersionStats{Requests: 500, Errors: 50, ErrorRate: 0.1, SamplesMs: samples(r, 500, 5, 5)}, Fail, "exceeds the maximum"},
		{"a few errors in a small window are not over the maximum", Analysis{MinSamples: 30},
			graph.VersionStats{Requests: 46, Errors: 3, ErrorRate: 3.0 / 46, SamplesMs: samples(r, 46, 5, 5)}, Pass, "within limits"},
		{"every request failing fails at the minimum sample size", Analysis{},
			graph.VersionStats{Requests: 50, Errors: 50, ErrorRate: 1, SamplesMs: samples(r, 50, 5, 5)}, Fail, "exceeds the maximum"},
		{"error rate significantly above stable fails", Analysis{MaxErrorRate: ptr(0.5)},
			graph.VersionStats{Requests: 1000, Errors: 50, ErrorRate: 0.05, SamplesMs: samples(r, 500, 5, 5)}, Fail, "significantly above stable's 0.0050"},
		{"an increase below the practical minimum passes", Analysis{MaxErrorRate: ptr(0.5)},
			graph.VersionStats{Requests: 5000, Errors: 75, ErrorRate: 0.015, SamplesMs: samples(r, 500, 5, 5)}, Pass, "within limits"},
		{"p99 over the maximum fails", Analysis{MaxP99Ms: maxP99},
			graph.VersionStats{Requests: 500, P99Ms: 80, SamplesMs: append(samples(r, 470, 5, 5), samples(r, 30, 60, 40)...)}, Fail, "30 of 500 latency samples above it"},
		{"one slow sample is not over the p99 maximum", Analysis{MaxP99Ms: maxP99},
			graph.VersionStats{Requests: 100, P99Ms: 80, SamplesMs: append(samples(r, 99, 5, 5), 80)}, Pass, "within limits"},
		{"slower candidate fails the rank test", Analysis{},
			graph.VersionStats{Requests: 500, SamplesMs: samples(r, 500, 15, 5)}, Fail, "Mann-Whitney"},
		{"slightly slower candidate (below the practical minimum) passes", Analysis{},
			graph.VersionStats{Requests: 500, SamplesMs: samples(r, 500, 5.5, 5)}, Pass, "within limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judge(tc.a, tc.cand, stable, "v2", "v1")
			if v.Result != tc.want || !strings.Contains(strings.Join(v.Reasons, "; "), tc.reason) {
				t.Fatalf("got %s %v, want %s mentioning %q", v.Result, v.Reasons, tc.want, tc.reason)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestJudgeRarelyFailsHealthyNoise is the judge's false-alarm rate, the
// thing the soak measures end to end: both versions fail 0.5% of requests
// and have the same latency; windows from the minimum sample size up. A
// rollback takes failureLimit failing verdicts, but consecutive verdicts
// share most of their window, so one verdict in a thousand failing is
// already one false rollback in a few hundred canaries.
func TestJudgeRarelyFailsHealthyNoise(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	binomial := func(n int, p float64) uint64 {
		var x uint64
		for range n {
			if r.Float64() < p {
				x++
			}
		}
		return x
	}
	version := func(n int) graph.VersionStats {
		e := binomial(n, 0.005)
		return graph.VersionStats{Requests: uint64(n), Errors: e, ErrorRate: float64(e) / float64(n),
			SamplesMs: samples(r, min(n, 500), 0.5, 2)}
	}
	a := Analysis{MinSamples: 30, MaxP99Ms: 3}
	const verdicts = 20000
	fails := 0
	for i := range verdicts {
		n := 30 + i%400
		if v := judge(a, version(n), version(3*n), "v2", "v1"); v.Result == Fail {
			fails++
			if fails <= 3 {
				t.Logf("false alarm: %v", v.Reasons)
			}
		}
	}
	t.Logf("%d of %d verdicts on healthy noise failed", fails, verdicts)
	if fails > verdicts/10000 {
		t.Fatalf("%d of %d verdicts on healthy noise failed; want at most 1 in 10,000", fails, verdicts)
	}
}

func TestJudgeCatchesRealRegressionsQuickly(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	stable := graph.VersionStats{Requests: 600, Errors: 3, ErrorRate: 0.005, SamplesMs: samples(r, 500, 0.5, 2)}
	for _, tc := range []struct {
		name string
		cand graph.VersionStats
	}{
		{"half the requests failing", graph.VersionStats{Requests: 60, Errors: 30, ErrorRate: 0.5, SamplesMs: samples(r, 60, 0.5, 2)}},
		{"10% errors", graph.VersionStats{Requests: 200, Errors: 20, ErrorRate: 0.1, SamplesMs: samples(r, 200, 0.5, 2)}},
		{"latency up by 5 ms", graph.VersionStats{Requests: 60, SamplesMs: samples(r, 60, 5.5, 2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := judge(Analysis{MinSamples: 30}, tc.cand, stable, "v2", "v1"); v.Result != Fail {
				t.Fatalf("got %s %v, want fail", v.Result, v.Reasons)
			}
		})
	}
}
