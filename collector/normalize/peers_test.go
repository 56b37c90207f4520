package normalize

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/mesh"
)

// bookinfo is a registry snapshot as the Kubernetes registry builds it:
// Bookinfo's Pods in namespace bookinfo behind their Services.
func bookinfo() *registry.Snapshot {
	pod := func(workload, app, version, ip string) *registry.Workload {
		return &registry.Workload{
			Pod: workload + "-5d8f-x2x9q", Namespace: "bookinfo", Name: workload, App: app, Version: version,
			Labels: map[string]string{"app": app, "version": version}, Address: ip,
		}
	}
	productpage := pod("productpage-v1", "productpage", "v1", "10.0.0.1")
	reviews1 := pod("reviews-v1", "reviews", "v1", "10.0.0.2")
	reviews2 := pod("reviews-v2", "reviews", "v2", "10.0.0.3")
	ratings := pod("ratings-v1", "ratings", "v1", "10.0.0.4")
	service := func(name string, pods ...*registry.Workload) *registry.Service {
		s := &registry.Service{Hostname: name + ".bookinfo.svc.cluster.local", Name: name, Namespace: "bookinfo",
			Ports: []registry.Port{{Name: "http", Port: 9080, Protocol: "HTTP"}}}
		for _, p := range pods {
			s.Endpoints = append(s.Endpoints, &registry.Endpoint{Address: p.Address, Ports: map[string]uint32{"http": 9080}, Workload: p})
		}
		return s
	}
	services := map[string]*registry.Service{}
	for _, s := range []*registry.Service{
		service("productpage", productpage), service("reviews", reviews1, reviews2), service("ratings", ratings),
	} {
		services[s.Hostname] = s
	}
	return registry.New(1, services, []*registry.Workload{productpage, reviews1, reviews2, ratings})
}

var (
	productpageV1 = mesh.Peer{Namespace: "bookinfo", Service: "productpage", Workload: "productpage-v1", Version: "v1"}
	reviewsV1     = mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v1", Version: "v1"}
	reviewsV2     = mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v2", Version: "v2"}
	// proxy is the resource of productpage's sidecar as the ALS receiver
	// writes it from Istio's node metadata.
	proxy = map[string]any{"service.name": "productpage", "service.version": "v1", "k8s.namespace.name": "bookinfo",
		"k8s.deployment.name": "productpage-v1", "k8s.pod.ip": "10.0.0.1"}
)

func TestAccessLogAddressesNameTheirWorkloads(t *testing.T) {
	reviewsProxy := map[string]any{"service.name": "reviews", "service.version": "v2", "k8s.namespace.name": "bookinfo",
		"k8s.deployment.name": "reviews-v2", "k8s.pod.ip": "10.0.0.3"}
	for _, tc := range []struct {
		name            string
		resource, entry map[string]any
		inboundFromMesh bool
		src, dst        mesh.Peer
	}{
		{
			name:     "outbound entry without subset gets the callee's version and workload",
			resource: proxy,
			entry:    map[string]any{"upstream_cluster": "outbound|9080||reviews.bookinfo.svc.cluster.local", "upstream_host": "10.0.0.3:9080"},
			src:      productpageV1, dst: reviewsV2,
		},
		{
			name:     "inbound entry from an unknown caller becomes the workload at its address",
			resource: reviewsProxy,
			entry:    map[string]any{"upstream_cluster": "inbound|9080||", "downstream_remote_address": "10.0.0.1:51234"},
			src:      productpageV1, dst: reviewsV2,
		},
		{
			name:     "a proxy without Istio's metadata is named by its Pod's address",
			resource: map[string]any{"k8s.pod.ip": "10.0.0.1"},
			entry:    map[string]any{"upstream_cluster": "outbound|9080||reviews.bookinfo.svc.cluster.local", "upstream_host": "10.0.0.2:9080"},
			src:      productpageV1, dst: reviewsV1,
		},
		{
			name:     "the cluster's subset is never overwritten by the address's version",
			resource: proxy,
			entry:    map[string]any{"upstream_cluster": "outbound|9080|v1|reviews.bookinfo.svc.cluster.local", "upstream_host": "10.0.0.3:9080"},
			src:      productpageV1, dst: mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v2", Version: "v1"},
		},
		{
			name:     "a caller named by peer metadata is never overwritten",
			resource: reviewsProxy,
			entry: map[string]any{"upstream_cluster": "inbound|9080||", "downstream_remote_address": "10.0.0.4:40000",
				"source.service": "productpage", "source.namespace": "bookinfo", "source.version": "v1", "source.workload": "productpage-v1"},
			inboundFromMesh: true,
			src:             productpageV1, dst: reviewsV2,
		},
		{
			name:     "a proxy's own metadata is never overwritten",
			resource: map[string]any{"service.name": "web", "service.version": "canary", "k8s.namespace.name": "bookinfo", "k8s.deployment.name": "web-canary", "k8s.pod.ip": "10.0.0.1"},
			entry:    map[string]any{"upstream_cluster": "outbound|9080||reviews.bookinfo.svc.cluster.local", "upstream_host": "10.0.0.2:9080"},
			src:      mesh.Peer{Namespace: "bookinfo", Service: "web", Workload: "web-canary", Version: "canary"}, dst: reviewsV1,
		},
		{
			name:     "an address in another namespace than the host's is not the callee",
			resource: proxy,
			entry:    map[string]any{"upstream_cluster": "outbound|9080||reviews.staging.svc.cluster.local", "upstream_host": "10.0.0.3:9080"},
			src:      productpageV1, dst: mesh.Peer{Namespace: "staging", Service: "reviews"},
		},
		{
			name:     "a caller the registry does not know stays unknown",
			resource: reviewsProxy,
			entry:    map[string]any{"upstream_cluster": "inbound|9080||", "downstream_remote_address": "192.168.7.7:40000"},
			src:      mesh.Peer{}, dst: reviewsV2,
		},
		{
			name:     "a callee the registry does not know keeps what the cluster name says",
			resource: proxy,
			entry:    map[string]any{"upstream_cluster": "outbound|443||api.example.com", "upstream_host": "93.184.216.34:443"},
			src:      productpageV1, dst: mesh.Peer{Namespace: "bookinfo", Service: "api.example.com"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := plog.NewLogs()
			rl := logs.ResourceLogs().AppendEmpty()
			if err := rl.Resource().Attributes().FromRaw(tc.resource); err != nil {
				t.Fatal(err)
			}
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName(accesslog.Scope)
			lr := sl.LogRecords().AppendEmpty()
			if err := lr.Attributes().FromRaw(tc.entry); err != nil {
				t.Fatal(err)
			}
			lr.Attributes().PutInt(accesslog.AttrResponseCode, 200)
			recs, _ := Logs(logs, LogOptions{Peers: bookinfo(), InboundFromMesh: tc.inboundFromMesh})
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			if got := recs[0]; got.Source != tc.src || got.Destination != tc.dst {
				t.Fatalf("record %+v → %+v\nwant   %+v → %+v", got.Source, got.Destination, tc.src, tc.dst)
			}
		})
	}
}

// The registry does not make a mesh caller's inbound entry count: whether
// the caller's proxy reports the request is what the entry says.
func TestRegistryDoesNotCountInboundEntriesOfMeshCallersTwice(t *testing.T) {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "reviews")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Attributes().PutStr(accesslog.AttrUpstreamCluster, "inbound|9080||")
	lr.Attributes().PutStr(accesslog.AttrDownstreamRemote, "10.0.0.1:5000")
	lr.Attributes().PutStr(accesslog.AttrPeerPrincipal, "spiffe://cluster.local/ns/bookinfo/sa/productpage")
	lr.Attributes().PutBool(accesslog.AttrMTLS, true)
	lr.Attributes().PutInt(accesslog.AttrResponseCode, 200)
	if recs, _ := Logs(logs, LogOptions{Peers: bookinfo()}); len(recs) != 0 {
		t.Fatalf("inbound entry of a mesh caller became %+v; its proxy reports it", recs)
	}
}

// spanOf appends a span of kind k to td under a resource of its own.
func spanOf(t *testing.T, td ptrace.Traces, resource map[string]any, k ptrace.SpanKind, id, parent byte, attrs map[string]any) {
	t.Helper()
	rs := td.ResourceSpans().AppendEmpty()
	if err := rs.Resource().Attributes().FromRaw(resource); err != nil {
		t.Fatal(err)
	}
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetKind(k)
	sp.SetTraceID(pcommon.TraceID{1})
	sp.SetSpanID(pcommon.SpanID{id})
	if parent != 0 {
		sp.SetParentSpanID(pcommon.SpanID{parent})
	}
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Unix(1, 0)))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(time.Unix(1, 0).Add(time.Millisecond)))
	if err := sp.Attributes().FromRaw(attrs); err != nil {
		t.Fatal(err)
	}
}

func TestSpanAddressesNameTheirWorkloads(t *testing.T) {
	type span struct {
		resource, attrs map[string]any
		kind            ptrace.SpanKind
		id, parent      byte
	}
	sdk := func(service, version string) map[string]any {
		return map[string]any{"service.name": service, "service.version": version, "k8s.namespace.name": "bookinfo", "k8s.deployment.name": service + "-" + version}
	}
	for _, tc := range []struct {
		name     string
		spans    []span
		src, dst mesh.Peer
	}{
		{
			name: "a client span's peer address names the callee that never reported",
			spans: []span{{sdk("productpage", "v1"), map[string]any{"server.address": "reviews", "server.port": 9080, "network.peer.address": "10.0.0.3", "network.peer.port": 9080},
				ptrace.SpanKindClient, 1, 0}},
			src: productpageV1, dst: reviewsV2,
		},
		{
			name: "older conventions: net.sock.peer.addr names the callee",
			spans: []span{{sdk("productpage", "v1"), map[string]any{"net.peer.name": "reviews", "net.sock.peer.addr": "10.0.0.2", "net.sock.peer.port": 9080},
				ptrace.SpanKindClient, 1, 0}},
			src: productpageV1, dst: reviewsV1,
		},
		{
			name: "a host name is passed over for the address after it, which may carry a port",
			spans: []span{{sdk("productpage", "v1"), map[string]any{"server.address": "reviews.bookinfo", "net.peer.ip": "10.0.0.2:9080"},
				ptrace.SpanKindClient, 1, 0}},
			src: productpageV1, dst: reviewsV1,
		},
		{
			name:  "a server span's client address names the caller that never reported",
			spans: []span{{sdk("reviews", "v2"), map[string]any{"client.address": "10.0.0.1", "network.peer.address": "10.0.0.1"}, ptrace.SpanKindServer, 2, 0}},
			src:   productpageV1, dst: reviewsV2,
		},
		{
			name:  "a service without resource attributes is named by its k8s.pod.ip",
			spans: []span{{map[string]any{"k8s.pod.ip": "10.0.0.2"}, nil, ptrace.SpanKindServer, 2, 0}},
			src:   mesh.Peer{}, dst: reviewsV1,
		},
		{
			name: "a pair: the server without a version gets it from the address its caller saw",
			spans: []span{
				{sdk("productpage", "v1"), map[string]any{"server.address": "10.0.0.3", "server.port": 9080}, ptrace.SpanKindClient, 1, 0},
				{map[string]any{"service.name": "reviews"}, map[string]any{"client.address": "10.0.0.1"}, ptrace.SpanKindServer, 2, 1},
			},
			src: productpageV1, dst: reviewsV2,
		},
		{
			name: "a pair: resource attributes are never overwritten by addresses",
			spans: []span{
				{sdk("web", "canary"), map[string]any{"network.peer.address": "10.0.0.3"}, ptrace.SpanKindClient, 1, 0},
				{sdk("reviews", "v9"), map[string]any{"client.address": "10.0.0.1"}, ptrace.SpanKindServer, 2, 1},
			},
			src: mesh.Peer{Namespace: "bookinfo", Service: "web", Workload: "web-canary", Version: "canary"},
			dst: mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v9", Version: "v9"},
		},
		{
			name:  "an address the registry does not know stays unknown",
			spans: []span{{sdk("reviews", "v2"), map[string]any{"client.address": "172.16.0.9"}, ptrace.SpanKindServer, 2, 0}},
			src:   mesh.Peer{}, dst: mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v2", Version: "v2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := ptrace.NewTraces()
			for _, s := range tc.spans {
				spanOf(t, td, s.resource, s.kind, s.id, s.parent, s.attrs)
			}
			p := NewPairer(time.Second, 100)
			p.Peers = bookinfo()
			recs := append(p.Add(td, time.Unix(1, 0)), p.Expire(time.Unix(100, 0))...)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1: %+v", len(recs), recs)
			}
			if got := recs[0]; got.Source != tc.src || got.Destination != tc.dst {
				t.Fatalf("record %+v → %+v\nwant   %+v → %+v", got.Source, got.Destination, tc.src, tc.dst)
			}
		})
	}
}

func TestSpanRowsNameTheirServiceByPodAddress(t *testing.T) {
	td := ptrace.NewTraces()
	spanOf(t, td, map[string]any{"k8s.pod.ip": "10.0.0.3"}, ptrace.SpanKindInternal, 1, 0, nil)
	if rows := Spans(td, bookinfo()); len(rows) != 1 || rows[0].Peer != reviewsV2 {
		t.Fatalf("span rows = %+v, want one of %+v", rows, reviewsV2)
	}
}
