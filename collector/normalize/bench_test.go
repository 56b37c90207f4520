package normalize

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/mesh"
)

// benchPods is the cluster of the benchmarks: 1,000 Services × 5 Pods, the
// size of the registry's own benchmark.
const benchServices, benchPodsPerService = 1000, 5

func benchPodIP(svc, pod int) string {
	n := svc*benchPodsPerService + pod
	return fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
}

func benchRegistry() *registry.Snapshot {
	services := map[string]*registry.Service{}
	var workloads []*registry.Workload
	for s := range benchServices {
		name := fmt.Sprintf("svc-%d", s)
		svc := &registry.Service{Hostname: name + ".bench.svc.cluster.local", Name: name, Namespace: "bench",
			Ports: []registry.Port{{Name: "http", Port: 9080}}}
		for p := range benchPodsPerService {
			version := fmt.Sprintf("v%d", p%2+1)
			w := &registry.Workload{Pod: fmt.Sprintf("%s-%s-%d", name, version, p), Namespace: "bench", Name: name + "-" + version,
				App: name, Version: version, Address: benchPodIP(s, p)}
			workloads = append(workloads, w)
			svc.Endpoints = append(svc.Endpoints, &registry.Endpoint{Address: w.Address, Ports: map[string]uint32{"http": 9080}, Workload: w})
		}
		services[svc.Hostname] = svc
	}
	return registry.New(1, services, workloads)
}

// benchAccessLogs is one ALS batch of a sidecar: entries to Services named
// by clusters without subset, with the upstream Pod's address.
func benchAccessLogs(entries int) plog.Logs {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	res := rl.Resource().Attributes()
	res.PutStr(accesslog.ResService, "frontend")
	res.PutStr(accesslog.ResVersion, "v1")
	res.PutStr(accesslog.ResNamespace, "bench")
	res.PutStr(accesslog.ResWorkload, "frontend-v1")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(accesslog.Scope)
	start := pcommon.NewTimestampFromTime(time.Unix(1_700_000_000, 0))
	for i := range entries {
		s := i % benchServices
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(start)
		a := lr.Attributes()
		a.PutStr(accesslog.AttrUpstreamCluster, fmt.Sprintf("outbound|9080||svc-%d.bench.svc.cluster.local", s))
		a.PutStr(accesslog.AttrDirection, "outbound")
		a.PutStr(accesslog.AttrUpstreamHost, benchPodIP(s, i%benchPodsPerService)+":9080")
		a.PutStr(accesslog.AttrDownstreamRemote, "10.200.0.1:51234")
		a.PutStr(accesslog.AttrResponseFlags, "-")
		a.PutDouble(accesslog.AttrDurationMs, 12.5)
		a.PutBool(accesslog.AttrMTLS, true)
		a.PutStr(accesslog.AttrProtocol, "HTTP/1.1")
		a.PutStr(accesslog.AttrMethod, "GET")
		a.PutStr(accesslog.AttrPath, "/items/1")
		a.PutStr(accesslog.AttrAuthority, fmt.Sprintf("svc-%d:9080", s))
		a.PutInt(accesslog.AttrBytesReceived, 120)
		a.PutInt(accesslog.AttrBytesSent, 2048)
		a.PutInt(accesslog.AttrResponseCode, 200)
	}
	return logs
}

// benchSpans is a batch of client/server pairs as SDKs report them: the
// caller names no version, the callee no workload, both see the other's
// address.
func benchSpans(pairs int) ptrace.Traces {
	td := ptrace.NewTraces()
	client := td.ResourceSpans().AppendEmpty()
	client.Resource().Attributes().PutStr("service.name", "svc-0")
	client.Resource().Attributes().PutStr("k8s.namespace.name", "bench")
	cs := client.ScopeSpans().AppendEmpty().Spans()
	servers := make([]ptrace.SpanSlice, 2)
	for v := range servers {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "svc-1")
		rs.Resource().Attributes().PutStr("service.version", fmt.Sprintf("v%d", v+1))
		rs.Resource().Attributes().PutStr("k8s.namespace.name", "bench")
		servers[v] = rs.ScopeSpans().AppendEmpty().Spans()
	}
	start := pcommon.NewTimestampFromTime(time.Unix(1_700_000_000, 0))
	for i := range pairs {
		id := uint32(i + 1)
		tid := pcommon.TraceID{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
		c := cs.AppendEmpty()
		c.SetKind(ptrace.SpanKindClient)
		c.SetTraceID(tid)
		c.SetSpanID(pcommon.SpanID{1, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
		c.SetStartTimestamp(start)
		c.SetEndTimestamp(start + 5_000_000)
		c.Attributes().PutStr("http.request.method", "GET")
		c.Attributes().PutStr("server.address", "svc-1.bench.svc.cluster.local")
		c.Attributes().PutInt("server.port", 9080)
		c.Attributes().PutStr("network.peer.address", benchPodIP(1, i%2))
		s := servers[i%2].AppendEmpty()
		s.SetKind(ptrace.SpanKindServer)
		s.SetTraceID(tid)
		s.SetSpanID(pcommon.SpanID{2, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
		s.SetParentSpanID(c.SpanID())
		s.SetStartTimestamp(start)
		s.SetEndTimestamp(start + 4_000_000)
		s.Attributes().PutInt("http.response.status_code", 200)
		s.Attributes().PutStr("url.path", "/items")
		s.Attributes().PutStr("client.address", benchPodIP(0, i%benchPodsPerService))
	}
	return td
}

// BenchmarkLogs measures access-log entries to request records, without a
// resolver and with a 5,000-Pod registry naming every callee's version and
// workload.
func BenchmarkLogs(b *testing.B) {
	const entries = 1000
	ld := benchAccessLogs(entries)
	for _, bc := range []struct {
		name  string
		peers mesh.PeerResolver
	}{{"no-resolver", nil}, {"registry", benchRegistry()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if recs, _ := Logs(ld, LogOptions{Peers: bc.peers}); len(recs) != entries {
					b.Fatalf("%d records", len(recs))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*entries), "ns/entry")
		})
	}
}

// BenchmarkPairer measures span pairs to request records, without a
// resolver and with the registry naming both sides' missing fields.
func BenchmarkPairer(b *testing.B) {
	const pairs = 1000
	td := benchSpans(pairs)
	now := time.Unix(1_700_000_000, 0)
	for _, bc := range []struct {
		name  string
		peers mesh.PeerResolver
	}{{"no-resolver", nil}, {"registry", benchRegistry()}} {
		b.Run(bc.name, func(b *testing.B) {
			p := NewPairer(time.Minute, 0)
			p.Peers = bc.peers
			b.ReportAllocs()
			for b.Loop() {
				if recs := p.Add(td, now); len(recs) != pairs {
					b.Fatalf("%d records", len(recs))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pairs), "ns/pair")
		})
	}
}
