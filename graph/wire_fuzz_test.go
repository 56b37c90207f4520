package graph

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// A peer's answer is read from the network: any bytes are merged or
// refused with ErrWire, never a panic, and a refused answer leaves the
// merge usable.
func FuzzMergerAddWire(f *testing.F) {
	c := newClock(t0)
	l, _ := newLive(f, c, Config{PublishInterval: time.Hour})
	if err := l.ConsumeRecords(f.Context(), []mesh.Record{rec(t0, pA, pB1, 200, time.Millisecond), rec(t0, pA, pB2, 503, time.Second),
		rec(t0, pB1, pC, 0, 3*time.Millisecond)}); err != nil {
		f.Fatal(err)
	}
	tr, err := l.Refresh().TrafficList(t0, time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	valid := tr.AppendWire(nil)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte("MLT1"))
	f.Add([]byte("MLT1\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := NewMerger(t0, time.Minute, 0)
		if err := m.AddWire(data); err != nil && !errors.Is(err, ErrWire) {
			t.Fatalf("error %v is not ErrWire", err)
		}
		if err := m.AddWire(valid); err != nil {
			t.Fatalf("a valid answer after %q: %v", data, err)
		}
		var n uint64
		for _, st := range Listed(m.Traffic()).Edges {
			n += st.Requests
		}
		if n < 3 {
			t.Fatalf("merged %d requests, want at least the valid answer's 3", n)
		}
	})
}

// A snapshot's wire answer is written once per window and shared; it
// merges to the same traffic as the snapshot's own.
func TestTrafficWireIsWrittenOncePerSnapshotAndWindow(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{PublishInterval: time.Hour})
	consume(t, l, rec(t0, pA, pB1, 200, time.Millisecond), rec(t0, pA, pB2, 503, time.Second), rec(t0, pB1, pC, 404, 3*time.Millisecond))
	s := l.Refresh()
	w1, err := s.TrafficWire(t0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := s.TrafficWire(t0.Add(time.Millisecond), time.Minute) // another asker, same buckets
	if &w1[0] != &w2[0] {
		t.Error("the same snapshot and window wrote the answer twice")
	}
	if w3, _ := s.TrafficWire(t0, 5*time.Minute); &w3[0] == &w1[0] {
		t.Error("another window got the cached answer")
	}
	m := NewMerger(t0, time.Minute, 0)
	if err := m.AddWire(w1); err != nil {
		t.Fatal(err)
	}
	want, _ := s.TrafficAt(t0, time.Minute)
	got := Listed(m.Traffic()).Edges
	if len(got) != len(want.Edges) {
		t.Fatalf("%d edges from the wire, %d in the snapshot", len(got), len(want.Edges))
	}
	for k, st := range want.Edges {
		g := got[k]
		if g == nil || g.Requests != st.Requests || g.Errors != st.Errors || !slices.Equal(g.Latency, st.Latency) {
			t.Errorf("edge %v: %+v from the wire, %+v in the snapshot", k, g, st)
		}
	}
	consume(t, l, rec(t0, pA, pC, 200, time.Millisecond))
	if w4, _ := l.Refresh().TrafficWire(t0, time.Minute); &w4[0] == &w1[0] {
		t.Error("a new snapshot answered the old bytes")
	}
}

// Every way a merged read takes a live graph's traffic — its own sums
// (Sums, before and after a reader listed the window), the answer a peer
// writes from its sums (TrafficWire), and the wire form of the listed
// traffic (AppendWire) — merges to the snapshot's own traffic, field by
// field: statuses beyond a cell's inline slots, gRPC statuses, response
// flags beyond the inline ones, bytes, mTLS, durations, every latency
// bucket, and an edge evicted and seen again under a new id.
func TestEveryMergePathAddsUpToTheSnapshotsTraffic(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{PublishInterval: time.Hour, MaxEdges: 100})
	rng := rand.New(rand.NewPCG(1, 2))
	peers := []mesh.Peer{pA, pB1, pB2, pC, {}}
	flags := []string{"-", "UH", "UF", "URX", "NR", "DC", ""}
	var recs []mesh.Record
	for i := range 3000 {
		r := rec(t0.Add(-time.Duration(rng.IntN(50))*time.Second), peers[rng.IntN(len(peers))], peers[rng.IntN(len(peers))],
			[]uint16{200, 201, 404, 500, 503, 0, 302}[rng.IntN(7)], time.Duration(rng.IntN(20000))*time.Millisecond)
		r.Protocol = []string{"http", "grpc", "tcp"}[rng.IntN(3)]
		if r.Protocol == "grpc" {
			r.GRPCStatus = int16(rng.IntN(17))
		}
		r.Flags = flags[rng.IntN(len(flags))]
		r.MTLS = rng.IntN(2) == 0
		r.BytesIn, r.BytesOut = uint64(rng.IntN(5000)), uint64(rng.IntN(50000))
		if i == 1500 {
			// More distinct edges than MaxEdges: the oldest are evicted and
			// come back under new ids, listed twice with one key.
			for j := range 40 {
				recs = append(recs, rec(t0.Add(-55*time.Second), mesh.Peer{Namespace: "evict", Service: fmt.Sprint(j)}, pA, 200, time.Millisecond))
			}
		}
		recs = append(recs, r)
	}
	consume(t, l, recs...)
	s := l.Refresh()
	const window = time.Minute
	want, err := s.TrafficAt(t0, window)
	if err != nil {
		t.Fatal(err)
	}
	merge := func(add func(*Merger) error) map[EdgeKey]*Stats {
		t.Helper()
		m := NewMerger(t0, window, 0)
		if err := add(m); err != nil {
			t.Fatal(err)
		}
		return Listed(m.Traffic()).Edges
	}
	fresh := l.Refresh() // nothing listed from it yet
	paths := map[string]map[EdgeKey]*Stats{
		"own sums": merge(func(m *Merger) error {
			sums, err := fresh.Sums(t0, window)
			if err == nil {
				m.AddSums(sums)
			}
			return err
		}),
		"own sums, the window listed": merge(func(m *Merger) error {
			sums, err := s.Sums(t0, window)
			if err == nil {
				m.AddSums(sums)
			}
			return err
		}),
		"a peer's answer": merge(func(m *Merger) error {
			w, err := fresh.TrafficWire(t0, window)
			if err != nil {
				return err
			}
			return m.AddWire(w)
		}),
		"the listed traffic's wire form": merge(func(m *Merger) error { return m.AddWire(want.AppendWire(nil)) }),
	}
	norm := func(st *Stats) string {
		codes := slices.Clone(st.Codes)
		slices.SortFunc(codes, func(a, b CodeCount) int {
			return int(a.Code)*100 + int(a.GRPCStatus) - int(b.Code)*100 - int(b.GRPCStatus)
		})
		flags := map[string]uint64{}
		maps.Copy(flags, st.Flags)
		return fmt.Sprintf("req %d err %d mtls %d in %d out %d dur %d codes %v flags %v latency %v",
			st.Requests, st.Errors, st.MTLS, st.BytesIn, st.BytesOut, st.DurationSumUs, codes, flags, st.Latency)
	}
	var total uint64
	for _, st := range want.Edges {
		total += st.Requests
	}
	if len(want.Edges) < 50 || total < 2500 || valueOf(l.m.evicted) == 0 {
		t.Fatalf("the snapshot holds %d edges and %d requests, %v evicted: the test mesh is too small", len(want.Edges), total, valueOf(l.m.evicted))
	}
	for name, got := range paths {
		if len(got) != len(want.Edges) {
			t.Errorf("%s: %d edges, the snapshot %d", name, len(got), len(want.Edges))
		}
		for k, st := range want.Edges {
			if g := got[k]; g == nil || norm(g) != norm(st) {
				t.Errorf("%s: edge %v:\n got %v\nwant %s", name, k, g, norm(st))
			}
		}
	}
}
