package graph

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// mergedJSON appends to buf the JSON of the graph of snapshot s of l merged
// alone (Live.NewMerger, Snapshot.Sums), built in recycled memory; release
// gives the graph's and the merge's memory back after writing it.
func mergedJSON(t testing.TB, buf []byte, l *Live, s *Snapshot, w time.Duration, opts Options, release bool) []byte {
	t.Helper()
	m := l.NewMerger(s.now(), w)
	sums, err := s.Sums(s.now(), w)
	if err != nil {
		t.Fatal(err)
	}
	m.AddSums(sums)
	tr := m.Traffic()
	g := Build(tr, opts)
	b, err := g.AppendJSON(buf)
	if err != nil {
		t.Fatal(err)
	}
	if release {
		g.Release()
		tr.Release()
	}
	return b
}

// Readers of recycled memory must never see another query's numbers: many
// goroutines read the live graph (UseGraph) and merge it (Live.NewMerger)
// while snapshots are replaced under them, which recycles the graphs and
// sums of the snapshot before; every answer must be the one a fresh build
// gives, and a graph handed out for keeps (Snapshot.Graph) must stay whole.
func TestRecycledGraphsAnswerAsFreshOnesUnderConcurrentReaders(t *testing.T) {
	c := newClock(t0)
	l := churn(t, c)
	w, opts := 5*time.Minute, Options{View: ViewVersion, Now: t0}
	s := l.Refresh()
	kept, err := s.Graph(w, opts)
	if err != nil {
		t.Fatal(err)
	}
	keptJSON, err := kept.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(keptJSON)
	wantMerged := mergedJSON(t, nil, l, l.Refresh(), w, opts, false)
	keptWire, err := l.Refresh().TrafficWire(t0, w)
	if err != nil {
		t.Fatal(err)
	}
	wantWire := bytes.Clone(keptWire)
	if !bytes.Contains(want, []byte(`"grpc":{`)) || !bytes.Contains(want, []byte(`"flags":{`)) {
		t.Fatalf("the graph has no gRPC statuses or flags to recycle: %.300s", want)
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // replaces the snapshot, retiring the one readers use
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			l.Refresh()
		}
	}()
	errs := make(chan string, 8)
	var readers sync.WaitGroup
	for r := range 6 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := range 60 {
				if r%3 == 2 { // a peer's answer to a merged read
					err := l.Snapshot().UseTrafficWire(t0, w, func(got []byte) error {
						l.Refresh()
						if err := l.Snapshot().UseTrafficWire(t0, time.Minute, func([]byte) error { return nil }); err != nil {
							return err
						}
						if !bytes.Equal(got, wantWire) {
							return fmt.Errorf("reader %d, query %d: a shared wire answer differs from a fresh one", r, i)
						}
						return nil
					})
					if err != nil {
						errs <- err.Error()
						return
					}
					continue
				}
				if r%3 == 0 {
					err := l.UseGraph(w, opts, func(g *Graph) error {
						got, err := g.JSON()
						if err != nil {
							return err
						}
						// The snapshot g is shared in is replaced, and another
						// graph (of other bytes) built in whatever memory went
						// back: none of it may be g's while g is in use.
						l.Refresh()
						if err := l.UseGraph(w, Options{View: ViewService, Now: t0}, func(o *Graph) error { _, err := o.JSON(); return err }); err != nil {
							return err
						}
						if !bytes.Equal(got, want) || len(g.Edges) != len(kept.Edges) {
							return fmt.Errorf("reader %d, query %d: a shared graph's answer differs from a fresh one's", r, i)
						}
						return nil
					})
					if err != nil {
						errs <- err.Error()
						return
					}
					continue
				}
				if got := mergedJSON(t, nil, l, l.Snapshot(), w, opts, true); !bytes.Equal(got, wantMerged) {
					errs <- fmt.Sprintf("reader %d, query %d: a merged graph's answer differs from a fresh one's", r, i)
					return
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	again, err := kept.AppendJSON(nil)
	if err != nil || !bytes.Equal(again, want) {
		t.Fatalf("the graph handed out by Snapshot.Graph changed after the snapshot was replaced (err %v)", err)
	}
	if !bytes.Equal(keptWire, wantWire) {
		t.Fatal("the wire answer handed out by Snapshot.TrafficWire changed after the snapshot was replaced")
	}
}

// The point of recycling: a cold query (a new snapshot) builds its sums,
// graph and JSON in the memory of the query before, not in new memory.
func TestAColdGraphQueryReusesTheMemoryOfTheQueryBefore(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{})
	var recs []mesh.Record
	for i := range 2000 {
		src := mesh.Peer{Namespace: "ns", Service: fmt.Sprintf("s%d", i%300), Version: "v1"}
		dst := mesh.Peer{Namespace: "ns", Service: fmt.Sprintf("s%d", (i*7+1)%300), Version: fmt.Sprintf("v%d", i%3)}
		recs = append(recs, rec(t0.Add(-time.Duration(i%200)*time.Second), src, dst, uint16(200+i%3*100), time.Duration(i%50)*time.Millisecond))
	}
	consume(t, l, recs...)
	w, opts := 5*time.Minute, Options{View: ViewVersion, Now: t0}
	allocated := func(query func()) uint64 {
		query() // the first query's memory is new
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			query()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / 10
	}
	shared := allocated(func() {
		if err := l.Refresh().UseGraph(w, opts, func(g *Graph) error { _, err := g.JSON(); return err }); err != nil {
			t.Fatal(err)
		}
	})
	kept := allocated(func() {
		g, err := l.Refresh().Graph(w, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.JSON(); err != nil {
			t.Fatal(err)
		}
	})
	var buf []byte // as the HTTP answer's, recycled (query's writeGraph)
	merged := allocated(func() { buf = mergedJSON(t, buf[:0], l, l.Refresh(), w, opts, true) })
	mergedKept := allocated(func() { buf = mergedJSON(t, buf[:0], l, l.Refresh(), w, opts, false) })
	t.Logf("bytes per cold query: shared graph %d (kept for good: %d), merged %d (not released: %d)", shared, kept, merged, mergedKept)
	if shared*4 > kept {
		t.Errorf("a cold shared graph query allocated %d bytes, more than a quarter of the %d of one whose memory is not recycled", shared, kept)
	}
	if merged*3 > mergedKept {
		t.Errorf("a cold merged graph query allocated %d bytes, more than a third of the %d of one whose memory is not recycled", merged, mergedKept)
	}
}

// Peer ids index a slice up to the table's limit and a map beyond it (a
// Live's id counter runs on after its table is cleared); reset forgets both.
func TestIDTableFindsIDsBelowAndBeyondItsLimit(t *testing.T) {
	var tb idTable[uint32]
	tb.reset(2000)
	ids := []uint32{0, 1, 1999, 2047, 5000, 1 << 20, noPeer - 1}
	for i, id := range ids {
		tb.put(id, uint32(i+1))
	}
	for i, id := range ids {
		if got := tb.get(id); got != uint32(i+1) {
			t.Errorf("id %d: got %d, want %d", id, got, i+1)
		}
	}
	if got := tb.get(7); got != 0 {
		t.Errorf("id 7 was never put, got %d", got)
	}
	tb.reset(10)
	for _, id := range ids {
		if got := tb.get(id); got != 0 {
			t.Errorf("after reset, id %d still has %d", id, got)
		}
	}
}
