package graph

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// churn fills a live graph whose edge cap is far below the edges it sees, so
// edges are evicted and re-interned (one key, two ids) and the peer id table
// is cleared (one peer, two ids), with more statuses and flags than a cell
// holds inline.
func churn(t *testing.T, c *clock) *Live {
	t.Helper()
	l, _ := newLive(t, c, Config{MaxEdges: 20})
	r := rand.New(rand.NewPCG(1, 2))
	peer := func() mesh.Peer {
		n := r.IntN(120)
		svc := fmt.Sprintf("s%d", n/2)
		ver := fmt.Sprintf("v%d", n%2+1)
		return mesh.Peer{Namespace: fmt.Sprintf("ns%d", n%3), Service: svc, Workload: svc + "-" + ver, Version: ver}
	}
	codes := []uint16{200, 201, 302, 404, 500, 503}
	flags := []string{"-", "-", "UH", "UF", "NR"}
	var recs []mesh.Record
	for i := 0; i < 3000; i++ {
		rc := mesh.Record{Time: t0.Add(-time.Duration(r.IntN(290)) * time.Second), Source: peer(), Destination: peer(),
			Protocol: "http", Code: codes[r.IntN(len(codes))], GRPCStatus: -1, Flags: flags[r.IntN(len(flags))],
			Duration: time.Duration(r.IntN(300)) * time.Millisecond, BytesIn: 10, BytesOut: 100, MTLS: r.IntN(2) == 0}
		if r.IntN(4) == 0 {
			rc.Protocol, rc.GRPCStatus = "grpc", int16(r.IntN(3))
		}
		recs = append(recs, rc)
		if len(recs) == 50 {
			consume(t, l, recs...)
			recs = recs[:0]
		}
	}
	consume(t, l, recs...)
	return l
}

func TestLiveGraphEqualsTheGraphOfItsTrafficMap(t *testing.T) {
	c := newClock(t0)
	l := churn(t, c)
	if l.nextPeer <= uint32(len(l.peerIDs)) {
		t.Fatalf("peer table never cleared (%d ids, %d peers): the test does not cover second ids", l.nextPeer, len(l.peerIDs))
	}
	snap := l.Refresh()
	seen, twice := map[EdgeKey]bool{}, 0
	for _, e := range snap.edges {
		if seen[e.key] {
			twice++
		}
		seen[e.key] = true
	}
	if twice == 0 {
		t.Fatal("no edge was re-interned: the test does not cover one key with two ids")
	}
	for _, v := range []View{ViewService, ViewVersion, ViewWorkload} {
		for _, ns := range []string{"", "ns1"} {
			t.Run(fmt.Sprintf("%s/%q", v, ns), func(t *testing.T) {
				opts := Options{View: v, Namespace: ns, Now: t0}
				got, err := snap.Graph(5*time.Minute, opts)
				if err != nil {
					t.Fatal(err)
				}
				tr, err := snap.Traffic(5 * time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				// The same traffic without the live graph's order or peer ids.
				plain := NewTraffic(tr.End, tr.Window)
				var requests uint64
				for k, st := range tr.Edges {
					plain.Edges[k] = st
					if ns == "" {
						requests += st.Requests
					}
				}
				want := Build(plain, opts)
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if string(gj) != string(wj) {
					t.Fatalf("live graph differs from the graph of its traffic map:\n got %s\nwant %s", gj, wj)
				}
				var sum uint64
				for i, e := range got.Edges {
					sum += e.Requests
					if i > 0 {
						p := got.Edges[i-1]
						if p.Source > e.Source || (p.Source == e.Source && p.Target >= e.Target) {
							t.Fatalf("edges out of order: %s→%s before %s→%s", p.Source, p.Target, e.Source, e.Target)
						}
					}
				}
				for i := 1; i < len(got.Nodes); i++ {
					if got.Nodes[i-1].ID >= got.Nodes[i].ID {
						t.Fatalf("nodes out of order: %s before %s", got.Nodes[i-1].ID, got.Nodes[i].ID)
					}
				}
				if ns == "" && sum != requests {
					t.Fatalf("edges carry %d requests, traffic has %d", sum, requests)
				}
				if len(got.Edges) < 20 {
					t.Fatalf("only %d edges: the test does not cover merging", len(got.Edges))
				}
			})
		}
	}
}
