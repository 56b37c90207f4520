package replicas

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/query/apidoc"
)

func TestOpenAPIDocumentsTheReplicaRoutes(t *testing.T) {
	e := echo.New()
	r, err := New(newLive(t, time.Now), Options{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterRoutes(e.Group("/api/v1"))
	missing, err := apidoc.Undocumented("../query/openapi.yaml", e)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
	}
}

func newLive(t testing.TB, now func() time.Time) *graph.Live {
	t.Helper()
	l, err := graph.New(graph.Config{Now: now}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// replica is one in-process replica: a live graph and its HTTP server on
// loopback.
type replica struct {
	live *graph.Live
	reps *Replicas
	srv  *httptest.Server
}

// cluster starts n replicas that all list all of them (themselves included)
// as peers.
func cluster(t testing.TB, n int, now func() time.Time) []*replica {
	t.Helper()
	var addrs []string
	out := make([]*replica, n)
	for i := range out {
		live := newLive(t, now)
		reps, err := New(live, Options{Peers: func() []string { return addrs }, Timeout: 30 * time.Second}, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		e := echo.New()
		reps.RegisterRoutes(e.Group("/api/v1"))
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		out[i] = &replica{live: live, reps: reps, srv: srv}
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	return out
}

// records are a small mesh's traffic: every record differs in code, flags,
// latency or bytes so that a wrong merge shows.
func records(at time.Time, n int) []mesh.Record {
	recs := make([]mesh.Record, 0, n)
	for i := range n {
		src := mesh.Peer{Namespace: "shop", Service: fmt.Sprintf("svc%d", i%7), Workload: fmt.Sprintf("svc%d-v1", i%7), Version: "v1"}
		dst := mesh.Peer{Namespace: "shop", Service: fmt.Sprintf("svc%d", (i+3)%11), Version: fmt.Sprintf("v%d", i%3+1)}
		code := uint16(200)
		flags := "-"
		if i%13 == 0 {
			code, flags = 503, "UF"
		}
		recs = append(recs, mesh.Record{Time: at.Add(-time.Duration(i%50) * time.Second), Source: src, Destination: dst, Protocol: "http",
			Code: code, GRPCStatus: -1, Flags: flags, Duration: time.Duration(1+i%400) * time.Millisecond,
			BytesIn: uint64(i % 100), BytesOut: uint64(i % 1000), MTLS: i%4 != 0})
	}
	return recs
}

func TestMergedLiveTrafficIsTheSumOfEveryReplicasAndNamesAMissingOne(t *testing.T) {
	ctx := context.Background()
	end := time.Now()
	now := func() time.Time { return end }
	reps := cluster(t, 3, now)
	all := newLive(t, now) // one replica that saw everything
	recs := records(end, 3000)
	for i := 0; i < len(recs); i += 100 {
		batch := recs[i : i+100]
		_ = reps[(i/100)%3].live.ConsumeRecords(ctx, batch)
		_ = all.ConsumeRecords(ctx, batch)
	}
	for _, r := range reps {
		r.live.Refresh()
	}
	want, err := all.Refresh().TrafficAt(end, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reps {
		got, missing, err := r.reps.TrafficAt(ctx, end, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 || got.Partial {
			t.Fatalf("replica %d: missing %v", i, missing)
		}
		sameTraffic(t, fmt.Sprintf("replica %d", i), graph.Listed(got).Edges, want.Edges)
		// Graphs built from the merge are those of the whole traffic.
		g, w := graph.Build(got, graph.Options{View: graph.ViewVersion, Now: end}), all.Refresh().Graph
		wg, _ := w(5*time.Minute, graph.Options{View: graph.ViewVersion, Now: end})
		if len(g.Edges) != len(wg.Edges) || len(g.Nodes) != len(wg.Nodes) {
			t.Fatalf("replica %d: merged graph %d nodes %d edges, whole traffic %d %d", i, len(g.Nodes), len(g.Edges), len(wg.Nodes), len(wg.Edges))
		}
	}
	// The version sums the judge reads add up too, samples included.
	sum, missing, err := reps[1].reps.VersionSum(ctx, "shop", "svc4", "v2", time.Minute)
	if err != nil || len(missing) > 0 {
		t.Fatal(err, missing)
	}
	wantVS, _ := all.CurrentVersionStats(ctx, "shop", "svc4", "v2", time.Minute)
	gotVS := sum.Stats(time.Minute)
	if gotVS.Requests != wantVS.Requests || gotVS.Errors != wantVS.Errors || gotVS.P99Ms != wantVS.P99Ms || len(gotVS.SamplesMs) != len(wantVS.SamplesMs) {
		t.Fatalf("merged version stats %+v, want %+v", trimSamples(gotVS), trimSamples(wantVS))
	}

	// A replica stops answering: the others answer with what they have,
	// marked partial, naming it.
	reps[2].srv.Close()
	got, missing, err := reps[0].reps.TrafficAt(ctx, end, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	gone := strings.TrimPrefix(reps[2].srv.URL, "http://")
	if !got.Partial || len(missing) != 1 || missing[0].Replica != gone || missing[0].Error == "" {
		t.Fatalf("with %s down: partial %v, missing %+v", gone, got.Partial, missing)
	}
	var n uint64
	for _, st := range graph.Listed(got).Edges {
		n += st.Requests
	}
	if n != 2000 {
		t.Fatalf("with one of three replicas down: %d requests, want the other two's 2000", n)
	}
	st := reps[0].reps.Status()
	if len(st) != 2 {
		t.Fatalf("replica 0 lists %d peers (itself must not be one): %+v", len(st), st)
	}
}

func TestAPeerThatAnswersTooLateIsLeftOutWithinTheTimeout(t *testing.T) {
	ctx := context.Background()
	// A listener that accepts and never answers: a partitioned replica.
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(block) })
	peer := strings.TrimPrefix(slow.URL, "http://")
	r, err := New(newLive(t, time.Now), Options{Peers: func() []string { return []string{peer} }, Timeout: 200 * time.Millisecond}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tr, missing, err := r.TrafficAt(ctx, time.Now(), time.Minute)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Partial || len(missing) != 1 || !strings.Contains(missing[0].Error, "no answer within 200ms") {
		t.Fatalf("partial %v missing %+v", tr.Partial, missing)
	}
	// The missing entry above names the 200ms timeout; this bound only
	// catches a read that waited for the silent peer anyway (it answers
	// when the test ends), loose enough for a loaded machine.
	if took > time.Minute {
		t.Fatalf("a silent peer held the read for %v", took)
	}
	t.Logf("read with a silent peer answered in %v (timeout 200ms)", took.Round(time.Millisecond))
}

func sameTraffic(t *testing.T, what string, got, want map[graph.EdgeKey]*graph.Stats) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d edges, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if g == nil {
			t.Fatalf("%s: edge %+v missing", what, k)
		}
		if g.Requests != w.Requests || g.Errors != w.Errors || g.MTLS != w.MTLS || g.BytesIn != w.BytesIn ||
			g.BytesOut != w.BytesOut || g.DurationSumUs != w.DurationSumUs || !reflect.DeepEqual(g.Latency, w.Latency) ||
			!reflect.DeepEqual(g.Flags, w.Flags) || !sameCodes(g.Codes, w.Codes) {
			t.Fatalf("%s: edge %+v: got %+v, want %+v", what, k, g, w)
		}
	}
}

func sameCodes(a, b []graph.CodeCount) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		found := false
		for _, d := range b {
			if c == d {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func trimSamples(v graph.VersionStats) graph.VersionStats {
	v.SamplesMs = v.SamplesMs[:min(3, len(v.SamplesMs))]
	return v
}

// skewedCluster is three replicas whose live clocks are off by skews, each
// allowing maxSkew, fed the same records as one graph that saw them all
// (records stamped by their senders, up to a minute old).
// The skews may be changed while they run.
func skewedCluster(t *testing.T, end time.Time, skews []time.Duration, maxSkew time.Duration, reg *prometheus.Registry) ([]*replica, *graph.Live, []atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	var addrs []string
	var reps []*replica
	clock := make([]atomic.Int64, len(skews))
	for i, skew := range skews {
		clock[i].Store(int64(skew))
		now := func() time.Time { return end.Add(time.Duration(clock[i].Load())) }
		live := newLive(t, now)
		var rg prometheus.Registerer
		if i == 0 && reg != nil {
			rg = reg
		}
		r, err := New(live, Options{Peers: func() []string { return addrs }, Timeout: 30 * time.Second, MaxClockSkew: maxSkew}, slog.New(slog.DiscardHandler), rg)
		if err != nil {
			t.Fatal(err)
		}
		e := echo.New()
		r.RegisterRoutes(e.Group("/api/v1"))
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
		reps = append(reps, &replica{live: live, reps: r, srv: srv})
	}
	all := newLive(t, func() time.Time { return end })
	recs := records(end.Add(-10*time.Second), 3000)
	for i := 0; i < len(recs); i += 100 {
		_ = reps[(i/100)%3].live.ConsumeRecords(ctx, recs[i:i+100])
		_ = all.ConsumeRecords(ctx, recs[i:i+100])
	}
	for _, r := range reps {
		r.live.Refresh()
	}
	return reps, all, clock
}

// Replicas whose clocks disagree (one 30 s ahead, one 30 s behind) within
// the bound they allow (a minute here) merge to the whole traffic: a merged
// read asks every replica for the asker's window, and records are counted
// at their own timestamps.
func TestReplicasWithSkewedClocksMergeToTheWholeTraffic(t *testing.T) {
	ctx := context.Background()
	end := time.Now()
	reps, all, _ := skewedCluster(t, end, []time.Duration{0, 30 * time.Second, -30 * time.Second}, time.Minute, nil)
	want, err := all.Refresh().TrafficAt(end, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, missing, err := reps[0].reps.TrafficAt(ctx, end, 5*time.Minute)
	if err != nil || len(missing) > 0 {
		t.Fatal(err, missing)
	}
	sameTraffic(t, "skewed clocks", graph.Listed(got).Edges, want.Edges)
	for _, st := range reps[0].reps.Status() {
		if st.ClockOffsetMs == nil || math.Abs(math.Abs(*st.ClockOffsetMs)-30000) > 1000 {
			t.Errorf("peer %s: clock offset %v ms, want ±30,000", st.Address, st.ClockOffsetMs)
		}
	}
}

// A peer whose clock is further from the asker's than the bound (the
// default 5 s; here 30 s ahead and 30 s behind) is left out of merged
// reads: a replica behind counts fresh records at its "now", earlier than
// they happened, so its counts for the asker's window would be short. It is
// named in the missing list with its offset, its reads are counted as
// clock_skew and its offset is exported; once its clock agrees again it is
// merged again.
func TestAPeerWhoseClockIsOffByMoreThanTheBoundIsLeftOutNamingTheOffset(t *testing.T) {
	ctx := context.Background()
	end := time.Now()
	reg := prometheus.NewRegistry()
	reps, _, clock := skewedCluster(t, end, []time.Duration{0, 30 * time.Second, -30 * time.Second}, 0, reg)
	mine, err := reps[0].live.Refresh().TrafficAt(end, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, missing, err := reps[0].reps.TrafficAt(ctx, end, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Partial || len(missing) != 2 {
		t.Fatalf("partial %v, missing %v: want both skewed peers missing", got.Partial, missing)
	}
	sameTraffic(t, "only the asker's own", graph.Listed(got).Edges, mine.Edges)
	for _, m := range missing {
		dir := "ahead of"
		if m.Replica == strings.TrimPrefix(reps[2].srv.URL, "http://") {
			dir = "behind"
		}
		if !strings.HasPrefix(m.Error, "clock 30s "+dir+" this replica's, more than the 5s allowed") {
			t.Errorf("missing %s: %q", m.Replica, m.Error)
		}
	}
	if n := testutil.ToFloat64(reps[0].reps.fetches.WithLabelValues("clock_skew")); n != 2 {
		t.Errorf("meshlens_replica_peer_reads_total{result=clock_skew} = %v, want 2", n)
	}
	ahead := strings.TrimPrefix(reps[1].srv.URL, "http://")
	if v := testutil.ToFloat64(reps[0].reps.offsets.WithLabelValues(ahead)); math.Abs(v-30) > 1 {
		t.Errorf("meshlens_replica_peer_clock_offset_seconds{peer=%s} = %v, want 30", ahead, v)
	}
	// The peers' clocks are set right (to within 2 s): merged again.
	clock[1].Store(int64(2 * time.Second))
	clock[2].Store(int64(-2 * time.Second))
	if _, missing, _ := reps[0].reps.TrafficAt(ctx, end, 5*time.Minute); len(missing) != 0 {
		t.Fatalf("clocks within the bound: missing %v", missing)
	}
}

// A replica restarting: while it is down merged reads are partial, naming
// it; once it is back (a new process: new instance id, an empty live graph)
// they are whole again and count what it has seen since.
func TestAReplicaRestartingIsMissingThenCountedAgain(t *testing.T) {
	ctx := context.Background()
	end := time.Now()
	now := func() time.Time { return end }
	reps := cluster(t, 2, now)
	_ = reps[0].live.ConsumeRecords(ctx, records(end, 100))
	_ = reps[1].live.ConsumeRecords(ctx, records(end, 100))
	reps[0].live.Refresh()
	reps[1].live.Refresh()
	addr := strings.TrimPrefix(reps[1].srv.URL, "http://")
	requests := func() (uint64, []Missing) {
		t.Helper()
		got, missing, err := reps[0].reps.TrafficAt(ctx, end, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, st := range graph.Listed(got).Edges {
			n += st.Requests
		}
		return n, missing
	}
	if n, missing := requests(); n != 200 || len(missing) != 0 {
		t.Fatalf("both up: %d requests, missing %v", n, missing)
	}
	reps[1].srv.Close()
	if n, missing := requests(); n != 100 || len(missing) != 1 || missing[0].Replica != addr {
		t.Fatalf("replica 1 down: %d requests, missing %v", n, missing)
	}
	// The same address, a new process.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	live := newLive(t, now)
	restarted, err := New(live, Options{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	restarted.RegisterRoutes(e.Group("/api/v1"))
	srv := httptest.NewUnstartedServer(e)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	_ = live.ConsumeRecords(ctx, records(end, 30))
	live.Refresh()
	if n, missing := requests(); n != 130 || len(missing) != 0 {
		t.Fatalf("replica 1 back: %d requests, missing %v; want 100 + the 30 it saw since", n, missing)
	}
}
