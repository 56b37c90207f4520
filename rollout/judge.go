package rollout

import (
	"fmt"
	"slices"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/stattest"
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
	v.ErrorRateP = stattest.BinomialUpper(cand.Errors, cand.Requests, *a.MaxErrorRate)
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
			v.P99P = stattest.BinomialUpper(uint64(slow), uint64(n), 0.01)
			if v.P99P < a.Alpha {
				fail("candidate p99 exceeds the maximum %.1f ms: %d of %d latency samples above it (p99 %.1f ms, binomial p=%.2g)",
					a.MaxP99Ms, slow, n, cand.P99Ms, v.P99P)
			}
		} else {
			v.Reasons = append(v.Reasons, fmt.Sprintf("%d latency samples: no p99 check", n))
		}
	}
	if stable.Requests >= a.MinSamples {
		v.ErrorZ, v.ErrorP = stattest.ProportionTest(cand.Errors, cand.Requests, stable.Errors, stable.Requests)
		v.ErrorIncreaseLow = stattest.DifferenceLowerBound(cand.Errors, cand.Requests, stable.Errors, stable.Requests, a.Alpha)
		if v.ErrorP < a.Alpha && v.ErrorIncreaseLow > *a.MaxErrorRateIncrease {
			fail("candidate error rate %.4f is significantly above stable's %.4f, by at least %.4f (z=%.2f, Fisher p=%.2g)",
				cand.ErrorRate, stable.ErrorRate, v.ErrorIncreaseLow, v.ErrorZ, v.ErrorP)
		}
	} else {
		v.Reasons = append(v.Reasons, fmt.Sprintf("stable has %d requests: no error-rate comparison", stable.Requests))
	}
	if len(cand.SamplesMs) >= int(a.MinSamples) && len(stable.SamplesMs) >= int(a.MinSamples) {
		v.LatencyU, v.LatencyZ, v.LatencyP, v.LatencyEffect = stattest.MannWhitney(cand.SamplesMs, stable.SamplesMs)
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
