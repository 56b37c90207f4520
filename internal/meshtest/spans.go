package meshtest

import (
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// SpanPairs builds batches of OTLP client/server span pairs, each pair its
// own trace: frontend calls three versions of backend (namespace bench),
// the pair in one batch, a minute ago. The ingest benchmarks send them.
func SpanPairs(batches, pairsPerBatch int) []ptrace.Traces {
	out := make([]ptrace.Traces, batches)
	start := time.Now().Add(-time.Minute)
	var id uint64
	for b := range out {
		td := ptrace.NewTraces()
		client := td.ResourceSpans().AppendEmpty()
		client.Resource().Attributes().PutStr("service.name", "frontend")
		client.Resource().Attributes().PutStr("k8s.namespace.name", "bench")
		cs := client.ScopeSpans().AppendEmpty().Spans()
		servers := make([]ptrace.SpanSlice, 3)
		for v := range servers {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", "backend")
			rs.Resource().Attributes().PutStr("service.version", fmt.Sprintf("v%d", v+1))
			rs.Resource().Attributes().PutStr("k8s.namespace.name", "bench")
			servers[v] = rs.ScopeSpans().AppendEmpty().Spans()
		}
		for i := 0; i < pairsPerBatch; i++ {
			id++
			var tid pcommon.TraceID
			tid[0], tid[1], tid[2], tid[3] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
			c := cs.AppendEmpty()
			c.SetKind(ptrace.SpanKindClient)
			c.SetName("GET /items")
			c.SetTraceID(tid)
			c.SetSpanID(pcommon.SpanID{1, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
			c.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
			c.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(id%50) * time.Millisecond)))
			c.Attributes().PutStr("http.request.method", "GET")
			s := servers[id%3].AppendEmpty()
			s.SetKind(ptrace.SpanKindServer)
			s.SetName("GET /items")
			s.SetTraceID(tid)
			s.SetSpanID(pcommon.SpanID{2, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
			s.SetParentSpanID(c.SpanID())
			s.SetStartTimestamp(c.StartTimestamp())
			s.SetEndTimestamp(c.EndTimestamp())
			s.Attributes().PutInt("http.response.status_code", 200)
			s.Attributes().PutStr("url.path", "/items")
		}
		out[b] = td
	}
	return out
}
