package mesh

import (
	"math"
	"testing"
)

func TestQuantileInterpolatesInsideBucketLikePrometheus(t *testing.T) {
	counts := make([]uint64, len(LatencyBucketsMs)+1)
	// 100 observations in (10, 25] ms.
	counts[BucketIndex(20)] = 100
	if got := Quantile(0.5, counts); math.Abs(got-17.5) > 1e-9 {
		t.Fatalf("p50 = %v, want 17.5", got)
	}
	if got := Quantile(0.99, counts); math.Abs(got-24.85) > 1e-9 {
		t.Fatalf("p99 = %v, want 24.85", got)
	}
}

func TestQuantileOfNothingIsNaN(t *testing.T) {
	if got := Quantile(0.5, make([]uint64, len(LatencyBucketsMs)+1)); !math.IsNaN(got) {
		t.Fatalf("got %v, want NaN", got)
	}
}

func TestBucketIndexBoundsAreInclusive(t *testing.T) {
	if got := BucketIndex(5); LatencyBucketsMs[got] != 5 {
		t.Fatalf("5ms went to bucket le=%v", LatencyBucketsMs[got])
	}
	if got := BucketIndex(1e9); got != len(LatencyBucketsMs) {
		t.Fatalf("huge latency in bucket %d, want +Inf", got)
	}
}

func TestParseCluster(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
		want Cluster
	}{
		{"outbound|9080|v2|reviews.default.svc.cluster.local", true, Cluster{"outbound", 9080, "v2", "reviews.default.svc.cluster.local"}},
		{"inbound|8080||", true, Cluster{"inbound", 8080, "", ""}},
		{"outbound|x|v1|h", false, Cluster{}},
		{"reviews", false, Cluster{}},
	}
	for _, tt := range tests {
		got, ok := ParseCluster(tt.name)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseCluster(%q) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
		if ok && got.String() != tt.name {
			t.Errorf("round trip %q -> %q", tt.name, got.String())
		}
	}
}

func TestServiceOfHost(t *testing.T) {
	for host, want := range map[string][2]string{
		"reviews.default.svc.cluster.local": {"reviews", "default"},
		"reviews.shop":                      {"reviews", "shop"},
		"reviews:9080":                      {"reviews", ""},
		"api.example.com":                   {"api.example.com", ""},
	} {
		s, ns := ServiceOfHost(host)
		if s != want[0] || ns != want[1] {
			t.Errorf("ServiceOfHost(%q) = %q, %q; want %q, %q", host, s, ns, want[0], want[1])
		}
	}
}
