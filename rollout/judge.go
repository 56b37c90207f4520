package rollout

import (
	"fmt"
	"math"
	"slices"
	"time"

	"gonum.org/v1/gonum/mathext"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/meshlens/meshlens/graph"
)

// Result of one verdict.
type Result string

// Results.
const (
	Pass         Result = "pass"
	Fail         Result = "fail"
	Inconclusive Result = "inconclusive" // too little traffic to decide either way
)

// VersionNumbers are the stats a verdict saw for one version.
type VersionNumbers struct {
	Version   string  `json:"version"`
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	ErrorRate float64 `json:"errorRate"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	Samples   int     `json:"samples"`
	MedianMs  float64 `json:"medianMs"` // of the samples
}

// Verdict is one judgement of the candidate, with every number it used.
type Verdict struct {
	At        time.Time      `json:"at"`
	Step      int            `json:"step"`
	Result    Result         `json:"result"`
	Reasons   []string       `json:"reasons"`
	Window    Duration       `json:"window"`
	Candidate VersionNumbers `json:"candidate"`
	Stable    VersionNumbers `json:"stable"`
	// ErrorRateP is the exact binomial p-value of H1: the candidate's true
	// error rate is above maxErrorRate. P99P is the same for H1: more than
	// 1% of the candidate's latency samples are above maxP99Ms (1 when no
	// maximum is set).
	ErrorRateP float64 `json:"errorRateP"`
	P99P       float64 `json:"p99P"`
	// Comparison of error rates, H1: candidate's > stable's. ErrorZ is the
	// pooled two-proportion z statistic, ErrorP the one-sided p-value of
	// Fisher's exact test, and ErrorIncreaseLow the lower confidence bound
	// (1-alpha, Newcombe's score interval) of candidate minus stable rate.
	ErrorZ           float64 `json:"errorZ"`
	ErrorP           float64 `json:"errorP"`
	ErrorIncreaseLow float64 `json:"errorIncreaseLow"`
	// Mann-Whitney U on latency samples, H1: candidate slower.
	LatencyU      float64 `json:"latencyU"`
	LatencyZ      float64 `json:"latencyZ"`
	LatencyP      float64 `json:"latencyP"`
	LatencyEffect float64 `json:"latencyEffect"` // P(candidate sample > stable sample)
}

func numbers(version string, vs graph.VersionStats) VersionNumbers {
	n := VersionNumbers{Version: version, Requests: vs.Requests, Errors: vs.Errors, ErrorRate: vs.ErrorRate,
		P50Ms: vs.P50Ms, P99Ms: vs.P99Ms, Samples: len(vs.SamplesMs)}
	if len(vs.SamplesMs) > 0 {
		s := slices.Clone(vs.SamplesMs)
		slices.Sort(s)
		n.MedianMs = stat.Quantile(0.5, stat.Empirical, s, nil)
	}
	return n
}

// judge decides on the candidate from the stats of both versions over the
// same window. Thresholds and comparisons only decide with at least
// MinSamples requests (samples for the rank test) on each side they use.
func judge(a Analysis, cand, stable graph.VersionStats, candVersion, stableVersion string) Verdict {
	a = a.withDefaults()
	v := Verdict{Result: Pass, Candidate: numbers(candVersion, cand), Stable: numbers(stableVersion, stable),
		ErrorRateP: 1, P99P: 1, ErrorP: 1, ErrorIncreaseLow: -1, LatencyP: 1}
	if cand.Requests < a.MinSamples {
		v.Result = Inconclusive
		v.Reasons = append(v.Reasons, fmt.Sprintf("candidate has %d requests, fewer than the %d needed to decide", cand.Requests, a.MinSamples))
		return v
	}
	fail := func(format string, args ...any) {
		v.Result = Fail
		v.Reasons = append(v.Reasons, fmt.Sprintf(format, args...))
	}
	// Thresholds are tested, not compared: with 50 requests one error more
	// or less moves the observed rate by 2%, and over thousands of verdicts
	// a point estimate near the limit would roll back healthy canaries. A
	// threshold fails when the data make it unlikely (p < alpha) that the
	// candidate is within it; a candidate failing every request does so on
	// its first verdict.
	v.ErrorRateP = binomialUpper(cand.Errors, cand.Requests, *a.MaxErrorRate)
	if v.ErrorRateP < a.Alpha {
		fail("candidate error rate %.4f exceeds the maximum %.4f (%d of %d requests, binomial p=%.2g)",
			cand.ErrorRate, *a.MaxErrorRate, cand.Errors, cand.Requests, v.ErrorRateP)
	}
	if a.MaxP99Ms > 0 {
		if n := len(cand.SamplesMs); n >= int(a.MinSamples) {
			var slow int
			for _, ms := range cand.SamplesMs {
				if ms > a.MaxP99Ms {
					slow++
				}
			}
			v.P99P = binomialUpper(uint64(slow), uint64(n), 0.01)
			if v.P99P < a.Alpha {
				fail("candidate p99 exceeds the maximum %.1f ms: %d of %d latency samples above it (p99 %.1f ms, binomial p=%.2g)",
					a.MaxP99Ms, slow, n, cand.P99Ms, v.P99P)
			}
		} else {
			v.Reasons = append(v.Reasons, fmt.Sprintf("%d latency samples: no p99 check", n))
		}
	}
	if stable.Requests >= a.MinSamples {
		v.ErrorZ, v.ErrorP = proportionTest(cand.Errors, cand.Requests, stable.Errors, stable.Requests)
		v.ErrorIncreaseLow = differenceLowerBound(cand.Errors, cand.Requests, stable.Errors, stable.Requests, a.Alpha)
		if v.ErrorP < a.Alpha && v.ErrorIncreaseLow > *a.MaxErrorRateIncrease {
			fail("candidate error rate %.4f is significantly above stable's %.4f, by at least %.4f (z=%.2f, Fisher p=%.2g)",
				cand.ErrorRate, stable.ErrorRate, v.ErrorIncreaseLow, v.ErrorZ, v.ErrorP)
		}
	} else {
		v.Reasons = append(v.Reasons, fmt.Sprintf("stable has %d requests: no error-rate comparison", stable.Requests))
	}
	if len(cand.SamplesMs) >= int(a.MinSamples) && len(stable.SamplesMs) >= int(a.MinSamples) {
		v.LatencyU, v.LatencyZ, v.LatencyP, v.LatencyEffect = mannWhitney(cand.SamplesMs, stable.SamplesMs)
		delta := v.Candidate.MedianMs - v.Stable.MedianMs
		if v.LatencyP < a.Alpha && delta > a.MinLatencyDeltaMs && delta > a.MaxLatencyIncrease*v.Stable.MedianMs {
			fail("candidate latency is significantly above stable's: median %.2f ms vs %.2f ms (Mann-Whitney U=%.0f, z=%.2f, p=%.2g)",
				v.Candidate.MedianMs, v.Stable.MedianMs, v.LatencyU, v.LatencyZ, v.LatencyP)
		}
	} else {
		v.Reasons = append(v.Reasons, fmt.Sprintf("latency samples %d/%d: no latency comparison", len(cand.SamplesMs), len(stable.SamplesMs)))
	}
	if v.Result == Pass {
		v.Reasons = append(v.Reasons, fmt.Sprintf("candidate error rate %.4f, p99 %.1f ms over %d requests: within limits", cand.ErrorRate, cand.P99Ms, cand.Requests))
	}
	return v
}

// proportionTest compares error rates, H1: p1 > p2. z is the pooled
// two-proportion z statistic, reported for reading; p is the one-sided
// p-value of Fisher's exact test. Errors are rare events and the judge runs
// on small windows, where the normal approximation is too eager: 6 errors in
// 330 requests against none in 300 gives p≈0.003 by z but 0.02 exactly, and
// across many canaries that difference is the difference between zero and
// several false rollbacks.
func proportionTest(x1, n1, x2, n2 uint64) (z, p float64) {
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	pool := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0, 1 // both all-success or both all-failure: no evidence of a difference
	}
	z = (p1 - p2) / se
	return z, fisherUpper(x1, n1, x1+x2, n1+n2)
}

// fisherUpper is P(X >= x) for X hypergeometric: n draws from a population
// of size total holding k errors — the one-sided p-value of Fisher's exact
// test that the first group has more errors than chance would give it.
func fisherUpper(x, n, k, total uint64) float64 {
	lchoose := func(a, b uint64) float64 {
		la, _ := math.Lgamma(float64(a) + 1)
		lb, _ := math.Lgamma(float64(b) + 1)
		lab, _ := math.Lgamma(float64(a-b) + 1)
		return la - lb - lab
	}
	hi := min(n, k)
	var p float64
	for i := x; i <= hi; i++ {
		if k-i > total-n {
			continue // impossible: more errors left than the other group holds
		}
		p += math.Exp(lchoose(k, i) + lchoose(total-k, n-i) - lchoose(total, n))
	}
	return min(p, 1)
}

// binomialUpper is P(X >= x) for X ~ Binomial(n, p): the one-sided exact
// p-value of H1 "the true rate is above p" after x events in n trials.
func binomialUpper(x, n uint64, p float64) float64 {
	switch {
	case x == 0:
		return 1
	case x > n:
		return 0
	case p <= 0:
		return 0 // any event disproves a rate of zero
	case p >= 1:
		return 1
	}
	// P(X >= x) = I_p(x, n-x+1), the regularised incomplete beta function.
	return mathext.RegIncBeta(float64(x), float64(n-x+1), p)
}

// differenceLowerBound is the lower end of the one-sided 1-alpha confidence
// interval for p1 - p2 by Newcombe's hybrid score method (his method 10):
// Wilson intervals for each rate, combined. Unlike the Wald interval it
// stays sensible for rare events and small samples, where the judge lives.
func differenceLowerBound(x1, n1, x2, n2 uint64, alpha float64) float64 {
	if n1 == 0 || n2 == 0 {
		return -1 // no evidence: the widest bound (JSON has no infinity)
	}
	z := distuv.UnitNormal.Quantile(1 - alpha)
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	l1, _ := wilson(p1, float64(n1), z)
	_, u2 := wilson(p2, float64(n2), z)
	return p1 - p2 - math.Sqrt((p1-l1)*(p1-l1)+(u2-p2)*(u2-p2))
}

// wilson is the Wilson score interval of a proportion p observed in n
// trials, at normal quantile z.
func wilson(p, n, z float64) (lo, hi float64) {
	z2 := z * z
	centre := (p + z2/(2*n)) / (1 + z2/n)
	half := z * math.Sqrt(p*(1-p)/n+z2/(4*n*n)) / (1 + z2/n)
	return max(centre-half, 0), min(centre+half, 1)
}

// mannWhitney is the one-sided Mann-Whitney U test of H1: x tends to be
// larger than y, with the normal approximation and tie correction. effect is
// U/(n1·n2), the probability that a sample of x exceeds one of y.
func mannWhitney(x, y []float64) (u, z, p, effect float64) {
	n1, n2 := len(x), len(y)
	if n1 == 0 || n2 == 0 {
		return 0, 0, 1, 0.5
	}
	type obs struct {
		v     float64
		fromX bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	slices.SortFunc(all, func(a, b obs) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	var rankX, tieSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // mean of ranks i+1..j
		t := float64(j - i)
		tieSum += t*t*t - t
		for k := i; k < j; k++ {
			if all[k].fromX {
				rankX += rank
			}
		}
		i = j
	}
	fn1, fn2 := float64(n1), float64(n2)
	u = rankX - fn1*(fn1+1)/2
	n := fn1 + fn2
	sigma := math.Sqrt(fn1 * fn2 / 12 * ((n + 1) - tieSum/(n*(n-1))))
	effect = u / (fn1 * fn2)
	if sigma == 0 {
		return u, 0, 1, effect
	}
	z = (u - fn1*fn2/2 - 0.5) / sigma // continuity correction toward H0
	return u, z, 1 - distuv.UnitNormal.CDF(z), effect
}
