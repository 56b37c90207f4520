package istiometrics

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/mesh"
)

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func peer(i int) mesh.Peer {
	return mesh.Peer{Namespace: "ns", Service: fmt.Sprintf("svc%d", i), Workload: fmt.Sprintf("svc%d-v1", i), Version: "v1"}
}

func TestSeriesLimitDropsAndCounts(t *testing.T) {
	x := newTestExporter(t, Config{MaxSeries: 5})
	// Each label set with a known caller is two series (both reporters).
	for i := range 10 {
		consume(t, x, record(peer(0), peer(i+1), "http", 200, -1, time.Millisecond, false))
	}
	if got := x.Series().HTTP; got != 4 {
		t.Fatalf("series = %d, want 4 (two label sets × two reporters within 5)", got)
	}
	if got := testutil.ToFloat64(x.m.dropped); got != 8 {
		t.Fatalf("dropped = %v, want 8", got)
	}
	// An unknown caller's label set is one series: it still fits.
	consume(t, x, record(mesh.Peer{}, peer(1), "http", 200, -1, time.Millisecond, false))
	// Series already kept go on counting.
	consume(t, x, record(peer(0), peer(1), "http", 200, -1, time.Millisecond, false))
	scrape(t, x)
	got := scrape(t, x)
	if n := len(got["istio_requests_total"]); n != 5 {
		t.Fatalf("%d series exposed, want 5", n)
	}
	s := find(got, "istio_requests_total", map[string]string{"reporter": "destination", "source_app": "svc0", "destination_app": "svc1"})
	if len(s) != 1 || s[0].value != 2 {
		t.Fatalf("svc0 -> svc1: %+v", s)
	}
	// A new mTLS mode is a new destination series: no room.
	consume(t, x, record(peer(0), peer(1), "http", 200, -1, time.Millisecond, true))
	if got := testutil.ToFloat64(x.m.dropped); got != 9 {
		t.Fatalf("dropped = %v, want 9", got)
	}
	if x.Series().HTTP != 5 {
		t.Fatalf("series = %d", x.Series().HTTP)
	}
	// TCP series have a limit of their own.
	consume(t, x, mesh.Record{Source: peer(0), Destination: peer(1), Protocol: "tcp", BytesIn: 1})
	if x.Series().TCP != 2 {
		t.Fatalf("tcp series = %d", x.Series().TCP)
	}
}

func TestUnseenSeriesExpire(t *testing.T) {
	clk := newClock()
	x := newTestExporter(t, Config{MaxSeries: 4, Expiry: time.Minute, Now: clk.now})
	consume(t, x, record(peer(0), peer(1), "http", 200, -1, time.Millisecond, false))
	consume(t, x, record(peer(0), peer(2), "http", 200, -1, time.Millisecond, false))
	clk.advance(40 * time.Second)
	consume(t, x, record(peer(0), peer(2), "http", 200, -1, time.Millisecond, false))
	// Full: svc0 -> svc3 has to wait until svc0 -> svc1 is due.
	consume(t, x, record(peer(0), peer(3), "http", 200, -1, time.Millisecond, false))
	if got := testutil.ToFloat64(x.m.dropped); got != 1 {
		t.Fatalf("dropped = %v, want 1", got)
	}
	clk.advance(30 * time.Second) // svc0 -> svc1 unseen for 70 s
	consume(t, x, record(peer(0), peer(3), "http", 200, -1, time.Millisecond, false))
	if got := testutil.ToFloat64(x.m.expired); got != 1 {
		t.Fatalf("expired = %v, want 1", got)
	}
	scrape(t, x)
	got := scrape(t, x)
	var dsts []string
	for _, s := range find(got, "istio_requests_total", map[string]string{"reporter": "destination"}) {
		dsts = append(dsts, s.labels["destination_app"])
	}
	if strings.Join(dsts, ",") != "svc2,svc3" && strings.Join(dsts, ",") != "svc3,svc2" {
		t.Fatalf("destinations after expiry: %v, want svc2 and svc3", dsts)
	}
	// A scrape expires too, without new records.
	clk.advance(2 * time.Minute)
	if got := scrape(t, x); len(got) != 0 {
		t.Fatalf("after 2m without records: %d metrics exposed", len(got))
	}
	if x.Series().HTTP != 0 || len(x.http.keys) != 0 {
		t.Fatalf("after expiry: %d series, %d keys", x.Series().HTTP, len(x.http.keys))
	}
	// An expired label set that comes back starts again at zero.
	consume(t, x, record(peer(0), peer(2), "http", 200, -1, time.Millisecond, false))
	if s := scrape(t, x)["istio_requests_total"]; len(s) != 2 || s[0].value != 0 {
		t.Fatalf("returning series: %+v", s)
	}
}

func TestBadLabelValuesAreSanitisedCappedAndCounted(t *testing.T) {
	x := newTestExporter(t, Config{})
	huge := strings.Repeat("w", 10_000)
	bad1 := mesh.Peer{Namespace: "shop", Service: "caf\xe9", Workload: huge + "a", Version: "v\xff1"}
	bad2 := mesh.Peer{Namespace: "shop", Service: "caf\xe8", Workload: huge + "b", Version: "v\xfe1"} // cleans to the same labels
	for range 3 {
		consume(t, x, record(bad1, peerA, "http", 200, -1, time.Millisecond, false))
	}
	consume(t, x, record(bad2, peerA, "http", 200, -1, time.Millisecond, false))
	// An empty and an "unknown" name are the same label value: one series.
	consume(t, x,
		record(mesh.Peer{}, peerA, "http", 500, -1, time.Millisecond, false),
		record(mesh.Peer{Service: "unknown", Namespace: "unknown", Workload: "unknown"}, peerA, "http", 500, -1, time.Millisecond, false),
		mesh.Record{Source: peerA, Destination: peerB, Protocol: "http", Code: 200, GRPCStatus: -7, Flags: ""},
		mesh.Record{Source: peerA, Destination: peerB, Protocol: "http", Code: 200, GRPCStatus: -1, Flags: "-"},
	)
	if got := testutil.ToFloat64(x.m.invalidUTF8); got != 8 {
		t.Errorf("invalid UTF-8 values = %v, want 8 (service and version of 4 records)", got)
	}
	if got := testutil.ToFloat64(x.m.tooLong); got != 4 {
		t.Errorf("too long values = %v, want 4", got)
	}
	scrape(t, x)
	got := scrape(t, x) // a duplicate label set would fail the scrape
	for _, s := range got["istio_requests_total"] {
		for k, v := range s.labels {
			if !utf8.ValidString(v) || len(v) > maxLabelBytes {
				t.Errorf("label %s = %.40q… (%d bytes)", k, v, len(v))
			}
		}
	}
	s := find(got, "istio_requests_total", map[string]string{"reporter": "destination", "source_app": "caf\uFFFD"})
	if len(s) != 1 || s[0].value != 4 || len(s[0].labels["source_workload"]) != maxLabelBytes || s[0].labels["source_version"] != "v\uFFFD1" {
		t.Fatalf("sanitised caller: %+v", s)
	}
	if s := find(got, "istio_requests_total", map[string]string{"response_code": "500"}); len(s) != 1 || s[0].value != 2 {
		t.Fatalf("unknown callers: %+v", s)
	}
	if s := find(got, "istio_requests_total", map[string]string{"reporter": "destination", "destination_app": "b"}); len(s) != 1 || s[0].value != 2 {
		t.Fatalf("a -> b with empty and \"-\" flags, gRPC status -7 and -1: %+v", s)
	}
	// Cut at a rune boundary.
	var c cleaner
	if v := c.clean(strings.Repeat("é", 200)); len(v) != maxLabelBytes || !utf8.ValidString(v) {
		t.Fatalf("cut é×200 = %d bytes, valid %v", len(v), utf8.ValidString(v))
	}
}

func TestConfigValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		flag string
	}{
		{Config{MaxSeries: -1}, "--istio-metrics-max-series"},
		{Config{Expiry: time.Second}, "--istio-metrics-expiry"},
		{Config{Cluster: "a\xff"}, "--istio-metrics-cluster"},
	} {
		cfg := DefaultConfig()
		if tc.cfg.MaxSeries != 0 {
			cfg.MaxSeries = tc.cfg.MaxSeries
		}
		if tc.cfg.Expiry != 0 {
			cfg.Expiry = tc.cfg.Expiry
		}
		if tc.cfg.Cluster != "" {
			cfg.Cluster = tc.cfg.Cluster
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.flag)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
