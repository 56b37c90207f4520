package mesh

import (
	"math"
	"sort"
)

// LatencyBucketsMs are the upper bounds, in milliseconds, of the request
// duration histogram. They are Istio's defaults for
// istio_request_duration_milliseconds, so the live graph, the ClickHouse
// rollups and a Prometheus running Istio compute percentiles from the same
// buckets and agree with each other.
var LatencyBucketsMs = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// BucketIndex returns the index of the first bucket whose upper bound is >= ms,
// or len(LatencyBucketsMs) for the implicit +Inf bucket.
func BucketIndex(ms float64) int {
	return sort.SearchFloat64s(LatencyBucketsMs, ms)
}

// Quantile estimates the q-quantile (0 < q < 1) from per-bucket counts laid out
// like LatencyBucketsMs plus a final +Inf bucket (len(LatencyBucketsMs)+1
// entries, not cumulative). It interpolates linearly inside a bucket, exactly
// as Prometheus's histogram_quantile does, so the sources agree. It returns NaN
// when there are no observations.
func Quantile(q float64, counts []uint64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	var cum uint64
	for i, c := range counts {
		if c == 0 || float64(cum+c) < rank {
			cum += c
			continue
		}
		if i >= len(LatencyBucketsMs) {
			// The +Inf bucket: Prometheus returns the largest finite bound.
			return LatencyBucketsMs[len(LatencyBucketsMs)-1]
		}
		lower := 0.0
		if i > 0 {
			lower = LatencyBucketsMs[i-1]
		}
		upper := LatencyBucketsMs[i]
		return lower + (upper-lower)*(rank-float64(cum))/float64(c)
	}
	return LatencyBucketsMs[len(LatencyBucketsMs)-1]
}
