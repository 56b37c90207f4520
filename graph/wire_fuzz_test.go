package graph

import (
	"errors"
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
