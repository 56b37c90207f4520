package query

import (
	"net/url"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
)

var fuzzNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestGraphParamsChooseTheSource(t *testing.T) {
	tests := []struct {
		query  string
		source string
	}{
		{"", SourceLive},
		{"window=30m", SourceLive},
		{"window=2h", SourceClickHouse},
		{"window=5m&end=2026-11-25T11:00:00Z", SourceClickHouse},
		{"window=7d&source=prometheus", SourcePrometheus},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		p, err := ParseGraphParams(q, fuzzNow, time.Hour)
		if err != nil || p.Source != tt.source {
			t.Errorf("%q: source %q, err %v; want %q", tt.query, p.Source, err, tt.source)
		}
	}
}

func FuzzParseGraphParams(f *testing.F) {
	for _, s := range []string{"window=5m&view=service", "window=1h&view=version&namespace=shop&source=live",
		"end=2026-01-01T00:00:00Z&window=7d&source=clickhouse", "window=1d", "window=9999999h", "view=%00", "end=1700000000",
		"window=10s&source=prometheus&view=workload", "window=-5m", "window=5m&window=6m", "namespace=" + string(make([]byte, 300))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := ParseGraphParams(q, fuzzNow, time.Hour)
		if err != nil {
			if _, ok := err.(*ParamError); !ok {
				t.Fatalf("%q: error %T is not a ParamError", raw, err)
			}
			return
		}
		if p.Window < MinWindow || p.Window > MaxWindow {
			t.Fatalf("%q: window %v accepted", raw, p.Window)
		}
		if _, err := graph.ParseView(string(p.View)); err != nil {
			t.Fatalf("%q: view %q accepted", raw, p.View)
		}
		if p.Source == SourceLive && (p.EndGiven || p.Window > time.Hour) {
			t.Fatalf("%q: live source for a past or long window", raw)
		}
		if len(p.Namespace) > maxNameLen {
			t.Fatalf("%q: namespace too long", raw)
		}
	})
}

func FuzzParseLogsParams(f *testing.F) {
	for _, s := range []string{"service=b&version=v1&code=503&path=/api*&limit=10",
		"traceId=4bf92f3577b34da6a3ce929d0e0e4736&since=2026-11-25T10:00:00Z&until=2026-11-25T11:00:00Z",
		"cursor=" + (Cursor{TimeNs: 1, Hash: 2}).Encode(), "limit=99999", "code=1000", "path=%27%3B+DROP+TABLE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := ParseLogsParams(q, fuzzNow)
		if err != nil {
			if _, ok := err.(*ParamError); !ok {
				t.Fatalf("%q: error %T is not a ParamError", raw, err)
			}
			return
		}
		if p.Limit < 1 || p.Limit > MaxLogLimit || !p.Since.Before(p.Until) || p.Code > 999 || len(p.Path) > maxPathLen {
			t.Fatalf("%q: accepted %+v", raw, p)
		}
		if p.Cursor != nil {
			c, err := DecodeCursor(p.Cursor.Encode())
			if err != nil || c != *p.Cursor {
				t.Fatalf("cursor does not round-trip: %v", err)
			}
		}
	})
}

func FuzzParseTraceSearchParams(f *testing.F) {
	for _, s := range []string{"service=a&minDurationMs=10", "minDurationMs=NaN", "minDurationMs=1e308", "limit=-1", "since=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := ParseTraceSearchParams(q, fuzzNow)
		if err != nil {
			return
		}
		if p.Limit < 1 || p.Limit > MaxTraceLimit || p.MinDuration < 0 || !p.Since.Before(p.Until) {
			t.Fatalf("%q: accepted %+v", raw, p)
		}
	})
}
