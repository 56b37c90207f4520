package graph

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// BenchmarkMergedStages times, cold, each stage of a merged graph query
// over three live graphs that each saw a third of the benchmark mesh
// (1,000 services × 3 versions, 10,000 edges, ten minutes): a peer's sum and
// wire answer, the asker's own sum and merge, reading the peers' answers,
// building the graph and its JSON. It reports CPU-ms and MB allocated per
// stage, which say what a merged query costs without HTTP.
func BenchmarkMergedStages(b *testing.B) {
	const nodes, edges = 3000, 10000
	peer := func(n int) mesh.Peer {
		svc := fmt.Sprintf("svc%d", n/3)
		ver := fmt.Sprintf("v%d", n%3+1)
		return mesh.Peer{Namespace: fmt.Sprintf("ns%d", (n/3)%10), Service: svc, Workload: svc + "-" + ver, Version: ver}
	}
	end := time.Now()
	var lives []*Live
	for range 3 {
		l, err := New(Config{Now: func() time.Time { return end }}, discardLogger(), nil)
		if err != nil {
			b.Fatal(err)
		}
		lives = append(lives, l)
	}
	batch := make([]mesh.Record, edges)
	for step := range 60 {
		at := end.Add(-10*time.Minute + time.Duration(step+1)*10*time.Second)
		for i := range batch {
			s := i % nodes
			code := uint16(200)
			if i%10 == 0 && step%2 == 0 {
				code = 503
			}
			batch[i] = mesh.Record{Time: at, Source: peer(s), Destination: peer((s + 1 + (i/nodes)*997 + (s*13)%500) % nodes),
				Protocol: "http", Code: code, GRPCStatus: -1, Flags: "-", Duration: time.Duration(1+(i+step)%200) * time.Millisecond,
				BytesIn: 200, BytesOut: 2000, MTLS: i%4 != 0}
		}
		_ = lives[step%3].ConsumeRecords(context.Background(), batch)
	}
	const window, n = 5 * time.Minute, 20
	type stage struct {
		name       string
		cpu, alloc float64
	}
	stages := map[string]*stage{}
	var order []string
	timed := func(name string, f func()) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c0 := cpuTime()
		f()
		c := cpuTime() - c0
		runtime.ReadMemStats(&m1)
		s := stages[name]
		if s == nil {
			s = &stage{name: name}
			stages[name] = s
			order = append(order, name)
		}
		s.cpu += float64(c) / 1e6 / n
		s.alloc += float64(m1.TotalAlloc-m0.TotalAlloc) / (1 << 20) / n
	}
	b.ResetTimer()
	for range n {
		snaps := []*Snapshot{lives[0].Refresh(), lives[1].Refresh(), lives[2].Refresh()}
		var wires [][]byte
		for _, s := range snaps[1:] {
			timed("peer: sum and wire", func() {
				w, err := s.TrafficWire(end, window)
				if err != nil {
					b.Fatal(err)
				}
				wires = append(wires, w)
			})
		}
		m := NewMerger(end, window, 0)
		timed("asker: own sum", func() {
			sums, err := snaps[0].Sums(end, window)
			if err != nil {
				b.Fatal(err)
			}
			m.AddSums(sums)
		})
		timed("asker: read peers", func() {
			for _, w := range wires {
				if err := m.AddWire(w); err != nil {
					b.Fatal(err)
				}
			}
		})
		var g *Graph
		timed("build", func() { g = Build(m.Traffic(), Options{View: ViewVersion}) })
		timed("json", func() {
			if _, err := g.JSON(); err != nil {
				b.Fatal(err)
			}
		})
		if len(g.Edges) != edges {
			b.Fatalf("%d edges", len(g.Edges))
		}
	}
	b.StopTimer()
	total := 0.0
	for _, name := range order {
		s := stages[name]
		b.Logf("%-20s %6.1f CPU-ms %6.1f MB", name, s.cpu, s.alloc)
		total += s.alloc
	}
	b.ReportMetric(total, "alloc-MB/query")
}
