package graph

import (
	"errors"
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
