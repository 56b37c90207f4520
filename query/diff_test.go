package query

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

var (
	peerD = mesh.Peer{Namespace: "shop", Service: "d", Workload: "d-v1", Version: "v1"}
	peerE = mesh.Peer{Namespace: "shop", Service: "e", Workload: "e-v1", Version: "v1"}
)

// diffTraffic writes n requests spread evenly over [start, start+span) on
// one edge: every errEvery-th one a 503 (0: none), durations cycling over
// base..base+9 ms, and every slowEvery-th one slow instead (0: none).
func diffTraffic(start time.Time, span time.Duration, n int, src, dst mesh.Peer, errEvery, slowEvery int, base, slow time.Duration) []mesh.Record {
	recs := make([]mesh.Record, 0, n)
	for i := range n {
		r := mesh.Record{Time: start.Add(time.Duration(i) * span / time.Duration(n)), Source: src, Destination: dst, Protocol: "http",
			Method: "GET", Path: "/", Code: 200, GRPCStatus: -1, Duration: base + time.Duration(i%10)*time.Millisecond, Origin: mesh.OriginALS}
		if errEvery > 0 && i%errEvery == 0 {
			r.Code = 503
		}
		if slowEvery > 0 && i%slowEvery == 0 {
			r.Duration = slow
		}
		recs = append(recs, r)
	}
	return recs
}

type diffFixture struct {
	srv *httptest.Server
	now time.Time
}

func newDiffAPI(t *testing.T, st *store.Store, now time.Time) *diffFixture {
	t.Helper()
	clock := func() time.Time { return now }
	live, err := graph.New(graph.Config{Now: clock}, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	RegisterRoutes(e.Group("/api/v1"), Deps{Live: live, Store: st, Logger: discard(), Now: clock})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &diffFixture{srv: srv, now: now}
}

func (f *diffFixture) get(t *testing.T, query url.Values, out any) int {
	t.Helper()
	resp, err := http.Get(f.srv.URL + "/api/v1/graph/diff?" + query.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET /graph/diff?%s: decode: %v", query.Encode(), err)
	}
	return resp.StatusCode
}

// TestGraphDiffClassifiesEdgesByTheJudgesTests writes two ten-minute windows
// to ClickHouse: a→b steady (a few more requests and errors, within chance),
// a→c failing a fifth of its requests and slower, b→c recovering, a→d gone
// and a→e new; the diff read back from the rollups must say so, edge by edge.
func TestGraphDiffClassifiesEdgesByTheJudgesTests(t *testing.T) {
	st := storetest.Open(t)
	now := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	before := now.Truncate(time.Minute).Add(-45 * time.Minute)
	after := before.Add(20 * time.Minute)
	span := 10 * time.Minute
	var recs []mesh.Record
	ms := time.Millisecond
	// Steady: 1,200 vs 1,236 requests, 1% vs 1.1% errors, same latency.
	recs = append(recs, diffTraffic(before, span, 1200, peerA, peerB1, 100, 0, 20*ms, 0)...)
	recs = append(recs, diffTraffic(after, span, 1236, peerA, peerB1, 90, 0, 20*ms, 0)...)
	// Worse: 1% errors and p99 under 30 ms, then 20% errors and one request in ten at 400 ms.
	recs = append(recs, diffTraffic(before, span, 1200, peerA, peerC, 100, 0, 20*ms, 0)...)
	recs = append(recs, diffTraffic(after, span, 1200, peerA, peerC, 5, 10, 20*ms, 400*ms)...)
	// Better: from 25% errors to none.
	recs = append(recs, diffTraffic(before, span, 600, peerB1, peerC, 4, 0, 5*ms, 0)...)
	recs = append(recs, diffTraffic(after, span, 600, peerB1, peerC, 0, 0, 5*ms, 0)...)
	// Vanished and new.
	recs = append(recs, diffTraffic(before, span, 300, peerA, peerD, 0, 0, 10*ms, 0)...)
	recs = append(recs, diffTraffic(after, span, 300, peerA, peerE, 0, 0, 10*ms, 0)...)
	if err := st.InsertRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	f := newDiffAPI(t, st, now)

	q := url.Values{"beforeStart": {stamp(before)}, "beforeEnd": {stamp(before.Add(span))},
		"afterStart": {stamp(after)}, "afterEnd": {stamp(after.Add(span))}}
	var d graph.Diff
	if code := f.get(t, q, &d); code != http.StatusOK {
		t.Fatalf("GET diff = %d", code)
	}
	if d.Before.Requests != 1200+1200+600+300 || d.After.Requests != 1236+1200+600+300 || d.Before.Seconds != 600 {
		t.Fatalf("windows: before %+v, after %+v", d.Before, d.After)
	}
	edges := map[string]*graph.DiffEdge{}
	for _, e := range d.Edges {
		edges[e.Source+" -> "+e.Target] = e
	}
	for _, tc := range []struct {
		edge, status string
		errors, p99  string // significance and direction, "" for new/vanished
	}{
		{"shop/a -> shop/b", graph.DiffUnchanged, "insignificant", "insignificant"},
		{"shop/a -> shop/c", graph.DiffWorse, "significant up", "significant up"},
		{"shop/b -> shop/c", graph.DiffBetter, "significant down", "insignificant"},
		{"shop/a -> shop/d", graph.DiffVanished, "", ""},
		{"shop/a -> shop/e", graph.DiffNew, "", ""},
	} {
		e := edges[tc.edge]
		if e == nil {
			t.Errorf("%s: not in the diff (%d edges)", tc.edge, len(d.Edges))
			continue
		}
		if e.Status != tc.status {
			t.Errorf("%s: status %q, want %q (errors %+v, p99 %+v, rps %+v)", tc.edge, e.Status, tc.status, e.ErrorRate, e.P99Ms, e.RPS)
		}
		if tc.errors == "" {
			if e.ErrorRate != nil || e.P99Ms != nil || (e.Before == nil) == (e.After == nil) {
				t.Errorf("%s: a %s edge has changes or numbers on the wrong side: %+v", tc.edge, tc.status, e)
			}
			continue
		}
		sig := func(c *graph.Change) string {
			if c.Significance == graph.Significant {
				return c.Significance + " " + c.Direction
			}
			return c.Significance
		}
		if got := sig(e.ErrorRate); got != tc.errors {
			t.Errorf("%s: error rate change %q, want %q: %+v", tc.edge, got, tc.errors, e.ErrorRate)
		}
		if got := sig(e.P99Ms); got != tc.p99 {
			t.Errorf("%s: p99 change %q, want %q: %+v", tc.edge, got, tc.p99, e.P99Ms)
		}
		if e.RPS.Significance != graph.Insignificant {
			t.Errorf("%s: request rate changed by %+.1f%%, reported %s", tc.edge, 100*e.RPS.Relative, sig(e.RPS))
		}
	}
	if w := edges["shop/a -> shop/c"]; w != nil && w.ErrorRate != nil && (w.ErrorRate.P > 1e-6 || w.P99Ms.After <= w.P99Ms.Before) {
		t.Errorf("a→c: error p=%v, p99 %v → %v", w.ErrorRate.P, w.P99Ms.Before, w.P99Ms.After)
	}
	if d.Counts[graph.DiffNew] != 1 || d.Counts[graph.DiffVanished] != 1 || d.Counts[graph.DiffWorse] != 1 {
		t.Errorf("counts %v", d.Counts)
	}
	nodes := map[string]string{}
	for _, n := range d.Nodes {
		nodes[n.ID] = n.Status + "/" + n.Worst
	}
	if nodes["shop/d"] != "vanished/vanished" || nodes["shop/e"] != "new/new" || nodes["shop/c"] != "kept/worse" {
		t.Errorf("nodes %v", nodes)
	}

	// The same change picked by its time: the ten minutes around after's start
	// are 10 quiet minutes and the after window itself.
	around := url.Values{"around": {stamp(after)}, "span": {"10m"}, "view": {"version"}}
	var d2 graph.Diff
	if code := f.get(t, around, &d2); code != http.StatusOK {
		t.Fatalf("GET diff around = %d", code)
	}
	if !d2.Before.End.Equal(after) || !d2.After.Start.Equal(after) || d2.Before.Requests != 0 || len(d2.Notices) == 0 {
		t.Fatalf("around %s: before %+v after %+v notices %v", stamp(after), d2.Before, d2.After, d2.Notices)
	}
	for _, e := range d2.Edges {
		if e.Status != graph.DiffNew {
			t.Errorf("after quiet minutes every edge is new: %s -> %s is %s", e.Source, e.Target, e.Status)
		}
	}

	// Two windows without traffic: a message saying so, not an empty graph.
	quiet := url.Values{"beforeStart": {stamp(before.Add(-3 * time.Hour))}, "beforeEnd": {stamp(before.Add(-2 * time.Hour))},
		"afterStart": {stamp(before.Add(-time.Hour))}, "afterEnd": {stamp(before.Add(-50 * time.Minute))}}
	var e apiError
	if code := f.get(t, quiet, &e); code != http.StatusNotFound || !strings.Contains(e.Error, "neither window has traffic") {
		t.Fatalf("quiet windows: %d %+v", code, e)
	}
}

func TestGraphDiffRefusesBadWindowsNamingTheParameter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 30, 0, time.UTC)
	f := newDiffAPI(t, nil, now)
	at := func(m int) string { return stamp(now.Add(time.Duration(m) * time.Minute)) }
	win := func(bs, be, as, ae string) url.Values {
		return url.Values{"beforeStart": {bs}, "beforeEnd": {be}, "afterStart": {as}, "afterEnd": {ae}}
	}
	for _, tc := range []struct {
		name  string
		q     url.Values
		param string
		say   string
	}{
		{"nothing given", url.Values{}, "beforeStart", "required"},
		{"a bound missing", url.Values{"beforeStart": {at(-40)}, "beforeEnd": {at(-30)}, "afterStart": {at(-20)}}, "afterEnd", "required"},
		{"malformed time", win(at(-40), "yesterday", at(-20), at(-10)), "beforeEnd", "not an RFC 3339 time"},
		{"inverted before window", win(at(-30), at(-40), at(-20), at(-10)), "beforeEnd", "inverted"},
		{"inverted after window", win(at(-40), at(-30), at(-10), at(-20)), "afterEnd", "inverted"},
		{"windows overlap", win(at(-40), at(-20), at(-30), at(-10)), "afterStart", "overlaps"},
		{"windows swapped", win(at(-20), at(-10), at(-40), at(-30)), "afterStart", "swap them"},
		{"shorter than a minute", win(at(-40), stamp(now.Add(-40*time.Minute+30*time.Second)), at(-20), at(-10)), "beforeEnd", "shorter than a minute"},
		{"after window all in the future", win(at(-40), at(-30), at(5), at(20)), "afterStart", "nothing to compare yet"},
		{"after window starting this minute", win(at(-40), at(-30), stamp(now), at(20)), "afterStart", "nothing to compare yet"},
		{"around and bounds", url.Values{"around": {at(-30)}, "beforeStart": {at(-40)}}, "beforeStart", "not both"},
		{"around empty", url.Values{"around": {""}}, "around", "empty"},
		{"around malformed", url.Values{"around": {"noon"}}, "around", "not an RFC 3339 time"},
		{"span too long", url.Values{"around": {at(-30)}, "span": {"30d"}}, "span", "outside"},
		{"span not a duration", url.Values{"around": {at(-30)}, "span": {"ten"}}, "span", "not a duration"},
		{"span without around", url.Values{"span": {"10m"}}, "span", "goes with around"},
		{"bad alpha", url.Values{"around": {at(-30)}, "alpha": {"2"}}, "alpha", "significance level"},
		{"bad view", url.Values{"around": {at(-30)}, "view": {"pods"}}, "view", "want service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e apiError
			code := f.get(t, tc.q, &e)
			if code != http.StatusBadRequest || e.Parameter != tc.param || !strings.Contains(e.Error, tc.say) {
				t.Fatalf("%s: %d %+v, want 400 naming %s saying %q", tc.q.Encode(), code, e, tc.param, tc.say)
			}
		})
	}
	// Well-formed windows without a ClickHouse: 503, not a guess.
	var e apiError
	if code := f.get(t, win(at(-40), at(-30), at(-20), at(-10)), &e); code != http.StatusServiceUnavailable || !strings.Contains(e.Error, "ClickHouse") {
		t.Fatalf("no ClickHouse: %d %+v", code, e)
	}
}

func FuzzParseDiffParams(f *testing.F) {
	for _, s := range []string{"around=2026-01-01T00:00:00Z&span=10m", "around=1700000000", "around=&span=1m",
		"beforeStart=2026-01-01T00:00:00Z&beforeEnd=2026-01-01T00:10:00Z&afterStart=2026-01-01T00:10:00Z&afterEnd=2026-01-01T00:20:00Z",
		"beforeStart=1700000000&beforeEnd=1699999000&afterStart=1&afterEnd=2", "around=2026-01-01T00:00:30Z&span=7d&alpha=0.5&view=version",
		"span=5m", "around=2026-01-01T00:00:00Z&alpha=NaN", "around=2026-01-01T00:00:00Z&beforeEnd=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := ParseDiffParams(q, fuzzNow)
		if err != nil {
			if pe, ok := err.(*ParamError); !ok || pe.Parameter == "" {
				t.Fatalf("%q: error %T %v does not name a parameter", raw, err, err)
			}
			return
		}
		for _, w := range [][2]time.Time{{p.BeforeStart, p.BeforeEnd}, {p.AfterStart, p.AfterEnd}} {
			if d := w[1].Sub(w[0]); d < time.Minute || d > MaxWindow || !w[0].Equal(w[0].Truncate(time.Minute)) {
				t.Fatalf("%q: window %v to %v accepted", raw, w[0], w[1])
			}
		}
		if p.AfterStart.Before(p.BeforeEnd) || p.AfterEnd.After(fuzzNow) || !(p.Alpha > 0 && p.Alpha <= 0.5) {
			t.Fatalf("%q: accepted %+v", raw, p)
		}
	})
}
