package collector_test

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/graph"
)

// TestRegistryNamesVersionsInTheLiveGraph: Istio's clusters name no subset
// when no DestinationRule splits a host (outbound|9080||reviews...), so the
// access log alone says "reviews" but not which version answered. With the
// Kubernetes registry as resolver, the upstream host's Pod IP names it, and
// the live graph has an edge per version; a proxy whose node metadata names
// nothing but its addresses is named by its Pod too.
func TestRegistryNamesVersionsInTheLiveGraph(t *testing.T) {
	pod := func(workload, app, version, ip string) *registry.Workload {
		return &registry.Workload{Pod: workload + "-5d8f-x2x9q", Namespace: "bookinfo", Name: workload, App: app, Version: version,
			Labels: map[string]string{"app": app, "version": version}, Address: ip}
	}
	productpage := pod("productpage-v1", "productpage", "v1", "10.0.0.1")
	reviews1, reviews2 := pod("reviews-v1", "reviews", "v1", "10.0.0.2"), pod("reviews-v2", "reviews", "v2", "10.0.0.3")
	reviewsSvc := &registry.Service{Hostname: "reviews.bookinfo.svc.cluster.local", Name: "reviews", Namespace: "bookinfo",
		Ports: []registry.Port{{Name: "http", Port: 9080}}}
	for _, p := range []*registry.Workload{reviews1, reviews2} {
		reviewsSvc.Endpoints = append(reviewsSvc.Endpoints, &registry.Endpoint{Address: p.Address, Ports: map[string]uint32{"http": 9080}, Workload: p})
	}
	peers := registry.New(1, map[string]*registry.Service{reviewsSvc.Hostname: reviewsSvc}, []*registry.Workload{productpage, reviews1, reviews2})

	live, err := graph.New(graph.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startCollectorWith(t, peers, live)

	to := func(ip string) *datav3.HTTPAccessLogEntry {
		e := httpEntry("outbound|9080||reviews.bookinfo.svc.cluster.local", 200, 10*time.Millisecond)
		e.CommonProperties.UpstreamRemoteAddress = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}}}
		return e
	}
	var entries []*datav3.HTTPAccessLogEntry
	for i := range 10 {
		ip := reviews1.Address
		if i%5 == 0 {
			ip = reviews2.Address // 2 of 10 to v2
		}
		entries = append(entries, to(ip))
	}
	// A sidecar without Istio's labels: only its node id and addresses.
	bare, _ := structpb.NewStruct(map[string]any{"INSTANCE_IPS": productpage.Address + ",fd00::1"})
	stream := alsStream(t, h.cfg.ALS)
	if err := stream.Send(&alsv3.StreamAccessLogsMessage{
		Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "sidecar~10.0.0.1~x~y", Metadata: bare}, LogName: "als"},
		LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("access_logs"), 10)

	var got []string
	deadline := time.Now().Add(10 * time.Second)
	want := []string{"bookinfo/productpage/v1 → bookinfo/reviews/v1: 8", "bookinfo/productpage/v1 → bookinfo/reviews/v2: 2"}
	for time.Now().Before(deadline) {
		live.Refresh()
		g, err := live.Graph(time.Minute, graph.Options{View: graph.ViewVersion})
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, e := range g.Edges {
			got = append(got, fmt.Sprintf("%s → %s: %d", e.Source, e.Target, e.Requests))
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("live graph, version view:\n got %q\nwant %q", got, want)
	}

	// ClickHouse has the same names: the records were resolved once, before
	// either sink saw them.
	var workloads uint64
	if err := h.store.Conn().QueryRow(t.Context(), "SELECT uniqExact(dst_workload) FROM "+h.store.Table("access_logs")+
		" WHERE src_workload = 'productpage-v1' AND dst_workload IN ('reviews-v1', 'reviews-v2')").Scan(&workloads); err != nil {
		t.Fatal(err)
	}
	if workloads != 2 {
		t.Fatalf("access_logs name %d reviews workloads from productpage-v1, want 2", workloads)
	}
}
