package rollout

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/graph"
)

func TestMannWhitneyMatchesKnownValues(t *testing.T) {
	// x entirely above y: U = n1*n2, effect 1.
	u, _, p, eff := mannWhitney([]float64{10, 11, 12, 13, 14, 15, 16, 17}, []float64{1, 2, 3, 4, 5, 6, 7, 8})
	if u != 64 || eff != 1 || p > 0.001 {
		t.Fatalf("separated samples: U=%v effect=%v p=%v", u, eff, p)
	}
	// Identical samples: U = n1*n2/2, no evidence.
	same := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	u, z, p, eff := mannWhitney(same, same)
	if u != 50 || eff != 0.5 || z > 0 || p < 0.5 {
		t.Fatalf("identical samples: U=%v z=%v p=%v effect=%v", u, z, p, eff)
	}
	// Textbook example (ties): x={1,2,2,3}, y={2,3,4,5}: ranks of x 1,3,3,5.5 → R=12.5, U=2.5.
	u, _, _, _ = mannWhitney([]float64{1, 2, 2, 3}, []float64{2, 3, 4, 5})
	if u != 2.5 {
		t.Fatalf("tied samples: U=%v, want 2.5", u)
	}
}

func TestProportionTest(t *testing.T) {
	for _, tc := range []struct {
		name           string
		x1, n1, x2, n2 uint64
		wantSig        bool
	}{
		{"10% vs 1% on 1000 each is significant", 100, 1000, 10, 1000, true},
		{"2% vs 1% on 100 each is not", 2, 100, 1, 100, false},
		{"no errors on either side", 0, 500, 0, 500, false},
		{"candidate better than stable", 1, 1000, 50, 1000, false},
		{"6 rare errors against none is chance, exactly", 6, 330, 0, 300, false},
		{"15 errors against none is not", 15, 330, 0, 300, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z, p := proportionTest(tc.x1, tc.n1, tc.x2, tc.n2)
			if (p < 0.01) != tc.wantSig || math.IsNaN(z) {
				t.Fatalf("z=%v p=%v, want significant=%v", z, p, tc.wantSig)
			}
		})
	}
}

func TestFisherUpperMatchesHandComputedTails(t *testing.T) {
	// 2x2 table [[3,1],[1,3]]: P(X>=3) = (16+1)/70.
	if got := fisherUpper(3, 4, 4, 8); math.Abs(got-17.0/70) > 1e-12 {
		t.Fatalf("P(X>=3) = %v, want %v", got, 17.0/70)
	}
	// All errors in the first group of 330 out of 630: (330/630)^6 roughly.
	if got := fisherUpper(6, 330, 6, 630); got < 0.015 || got > 0.025 {
		t.Fatalf("P(X>=6) = %v, want about 0.02", got)
	}
	if got := fisherUpper(0, 10, 3, 20); math.Abs(got-1) > 1e-12 {
		t.Fatalf("P(X>=0) = %v, want 1", got)
	}
}

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
		{"error rate significantly above stable fails", Analysis{MaxErrorRate: ptr(0.5)},
			graph.VersionStats{Requests: 1000, Errors: 40, ErrorRate: 0.04, SamplesMs: samples(r, 500, 5, 5)}, Fail, "significantly above stable's 0.0050"},
		{"p99 over the maximum fails", Analysis{MaxP99Ms: maxP99},
			graph.VersionStats{Requests: 500, P99Ms: 80, SamplesMs: samples(r, 500, 5, 5)}, Fail, "p99"},
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
